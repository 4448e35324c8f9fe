"""Logit distillation end to end: every loss trains in both recipes from both teacher sources, offline
distributions round-trip through the dataset and resume, and KD does what it is for."""

import csv
import glob
import json
import math
from pathlib import Path

import pytest
import torch
from omegaconf import open_dict
from transformers import AutoModelForCausalLM, AutoTokenizer

from codistill.apps.generate import generate
from codistill.apps.train import train
from codistill.assembly import assemble, prepare
from codistill.backends.hf import HFBackend
from codistill.config import build
from codistill.data import schema
from codistill.data.fim import FIMTokens
from codistill.data.fim_datamodule import load_distillation_dataset
from codistill.data.formatting import encode_causal_fim
from codistill.errors import ConfigError
from codistill.llm.store import ResultStore
from codistill.losses import IGNORE_INDEX, Dense, Draws, Projection, TopK, target_mask
from codistill.teacher_logits import OfflineTeacher
from conftest import compose_config, santacoder_at_toy_size, served_teacher
from openai_server import FakeOpenAI

CAUSAL = ["student=tiny_gpt_bigcode"]
SEQ2SEQ = ["student=tiny_t5"]
ONLINE = "teacher_logits=online"
RECIPE_1 = {
    "seq2seq label_only": [*SEQ2SEQ, "loss=label_only"],
    "seq2seq step_by_step": [*SEQ2SEQ, "loss=step_by_step", "rationale=hf"],
    "seq2seq uld online": [*SEQ2SEQ, "loss=uld", ONLINE],
    "seq2seq step_by_step + uld offline": [
        *SEQ2SEQ,
        "loss=uld",
        "loss.alpha=0.5",
        "teacher_logits=offline",
        "rationale=hf",
    ],
    "causal label_only": [*CAUSAL, "loss=label_only"],
    "causal forward_kl online": [*CAUSAL, "loss=forward_kl", ONLINE],
    "causal forward_kl offline": [*CAUSAL, "loss=forward_kl", "teacher_logits=offline"],
    "causal reverse_kl offline": [*CAUSAL, "loss=reverse_kl", "teacher_logits=offline", "teacher_logits.top_k=8"],
    "causal forward_kl sampled": [*CAUSAL, "loss=forward_kl", "teacher_logits=sampled", "teacher_logits.samples=8"],
    "causal gkd on-policy": [*CAUSAL, "loss=gkd", "loss.lmbda=1.0", ONLINE],
    "causal uld online": [*CAUSAL, "loss=uld", ONLINE],
}


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """One data folder for the module: each dataset is built once and reused by the runs that need it."""
    return tmp_path_factory.mktemp("kd")


def run(shared: Path, cache_dir, name: str, overrides: list[str]):
    cfg = compose_config("train", shared, cache_dir, ["debug=fdr", *overrides])
    with open_dict(cfg):
        cfg.paths.output_dir = str(shared / "runs" / name.replace(" ", "_"))
    train(cfg)
    return cfg, json.loads(Path(cfg.paths.output_dir, "metrics.json").read_text())["metrics"]


@pytest.mark.parametrize("name", list(RECIPE_1))
def test_every_loss_trains_recipe_1(shared, cache_dir, name):
    cfg, metrics = run(shared, cache_dir, name, RECIPE_1[name])
    assert ("val/kd_loss" in metrics) == bool(cfg.loss.divergence)
    assert ("val/rationale_loss" in metrics) == (cfg.loss.alpha < 1)
    assert all(torch.isfinite(torch.tensor(v)) for v in metrics.values())
    (checkpoint,) = glob.glob(f"{cfg.paths.output_dir}/checkpoints/*.ckpt")
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)["state_dict"]
    assert state and all(k.startswith("model.") for k in state)  # the teacher is never saved with the student


@pytest.mark.parametrize("loss", ["forward_kl", "reverse_kl", "gkd"])
def test_every_loss_trains_recipe_2(shared, cache_dir, loss):
    overrides = ["experiment=textbook_tiny", f"loss={loss}", "++loss.lmbda=0", "after_training={}"]
    cfg, metrics = run(shared, cache_dir, f"exercises {loss}", overrides)
    assert metrics["val/kd_loss"] > 0 and metrics["val/loss"] != metrics["val/label_loss"]


@pytest.mark.parametrize(
    "overrides, message",
    [
        ([*SEQ2SEQ, "loss=forward_kl", ONLINE], "loss=uld"),  # the tiny T5 has its own tokenizer
        ([*SEQ2SEQ, "loss=gkd", ONLINE], "on-policy GKD"),
        ([*CAUSAL, "loss=gkd", "teacher_logits=offline"], "needs teacher_logits=online"),
        ([*CAUSAL, "loss=step_by_step", "rationale=hf"], "learns no rationale task"),
        ([*SEQ2SEQ, "loss=step_by_step"], "no rationale writer is chosen: add rationale=hf"),
        (["experiment=textbook_tiny", "loss=uld", "teacher_logits=offline"], "recipe 1's dataset only"),
        (["loss=uld", "~teacher_logits"], "add teacher_logits=online or teacher_logits=offline"),
        ([*SEQ2SEQ, "loss=uld", "teacher=openai_compatible", ONLINE], "use teacher_logits=offline"),
        ([*CAUSAL, "loss=reverse_kl", "teacher_logits=sampled"], "estimates forward KL at temperature 1 only"),
        ([*CAUSAL, "loss=forward_kl", "loss.temperature=2", "teacher_logits=sampled"], "set loss=forward_kl and"),
    ],
)
def test_impossible_pairings_fail_before_training_naming_the_fix(tmp_path, cache_dir, overrides, message):
    cfg = compose_config("train", tmp_path, cache_dir, ["debug=fdr", *overrides])
    with pytest.raises(ConfigError, match=message):
        train(cfg)


def test_a_dataset_without_distributions_is_refused_for_offline_kd(shared, cache_dir):
    plain = build(compose_config("train", shared, cache_dir, ["debug=fdr", *CAUSAL]).data.source).cached()
    cfg = compose_config(
        "train", shared, cache_dir, ["debug=fdr", *CAUSAL, "loss=forward_kl", "teacher_logits=offline"]
    )
    with open_dict(cfg):
        cfg.data.dataset_dir = plain
    with pytest.raises(ConfigError, match="has no teacher distributions"):
        train(cfg)


def offline_source(shared, cache_dir, top_k: int):
    cfg = compose_config(
        "train", shared, cache_dir, ["debug=fdr", *CAUSAL, "teacher_logits=offline", f"teacher_logits.top_k={top_k}"]
    )
    return cfg, build(cfg.data.source)


def test_offline_distributions_round_trip_to_float16_precision(shared, cache_dir, tiny_teacher_dir):
    cfg, source = offline_source(shared, cache_dir, 8)
    data = load_distillation_dataset(source.cached())["validation"]
    assert set(data[schema.TEACHER_DISTRIBUTION_OF]) == {schema.MIDDLE}  # the default label_source: ground_truth
    precision = cfg.teacher.backend.precision  # the precision it was stored in
    teacher = HFBackend.from_pretrained(tiny_teacher_dir, dtype="float32", device="cpu", precision=precision)
    fim = FIMTokens(**cfg.teacher.fim)
    rows = data.select(range(4))
    fresh = teacher.score(
        [fim.psm(r[schema.PREFIX], r[schema.SUFFIX]) for r in rows],
        [r[schema.MIDDLE] + cfg.teacher.eos_token for r in rows],
        top_k=8,
    )
    for row, scores in zip(rows, fresh, strict=True):
        stored = torch.tensor(row[schema.TEACHER_TOPK_LOGPROBS])
        assert stored.shape == (len(scores.ids), 8)
        assert row[schema.TEACHER_TOPK_IDS] == scores.topk_ids
        torch.testing.assert_close(stored, torch.tensor(scores.topk_logprobs), rtol=1e-3, atol=1e-3)
        torch.testing.assert_close(torch.tensor(row[schema.TEACHER_TAIL_MASS]), torch.tensor(scores.tail))
    # what the storage costs: int32 ids, float16 log-probabilities, float32 tail per label token
    features = data.features
    assert features[schema.TEACHER_TOPK_LOGPROBS].feature.feature.dtype == "float16"
    assert features[schema.TEACHER_TOPK_IDS].feature.feature.dtype == "int32"


def test_sampled_distributions_are_draws_from_the_teachers_and_load_as_their_frequencies(shared, cache_dir):
    cfg = compose_config(
        "train", shared, cache_dir, ["debug=fdr", *CAUSAL, "teacher_logits=sampled", "teacher_logits.samples=16"]
    )
    data = load_distillation_dataset(build(cfg.data.source).cached())["train"]
    assert data.features[schema.TEACHER_SAMPLE_COUNTS].feature.feature.dtype == "uint16"
    assert schema.TEACHER_TOPK_IDS not in data.column_names
    rows = [data[i] for i in range(4)]
    for row in rows:
        for ids, counts in zip(row[schema.TEACHER_SAMPLE_IDS], row[schema.TEACHER_SAMPLE_COUNTS], strict=True):
            assert sum(counts) == 16 and len(set(ids)) == len(ids) and counts == sorted(counts, reverse=True)
    draws = build(cfg.teacher_logits).collate(rows)["teacher"]
    assert isinstance(draws, Draws)
    # the buckets' teacher side: each distinct id at count / n, padding and tail at no mass
    mask = draws.mask
    distribution = draws.rows(mask.reshape(-1).nonzero().squeeze(-1))
    torch.testing.assert_close(distribution.logprobs.exp().sum(-1), torch.ones(int(mask.sum())))
    assert distribution.tail.abs().max() == 0
    first = rows[0]
    expected = torch.tensor(first[schema.TEACHER_SAMPLE_COUNTS][0], dtype=torch.float32) / 16
    torch.testing.assert_close(draws.logprobs[0, 0, : len(expected)].exp(), expected)
    assert schema.distribution_bytes_per_token(data)["sampled"] > 0


@pytest.mark.parametrize(
    "stored",
    [[*CAUSAL, "teacher_logits=offline", "teacher_logits.top_k=4"], [*SEQ2SEQ, "teacher_logits=likelihoods"]],
    ids=["top-k", "likelihoods"],
)
def test_a_killed_offline_generation_resumes_without_recomputing(tmp_path, cache_dir, monkeypatch, stored):
    cfg = compose_config("train", tmp_path, cache_dir, stored)
    source, real, scored = build(cfg.data.source), HFBackend._score, []

    def dies_on_its_second_chunk(self, pairs, *settings):
        if scored:
            raise KeyboardInterrupt
        scored.append(len(pairs))
        return real(self, pairs, *settings)

    monkeypatch.setattr(HFBackend, "_score", dies_on_its_second_chunk)
    with pytest.raises(KeyboardInterrupt):
        source.build()
    (first,) = scored
    monkeypatch.setattr(
        HFBackend, "_score", lambda self, pairs, *settings: scored.append(len(pairs)) or real(self, pairs, *settings)
    )
    data = source.build()
    total = sum(len(split) for split in data.values())
    assert first < total and sum(scored) == total  # the first chunk is never scored again
    with ResultStore(source.store_dir) as store:
        assert sum(isinstance(r["result"], dict) for r in store.ok.values()) == total


def test_causal_fim_examples_put_the_loss_on_the_middle_and_its_end(tiny_teacher_tokenizer):
    tok = tiny_teacher_tokenizer
    fim = FIMTokens("<fim-prefix>", "<fim-suffix>", "<fim-middle>")
    ids, labels = encode_causal_fim(tok, fim, tok.eos_token_id, "x = 1\n", "\nz = 3", "y = 2", 64, 32)
    prompt = [i for i, label in zip(ids, labels, strict=True) if label == IGNORE_INDEX]
    assert tok.decode(prompt) == fim.psm("x = 1\n", "\nz = 3")  # the teacher's own prompt, token for token
    targets = [label for label in labels if label != IGNORE_INDEX]
    assert targets == tok("y = 2", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    _, cut = encode_causal_fim(tok, fim, tok.eos_token_id, "a", "b", "y = 2 + 3 + 4 + 5", 64, 3)
    assert [label for label in cut if label != IGNORE_INDEX] == tok("y = 2 + 3 + 4 + 5")["input_ids"][:3]  # no eos


def test_a_run_loads_its_teacher_once_for_labelling_online_kd_its_control_and_the_standings(
    tmp_path, cache_dir, tiny_teacher_dir, monkeypatch
):
    """A fresh dataset (the teacher labels it), an online KD loss, a control arm and the standings table: one
    teacher load in all, shared by every stage."""
    loads, from_pretrained = [], AutoModelForCausalLM.from_pretrained

    def counted(name_or_path, *args, **kwargs):
        loads.append(str(name_or_path))
        return from_pretrained(name_or_path, *args, **kwargs)

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", counted)
    overrides = ["debug=fdr", *CAUSAL, "loss=forward_kl", ONLINE, "control=label_only"]
    train(compose_config("train", tmp_path, cache_dir, overrides))
    summary = json.loads(Path(tmp_path, "out", "metrics.json").read_text())
    assert "bits_per_byte" in summary["standings"]["teacher"] and summary["control"]  # every stage ran
    assert loads.count(str(tiny_teacher_dir)) == 1
    assert len(loads) == 3  # and the student twice: once per arm


def online_parts(shared, cache_dir):
    """The assembled parts of an online KD run, and its first training batch."""
    cfg = compose_config("train", shared, cache_dir, ["debug=fdr", *CAUSAL, "loss=forward_kl", ONLINE])
    parts = assemble(prepare(cfg))
    parts.datamodule.setup()
    return parts, next(iter(parts.datamodule.train_dataloader()))


def test_the_online_teacher_scores_exactly_the_students_targets(shared, cache_dir):
    parts, batch = online_parts(shared, cache_dir)
    s_mask, s_labels = target_mask(batch["label"]["labels"], shift=True)
    t_mask = parts.module.teacher.teacher_batch(batch["teacher"]).mask
    _, t_labels = target_mask(batch["teacher"].labels, shift=True)
    assert torch.equal(s_labels[s_mask], t_labels[t_mask])


def test_heads_at_the_target_rows_give_the_loss_of_the_full_logits(shared, cache_dir):
    """The student's and the online teacher's heads run only where a target is (the middle and its end); the
    loss is the one the full [B, L, V] logits give, gradients included."""
    parts, batch = online_parts(shared, cache_dir)
    module, source = parts.module, parts.module.teacher
    teacher = source.teacher_batch(batch["teacher"])
    assert teacher.at_targets and len(teacher.logits) == int(teacher.mask.sum())
    tokens = batch["teacher"]
    full_teacher = source.model(input_ids=tokens.input_ids, attention_mask=tokens.attention_mask).logits
    label = batch["label"]
    torch.manual_seed(0)
    rows = module.losses(batch)
    rows_grads = torch.autograd.grad(rows["loss"], list(module.model.parameters()))
    torch.manual_seed(0)
    full = module.loss(module.logits(label), label["labels"], Dense(full_teacher, teacher.mask), shift=True)
    full_grads = torch.autograd.grad(full["loss"], list(module.model.parameters()))
    for name in ("label_loss", "kd_loss", "loss"):
        torch.testing.assert_close(rows[name], full[name], rtol=1e-5, atol=1e-6)
    for mine, reference in zip(rows_grads, full_grads, strict=True):
        torch.testing.assert_close(mine, reference, rtol=1e-4, atol=1e-6)


def test_the_fused_path_sees_what_the_logits_are_made_of(shared, cache_dir):
    """The fused kernels take hidden states and output embeddings instead of logits: their product must be
    the logits of both models, at the same positions (the kernels themselves run in tests/test_liger.py)."""
    parts, batch = online_parts(shared, cache_dir)
    source = parts.module.teacher
    dense, projected = source.teacher_batch(batch["teacher"]), source.teacher_batch(batch["teacher"], fused=True)
    assert torch.equal(dense.mask, projected.mask)
    at_targets = projected.hidden[dense.mask] @ projected.weight.T  # the dense form holds the target rows only
    torch.testing.assert_close(at_targets, dense.logits, rtol=1e-5, atol=1e-5)
    label = batch["label"]
    model = parts.student.model.eval()
    mine = Projection.of(model, label["input_ids"], label["attention_mask"])
    logits = model(input_ids=label["input_ids"], attention_mask=label["attention_mask"]).logits
    torch.testing.assert_close(mine.hidden @ mine.weight.T, logits, rtol=1e-5, atol=1e-5)


def kd_curve(path: str) -> list[float]:
    """val/kd_loss at each validation during training (the last row, the best checkpoint's, left out)."""
    (metrics,) = glob.glob(f"{path}/csv/*/metrics.csv")
    return [float(r["val/kd_loss"]) for r in csv.DictReader(open(metrics)) if r.get("val/kd_loss")][:-1]


@pytest.mark.thorough  # the default run's test shows KD beating its control
def test_forward_kl_brings_the_student_closer_to_the_teacher_than_labels_alone(shared, cache_dir):
    """Same student, data and steps; label-only training logs its KL to the teacher (ce_weight 1) without
    learning from it. Forward-KL training must end nearer the teacher."""
    common = [*CAUSAL, "loss=forward_kl", ONLINE, "trainer.fast_dev_run=false", "+trainer.max_steps=40"]
    common += ["+trainer.val_check_interval=20", "trainer.check_val_every_n_epoch=null", "model.optimizer.lr=3e-3"]
    label, _ = run(shared, cache_dir, "monitor label only", [*common, "loss.ce_weight=1.0"])
    kd, _ = run(shared, cache_dir, "monitor forward kl", [*common, "loss.ce_weight=0.0"])
    label_kl, kd_kl = kd_curve(label.paths.output_dir), kd_curve(kd.paths.output_dir)
    assert kd_kl[-1] < 0.5 * label_kl[-1], (kd_kl, label_kl)
    assert kd_kl[-1] < kd_kl[0]


def test_fast_dev_run_of_the_santacoder_kd_experiment(tmp_path, cache_dir, tiny_teacher_dir):
    """The real pairing with santacoder swapped for its architecture at toy size: the student is built
    from config around the teacher's own tokenizer, and learns its distribution token by token."""
    overrides = ["debug=fdr", *santacoder_at_toy_size(tmp_path, tiny_teacher_dir)]
    cfg = compose_config("train", tmp_path, cache_dir, overrides)
    train(cfg)
    metrics = json.loads(Path(cfg.paths.output_dir, "metrics.json").read_text())["metrics"]
    assert metrics["val/kd_loss"] > 0
    student = AutoTokenizer.from_pretrained(Path(cfg.paths.output_dir, "student"))
    assert student.get_vocab() == AutoTokenizer.from_pretrained(tiny_teacher_dir).get_vocab()


def test_a_served_teacher_fills_the_offline_columns_through_prompt_logprobs(tmp_path, cache_dir, tiny_teacher_dir):
    """codistill-generate with teacher_logits=offline against a vLLM-like server (the loopback fake): one
    distribution per token of each label and its end-of-text, in the served model's tokenizer."""
    with FakeOpenAI() as server:
        served = served_teacher(server.base_url, tiny_teacher_dir, tmp_path / "served")
        overrides = [*served, "teacher_logits=offline", "teacher_logits.top_k=4"]
        data = generate(compose_config("generate", tmp_path, cache_dir, overrides))
        scoring = [body for body in server.requests if "prompt_logprobs" in body]
    tokenizer = AutoTokenizer.from_pretrained(tiny_teacher_dir)
    for row in data["train"].select(range(5)):
        tokens = tokenizer(row[schema.MIDDLE] + "<|endoftext|>", add_special_tokens=False)["input_ids"]
        assert len(row[schema.TEACHER_TOPK_IDS]) == len(row[schema.TEACHER_TAIL_MASS]) == len(tokens)
        assert all(len(ids) == 4 for ids in row[schema.TEACHER_TOPK_IDS])
        logprobs = torch.tensor(row[schema.TEACHER_TOPK_LOGPROBS])
        assert (logprobs[:, :-1] >= logprobs[:, 1:]).all()  # most likely first
    assert len(scoring) == sum(len(split) for split in data.values())  # one request per row, token ids sent
    assert all(isinstance(body["prompt"], list) and body["prompt_logprobs"] == 4 for body in scoring)


def test_fewer_ids_than_stored_move_the_rest_of_the_mass_into_the_tail():
    row = {
        schema.TEACHER_TOPK_IDS: [[3, 1, 2]],
        schema.TEACHER_TOPK_LOGPROBS: [[math.log(0.5), math.log(0.2), math.log(0.1)]],
        schema.TEACHER_TAIL_MASS: [0.2],
    }
    top = OfflineTeacher(top_k=2).collate([row])["teacher"]
    assert isinstance(top, TopK) and top.ids.tolist() == [[[3, 1]]] and top.mask.tolist() == [[True]]
    torch.testing.assert_close(top.tail, torch.tensor([[0.3]]))
