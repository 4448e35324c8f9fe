"""Every threshold of the exercise filter in one frozen object, checked once, before a run spends anything.

The values are declared in one place only, the `filter:` block of conf/exercises.yaml, whose `_target_`
builds this object; a run overrides them on the command line (`filter.dedup_threshold=0.9`).
"""

from dataclasses import dataclass, fields

from codistill.errors import ConfigError
from codistill.exercises.dedup import Deduplicator

# the lowest and highest value of each numeric setting (None: no bound)
_BOUNDS = {
    "min_solution_lines": (0, None),
    "max_solution_lines": (1, None),
    "max_chars": (1, None),
    "dedup_threshold": (0, 1),
    "dedup_ngram": (1, None),
    "num_perm": (2, None),
    "seed": (0, 2**32 - 1),  # what numpy accepts as MinHash's seed
    "contamination_ngram": (1, None),
    "contamination_threshold": (0, 1),
}


@dataclass(frozen=True)
class FilterSettings:
    """What `filter_exercises` keeps and drops."""

    min_solution_lines: int  # fewer code lines in the solution: `too_short`
    max_solution_lines: int  # more code lines: `too_long`
    max_chars: int  # more characters in problem + solution: `too_long`
    require_examples: bool  # a docstring without `>>>`: `no_examples`
    dedup_threshold: float  # MinHash Jaccard similarity to a kept exercise from which one is a `near_duplicate`
    dedup_ngram: int  # tokens per shingle of that similarity
    num_perm: int  # MinHash permutations
    seed: int  # MinHash seed
    contamination_ngram: int  # words per n-gram compared with the references (HumanEval)
    contamination_threshold: float  # share of its n-grams shared with a reference from which one is `contaminated`

    def __post_init__(self):
        for field in fields(self):
            value = getattr(self, field.name)
            if field.type is bool and not isinstance(value, bool):
                raise _invalid(field.name, value, "is not true or false")
            if field.type is int and (isinstance(value, bool) or not isinstance(value, int)):
                raise _invalid(field.name, value, "is not a whole number")
            if field.type is float and (isinstance(value, bool) or not isinstance(value, int | float)):
                raise _invalid(field.name, value, "is not a number")
        for key, (low, high) in _BOUNDS.items():
            value = getattr(self, key)
            if high is None and value < low:
                raise _invalid(key, value, f"is below {low}: set it to {low} or more")
            if high is not None and not low <= value <= high:
                raise _invalid(key, value, f"is outside [{low}, {high}]: set it within that range")
        if self.max_solution_lines < self.min_solution_lines:
            raise _invalid(
                "max_solution_lines",
                self.max_solution_lines,
                f"is below filter.min_solution_lines={self.min_solution_lines}: no exercise could pass; raise it",
            )
        try:
            self.deduplicator()
        except ValueError as exc:  # datasketch finds no LSH banding for this threshold
            raise _invalid(
                "dedup_threshold",
                self.dedup_threshold,
                f"is too high for filter.num_perm={self.num_perm} ({exc}): lower it or raise num_perm",
            ) from None

    def deduplicator(self) -> Deduplicator:
        """An empty `Deduplicator` with these settings."""
        return Deduplicator(self.dedup_threshold, self.dedup_ngram, self.num_perm, self.seed)


def _invalid(key: str, value, why: str) -> ConfigError:
    return ConfigError(f"filter.{key}={value!r} {why}")
