"""codistill-train end to end: real tiny trainings, the saved student, experiments, CLI errors."""

import csv
import glob
import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

from codistill.apps.train import train
from codistill.data.corpus import load_sample_corpus
from codistill.data.formatting import LABEL_TASK, TASK_PREFIXES, fim_prompt
from codistill.models.loading import load_student
from codistill.models.tiny import tiny_gpt_bigcode
from conftest import compose_config
from openai_server import FakeOpenAI


@pytest.fixture(scope="module")
def trained(tmp_path_factory, cache_dir):
    """The embedded default (its pretrained teacher built here, once per session), 6 epochs of its 30."""
    tmp = tmp_path_factory.mktemp("train")
    overrides = ["trainer.max_epochs=6", "trainer.check_val_every_n_epoch=3"]
    cfg = compose_config("train", tmp, cache_dir, overrides, embedded=True)
    return cfg, train(cfg)


@pytest.fixture(scope="module")
def step_by_step(tmp_path_factory, cache_dir):
    """Recipe 1 as published (experiment=step_by_step_tiny): a T5 student, both tasks; the tiny teacher."""
    tmp = tmp_path_factory.mktemp("step_by_step")
    cfg = compose_config("train", tmp, cache_dir, ["experiment=step_by_step_tiny", "trainer.max_epochs=3"])
    return cfg, train(cfg)


def test_the_embedded_default_distils_a_teacher_that_knows_code_and_beats_its_control(trained):
    """A teacher pretrained here on real code; the student learns its distribution over the ground truth, and
    the same student trained without it (the control) knows the held-out gaps less well."""
    cfg, _ = trained
    assert cfg.teacher.name == "pretrained_gpt_bigcode" and cfg.loss.divergence == "forward_kl"
    out = Path(cfg.paths.output_dir)
    summary = json.loads((out / "metrics.json").read_text())
    table = summary["standings"]
    assert set(table) == {"teacher", "student", "control (no teacher)", "copy the line above", "empty middle"}
    teacher, student, control = (table[r]["bits_per_byte"] for r in ("teacher", "student", "control (no teacher)"))
    assert 0 < teacher < control and student < control  # distillation helped, against the same student untaught
    assert summary["gap_closed"] == pytest.approx((control - student) / (control - teacher))
    assert "bits_per_byte" not in table["copy the line above"]  # a baseline has no distribution
    assert table["empty middle"]["empty_rate"] == 1.0
    assert summary["metrics"]["val/teacher_truth_edit_sim"] == pytest.approx(table["teacher"]["edit_sim"])
    assert summary["metrics"]["val/bits_per_byte"] == pytest.approx(student)
    control_summary = json.loads((out / "control" / "metrics.json").read_text())
    assert summary["control"]["metrics"] == control_summary["metrics"]
    assert control_summary["metrics"]["val/bits_per_byte"] == pytest.approx(control)
    assert "val/kd_loss" not in control_summary["metrics"] and (out / "control" / "student" / "config.json").is_file()
    report = (out / "metrics.md").read_text()
    assert report.startswith("## Where the student stands") and "Distillation closed" in report.split("##")[1]


def test_training_learns_and_reports_every_metric(trained):
    cfg, score = trained
    out = cfg.paths.output_dir
    summary = json.loads(open(f"{out}/metrics.json").read())
    metrics = summary["metrics"]
    assert score == metrics["val/bits_per_byte"] and cfg.monitor == "val/bits_per_byte"
    for key in (
        "exact_match",
        "edit_sim",
        "bleu",
        "empty_rate",
        "length_ratio",
        "label_loss",
        "kd_loss",
        "bits_per_byte",
        "edit_sim_low",
        "edit_sim_high",
        "exact_match_low",
        "empty_rate_high",
    ):
        assert f"val/{key}" in metrics
    assert 0.0 <= metrics["val/empty_rate"] <= 1.0
    assert os.path.isfile(summary["checkpoint"])
    history = [json.loads(line) for line in open(f"{out}/predictions.jsonl")]
    assert len(history) == summary["validation_rows"]
    assert set(history[0]) == {"prompt", "middle", "teacher_middle", "student", "nll"}
    assert metrics["val/edit_sim_low"] <= metrics["val/edit_sim"] <= metrics["val/edit_sim_high"]
    assert metrics["val/bits_per_byte"] > 0


def test_training_loss_goes_down(trained):
    cfg, _ = trained
    (path,) = glob.glob(f"{cfg.paths.output_dir}/csv/*/metrics.csv")
    rows = list(csv.DictReader(open(path)))
    losses = [float(r["train/loss"]) for r in rows if r.get("train/loss")]
    assert len(losses) >= 4 and sum(losses[-2:]) < sum(losses[:2])


def _silently(load, *args):
    """`load(*args)`, failing on any warning transformers logs while it loads."""
    records = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    library = logging.getLogger("transformers")
    library.addHandler(handler)
    try:
        return load(*args)
    finally:
        library.removeHandler(handler)
        assert not records, [r.getMessage() for r in records]


def test_the_saved_student_loads_with_plain_transformers(trained):
    """transformers alone, silently, prompted with the FIM prompt, reproduces the student's validation answer."""
    cfg, _ = trained
    student_dir = f"{cfg.paths.output_dir}/student"
    model = _silently(AutoModelForCausalLM.from_pretrained, student_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(student_dir)
    fim = cfg.student.fim
    stops = tokenizer.convert_tokens_to_ids([tokenizer.eos_token, fim.prefix, fim.suffix, fim.middle])
    for line in open(f"{cfg.paths.output_dir}/predictions.jsonl").readlines()[:4]:
        row = json.loads(line)
        prefix, suffix = row["prompt"].split("<FILL-HERE>")
        ids = tokenizer(f"{fim.prefix}{prefix}{fim.suffix}{suffix}{fim.middle}", return_tensors="pt")["input_ids"]
        out = model.generate(
            input_ids=ids, max_new_tokens=cfg.model.max_new_tokens, do_sample=False, eos_token_id=stops
        )
        assert tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True) == row["student"]


def test_the_readme_snippet_runs_on_a_saved_student(trained):
    """README's "Use a student with plain transformers", pointed at this run's student."""
    cfg, _ = trained
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    snippet = readme.split("### Use a student with plain transformers")[1].split("```python\n")[1].split("```")[0]
    snippet, n = re.subn(r'student = ".*"', f'student = "{cfg.paths.output_dir}/student"', snippet)
    assert n == 1
    exec(snippet, {})


def test_the_model_card_describes_the_run_and_its_snippet_runs(trained):
    cfg, _ = trained
    card = open(f"{cfg.paths.output_dir}/student/README.md", encoding="utf-8").read()
    _, front, body = card.split("---\n", 2)
    meta = yaml.safe_load(front)
    assert meta["library_name"] == "transformers" and meta["license"] == cfg.card.license
    assert meta["pipeline_tag"] == "text-generation" and "base_model" not in meta  # the tiny one is built
    metrics = json.loads(open(f"{cfg.paths.output_dir}/metrics.json").read())["metrics"]
    assert f"| val/edit_sim | {metrics['val/edit_sim']:.4f} |" in body
    assert cfg.teacher.name in body and "divergence: forward_kl" in body and "license mit" in body
    assert "api_key" not in card
    snippet = body.split("```python\n")[1].split("```")[0]
    scope = {}
    exec(snippet, scope)  # the card's own usage, as a stranger runs it
    assert isinstance(scope["middle"], str) and scope["prompt"].startswith(cfg.student.fim.prefix)


def test_recipe_1_as_published_trains_a_t5_student_on_both_tasks(step_by_step):
    """experiment=step_by_step_tiny: label and rationale tasks, a T5 student that plain transformers loads
    (codistill's loaders silently) and that reproduces its validation answer, and a card with its usage."""
    cfg, _ = step_by_step
    out = Path(cfg.paths.output_dir)
    metrics = json.loads((out / "metrics.json").read_text())["metrics"]
    assert metrics["val/rationale_loss"] > 0 and "val/kd_loss" not in metrics
    model = _silently(load_student, str(out / "student")).model.eval()
    tokenizer = AutoTokenizer.from_pretrained(out / "student")
    assert AutoModelForSeq2SeqLM.from_pretrained(out / "student").lm_head.weight.equal(model.lm_head.weight)
    row = json.loads(open(out / "predictions.jsonl").readline())
    prefix, suffix = row["prompt"].split("<FILL-HERE>")
    ids = tokenizer(fim_prompt(TASK_PREFIXES[LABEL_TASK], prefix, suffix), return_tensors="pt")["input_ids"]
    assert ids.shape[1] <= cfg.data.max_source_length  # untruncated: the ids the student was validated on
    out_ids = model.generate(input_ids=ids, max_new_tokens=cfg.data.max_target_length, do_sample=False)
    assert tokenizer.decode(out_ids[0], skip_special_tokens=True) == row["student"]
    card = (out / "student" / "README.md").read_text(encoding="utf-8")
    assert "pipeline_tag: text2text-generation" in card and f"alpha: {cfg.loss.alpha}" in card
    scope = {}
    exec(card.split("```python\n")[1].split("```")[0], scope)
    assert isinstance(scope["middle"], str) and "predict: " in scope["prompt"]


def _sample_jsonl(path):
    load_sample_corpus().to_json(str(path))
    return path


@pytest.mark.parametrize(  # None: the default, whose full run the `trained` fixture is
    "experiment", [pytest.param(None, marks=pytest.mark.thorough), "moonscript_santacoder_flan_t5"]
)
def test_fast_dev_run_of_every_experiment(
    tmp_path, cache_dir, tiny_teacher_dir, tiny_student_dir, experiment, monkeypatch
):
    overrides = ["debug=fdr"]
    if experiment:
        # the real recipe with its Hub models swapped for the same architectures at toy size, its corpus
        # for a local file in The Stack's schema, and OpenAI for a loopback server
        overrides += [
            f"experiment={experiment}",
            f"teacher.backend.name_or_path={tiny_teacher_dir}",
            f"student.name_or_path={tiny_student_dir}",
            "trainer.accelerator=cpu",
            "trainer.precision=32-true",
            f"dataset.corpus.source={_sample_jsonl(tmp_path / 'moon.jsonl')}",
            "data.num_workers=0",
        ]
        monkeypatch.setenv("OPENAI_API_KEY", "sk-never-logged")
        with FakeOpenAI() as server:
            cfg = compose_config(
                "train", tmp_path, cache_dir, overrides + [f"rationale.backend.client.base_url={server.base_url}"]
            )
            score = train(cfg)
        assert len(server.requests) > 0
        assert not any("sk-never-logged" in p.read_text(errors="ignore") for p in tmp_path.rglob("*") if p.is_file())
    else:
        cfg = compose_config("train", tmp_path, cache_dir, overrides)
        score = train(cfg)
    assert score == json.loads((tmp_path / "out" / "metrics.json").read_text())["metrics"][cfg.monitor]
    assert (tmp_path / "out" / "student" / "config.json").is_file()


@pytest.mark.parametrize("experiment", ["textbook_tiny", "textbook_starcoder"])
def test_fast_dev_run_of_the_textbook_experiments(tmp_path, cache_dir, experiment):
    overrides = ["debug=fdr", f"experiment={experiment}", "after_training.humaneval.limit=2"]
    if experiment == "textbook_starcoder":  # starcoderbase-1b's double: its FIM spellings and 8,192 positions
        starcoder_like = tiny_gpt_bigcode(str(cache_dir), n_positions=8192, family="starcoder", train_steps=100)
        overrides += [
            f"student.name_or_path={starcoder_like}",
            "trainer.accelerator=cpu",  # in the experiment's bf16-mixed precision, as on a GPU
            "data.num_workers=0",
            "data.path=${codistill.data:exercises_sample.jsonl}",
        ]
    loss = train(compose_config("train", tmp_path, cache_dir, overrides))
    summary = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert loss == summary["metrics"]["val/loss"] > 0
    assert summary["after_training"] == {"humaneval": {"greedy_pass@1": 0.0}}
    assert (tmp_path / "out" / "eval" / "samples_humaneval.jsonl").is_file()
    assert (tmp_path / "out" / "student" / "config.json").is_file()


@pytest.mark.thorough  # test_distillation's label_only runs, with more
def test_label_only_trains_without_the_rationale_task(tmp_path, cache_dir):
    cfg = compose_config("train", tmp_path, cache_dir, ["debug=fdr", "loss=label_only"])
    train(cfg)
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())["metrics"]
    assert "val/rationale_loss" not in metrics and metrics["val/loss"] == metrics["val/label_loss"]


@pytest.mark.parametrize(
    "args, message",
    [
        pytest.param(  # a second error through the same CLI path
            ["data.dataset_dir=/no/such/dataset"],
            "dataset_dir=/no/such/dataset is not a saved dataset",
            marks=pytest.mark.thorough,
        ),
        (["loss.alpha=1.5"], "loss.alpha=1.5 is outside [0, 1]"),
    ],
)
def test_cli_errors_are_one_clear_line(tmp_path, args, message):
    env = {**os.environ, "CODISTILL_ROOT": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-m", "codistill.apps.train", *args], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 2, proc.stderr
    assert f"codistill: error: {message}" in proc.stderr
    assert "Traceback" not in proc.stderr
