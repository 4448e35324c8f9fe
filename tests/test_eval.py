"""codistill-eval: tasks scored by execution on real data, with oracle and tiny models."""

import json

import pytest

from codistill.apps.eval import evaluate
from codistill.apps.train import train
from codistill.errors import ConfigError, build
from codistill.eval.models import cut_at_stop_strings
from codistill.eval.sandbox import SandboxSettings
from codistill.eval.tasks import HumanEvalTask, InfillingTask, pass_at_k
from conftest import compose_config

SANDBOX = SandboxSettings(workers=2, timeout=10.0)


class Oracle:
    """A 'model' answering with the canonical solutions (or nothing): the harness's sanity check."""

    name = "oracle"

    def __init__(self, answers: dict[str, str]):
        self.answers = answers

    def complete(self, prompts, sampling, stops=()):
        return [[self.answers.get(p, "")] * sampling.n for p in prompts]

    def infill(self, prefixes, suffixes, sampling):
        return [[self.answers.get(p + "\0" + s, "")] * sampling.n for p, s in zip(prefixes, suffixes, strict=True)]


def test_pass_at_k_is_the_unbiased_estimator():
    assert pass_at_k([[True, False], [False, False]], [1, 2]) == {"pass@1": 0.25, "pass@2": 0.5}
    assert pass_at_k([[True, True, False, False, False]], [1, 2, 6]) == pytest.approx({"pass@1": 0.4, "pass@2": 0.7})


def test_completions_stop_at_the_first_stop_sequence():
    stops = ("\ndef", "\nclass", "\nif", "\nprint", "\n#")
    assert cut_at_stop_strings("    return 1\n\ndef g():\n    pass", stops) == "    return 1\n"
    assert cut_at_stop_strings("    return 1\n", stops) == "    return 1\n"
    assert cut_at_stop_strings("x\n# note\nif y", stops) == "x"


def test_canonical_humaneval_solutions_score_one_and_empty_completions_zero():
    task = HumanEvalTask(ks=[1])
    problems = task.problems()
    assert len(problems) == 164
    right = task.run(Oracle({p["prompt"]: p["canonical_solution"] for p in problems}), SANDBOX)
    assert right.metrics == {"greedy_pass@1": 1.0}
    empty = HumanEvalTask(limit=20).run(Oracle({}), SANDBOX)
    assert empty.metrics == {"greedy_pass@1": 0.0}
    assert {s["result"] for s in empty.samples} <= {"failed", "timeout"}


def test_sampled_pass_at_k_counts_every_sample():
    task = HumanEvalTask(greedy=False, sampling={"n": 3, "temperature": 0.8}, ks=[1, 2, 5], limit=4)
    problems = task.problems()
    answers = {p["prompt"]: p["canonical_solution"] for p in problems[:2]}  # half the problems solved
    result = task.run(Oracle(answers), SANDBOX)
    assert result.metrics == {"pass@1": 0.5, "pass@2": 0.5}  # pass@5 needs 5 samples: not reported
    assert len(result.samples) == 12


@pytest.mark.parametrize("name, limit", [("SingleLine", None), ("MultiLine", 400)])
def test_canonical_infilling_middles_pass_and_match(infilling_dir, name, limit):
    task = InfillingTask(name, str(infilling_dir / f"HumanEval-{name}Infilling.jsonl.gz"), limit)
    answers = {t["prompt"] + "\0" + t["suffix"]: t["canonical_solution"] for t in task.tasks()}
    assert len(answers) == (1033 if limit is None else limit)
    result = task.run(Oracle(answers), SANDBOX)
    assert result.metrics == {"pass@1": 1.0, "exact_match": 1.0}
    empty = InfillingTask(name, str(task.path), 30).run(Oracle({}), SANDBOX)
    assert empty.metrics["exact_match"] == 0.0 and empty.metrics["pass@1"] < 0.2


@pytest.mark.slow
def test_every_multiline_canonical_middle_passes(infilling_dir):
    task = InfillingTask("multi", str(infilling_dir / "HumanEval-MultiLineInfilling.jsonl.gz"))
    answers = {t["prompt"] + "\0" + t["suffix"]: t["canonical_solution"] for t in task.tasks()}
    assert len(answers) == 5815 and task.run(Oracle(answers), SANDBOX).metrics["pass@1"] == 1.0


def test_eval_app_scores_the_tiny_teacher_on_every_task(tmp_path, cache_dir, infilling_dir):
    dataset_dir = build(compose_config("train", tmp_path, cache_dir).data.source).cached()
    cfg = compose_config(
        "eval",
        tmp_path,
        cache_dir,
        [
            "run=[humaneval,humaneval_infilling_single,humaneval_infilling_multi,fim_heldout]",
            "tasks.humaneval.limit=3",
            "tasks.humaneval.sampling={n: 2, temperature: 0.8}",
            "tasks.humaneval.ks=[1,2]",
            "tasks.humaneval_infilling_single.limit=4",
            "tasks.humaneval_infilling_multi.limit=4",
            f"tasks.fim_heldout.dataset_dir={dataset_dir}",
            "eval_model.max_new_tokens=16",
        ],
    )
    summary = evaluate(cfg)
    out = tmp_path / "out"
    assert set(summary) == {"humaneval", "humaneval_infilling_single", "humaneval_infilling_multi", "fim_heldout"}
    assert set(summary["humaneval"]) == {"greedy_pass@1", "pass@1", "pass@2"}
    assert {"exact_match", "edit_sim", "bleu", "empty_rate", "length_ratio", "teacher_edit_sim"} <= set(
        summary["fim_heldout"]
    )
    assert json.loads((out / "summary.json").read_text()) == summary
    assert (out / "summary.png").stat().st_size > 1000 and "| humaneval |" in (out / "summary.md").read_text()
    heldout = json.loads(open(out / "samples_fim_heldout.jsonl").readline())
    assert {"prompt", "middle", "teacher_middle", "completion"} <= set(heldout)
    rows = [json.loads(line) for line in open(out / "samples_humaneval.jsonl")]
    assert len(rows) == 3 + 3 * 2 and {"task_id", "completion", "result", "error"} <= set(rows[0])


def test_eval_app_scores_a_trained_student_and_rejects_unknown_tasks(tmp_path, cache_dir, infilling_dir):
    train(
        compose_config(
            "train",
            tmp_path / "train",
            cache_dir,
            ["debug=fdr", "callbacks=eval_subset", "callbacks.eval_subset.tasks.humaneval_infilling_single.limit=3"],
        )
    )
    metrics = json.loads((tmp_path / "train" / "out" / "metrics.json").read_text())["metrics"]
    assert "eval/humaneval_infilling_single/pass@1" in metrics
    student = tmp_path / "train" / "out" / "student"
    cfg = compose_config(
        "eval",
        tmp_path,
        cache_dir,
        [
            "eval_model=student",
            f"eval_model.name_or_path={student}",
            "run=[humaneval_infilling_single]",
            "tasks.humaneval_infilling_single.limit=3",
            "eval_model.max_new_tokens=8",
        ],
    )
    assert set(evaluate(cfg)["humaneval_infilling_single"]) == {"pass@1", "exact_match"}
    with pytest.raises(ConfigError, match="unknown task"):
        evaluate(compose_config("eval", tmp_path, cache_dir, ["run=[mbpp]"]))


def test_eval_logs_the_summary_and_samples_to_wandb_offline(tmp_path, cache_dir, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-eval-secret")
    cfg = compose_config(
        "eval",
        tmp_path,
        cache_dir,
        [
            "logger=wandb",
            "run=[humaneval]",
            "tasks.humaneval.limit=2",
            "eval_model.max_new_tokens=8",
        ],
    )
    evaluate(cfg)
    runs = list((tmp_path / "out" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("*.wandb"))
    logged = b"".join(p.read_bytes() for p in runs[0].rglob("*") if p.is_file())
    assert b"humaneval/greedy_pass@1" in logged and b"samples/humaneval" in logged
    written = b"".join(p.read_bytes() for p in (tmp_path / "out").rglob("*") if p.is_file())
    assert b"sk-eval-secret" not in written
