"""The pretrained teacher: its FIM documents, its corpus (never a validation or test file), and a real
tiny pretraining run that `from_pretrained` loads and the cache keeps."""

import hashlib
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import AutoModelForCausalLM, AutoTokenizer

from codistill.apps.pretrain import pretrain
from codistill.config import build
from codistill.models.pretrain import (
    EOS,
    FIM_MIDDLE,
    FIM_PREFIX,
    FIM_SUFFIX,
    chunks,
    fim_document,
    split_corpus,
    stdlib_files,
)
from codistill.rng import stable_rng
from conftest import compose_config

TINY = [
    "teacher=pretrained",
    "teacher.backend.name_or_path.stdlib=false",
    "teacher.backend.name_or_path.vocab_size=300",
    "teacher.backend.name_or_path.n_embd=32",
    "teacher.backend.name_or_path.n_layer=1",
    "teacher.backend.name_or_path.n_head=2",
    "teacher.backend.name_or_path.seq_len=64",
    "teacher.backend.name_or_path.batch_size=4",
    "teacher.backend.name_or_path.steps=4",
]


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200), st.integers(0, 1000), st.sampled_from([0.0, 0.5, 1.0]))
def test_a_fim_document_is_the_text_rearranged(text, seed, rate):
    doc = fim_document(text, stable_rng(seed), rate)
    assert doc.endswith(EOS)
    if not doc.startswith(FIM_PREFIX):
        assert doc == text + EOS and (rate < 1 or len(text) < 2)
        return
    body = doc[len(FIM_PREFIX) : -len(EOS)]
    prefix, rest = body.split(FIM_SUFFIX, 1)
    suffix, middle = rest.split(FIM_MIDDLE, 1)
    assert prefix + middle + suffix == text and rate > 0


@given(st.text(max_size=300), st.integers(1, 50))
def test_chunks_cover_the_text_in_order(text, size):
    pieces = chunks(text, size)
    assert "".join(pieces) == text and all(pieces)


def test_the_standard_library_corpus_has_no_tests():
    files = stdlib_files()
    assert len(files) > 300 and all("test" not in p.parts and "tests" not in p.parts for p in files)


def test_the_teacher_never_sees_a_validation_or_test_file(tmp_path, cache_dir):
    cfg = compose_config("train", tmp_path, cache_dir, ["teacher=pretrained"])
    dataset = build(compose_config("train", tmp_path, cache_dir).data.source).build()
    node = cfg.teacher.backend.name_or_path
    splits = split_corpus(build(node.corpus), node.validation_size, node.test_size, node.split_seed, node.split_by)
    contents = {name: set(texts) for name, texts in splits.items()}
    for name in ("validation", "test"):
        files = {row["hexsha"] for row in dataset[name]}
        assert files and not contents["train"] & contents[name]
        assert len(contents[name]) == len(files)  # the same files on the same side as the dataset's split


def test_pretraining_builds_a_loadable_fim_teacher_once(tmp_path, cache_dir):
    folder = pretrain(compose_config("pretrain", tmp_path, cache_dir, TINY))
    report = json.loads(Path(folder, "pretraining.json").read_text())
    assert report["tokens"] == 4 * 4 * 64 and set(report["bits_per_byte"]) == {"corpus_validation"}
    model, tokenizer = AutoModelForCausalLM.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)
    assert {"<fim-prefix>", "<fim-suffix>", "<fim-middle>", EOS} <= set(tokenizer.get_vocab())
    assert model.config.multi_query and model.config.vocab_size == len(tokenizer)
    stamp = Path(folder, "model.safetensors").stat().st_mtime_ns
    assert pretrain(compose_config("pretrain", tmp_path, cache_dir, TINY)) == folder  # built once, reused
    assert Path(folder, "model.safetensors").stat().st_mtime_ns == stamp
    other = pretrain(compose_config("pretrain", tmp_path, cache_dir, [*TINY, "teacher.backend.name_or_path.steps=5"]))
    assert other != folder


def test_the_pretrained_teacher_labels_the_dataset(tmp_path, cache_dir):
    cfg = compose_config("train", tmp_path, cache_dir, ["debug=fdr", *TINY])
    data = build(cfg.data.source).build()
    assert set(data["train"]["teacher"]) == {"pretrained_gpt_bigcode"}


def test_dropout_settings_reach_the_model_and_compiling_trains_the_same_teacher(tmp_path):
    """`attention_dropout` and `dropout` are the saved model's; `compile` changes neither the cache key nor the
    weights' training (it is the same computation, compiled)."""
    rates = ["teacher.backend.name_or_path.attention_dropout=0", "teacher.backend.name_or_path.dropout=0"]
    plain = pretrain(compose_config("pretrain", tmp_path / "plain", tmp_path / "a", [*TINY, *rates]))
    config = AutoModelForCausalLM.from_pretrained(plain).config
    assert config.attn_pdrop == 0 and config.resid_pdrop == 0 and config.embd_pdrop == 0
    compiled = [*TINY, *rates, "teacher.backend.name_or_path.compile=true"]
    again = pretrain(compose_config("pretrain", tmp_path / "compiled", tmp_path / "b", compiled))
    assert Path(again).name == Path(plain).name  # the same cache key
    first, second = (json.loads(Path(f, "pretraining.json").read_text())["bits_per_byte"] for f in (plain, again))
    assert first["corpus_validation"] == pytest.approx(second["corpus_validation"], rel=0.02)


def test_a_pretrained_student_learns_in_its_teachers_tokens_and_leaves_the_teachers_key_alone(tmp_path, cache_dir):
    """student=pretrained_gpt_bigcode: the teacher's own tokenizer (so token-wise KD applies) and the teacher's
    held-out standard-library files; the teacher's folder is what it was before the option existed. (Trained
    here on the tiny corpus instead of the whole standard library, which takes minutes.)"""
    student = [
        "student=pretrained_gpt_bigcode",
        "student.name_or_path.stdlib=false",
        "student.name_or_path.corpus=${dataset.corpus}",
        "student.name_or_path.n_embd=32",
        "student.name_or_path.n_layer=1",
        "student.name_or_path.seq_len=64",
        "student.name_or_path.batch_size=4",
        "student.name_or_path.steps=3",
    ]
    cfg = compose_config("train", tmp_path, cache_dir, ["debug=fdr", *TINY, *student])
    teacher_folder = build(cfg.teacher.backend.name_or_path)
    loaded = build(cfg.student)
    assert loaded.tokenizer.get_vocab() == AutoTokenizer.from_pretrained(teacher_folder).get_vocab()
    settings = json.loads(Path(loaded.model.name_or_path, "pretraining.json").read_text())["settings"]
    assert settings["held_out_stdlib"] == cfg.teacher.backend.name_or_path.held_out_stdlib
    assert settings["tokenizer"]["_target_"] == "codistill.models.pretrain.pretrained_gpt_bigcode"
    teacher_settings = json.loads(Path(teacher_folder, "pretraining.json").read_text())["settings"]
    key = hashlib.sha256(json.dumps(teacher_settings, sort_keys=True).encode("utf-8")).hexdigest()[:12]
    assert "tokenizer" not in teacher_settings and teacher_folder.endswith(key)  # the key it had before the option
