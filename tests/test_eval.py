"""codistill-eval: tasks scored by execution on real data, with oracle and tiny models."""

import gzip
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from datasets import Dataset, DatasetDict

import codistill
from codistill.apps.eval import evaluate
from codistill.apps.train import train
from codistill.backends.hf import HFBackend
from codistill.config import build
from codistill.data.corpus import load_sample_corpus
from codistill.data.fim import FIMTokens
from codistill.data.formatting import (
    FIM_PREFIX,
    LABEL_TASK,
    LEGACY_TASK_PREFIXES,
    RATIONALE_TASK,
    STUDENT_MARKERS,
    encode_fim_input,
)
from codistill.errors import ConfigError
from codistill.eval.models import CausalModel, Seq2SeqModel
from codistill.eval.sandbox import SandboxSettings
from codistill.eval.tasks import HumanEvalTask, InfillingTask, pass_at_k
from codistill.generation import cut_at_stop_strings
from codistill.models.loading import load_student
from codistill.models.tokenization import CODEC_FILE, CodeTokenizer
from conftest import compose_config

FIM = {"prefix": "<fim-prefix>", "suffix": "<fim-suffix>", "middle": "<fim-middle>"}

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


SINGLE, MULTI = "HumanEval-SingleLineInfilling.jsonl.gz", "HumanEval-MultiLineInfilling.jsonl.gz"
RANDOM_SPAN, RANDOM_SPAN_LIGHT = "HumanEval-RandomSpanInfilling.jsonl.gz", "HumanEval-RandomSpanInfillingLight.jsonl.gz"


@pytest.mark.parametrize(
    "file, count, limit", [(SINGLE, 1033, None), (MULTI, 5815, 400), (RANDOM_SPAN_LIGHT, 164, None)]
)
def test_canonical_infilling_middles_pass_and_match(infilling_dir, file, count, limit):
    task = InfillingTask(file, str(infilling_dir / file), limit)
    answers = {t["prompt"] + "\0" + t["suffix"]: t["canonical_solution"] for t in task.selected()}
    assert len(task.problems()) == count and len(answers) == (limit or count)
    result = task.run(Oracle(answers), SANDBOX)
    assert result.metrics == {"pass@1": 1.0, "exact_match": 1.0}
    empty = InfillingTask(file, str(task.path), 30).run(Oracle({}), SANDBOX)
    assert empty.metrics["exact_match"] == 0.0 and empty.metrics["pass@1"] < 0.2


@pytest.mark.slow
@pytest.mark.parametrize("file, count", [(MULTI, 5815), (RANDOM_SPAN, 1640)])
def test_every_canonical_middle_passes(infilling_dir, file, count):
    task = InfillingTask(file, str(infilling_dir / file))
    answers = {t["prompt"] + "\0" + t["suffix"]: t["canonical_solution"] for t in task.problems()}
    assert len(answers) == count and task.run(Oracle(answers), SANDBOX).metrics["pass@1"] == 1.0


def test_the_shipped_infilling_data_is_openais_as_published(infilling_dir, shared_data):
    published = shared_data / "human-eval-infilling"
    assert sorted(p.name for p in published.iterdir()) == sorted(
        [SINGLE, MULTI, RANDOM_SPAN, RANDOM_SPAN_LIGHT, "LICENSE"]
    )
    for file in published.iterdir():
        assert (infilling_dir / file.name).read_bytes() == file.read_bytes(), file.name


@pytest.mark.parametrize(
    "contents, message",
    [
        (None, "does not exist: set tasks.humaneval_infilling_single.path to a JSON Lines file"),
        (b"not gzip", "cannot read"),
        (
            gzip.compress(b'{"task_id": "t", "prompt": "", "test": "", "entry_point": "f"}\n'),
            "problem 1 of .* has no suffix",
        ),
    ],
    ids=["missing", "not gzip", "no suffix"],  # gzip's header holds the time: ids of its bytes differ per worker
)
def test_every_input_is_checked_before_a_model_loads_or_a_task_runs(tmp_path, cache_dir, contents, message):
    path = tmp_path / "infilling.jsonl.gz"
    if contents is not None:
        path.write_bytes(contents)
    overrides = [
        "eval_model=student",
        "eval_model.name_or_path=/no/such/student",  # loading it would fail with another error
        "run=[humaneval,humaneval_infilling_single]",
        f"tasks.humaneval_infilling_single.path={path}",
    ]
    with pytest.raises(ConfigError, match=f"humaneval_infilling_single: .*{message}"):
        evaluate(compose_config("eval", tmp_path, cache_dir, overrides))
    assert not (tmp_path / "out").exists()


def test_a_task_failing_mid_run_keeps_the_results_of_those_that_finished(tmp_path, cache_dir):
    overrides = [
        "run=[humaneval,humaneval_infilling_single]",
        "tasks.humaneval.limit=2",
        "eval_model.fim=null",  # infilling fails once HumanEval is done
        "eval_model.backend.max_new_tokens=8",
    ]
    with pytest.raises(ConfigError, match="no FIM tokens configured"):
        evaluate(compose_config("eval", tmp_path, cache_dir, overrides))
    out = tmp_path / "out"
    assert list(json.loads((out / "summary.json").read_text())) == ["humaneval"]
    assert len((out / "samples_humaneval.jsonl").read_text().splitlines()) == 2
    assert (
        "humaneval_infilling_single failed: ConfigError('model tiny_gpt_bigcode has no FIM"
        in (out / "summary.md").read_text()
    )


def test_codistill_eval_runs_in_a_folder_with_nothing_beside_it(tmp_path):
    """A fresh clone: no ../shared, no CODISTILL_INFILLING_DIR; the tiny model is built under ./.cache."""
    assert not (tmp_path.parent / "shared").exists()
    env = {k: v for k, v in os.environ.items() if k not in ("CODISTILL_INFILLING_DIR", "CODISTILL_ROOT")}
    env["PYTHONPATH"] = os.pathsep.join([str(Path(codistill.__file__).parents[1]), env.get("PYTHONPATH", "")])
    tasks = [
        "humaneval",
        *(f"humaneval_infilling_{t}" for t in ("single", "multi", "random_span", "random_span_light")),
    ]
    args = [f"run=[{','.join(tasks)}]", *(f"tasks.{t}.limit=2" for t in tasks), "eval_model.backend.max_new_tokens=8"]
    command = [sys.executable, "-m", "codistill.apps.eval", *args]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    [out] = (tmp_path / "outputs" / "eval" / "runs").iterdir()
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary) == tasks and all(0 <= v <= 1 for metrics in summary.values() for v in metrics.values())
    random_span = [json.loads(line)["task_id"] for line in open(out / "samples_humaneval_infilling_random_span.jsonl")]
    assert random_span == ["RandomSpanInfilling/HumanEval/0/1", "RandomSpanInfilling/HumanEval/0/2"]


def test_eval_app_scores_the_tiny_teacher_on_every_task(tmp_path, cache_dir):
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
            "eval_model.backend.max_new_tokens=16",
        ],
    )
    summary = evaluate(cfg)
    out = tmp_path / "out"
    assert set(summary) == {"humaneval", "humaneval_infilling_single", "humaneval_infilling_multi", "fim_heldout"}
    assert set(summary["humaneval"]) == {"greedy_pass@1", "pass@1", "pass@2"}
    assert {"exact_match", "edit_sim", "bleu", "empty_rate", "length_ratio", "teacher_edit_sim"} <= set(
        summary["fim_heldout"]
    )
    assert summary["fim_heldout"]["bits_per_byte"] > 0 and "edit_sim_low" in summary["fim_heldout"]
    assert json.loads((out / "summary.json").read_text()) == summary
    assert (out / "summary.png").stat().st_size > 1000 and "| humaneval |" in (out / "summary.md").read_text()
    heldout = json.loads(open(out / "samples_fim_heldout.jsonl").readline())
    assert {"prompt", "middle", "teacher_middle", "completion"} <= set(heldout)
    rows = [json.loads(line) for line in open(out / "samples_humaneval.jsonl")]
    assert len(rows) == 3 + 3 * 2 and {"task_id", "completion", "result", "error"} <= set(rows[0])


def test_eval_app_scores_a_trained_student_and_rejects_unknown_tasks(tmp_path, cache_dir):
    train(
        compose_config(
            "train",
            tmp_path / "train",
            cache_dir,
            [
                "debug=fdr",
                "student=tiny_t5",  # a seq2seq student, evaluated below as eval_model=student
                "loss=label_only",
                "callbacks=eval_subset",
                "callbacks.eval_subset.tasks.humaneval_infilling_single.limit=3",
            ],
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


def wandb_files_once_they_hold(run: Path, needle: bytes, seconds: float = 30.0) -> bytes:
    """An offline wandb run's files, read again until `needle` is in them (or `seconds` pass): wandb's service
    process writes the run file behind `finish()`, and on a loaded machine one full-suite run read it holding
    only its 7-byte header."""
    deadline = time.monotonic() + seconds
    while True:
        logged = b"".join(p.read_bytes() for p in run.rglob("*") if p.is_file())
        if needle in logged or time.monotonic() > deadline:
            return logged
        time.sleep(0.2)


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
            "eval_model.backend.max_new_tokens=8",
        ],
    )
    evaluate(cfg)
    runs = list((tmp_path / "out" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("*.wandb"))
    logged = wandb_files_once_they_hold(runs[0], b"humaneval/greedy_pass@1")
    assert b"humaneval/greedy_pass@1" in logged and b"samples/humaneval" in logged
    written = b"".join(p.read_bytes() for p in (tmp_path / "out").rglob("*") if p.is_file())
    assert b"sk-eval-secret" not in written


GAPS = [("x = 1\n", "y = x\n", "print y\n"), ("f = (a) ->\n", "  a * 2\n", "print f 3\n")]  # prefix, middle, suffix


def _saved_student(directory, tiny_student_dir, legacy: bool = False) -> str:
    """The tiny student saved as codistill-train saves it; `legacy`: as codistill saved it while its task
    prefixes were the added tokens `[label]`/`[rationale]`, which it did not record."""
    markers = (*LEGACY_TASK_PREFIXES.values(), *STUDENT_MARKERS) if legacy else STUDENT_MARKERS
    student = load_student(tiny_student_dir, markers=markers)
    student.model.save_pretrained(directory)
    student.tokenizer.save_pretrained(directory)
    if legacy:
        (directory / CODEC_FILE).write_text(json.dumps({"markers": list(markers)}))
    return str(directory)


def _fim_dataset(directory) -> str:
    rows = [
        {
            "prefix": p,
            "suffix": s,
            "middle": m,
            "teacher_middle": m,
            "rationale": "r",
            "prompt": f"{p}<FILL-HERE>{s}",
            "teacher_prompt": "",
        }
        for p, m, s in GAPS
    ]
    rows = Dataset.from_list(rows)
    DatasetDict(train=rows, validation=rows, test=rows).save_to_disk(str(directory))
    return str(directory)


def _evaluate_student(tmp_path, cache_dir, student_dir: str, output_rationale: bool, run: str, extra=()) -> tuple:
    """codistill-eval on a saved student: its summary and every task's samples."""
    overrides = [
        "eval_model=student",
        f"eval_model.name_or_path={student_dir}",
        f"eval_model.output_rationale={str(output_rationale).lower()}",
        "eval_model.max_new_tokens=12",
        "eval_model.device=cpu",
        f"run={run}",
        f"tasks.fim_heldout.dataset_dir={_fim_dataset(tmp_path / 'ds')}",
        *extra,
    ]
    summary = evaluate(compose_config("eval", tmp_path, cache_dir, overrides))
    out = tmp_path / "out"
    return summary, {task: [json.loads(line) for line in open(out / f"samples_{task}.jsonl")] for task in summary}


def _greedy(model: Seq2SeqModel, task: str, prefix: str, suffix: str) -> str:
    """What the student generates for `task` on one gap, straight from transformers."""
    ids = encode_fim_input(model.tokenizer, task, prefix, suffix, model.max_source_length)
    out = model.model.generate(input_ids=torch.tensor([ids]), max_new_tokens=model.max_new_tokens, do_sample=False)
    return model.tokenizer.decode(out[0].tolist())


def test_output_rationale_adds_the_students_explanations_and_changes_no_metric(tmp_path, cache_dir, tiny_student_dir):
    student_dir = _saved_student(tmp_path / "student", tiny_student_dir)
    run, extra = "[humaneval_infilling_single,fim_heldout]", ["tasks.humaneval_infilling_single.limit=3"]
    plain_summary, plain = _evaluate_student(tmp_path / "plain", cache_dir, student_dir, False, run, extra)
    summary, explained = _evaluate_student(tmp_path / "explained", cache_dir, student_dir, True, run, extra)
    assert summary == plain_summary and summary["fim_heldout"]["length_ratio"] > 0  # non-empty middles scored
    for task, rows in explained.items():
        assert all("rationale" not in row for row in plain[task])
        assert [{k: v for k, v in row.items() if k != "rationale"} for row in rows] == plain[task]
    model = Seq2SeqModel.from_pretrained(student_dir, device="cpu", max_new_tokens=12)
    for row, (prefix, _, suffix) in zip(explained["fim_heldout"], GAPS, strict=True):
        assert row["rationale"] == _greedy(model, RATIONALE_TASK, prefix, suffix)  # `explain: ` on that gap
        assert row["completion"] == _greedy(model, LABEL_TASK, prefix, suffix)
    assert any(row["rationale"] != row["completion"] for rows in explained.values() for row in rows)


def test_output_rationale_of_a_causal_model_names_the_fix(tmp_path, cache_dir):
    cfg = compose_config("eval", tmp_path, cache_dir, ["+eval_model.output_rationale=true", "run=[humaneval]"])
    with pytest.raises(ConfigError, match="causal LM without a rationale task.*eval_model=student"):
        evaluate(cfg)


def test_a_student_saved_with_the_legacy_label_token_is_evaluated_with_it(tmp_path, cache_dir, tiny_student_dir):
    student_dir = _saved_student(tmp_path / "old", tiny_student_dir, legacy=True)
    _, samples = _evaluate_student(tmp_path, cache_dir, student_dir, True, "[fim_heldout]")
    model = Seq2SeqModel.from_pretrained(student_dir, device="cpu", max_new_tokens=12)
    tok = model.tokenizer
    assert tok.task_prefixes == LEGACY_TASK_PREFIXES
    for task, first in ((LABEL_TASK, "[label]"), (RATIONALE_TASK, "[rationale]")):
        assert encode_fim_input(tok, task, "x", "y", 512)[:2] == tok.base.convert_tokens_to_ids([first, FIM_PREFIX])
    as_today = Seq2SeqModel(model.model, CodeTokenizer(tok.base, tok.markers), max_new_tokens=12)  # `predict: `
    rows = samples["fim_heldout"]
    for row, (prefix, _, suffix) in zip(rows, GAPS, strict=True):
        assert row["completion"] == _greedy(model, LABEL_TASK, prefix, suffix)
        assert row["rationale"] == _greedy(model, RATIONALE_TASK, prefix, suffix)
    assert any(
        row["completion"] != _greedy(as_today, LABEL_TASK, p, s) for row, (p, _, s) in zip(rows, GAPS, strict=True)
    )


def test_middle_likelihoods_agree_with_transformers_own_loss(tmp_path, tiny_teacher_dir, tiny_student_dir):
    """Bits per byte rests on `middle_nll`: for both model kinds it is transformers' own cross-entropy of
    the middle and its end, summed, given the input each model is prompted with."""
    prefix, middle, suffix = "x = 1\n", "y = 2\n", "z = 3\n"
    causal = CausalModel("teacher", HFBackend.from_pretrained(tiny_teacher_dir, dtype="float32", device="cpu"), FIM)
    tok, model = causal.backend.tokenizer, causal.backend.model
    prompt = tok(FIMTokens(**FIM).psm(prefix, suffix), add_special_tokens=False)["input_ids"]
    target = tok(middle + "<|endoftext|>", add_special_tokens=False)["input_ids"]
    ids = torch.tensor([prompt + target])
    labels = torch.tensor([[-100] * len(prompt) + target])
    expected = model(input_ids=ids, labels=labels).loss.item() * len(target)
    assert causal.middle_nll([prefix], [suffix], [middle])[0] == pytest.approx(expected, rel=1e-4)

    student = Seq2SeqModel.from_pretrained(_saved_student(tmp_path / "student", tiny_student_dir), device="cpu")
    inputs = torch.tensor([encode_fim_input(student.tokenizer, LABEL_TASK, prefix, suffix, student.max_source_length)])
    target = torch.tensor([student.tokenizer(middle)["input_ids"]])
    expected = student.model(input_ids=inputs, labels=target).loss.item() * target.shape[1]
    assert student.middle_nll([prefix, "a"], [suffix, "b"], [middle, "c = 1"])[0] == pytest.approx(expected, rel=1e-4)


def test_any_corpus_is_scored_as_fim_for_every_model_kind(tmp_path, cache_dir, tiny_student_dir):
    """The same seeded gaps for a causal teacher and a seq2seq student, with bits per byte for both."""
    corpus = tmp_path / "code.jsonl"
    load_sample_corpus(max_files=2).to_json(str(corpus))
    common = ["run=[fim_corpus]", f"tasks.fim_corpus.path={corpus}", "tasks.fim_corpus.limit=6"]
    teacher = evaluate(
        compose_config("eval", tmp_path / "t", cache_dir, [*common, "eval_model.backend.max_new_tokens=8"])
    )
    student_dir = _saved_student(tmp_path / "student", tiny_student_dir)
    student = evaluate(
        compose_config(
            "eval",
            tmp_path / "s",
            cache_dir,
            [*common, "eval_model=student", f"eval_model.name_or_path={student_dir}", "eval_model.max_new_tokens=8"],
        )
    )
    for summary in (teacher, student):
        assert summary["fim_corpus"]["bits_per_byte"] > 0 and 0 <= summary["fim_corpus"]["edit_sim"] <= 1
    gaps = [
        [(r["prompt"], r["middle"]) for r in map(json.loads, open(folder / "out" / "samples_fim_corpus.jsonl"))]
        for folder in (tmp_path / "t", tmp_path / "s")
    ]
    assert gaps[0] == gaps[1] and len(gaps[0]) == 6
    assert all("<FILL-HERE>" in prompt and middle for prompt, middle in gaps[0])
