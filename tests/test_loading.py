"""flan-t5 carries its own lm_head; transformers 5 ties T5 heads. The student must keep the real one."""

import json
import logging
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, T5Config, T5ForConditionalGeneration

from codistill.data.formatting import FIM_PREFIX
from codistill.eval.models import Seq2SeqModel
from codistill.models.loading import keep_untied_lm_head, load_causal_student, load_student
from codistill.models.tiny import untie_lm_head


def _v11_checkpoint(path, tiny_student_dir):
    """A T5 v1.1-style checkpoint (tie_word_embeddings: false in config.json) with lm_head != shared."""
    torch.manual_seed(1)
    config = T5Config(
        vocab_size=json.loads((tiny_student_dir / "config.json").read_text())["vocab_size"],
        d_model=32,
        d_ff=64,
        d_kv=8,
        num_heads=4,
        num_layers=2,
        feed_forward_proj="gated-gelu",
        tie_word_embeddings=False,
        decoder_start_token_id=0,
    )
    model = T5ForConditionalGeneration(config)
    untie_lm_head(model)
    model.save_pretrained(path)
    for name in ("tokenizer.json", "tokenizer_config.json", "spiece.model"):
        if (tiny_student_dir / name).exists():
            (path / name).write_bytes((tiny_student_dir / name).read_bytes())
    saved = json.loads((path / "config.json").read_text())
    assert saved["tie_word_embeddings"] is False
    weights = load_file(path / "model.safetensors")
    assert not torch.equal(weights["lm_head.weight"], weights["shared.weight"])
    return weights


def _reference_logits(model, weights, input_ids, decoder_input_ids):
    """Logits computed from the checkpoint's own lm_head, not the model's."""
    out = model(input_ids=input_ids, decoder_input_ids=decoder_input_ids, output_hidden_states=True)
    vocab = weights["lm_head.weight"].shape[0]
    return out.logits[..., :vocab], out.decoder_hidden_states[-1] @ weights["lm_head.weight"].T


def test_student_logits_match_the_checkpoints_lm_head(tmp_path, tiny_student_dir):
    weights = _v11_checkpoint(tmp_path, Path(tiny_student_dir))
    student = load_student(str(tmp_path))
    assert len(student.tokenizer) > weights["shared.weight"].shape[0]  # codec tokens were added
    x, y = torch.tensor([[5, 6, 7, 1]]), torch.tensor([[0, 8, 9]])
    got, want = _reference_logits(student.model.eval(), weights, x, y)
    assert torch.allclose(got, want, atol=1e-5)

    # and the head survives save_pretrained / from_pretrained
    student.model.save_pretrained(tmp_path / "saved")
    reloaded = AutoModelForSeq2SeqLM.from_pretrained(tmp_path / "saved").eval()
    got, want = _reference_logits(reloaded, weights, x, y)
    assert torch.allclose(got, want, atol=1e-5)


def test_plain_resize_would_lose_the_head(tmp_path, tiny_student_dir):
    """The trap the loader avoids: without the fix, resizing re-ties lm_head to the embeddings."""
    weights = _v11_checkpoint(tmp_path, Path(tiny_student_dir))
    model = AutoModelForSeq2SeqLM.from_pretrained(tmp_path)
    model.resize_token_embeddings(model.config.vocab_size + 8, mean_resizing=False)
    vocab = weights["lm_head.weight"].shape[0]
    assert not torch.equal(model.lm_head.weight[:vocab], weights["lm_head.weight"])


def test_tied_checkpoints_stay_tied(tmp_path):
    torch.manual_seed(0)
    config = T5Config(vocab_size=64, d_model=16, d_ff=32, d_kv=4, num_heads=4, num_layers=1)
    T5ForConditionalGeneration(config).save_pretrained(tmp_path)
    model = AutoModelForSeq2SeqLM.from_pretrained(tmp_path)
    keep_untied_lm_head(model)
    assert model.config.tie_word_embeddings


@contextmanager
def transformers_warnings():
    """The warnings transformers logs meanwhile (its loggers do not propagate to the root, so caplog misses them)."""
    records = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    logging.getLogger("transformers").addHandler(handler)
    try:
        yield records
    finally:
        logging.getLogger("transformers").removeHandler(handler)


def test_a_saved_seq2seq_student_loads_without_a_warning_and_keeps_its_head(tmp_path, tiny_student_dir):
    student = load_student(tiny_student_dir)
    student.model.save_pretrained(tmp_path)
    student.tokenizer.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["tie_word_embeddings"] is False
    head = load_file(tmp_path / "model.safetensors")["lm_head.weight"]
    with transformers_warnings() as plain:
        AutoModelForSeq2SeqLM.from_pretrained(tmp_path)
    # transformers 5 alone warns: T5Config forces tie_word_embeddings=True whatever config.json says
    assert any("lm_head.weight" in r.getMessage() for r in plain)
    with transformers_warnings() as records:
        loaded = [load_student(str(tmp_path)).model, Seq2SeqModel.from_pretrained(str(tmp_path), device="cpu").model]
    assert [r.getMessage() for r in records] == []
    for model in loaded:
        assert model.lm_head.weight.data_ptr() != model.shared.weight.data_ptr()
        assert torch.equal(model.lm_head.weight, head) and not model.config.tie_word_embeddings


def test_a_saved_causal_student_loads_without_a_warning(tmp_path, tiny_teacher_dir):
    student = load_causal_student(tiny_teacher_dir)
    student.model.save_pretrained(tmp_path)
    student.tokenizer.save_pretrained(tmp_path)
    with transformers_warnings() as records:
        model = AutoModelForCausalLM.from_pretrained(tmp_path)
    assert [r.getMessage() for r in records] == []
    assert model.lm_head.weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()  # tied, as saved


def test_the_rewritten_tokenizers_new_rows_start_from_what_the_model_knows(tmp_path, tiny_student_dir):
    """flan-t5's trained rows have a std of about 0.125; the rows the lossless rewrite adds (`\\n`, `{`, the
    FIM markers, space runs) were drawn at the initializer's 1.0. The double: the tiny T5 with its rows
    scaled to a trained model's size. New rows are now the mean of the rows of the pieces the original
    tokenizer made of their text (or of every trained row, where it made none), in the embeddings and the head."""
    model = T5ForConditionalGeneration.from_pretrained(tiny_student_dir)
    with torch.no_grad():
        model.shared.weight.mul_(0.125)
        model.lm_head.weight.mul_(0.125)
    model.save_pretrained(tmp_path)
    for name in ("spiece.model", "tokenizer.json", "tokenizer_config.json"):  # the original T5 tokenizer
        (tmp_path / name).write_bytes((Path(tiny_student_dir) / name).read_bytes())
    student = load_student(str(tmp_path))
    original, first = student.tokenizer.original, len(student.tokenizer.original)
    for table in (student.model.shared.weight, student.model.lm_head.weight):
        trained, new = table[:first].std(), table[first : len(student.tokenizer)]
        assert len(new) > 0 and new.std() < 2 * trained  # not 8x, as at the initializer's scale
    marker = student.tokenizer.base.convert_tokens_to_ids(FIM_PREFIX)
    pieces = [i for i in original(FIM_PREFIX, add_special_tokens=False)["input_ids"] if i != original.unk_token_id]
    assert pieces
    torch.testing.assert_close(student.model.shared.weight[marker], student.model.shared.weight[pieces].mean(0))
