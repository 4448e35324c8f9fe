"""What real checkpoints do that tidy tiny models do not, reproduced by doubles that keep the quirk.

santacoder's head is 49,280 rows over a 49,157-token tokenizer (padded for speed) and it has no pad token;
its double is the tiny GPTBigCode with a 1,005-token tokenizer and a head padded to 1,024 rows. flan-t5 has
100 sentinel tokens and a head of 32,128 rows over 32,100 tokens, untied; its double is the tiny T5 with 100
sentinels and its head padded to a multiple of 128. Both are briefly trained (`train_steps`), so their weights
know something, as a real checkpoint's do."""

import json
import math
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

from codistill.apps.train import train
from codistill.assembly import prepare
from codistill.data import schema
from codistill.data.fim_datamodule import load_distillation_dataset
from codistill.models.tiny import causal_batches, continuation_batches, sample_texts, tiny_gpt_bigcode, tiny_t5
from conftest import compose_config
from openai_server import FakeOpenAI

TRAIN_STEPS = 100  # about 7 passes over the bundled sample: from ln(1005) = 6.9 nats a token to about 4.5
PADDED_TEACHER = [
    "teacher=tiny_gpt_bigcode",
    "teacher.backend.name_or_path.vocab_size=1005",
    "teacher.backend.name_or_path.head_multiple=128",
    f"teacher.backend.name_or_path.train_steps={TRAIN_STEPS}",
]
FLAN_T5_LIKE = [
    "student=tiny_t5",
    "student.name_or_path.extra_ids=100",
    "student.name_or_path.head_multiple=128",
    f"student.name_or_path.train_steps={TRAIN_STEPS}",
]
SMALL_STUDENT = [f"student.name_or_path.{k}={v}" for k, v in (("n_embd", 64), ("n_layer", 2), ("n_head", 4))]


def _mean_loss(model, batches) -> float:
    with torch.no_grad():
        return sum(model(**batch).loss.item() for batch in batches) / len(batches)


def test_the_double_keeps_santacoders_padded_head_and_missing_pad_token_and_knows_some_code(cache_dir):
    folder = tiny_gpt_bigcode(str(cache_dir), vocab_size=1005, head_multiple=128, train_steps=TRAIN_STEPS)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    config = json.loads((Path(folder) / "config.json").read_text())
    assert len(tokenizer) == 1005 and config["vocab_size"] == 1024 and tokenizer.pad_token is None
    batches = causal_batches(tokenizer, sample_texts(), seed=1)[:4]
    trained = _mean_loss(AutoModelForCausalLM.from_pretrained(folder), batches)
    untrained = AutoModelForCausalLM.from_pretrained(tiny_gpt_bigcode(str(cache_dir), vocab_size=1005))
    random = _mean_loss(untrained, batches)
    assert random > math.log(1005) - 0.1 and trained < random - 1.5


def test_the_flan_t5_double_keeps_its_sentinels_and_untied_padded_head_and_knows_some_code(cache_dir):
    folder = tiny_t5(str(cache_dir), extra_ids=100, head_multiple=128, train_steps=TRAIN_STEPS)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSeq2SeqLM.from_pretrained(folder)
    assert "<extra_id_99>" in tokenizer.get_vocab() and model.config.vocab_size % 128 == 0
    assert model.config.vocab_size > len(tokenizer)
    assert not torch.equal(model.lm_head.weight, model.shared.weight)  # its own head, as flan-t5's
    batches = continuation_batches(tokenizer, sample_texts(), seed=1)[:4]
    random = AutoModelForSeq2SeqLM.from_pretrained(tiny_t5(str(cache_dir), extra_ids=100, head_multiple=128))
    assert _mean_loss(model, batches) < _mean_loss(random, batches) - 1.5


def test_the_santacoder_kd_experiment_distils_from_a_head_padded_past_its_tokenizer(tmp_path, cache_dir):
    """`experiment=moonscript_santacoder_tiny_kd` as the README runs it (online forward KL into a GPTBigCode
    built around the teacher's tokenizer), on CPU with the padded double: the teacher's 1,024 logits met the
    student's 1,005 and stopped the run."""
    overrides = [
        "experiment=moonscript_santacoder_tiny_kd",
        "dataset=moonscript_sample",
        "trainer=cpu",
        "debug=fdr",
        "data.num_workers=0",
        "data.max_source_length=512",
        "student.name_or_path.n_positions=1024",
        *PADDED_TEACHER,
        *SMALL_STUDENT,
    ]
    train(compose_config("train", tmp_path, cache_dir, overrides))
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())["metrics"]
    assert torch.isfinite(torch.tensor(metrics["val/kd_loss"])) and metrics["val/kd_loss"] > 0


@pytest.mark.parametrize("source", ["teacher_logits=offline", "teacher_logits=sampled"])
def test_stored_distributions_of_a_padded_teacher_hold_token_ids_only_and_train(tmp_path, cache_dir, source):
    """Top-k and draws from the padded softmax stored ids the student's head does not have (an index error
    on CPU, a device assert on a GPU): the teacher's distribution is over its tokenizer's tokens."""
    overrides = ["debug=fdr", "student=tiny_gpt_bigcode", "loss=forward_kl", source, *PADDED_TEACHER]
    cfg = compose_config("train", tmp_path, cache_dir, overrides)
    data = load_distillation_dataset(prepare(cfg).dataset_dir)["train"]
    column = schema.TEACHER_TOPK_IDS if source.endswith("offline") else schema.TEACHER_SAMPLE_IDS
    assert max(i for row in data[column] for position in row for i in position) < 1005
    train(cfg)


def test_the_santacoder_to_flan_t5_experiment_runs_with_a_served_rationale_writer(tmp_path, cache_dir, monkeypatch):
    """`experiment=moonscript_santacoder_flan_t5` as the README runs it (the teacher's middles, rationales from
    an OpenAI-compatible server, Distilling Step-by-Step into flan-t5), on CPU with both doubles and the
    loopback server: a few real steps, and the student's sentinels and padded head survive the export."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-key")
    with FakeOpenAI() as server:
        overrides = [
            "experiment=moonscript_santacoder_flan_t5",
            "dataset=moonscript_sample",
            "trainer=cpu",
            "debug=fdr",
            "data.num_workers=0",
            "rationale.backend.client.model=gpt-test",
            f"rationale.backend.client.base_url={server.base_url}",
            *PADDED_TEACHER,
            *FLAN_T5_LIKE,
        ]
        train(compose_config("train", tmp_path, cache_dir, overrides))
        assert sum(server.successes.values()) > 0
    summary = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert {"val/rationale_loss", "val/label_loss", "val/edit_sim"} <= set(summary["metrics"])
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "out" / "student")
    assert "<extra_id_0>" in tokenizer.get_vocab()
    assert "sk-test-key" not in (tmp_path / "out" / "metrics.json").read_text()
