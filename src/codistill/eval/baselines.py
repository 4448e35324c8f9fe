"""Trivial infilling baselines: what a student must beat before its scores mean anything.

Each is a pure function of the context, `(prefix, suffix) -> middle`. On line-mode FIM gaps, code repeats
itself often enough that copying the line before the gap scores a real edit similarity; an empty middle
shows what producing nothing scores.
"""


def empty_middle(prefix: str, suffix: str) -> str:
    return ""


def copy_previous_line(prefix: str, suffix: str) -> str:
    """The last line of the prefix (its newline kept); when the gap starts mid-line, the line before it."""
    lines = prefix.splitlines(keepends=True)
    if not lines:
        return ""
    if not lines[-1].endswith("\n"):  # the gap is inside this line: copy the complete one above it
        return lines[-2] if len(lines) > 1 else ""
    return lines[-1]


BASELINES = {"empty": empty_middle, "copy_line": copy_previous_line}
