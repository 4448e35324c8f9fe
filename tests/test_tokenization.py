import gzip
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import AutoTokenizer

from codistill.data.corpus import SAMPLE_DIR
from codistill.data.formatting import (
    FIM_MIDDLE,
    FIM_PREFIX,
    FIM_SUFFIX,
    LEGACY_TASK_PREFIXES,
    STUDENT_MARKERS,
    TASK_PREFIXES,
)
from codistill.models.tokenization import CODEC_FILE, CodeTokenizer

TRICKY = "class A\n\tnew: =>\n    @x  = {1, 2}\t-- é 漢字 😀 \\n  \n\n  trailing   "


@pytest.fixture(scope="module")
def code_tokenizer(tiny_student_dir):
    return CodeTokenizer.from_pretrained(tiny_student_dir, markers=STUDENT_MARKERS)


def test_plain_t5_sentencepiece_loses_code(tiny_student_dir):
    """The bug being fixed: T5's default normalisation, reproduced by a locally trained SentencePiece."""
    base = AutoTokenizer.from_pretrained(tiny_student_dir)
    decoded = base.decode(base(TRICKY)["input_ids"], skip_special_tokens=True)
    assert "\n" not in decoded and "\t" not in decoded and "    @x" not in decoded
    assert "😀" not in decoded


def test_code_tokenizer_round_trips_the_tricky_cases(code_tokenizer):
    for text in [TRICKY, "", " ", "  x", "x  ", "a b", "\r\n", "<0x0A>", "<sp4>", "[label]", "▁x ▁", "\x00\x7f"]:
        assert code_tokenizer.decode(code_tokenizer.encode(text)) == text, repr(text)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=200))
def test_code_tokenizer_round_trips_any_text(code_tokenizer, text):
    assert code_tokenizer.decode(code_tokenizer.encode(text)) == text


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(list(" \t\n{}\\ab<>[]") + list(STUDENT_MARKERS)), max_size=40))
def test_markers_and_whitespace_round_trip_in_any_order(code_tokenizer, pieces):
    text = "".join(pieces)
    assert code_tokenizer.decode(code_tokenizer.encode(text)) == text


def test_markers_are_single_tokens(code_tokenizer):
    ids = code_tokenizer.encode(FIM_PREFIX + "x" + FIM_SUFFIX + FIM_MIDDLE)
    tokens = code_tokenizer.base.convert_ids_to_tokens(ids)
    assert [tokens[0], *tokens[-2:]] == [FIM_PREFIX, FIM_SUFFIX, FIM_MIDDLE]


def test_task_prefixes_are_plain_text_not_added_tokens(code_tokenizer, tiny_student_dir):
    """`predict: ` / `explain: ` reach the model as the pretrained tokenizer spells them."""
    plain = AutoTokenizer.from_pretrained(tiny_student_dir)
    assert code_tokenizer.task_prefixes == {"label": "predict: ", "rationale": "explain: "}
    for text in TASK_PREFIXES.values():
        ids = code_tokenizer.encode_text(text)
        assert ids == plain.encode(text.strip(), add_special_tokens=False)
        assert not set(ids) & set(code_tokenizer.base.added_tokens_decoder)
    assert not set(LEGACY_TASK_PREFIXES.values()) & set(code_tokenizer.base.get_vocab())


def test_batch_call_matches_encode_and_adds_eos(code_tokenizer):
    batch = code_tokenizer(["a\nb", "{ }"])
    assert batch["input_ids"][0] == code_tokenizer.encode("a\nb") + [code_tokenizer.eos_token_id]
    assert code_tokenizer.batch_decode(batch["input_ids"]) == ["a\nb", "{ }"]


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


def test_bundled_corpus_round_trips(code_tokenizer, tiny_teacher_tokenizer):
    files = sorted(SAMPLE_DIR.glob("*.moon"))
    assert len(files) >= 10
    for path in files:
        text = path.read_text(encoding="utf-8")
        assert code_tokenizer.decode(code_tokenizer.encode(text)) == text, path.name
        assert tiny_teacher_tokenizer.decode(tiny_teacher_tokenizer(text)["input_ids"]) == text, path.name


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


def test_every_shared_data_file_round_trips(code_tokenizer, shared_data):
    count = 0
    for where, text in _shared_texts(shared_data):
        assert code_tokenizer.decode(code_tokenizer.encode(text)) == text, where
        count += 1
    assert count > 1000
