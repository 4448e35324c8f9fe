"""Where the student stands: the control's row is scored on the same gaps, and the gap closed is the share
of the control-to-teacher distance the student covered."""

import math

import pytest

from codistill.eval.standings import CONTROL, gap_closed, standings


def _row(prompt: str, middle: str, student: str, nll: float) -> dict:
    return {"prompt": prompt, "middle": middle, "teacher_middle": middle, "student": student, "nll": nll}


def test_the_control_row_is_matched_gap_by_gap_whatever_its_order():
    student = [_row("a<FILL-HERE>b", "xy\n", "xy\n", 2.0), _row("c<FILL-HERE>d", "z\n", "", 4.0)]
    control = [_row("c<FILL-HERE>d", "z\n", "z\n", 1.0), _row("a<FILL-HERE>b", "xy\n", "q\n", 3.0)]
    rows = standings(student, control=control)
    assert set(rows) == {"teacher", "student", CONTROL, "copy the line above", "empty middle"}
    assert rows["student"]["exact_match"] == 0.5 and rows[CONTROL]["exact_match"] == 0.5
    assert rows[CONTROL]["empty_rate"] == 0.0 and rows["student"]["empty_rate"] == 0.5
    # 5 bytes of ground truth: nats summed over the gaps, in bits per byte
    assert rows[CONTROL]["bits_per_byte"] == pytest.approx((1.0 + 3.0) / (math.log(2) * 5))
    assert rows["student"]["bits_per_byte"] == pytest.approx((2.0 + 4.0) / (math.log(2) * 5))
    assert CONTROL not in standings(student)


@pytest.mark.parametrize(
    ("teacher", "student", "control", "closed"),
    [
        (3.0, 3.5, 4.0, 0.5),  # bits per byte: halfway from the control to the teacher
        (3.0, 3.0, 4.0, 1.0),
        (3.0, 4.2, 4.0, -0.2),  # worse than learning without the teacher
        (0.6, 0.5, 0.4, 0.5),  # a higher-is-better metric reads the same
        (3.0, 3.5, 3.0, None),  # teacher and control level: no gap to close
    ],
)
def test_gap_closed(teacher, student, control, closed):
    rows = {"teacher": {"m": teacher}, "student": {"m": student}, CONTROL: {"m": control}}
    assert gap_closed(rows, "m") == (pytest.approx(closed) if closed is not None else None)


def test_no_gap_without_a_control_or_the_metric():
    assert gap_closed({"teacher": {"m": 1.0}, "student": {"m": 2.0}}, "m") is None
    assert gap_closed({"teacher": {}, "student": {"m": 2.0}, CONTROL: {"m": 3.0}}, "m") is None
