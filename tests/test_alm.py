"""Approximate likelihood matching: the chunk alignment's invariants on hand-made and real tokenizations, the
loss as a function on tensors, the stored likelihoods, and `loss=alm` trained end to end."""

import json
import math
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from omegaconf import open_dict
from transformers import AutoTokenizer

from codistill import compatibility
from codistill.apps.generate import generate
from codistill.apps.train import train
from codistill.config import build
from codistill.data import schema
from codistill.data.fim_datamodule import load_distillation_dataset
from codistill.errors import ConfigError
from codistill.losses import BatchAligner, Likelihoods
from codistill.losses.alignment import chunk_ids, target_ends, token_ends
from codistill.losses.alm import alm_divergence, binary_kl
from codistill.models.tiny import tiny_t5
from codistill.models.tokenization import CodeTokenizer
from conftest import compose_config, served_teacher
from openai_server import FakeOpenAI


def test_identical_tokenizations_give_one_chunk_per_token():
    ends = [2, 3, 7, 8, 9]
    assert chunk_ids(ends, ends, "ab cdef\n\t", "tokens") == ([0, 1, 2, 3, 4], [0, 1, 2, 3, 4])


def test_chunks_end_only_where_both_sides_split_and_in_space_mode_only_before_whitespace():
    text = "ab cd ef"  # a: "ab", " c", "d", " ef"   b: "a", "b c", "d e", "f"
    a, b = [2, 4, 5, 8], [1, 4, 7, 8]
    assert chunk_ids(a, b, text, "tokens") == ([0, 0, 1, 1], [0, 0, 1, 1])  # shared ends: 4 and 8
    # shared ends 4 and 8; in space mode only 8 (text[4] is "d"), so one chunk
    assert chunk_ids(a, b, text, "space") == ([0, 0, 0, 0], [0, 0, 0, 0])
    a2, b2 = [2, 5, 8], [1, 2, 5, 8]  # shared 2 (before " "), 5 (before " ") and 8 (the end)
    assert chunk_ids(a2, b2, text, "space") == ([0, 1, 2], [0, 0, 1, 2])


def test_a_truncated_side_leaves_the_rest_of_the_other_in_no_chunk():
    text = "ab cd"
    # the student's label was cut after "ab": its end-of-text is no end of the text (None)
    student = target_ends([1, 9], [1, 2], [2, 5], eos_id=9, length=5)  # its tokens: "ab", " cd"
    assert student == [2, None]
    teacher = [2, 5, 6]  # "ab", " cd", end-of-text
    assert chunk_ids(student, teacher, text, "space") == ([0, -1], [0, -1, -1])


def test_the_end_of_text_tokens_form_the_last_chunk_together():
    ids, ends = [5, 6], [2, 4]
    assert target_ends([5, 6, 0], ids, ends, eos_id=0, length=4) == [2, 4, 5]
    assert chunk_ids([2, 4, 5], [4, 5], "ab c", "tokens") == ([0, 0, 1], [0, 1])


@st.composite
def two_tokenizations(draw):
    text = draw(st.text(alphabet="ab \n\té→🙂", min_size=2, max_size=30))
    cuts = [sorted(draw(st.sets(st.integers(1, len(text) - 1), max_size=len(text)))) for _ in range(2)]
    return text, [[*c, len(text)] for c in cuts]


@settings(max_examples=200, deadline=None)
@given(two_tokenizations(), st.sampled_from(["tokens", "space"]))
def test_every_chunk_spells_the_same_text_on_both_sides_and_is_the_shortest(case, mode):
    text, (a, b) = case
    a_chunks, b_chunks = chunk_ids(a, b, text, mode)
    assert -1 not in a_chunks + b_chunks  # both cover the whole text
    for chunks in (a_chunks, b_chunks):
        assert chunks == sorted(chunks) and chunks[-1] == max(a_chunks)  # in order, the same count
    # chunk k ends at the last end of its tokens, the same on both sides: no chunk crosses a one-sided cut
    last_a = {c: e for e, c in zip(a, a_chunks, strict=True)}
    last_b = {c: e for e, c in zip(b, b_chunks, strict=True)}
    assert last_a == last_b
    shared = set(a) & set(b)
    expected = shared if mode == "tokens" else {e for e in shared if e == len(text) or text[e].isspace()}
    assert set(last_a.values()) == expected  # and every cut both share (before whitespace) closes one


@pytest.fixture(scope="module")
def two_tokenizers(tiny_teacher_tokenizer, cache_dir):
    return tiny_teacher_tokenizer, CodeTokenizer.from_pretrained(tiny_t5(str(cache_dir)))


@pytest.mark.parametrize("text", ["  x = {é→1}\n\treturn ok 🙂", "local t = {}\n", "", "ünïcödé  \t\n"])
def test_real_tokenizers_chunks_decode_to_the_same_text(two_tokenizers, text):
    """A byte-level BPE (santacoder's kind) against the lossless T5 (byte fallback for `\\n`, `{`, emoji): each
    chunk's tokens decode to the same characters on both sides, and the chunks spell the label."""
    teacher, student = two_tokenizers
    aligner = BatchAligner(student, teacher, "tokens")
    s_ids = student(text)["input_ids"]  # the T5 student's label: its tokens and </s>
    t_ids = teacher(text, add_special_tokens=False)["input_ids"] + [teacher.eos_token_id]
    alignment = aligner([text], [s_ids], [t_ids])
    assert alignment.coverage == 1.0 and -1 not in alignment.student.tolist() + alignment.teacher.tolist()
    spelled = []
    for k in range(alignment.n_chunks - 1):  # the last chunk is the two end-of-text tokens
        s = student.base.decode([i for i, c in zip(s_ids, alignment.student.tolist(), strict=True) if c == k])
        t = teacher.decode([i for i, c in zip(t_ids, alignment.teacher.tolist(), strict=True) if c == k])
        assert s == t
        spelled.append(s)
    assert "".join(spelled) == text
    assert alignment.student[-1] == alignment.teacher[-1] == alignment.n_chunks - 1


def test_alm_is_zero_when_the_student_reproduces_the_teachers_chunk_likelihoods():
    teacher = torch.tensor([-0.5, -1.0, -2.0, -0.1])  # chunks [0, 0, 1, 1]
    student = torch.tensor([-1.5, -1.6, -0.5])  # chunks [0, 1, 1]: sums -1.5, -2.1, the teacher's
    loss = alm_divergence(student, teacher, torch.tensor([0, 1, 1]), torch.tensor([0, 0, 1, 1]), 2, temperature=1.0)
    assert abs(loss.item()) < 1e-6
    moved = alm_divergence(student - 0.5, teacher, torch.tensor([0, 1, 1]), torch.tensor([0, 0, 1, 1]), 2)
    assert moved > 0.01


def test_with_one_tokenizer_alm_is_the_binary_kl_of_the_token_probabilities():
    p = torch.tensor([0.9, 0.5, 0.05])  # the teacher's probability of each token
    q = torch.tensor([0.6, 0.7, 0.2])  # the student's
    chunks = torch.arange(3)
    loss = alm_divergence(q.log(), p.log(), chunks, chunks, 3, temperature=1.0)
    expected = (p * (p / q).log() + (1 - p) * ((1 - p) / (1 - q)).log()).mean()
    torch.testing.assert_close(loss, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("temperature", [1.0, 100.0])
def test_alm_gradients_check_in_float64(temperature):
    student = -torch.rand(6, dtype=torch.float64) * 3 - 0.01
    teacher = -torch.rand(5, dtype=torch.float64) * 3 - 0.01
    s_chunks, t_chunks = torch.tensor([0, 0, 1, 2, 2, -1]), torch.tensor([0, 1, 1, 2, 2])
    student.requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda s: alm_divergence(s, teacher, s_chunks, t_chunks, 3, temperature), (student,)
    )


def test_the_temperature_keeps_long_chunks_gradient_alive():
    """p^(1/T): at T = 1 two unlikely chunks both read as ~0 and the student gets no signal; at T = 100 it does."""
    teacher, student = torch.tensor([-30.0]), torch.tensor([-40.0], requires_grad=True)
    grads = []
    for temperature in (1.0, 100.0):
        (grad,) = torch.autograd.grad(binary_kl(student, teacher, temperature).sum(), student)
        grads.append(abs(grad.item()))
    assert grads[0] < 1e-10 < 0.1 < grads[1]


def run(tmp_path, cache_dir, overrides):
    cfg = compose_config("train", tmp_path, cache_dir, ["debug=fdr", *overrides])
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path / "run")
    train(cfg)
    return cfg, json.loads(Path(cfg.paths.output_dir, "metrics.json").read_text())["metrics"]


# a causal student with its own byte-level BPE (another vocabulary size: other merges) and the teacher's sentinels
OWN_BPE = [
    "student=tiny_gpt_bigcode",
    "student.name_or_path._target_=codistill.models.tiny.tiny_gpt_bigcode",
    "~student.name_or_path.tokenizer",
    "+student.name_or_path.vocab_size=600",
]


@pytest.mark.parametrize(
    "overrides",
    [
        ["student=tiny_t5", "loss=alm", "teacher_logits=online"],
        ["student=tiny_t5", "loss=alm", "loss.alpha=0.5", "teacher_logits=likelihoods", "rationale=hf"],
        [*OWN_BPE, "loss=alm", "loss.chunks=tokens", "teacher_logits=online"],
    ],
    ids=["t5 online", "t5 step by step + stored likelihoods", "causal own tokenizer online"],
)
def test_alm_trains_students_with_their_own_tokenizers(tmp_path, cache_dir, overrides):
    cfg, metrics = run(tmp_path, cache_dir, overrides)
    assert metrics["val/kd_loss"] > 0 and math.isfinite(metrics["val/loss"])
    assert metrics["val/chunk_coverage"] > 0.9  # labels cut at max_target_length lose their tail only
    expected = cfg.loss.alpha * (0.5 * metrics["val/label_loss"] + 0.5 * metrics["val/kd_loss"])  # T is in kd
    if cfg.loss.alpha < 1:
        expected += (1 - cfg.loss.alpha) * metrics["val/rationale_loss"]
    assert metrics["val/loss"] == pytest.approx(expected, rel=1e-4)


def test_stored_likelihoods_are_the_teachers_scores_and_align_like_the_online_teacher(tmp_path, cache_dir):
    cfg = compose_config("train", tmp_path, cache_dir, ["debug=fdr", "student=tiny_t5", "teacher_logits=likelihoods"])
    data = load_distillation_dataset(build(cfg.data.source).cached())["validation"]
    assert data.features[schema.TEACHER_TOKEN_LOGPROBS].feature.dtype == "float32"
    teacher = build(cfg.teacher)
    rows = data.select(range(4))
    scores = teacher.score(rows[schema.PREFIX], rows[schema.SUFFIX], rows[schema.MIDDLE], top_k=0, store=None)
    tokenizer = teacher.tokenizer
    for row, score in zip(rows, scores, strict=True):
        torch.testing.assert_close(torch.tensor(row[schema.TEACHER_TOKEN_LOGPROBS]), torch.tensor(score.logprobs))
        ends = target_ends(
            score.ids, *token_ends(tokenizer, row[schema.MIDDLE]), tokenizer.eos_token_id, len(row[schema.MIDDLE])
        )
        assert row[schema.TEACHER_TOKEN_ENDS] == ends
    stored = build(cfg.teacher_logits).collate(list(rows))["teacher"]
    assert isinstance(stored, Likelihoods) and len(stored.logprobs) == sum(map(len, rows[schema.TEACHER_TOKEN_ENDS]))
    assert schema.distribution_bytes_per_token(data)["likelihoods"] < 12


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["student=tiny_t5", "loss=alm", "teacher_logits=offline"], "teacher_logits=likelihoods"),
        (["student=tiny_t5", "loss=uld", "teacher_logits=likelihoods"], "or loss=alm"),
        (["student=tiny_gpt_bigcode", "loss=alm", "++loss.lmbda=0.5", "teacher_logits=online"], "loss.lmbda=0"),
        (["student=tiny_t5", "loss=alm", "loss.chunks=words", "teacher_logits=online"], "loss.chunks='words'"),
    ],
)
def test_alm_refuses_what_it_cannot_read_naming_the_fix(tmp_path, cache_dir, overrides, message):
    with pytest.raises(ConfigError, match=message):
        train(compose_config("train", tmp_path, cache_dir, ["debug=fdr", *overrides]))


def test_the_real_pair_composes_with_alm_and_step_by_step(tmp_path, cache_dir):
    """santacoder -> flan-t5 (a GPU and the Hub to run): the pre-load check passes, the teacher reads online."""
    overrides = ["experiment=moonscript_santacoder_flan_t5", "loss=alm", "loss.alpha=0.5"]
    cfg = compose_config("train", tmp_path, cache_dir, overrides)
    loss = build(cfg.loss)
    compatibility.check(cfg, loss)
    assert loss.matches_likelihoods and loss.uses_rationale
    assert cfg.teacher_logits._target_ == "codistill.teacher_logits.OnlineTeacher"


def test_a_served_teacher_fills_the_likelihood_columns_through_prompt_logprobs(tmp_path, cache_dir, tiny_teacher_dir):
    """codistill-generate with teacher_logits=likelihoods against a vLLM-like server (the loopback fake): one
    log-probability and one end per token of each label and its end-of-text, in the served model's tokenizer,
    the same as the local teacher would store."""
    with FakeOpenAI() as server:
        overrides = [
            *served_teacher(server.base_url, tiny_teacher_dir, tmp_path / "served"),
            "teacher_logits=likelihoods",
        ]
        data = generate(compose_config("generate", tmp_path, cache_dir, overrides))
    tokenizer = AutoTokenizer.from_pretrained(tiny_teacher_dir)
    for row in data["train"].select(range(5)):
        ids, ends = token_ends(tokenizer, row[schema.MIDDLE])
        assert row[schema.TEACHER_TOKEN_ENDS] == [*ends, len(row[schema.MIDDLE]) + 1]  # every token's, then eos
        logprobs = row[schema.TEACHER_TOKEN_LOGPROBS]
        assert len(logprobs) == len(ids) + 1 and all(lp <= 0 for lp in logprobs)
