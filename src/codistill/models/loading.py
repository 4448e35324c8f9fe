"""Load a seq2seq student (Hub id or folder) with a lossless tokenizer and its real output head."""

import logging
from dataclasses import dataclass

import torch
from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer, PreTrainedModel

from codistill.data.formatting import STUDENT_MARKERS
from codistill.generation import stop_ids
from codistill.models.tokenization import CodeTokenizer


@dataclass
class Student:
    model: PreTrainedModel
    tokenizer: object  # a CodeTokenizer for seq2seq students, the model's own tokenizer for causal ones
    fim: dict | None = None  # a causal student's FIM sentinels (recipe 1 trains it to fill in the middle)


def keep_untied_lm_head(model: PreTrainedModel) -> None:
    """transformers 5 forces `T5Config.tie_word_embeddings=True`, but flan-t5 and T5 v1.1 checkpoints
    carry their own `lm_head`. `from_pretrained` loads that head untied; left alone, the config still
    says "tied", so `resize_token_embeddings` re-ties the head to the input embeddings (throwing the
    trained head away) and `save_pretrained` drops it. Record what was loaded."""
    head, embed = model.get_output_embeddings(), model.get_input_embeddings()
    if head is not None and head.weight.data_ptr() != embed.weight.data_ptr():
        model.config.tie_word_embeddings = False


def _not_the_untied_head_warning(record: logging.LogRecord) -> bool:
    return "tie shared.weight to lm_head.weight" not in record.getMessage()


def seq2seq_model(name_or_path: str, **kwargs) -> PreTrainedModel:
    """`AutoModelForSeq2SeqLM.from_pretrained` keeping a separate head (`keep_untied_lm_head`), without the
    warning transformers gives for one. T5Config forces `tie_word_embeddings=True` whatever config.json says
    (false in flan-t5's and so in every student saved from it), so each load of such a checkpoint warns that
    `shared` and `lm_head` differ and are left untied: what the checkpoint means, so nothing to act on."""
    modeling = logging.getLogger("transformers.modeling_utils")
    modeling.addFilter(_not_the_untied_head_warning)
    try:
        model = AutoModelForSeq2SeqLM.from_pretrained(name_or_path, **kwargs)
    finally:
        modeling.removeFilter(_not_the_untied_head_warning)
    keep_untied_lm_head(model)
    return model


def load_student(name_or_path: str, markers: tuple[str, ...] = STUDENT_MARKERS, dtype: str = "float32") -> Student:
    """The student model and its `CodeTokenizer`; embeddings grow to cover the tokenizer's added tokens."""
    tokenizer = CodeTokenizer.from_pretrained(name_or_path, markers=tuple(markers))
    model = seq2seq_model(name_or_path, dtype=dtype)
    if len(tokenizer) > model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    init_new_rows(model, tokenizer)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    if model.config.decoder_start_token_id is None:
        model.config.decoder_start_token_id = tokenizer.pad_token_id
    return Student(model, tokenizer)


def init_new_rows(model, tokenizer: CodeTokenizer) -> None:
    """Start the rows of the tokens the lossless rewrite added (byte pieces for `\\n`, `\\t`, `{`, `<`; space
    runs; the FIM markers) from what the model already knows, in its input embeddings and its own head: each
    the mean of the rows of the pieces the original tokenizer made of the token's text, or, where it made none
    but `<unk>` (T5 has no `{`, and drops newlines), the mean of all its trained rows. Left at the
    initializer's noise (row norm about 8x a trained row's in flan-t5), a fine-tuned student spends its first
    steps unlearning them. A saved student has no new rows (its tokenizer is lossless already)."""
    original, new = tokenizer.original, tokenizer.base
    first = len(original)
    if len(new) <= first:
        return
    unk = original.unk_token_id
    tables = [model.get_input_embeddings().weight]
    head = model.get_output_embeddings()
    if head is not None and head.weight.data_ptr() != tables[0].data_ptr():
        tables.append(head.weight)
    with torch.no_grad():
        for table in tables:
            mean = table[:first].mean(0)
            for token_id in range(first, len(new)):
                text = new.decode([token_id])
                pieces = [i for i in original(text, add_special_tokens=False)["input_ids"] if i != unk and i < first]
                table[token_id] = table[pieces].mean(0) if pieces else mean


def load_causal_student(name_or_path: str, dtype: str = "float32", fim: dict | None = None) -> Student:
    """A causal student and its own tokenizer; padding falls back to the eos token. `fim`: its FIM sentinels,
    checked against its vocabulary."""
    tokenizer = AutoTokenizer.from_pretrained(name_or_path)
    if fim:
        stop_ids(tokenizer, list(fim.values()), f"student {name_or_path}", "set student.fim to its own FIM tokens")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(name_or_path, dtype=dtype)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return Student(model, tokenizer, fim)
