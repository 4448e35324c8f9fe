"""Where the student stands: the teacher, the student and the trivial baselines on the same FIM gaps.

A student's scores mean little alone: the table puts beside them the teacher's stored middles and the two
baselines of `codistill.eval.baselines`, in edit similarity, exact match and empty rate, and in bits per
byte of the ground truth for the models that have a distribution (the student always; the teacher where it
is a local model that can score), and the control (the same student trained without the teacher) where
there is one. Built from the validation predictions (`prompt` with the gap marked, `middle`,
`teacher_middle`, `student`, `nll`), so no row is generated twice.

`gap_closed` says what distillation bought: the share of the control-to-teacher gap the student closed,
(control - student) / (control - teacher), whichever way the metric points: 1 is the teacher's level, 0 the
control's, below 0 worse than learning without the teacher.
"""

from codistill.data.fim import FILL_HERE
from codistill.data.schema import MIDDLE, PROMPT, TEACHER_MIDDLE
from codistill.eval.baselines import BASELINES
from codistill.eval.metrics import bits_per_byte, edit_similarity, empty_rate, exact_match

CONTROL = "control (no teacher)"
BASELINE_NAMES = {"copy_line": "copy the line above", "empty": "empty middle"}


def contexts(predictions: list[dict]) -> tuple[list[str], list[str]]:
    """Each prediction's prefix and suffix, from its prompt with the gap marked."""
    pairs = [p[PROMPT].split(FILL_HERE, 1) for p in predictions]
    return [a for a, _ in pairs], [b for _, b in pairs]


def _scores(middles: list[str], refs: list[str]) -> dict[str, float]:
    return {
        "edit_sim": edit_similarity(middles, refs),
        "exact_match": exact_match(middles, refs),
        "empty_rate": empty_rate(middles),
    }


def _student(predictions: list[dict], refs: list[str]) -> dict[str, float]:
    row = _scores([p["student"] for p in predictions], refs)
    row["bits_per_byte"] = bits_per_byte([p["nll"] for p in predictions], refs)
    return row


def standings(predictions: list[dict], teacher=None, control: list[dict] | None = None) -> dict[str, dict[str, float]]:
    """{teacher, student[, control], each baseline: {edit_sim, exact_match, empty_rate[, bits_per_byte]}} on
    the predictions' gaps; `teacher` (an evaluated model with `middle_nll`) adds the teacher's bits per byte,
    `control` (the control's predictions on the same gaps) its row."""
    refs = [p[MIDDLE] for p in predictions]
    prefixes, suffixes = contexts(predictions)
    rows = {"teacher": _scores([p[TEACHER_MIDDLE] for p in predictions], refs), "student": _student(predictions, refs)}
    if control is not None:
        by_gap = {(p[PROMPT], p[MIDDLE]): p for p in control}
        rows[CONTROL] = _student([by_gap[p[PROMPT], p[MIDDLE]] for p in predictions], refs)
    if teacher is not None:
        rows["teacher"]["bits_per_byte"] = bits_per_byte(teacher.middle_nll(prefixes, suffixes, refs), refs)
    for name, baseline in BASELINES.items():
        rows[BASELINE_NAMES[name]] = _scores([baseline(a, b) for a, b in zip(prefixes, suffixes, strict=True)], refs)
    return rows


def gap_closed(rows: dict[str, dict[str, float]], metric: str = "bits_per_byte") -> float | None:
    """The share of the control-to-teacher gap in `metric` that the student closed; None where a row lacks
    the metric or teacher and control are level."""
    try:
        teacher, student, control = (rows[r][metric] for r in ("teacher", "student", CONTROL))
    except KeyError:
        return None
    return (control - student) / (control - teacher) if control != teacher else None
