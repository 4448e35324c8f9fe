"""Filter LLM-written textbook exercises before anyone trains on them.

A model asked for "a Python function with a docstring and its solution" answers with prose, stubs, broken
code, the same exercise twice under another name, and now and then a function it has memorised from a
benchmark. Training on any of those teaches the student nothing or, worse, inflates its benchmark score.
`filter_exercises` turns raw replies into `(problem, solution)` pairs and drops the bad ones with a
machine-readable reason, so a run can report what it threw away and why. In this order:

- a reply cut at the generator's token limit (`finish_reason` "length") is dropped as `truncated` before
  anything else: its code may still parse, but the exercise or its solution lost its end;
- `extract`: the first top-level function of a reply, split after its docstring;
- `quality`: syntax, missing docstring, empty or placeholder body, length;
- `contamination`: word n-gram overlap with HumanEval's prompts and canonical solutions;
- `dedup`: exact and near duplicates of an exercise kept earlier, the first of a cluster kept.
"""

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from codistill.exercises.contamination import ContaminationIndex, humaneval_index
from codistill.exercises.extract import split_reply
from codistill.exercises.quality import reject_reason
from codistill.exercises.settings import FilterSettings
from codistill.llm.generated import LENGTH


@dataclass
class FilterResult:
    """`kept` rows gain `problem` and `solution`; `dropped` rows gain `reason` and `index` (position in the
    input), plus `matched` and `overlap` (contaminated) or `duplicate_of` (an input index; duplicates).
    `counts` holds the number of rows per drop reason, and `kept`."""

    kept: list[dict] = field(default_factory=list)
    dropped: list[dict] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)


def filter_exercises(
    rows: Iterable[dict], settings: FilterSettings, *, references: Mapping[str, str] | None = None
) -> FilterResult:
    """Split, check, decontaminate and deduplicate exercises, in input order.

    Each row holds `completion` (a raw model reply) and any metadata, which is carried along; a row without
    `completion` but with `problem` and `solution` is checked as given. Per row: `truncated` (its
    `finish_reason` is "length": the reply was cut at the token limit), `split_reply` (`no_function`,
    `syntax`, `no_docstring`, `unsplittable`), `reject_reason`, contamination (`contaminated`: the row shares
    at least one word `contamination_ngram`-gram with a reference and at least `contamination_threshold` of
    its n-grams with it; `references` defaults to HumanEval's prompts + canonical solutions), then exact
    (`duplicate`, whitespace aside) and near duplicates (`near_duplicate`) of a row kept earlier.
    Deterministic for fixed settings.
    """
    n = settings.contamination_ngram
    contamination = humaneval_index(n) if references is None else ContaminationIndex(references, n)
    dedup = settings.deduplicator()
    result = FilterResult()
    counts: Counter[str] = Counter()

    def drop(row: dict, index: int, reason: str, **extra) -> None:
        result.dropped.append({**row, "reason": reason, "index": index, **extra})
        counts[reason] += 1

    for index, row in enumerate(rows):
        if row.get("finish_reason") == LENGTH:
            drop(row, index, "truncated")
            continue
        if row.get("completion") is None and "problem" in row and "solution" in row:
            split: tuple[str, str] | str = (row["problem"], row["solution"])
        else:
            split = split_reply(row.get("completion") or "")
        if isinstance(split, str):
            drop(row, index, split)
            continue
        problem, solution = split
        reason = reject_reason(problem, solution, settings)
        if reason is not None:
            drop(row, index, reason, problem=problem, solution=solution)
            continue
        text = problem + solution
        hit = contamination.match(text)
        if hit is not None and hit[2] >= settings.contamination_threshold:
            drop(row, index, "contaminated", problem=problem, solution=solution, matched=hit[0], overlap=hit[2])
            continue
        duplicate = dedup.add(index, text)
        if duplicate is not None:
            drop(row, index, duplicate[0], problem=problem, solution=solution, duplicate_of=duplicate[1])
            continue
        result.kept.append({**row, "problem": problem, "solution": solution})
    result.counts = {"kept": len(result.kept), **dict(sorted(counts.items()))}
    return result
