import gzip
import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import AddedToken
from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline

from codistill.data.corpus import SAMPLE_DIR
from codistill.data.formatting import (
    FIM_MIDDLE,
    FIM_PREFIX,
    FIM_SUFFIX,
    LEGACY_TASK_PREFIXES,
    STUDENT_MARKERS,
    TASK_PREFIXES,
    encode_fim_input,
    fim_prompt,
)
from codistill.models.tokenization import BYTE_PIECES, CODEC_FILE, LEGACY_SPACE_RUNS, SPACE_RUNS, CodeTokenizer

TRICKY = "class A\n\tnew: =>\n    @x  = {1, 2}\t-- é 漢字 😀 \\n  \n\n  trailing   "


CASES = [
    TRICKY,
    "class Foo\n\tbar: =>",
    "",
    " ",
    "  x",
    "x  ",
    "a b",
    "\t\tx\n    y\n\t  \tz",
    " " * 37 + "x",
    "\r\n",
    "{}[]()<>",
    "<0x0A>",
    "<sp4>",
    "[label]",
    "\u2581x \u2581",
    "\x00\x7f",
    "</s> <pad> <unk>",
    "x . y , z ' s ?",
    "ﬁ ① Å",  # NFKC would change these
]


@pytest.fixture(scope="module")
def code_tokenizer(tiny_student_dir):
    return CodeTokenizer.from_pretrained(tiny_student_dir, markers=STUDENT_MARKERS)


@pytest.fixture(scope="module")
def plain(code_tokenizer, tmp_path_factory):
    """The saved tokenizer as anyone loads it: transformers alone, no codistill, no remote code."""
    folder = tmp_path_factory.mktemp("saved_tokenizer")
    code_tokenizer.save_pretrained(folder)
    return AutoTokenizer.from_pretrained(folder)


def round_trips(tokenizer, text: str) -> bool:
    ids = tokenizer.encode(text, add_special_tokens=False)
    return tokenizer.decode(ids) == text and tokenizer.decode(ids, skip_special_tokens=True) == text


def test_plain_t5_sentencepiece_loses_code(tiny_student_dir):
    """The bug being fixed: T5's default normalisation, reproduced by a locally trained SentencePiece."""
    base = AutoTokenizer.from_pretrained(tiny_student_dir)
    decoded = base.decode(base(TRICKY)["input_ids"], skip_special_tokens=True)
    assert "\n" not in decoded and "\t" not in decoded and "    @x" not in decoded
    assert "😀" not in decoded


def test_the_saved_tokenizer_round_trips_the_tricky_cases(plain):
    for text in CASES:
        assert round_trips(plain, text), repr(text)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=200))
def test_the_saved_tokenizer_round_trips_any_text(plain, text):
    assert round_trips(plain, text)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from([*" \t\n{}\\ab<>[]\u2581", "<0x", "</s>", *STUDENT_MARKERS]), max_size=40))
def test_markers_and_whitespace_round_trip_in_any_order(plain, pieces):
    assert round_trips(plain, "".join(pieces))


def test_whitespace_is_bytes_and_space_runs_not_added_tokens(plain):
    """`skip_special_tokens` cannot drop them, and indentation costs a few tokens, not one per space."""
    tokens = plain.convert_ids_to_tokens(plain.encode("a\n\t" + " " * 20 + "b", add_special_tokens=False))
    assert "<0x0A>" in tokens and "<0x09>" in tokens and len(tokens) <= 6, tokens
    assert not set(tokens) & {t.content for t in plain.added_tokens_decoder.values()}


def test_markers_are_single_tokens(plain):
    ids = plain.encode(FIM_PREFIX + "x" + FIM_SUFFIX + FIM_MIDDLE, add_special_tokens=False)
    tokens = plain.convert_ids_to_tokens(ids)
    assert [tokens[0], *tokens[-2:]] == [FIM_PREFIX, FIM_SUFFIX, FIM_MIDDLE]


def test_the_training_input_is_the_prompt_a_user_writes(code_tokenizer, plain):
    """encode_fim_input concatenates separate encodings; they equal the one-shot encoding of the prompt text
    (with its eos), so a pipeline prompted with `fim_prompt` sees what the student was trained on."""
    prefix, suffix = "class A\n  new: =>\n", "  @x = {1}\n"
    for task, text in TASK_PREFIXES.items():
        ids = encode_fim_input(code_tokenizer, task, prefix, suffix, 512)
        assert ids == plain(fim_prompt(text, prefix, suffix))["input_ids"]


def test_task_prefixes_are_plain_text_not_added_tokens(code_tokenizer):
    """`predict: ` / `explain: ` reach the model as text, not as tokens the pretrained model never saw."""
    assert code_tokenizer.task_prefixes == {"label": "predict: ", "rationale": "explain: "}
    for text in TASK_PREFIXES.values():
        assert not set(code_tokenizer.encode(text)) & set(code_tokenizer.base.added_tokens_decoder)
    assert not set(LEGACY_TASK_PREFIXES.values()) & set(code_tokenizer.base.get_vocab())


def test_rebuilding_keeps_every_id_of_the_escaping_wrappers_layout(tiny_student_dir, code_tokenizer):
    """A student saved by the escaping wrapper (bytes, then `<sp16>`..`<sp2>`, then markers, all added tokens)
    keeps each id's meaning; rebuilding a lossless tokenizer changes nothing."""
    old = AutoTokenizer.from_pretrained(tiny_student_dir)
    old.add_tokens([AddedToken(t, normalized=False) for t in [*BYTE_PIECES, *LEGACY_SPACE_RUNS, *STUDENT_MARKERS]])
    vocab, rebuilt = old.get_vocab(), CodeTokenizer(old, STUDENT_MARKERS).base.get_vocab()
    for name, new_name in zip(LEGACY_SPACE_RUNS, SPACE_RUNS, strict=True):
        assert vocab[name] == rebuilt[new_name]
    for name in [*BYTE_PIECES, *STUDENT_MARKERS]:
        assert vocab[name] == rebuilt[name]
    assert CodeTokenizer(code_tokenizer.base, STUDENT_MARKERS).base.get_vocab() == code_tokenizer.get_vocab()


def test_batch_call_matches_encode_and_adds_eos(code_tokenizer):
    batch = code_tokenizer(["a\nb", "{ }"])
    assert batch["input_ids"][0] == code_tokenizer.encode("a\nb") + [code_tokenizer.eos_token_id]
    assert code_tokenizer.batch_decode(batch["input_ids"]) == ["a\nb", "{ }"]


def test_a_causal_student_generates_code_with_its_newlines_through_a_plain_pipeline(tiny_teacher_dir, tmp_path):
    """The byte-level BPE is lossless as it is: a causal student, overfit on one snippet, completes it
    through `pipeline("text-generation")` with its tabs and newlines."""
    code = "for i = 1, 3\n\tprint i\n\tx = {i}\n"
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_teacher_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_teacher_dir)
    ids = torch.tensor([tokenizer(code + tokenizer.eos_token)["input_ids"]])
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(100):
        loss = model(input_ids=ids, labels=ids).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    generate = pipeline("text-generation", model=str(tmp_path), device="cpu")
    out = generate(code[:13], max_new_tokens=32, do_sample=False, return_full_text=True)
    assert out[0]["generated_text"] == code


def test_saved_tokenizer_keeps_markers_task_prefixes_and_ids(code_tokenizer, tmp_path):
    custom = CodeTokenizer(code_tokenizer.base, code_tokenizer.markers, {"label": "fill: ", "rationale": "why: "})
    custom.save_pretrained(tmp_path)
    loaded = CodeTokenizer.from_pretrained(str(tmp_path))
    assert loaded.markers == code_tokenizer.markers
    assert loaded.task_prefixes == {"label": "fill: ", "rationale": "why: "}
    assert loaded.encode(TRICKY) == code_tokenizer.encode(TRICKY)


def test_a_student_saved_before_task_prefixes_were_recorded_keeps_its_legacy_prefixes(code_tokenizer, tmp_path):
    code_tokenizer.save_pretrained(tmp_path)
    (tmp_path / CODEC_FILE).write_text(json.dumps({"markers": ["[label]", "[rationale]", *STUDENT_MARKERS]}))
    assert CodeTokenizer.from_pretrained(str(tmp_path)).task_prefixes == LEGACY_TASK_PREFIXES
    (tmp_path / CODEC_FILE).unlink()  # a plain T5 folder or Hub id: the current prefixes
    assert CodeTokenizer.from_pretrained(str(tmp_path)).task_prefixes == TASK_PREFIXES


def test_bundled_corpus_round_trips(plain, tiny_teacher_tokenizer):
    files = sorted(SAMPLE_DIR.glob("*.moon"))
    assert len(files) >= 10
    for path in files:
        text = path.read_text(encoding="utf-8")
        for variant in (text, text.replace("  ", "\t"), text.replace("\t", "    ")):
            assert round_trips(plain, variant), path.name
            assert round_trips(tiny_teacher_tokenizer, variant), path.name


def _shared_texts(shared_data):
    """Every string in every file under ../shared/data: JSON Lines fields, and plain text files."""
    for path in sorted(p for p in shared_data.rglob("*") if p.is_file()):
        if path.name.endswith(".jsonl.gz"):
            with gzip.open(path, "rt", encoding="utf-8") as f:
                for n, line in enumerate(f):
                    for key, value in json.loads(line).items():
                        if isinstance(value, str):
                            yield f"{path.name}:{n}:{key}", value
        else:
            try:
                yield path.name, path.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                continue


@pytest.mark.thorough  # the property tests round-trip code; this, every real file
def test_every_shared_data_file_round_trips(plain, shared_data):
    count = 0
    for where, text in _shared_texts(shared_data):
        assert round_trips(plain, text), where
        count += 1
    assert count > 1000
