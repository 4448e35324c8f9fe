"""Splits by file or repository: disjoint, complete, seeded, independent of the corpus order."""

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from codistill.data.splits import assign_splits, group_of
from codistill.errors import ConfigError

GROUPS = st.lists(st.text(min_size=1, max_size=6), min_size=6, max_size=60)


@settings(max_examples=60, deadline=None)
@given(GROUPS, st.integers(0, 10**6))
def test_every_group_lands_in_one_split_whatever_the_order(groups, seed):
    assume(len(set(groups)) >= 6)
    assignment = assign_splits(groups, 0.2, 0.2, seed)
    assert set(assignment) == set(groups) and set(assignment.values()) <= {"train", "validation", "test"}
    assert assign_splits(list(reversed(groups)), 0.2, 0.2, seed) == assignment  # order does not matter
    counts = {name: sum(v == name for v in assignment.values()) for name in ("validation", "test", "train")}
    n = len(set(groups))
    assert counts["validation"] == max(1, round(0.2 * n)) and counts["test"] == round(0.2 * n)
    assert counts["train"] >= 1


def test_seeds_give_other_splits_and_the_same_seed_the_same():
    groups = [f"file{i}" for i in range(40)]
    assert assign_splits(groups, 0.25, 0.25, 1) == assign_splits(groups, 0.25, 0.25, 1)
    assert assign_splits(groups, 0.25, 0.25, 1) != assign_splits(groups, 0.25, 0.25, 2)


def test_repositories_keep_their_files_together():
    records = [{"repo": f"r{i % 5}", "hexsha": f"h{i}"} for i in range(30)] + [{"repo": "", "hexsha": "alone"}]
    groups = [group_of(r, "repo") for r in records]
    assignment = assign_splits(groups, 0.2, 0.2, 0)
    by_repo: dict[str, set[str]] = {}
    for record, group in zip(records, groups, strict=True):
        by_repo.setdefault(record["repo"] or record["hexsha"], set()).add(assignment[group])
    assert all(len(splits) == 1 for splits in by_repo.values()) and "alone" in by_repo


@pytest.mark.parametrize(
    "groups, validation, test, message",
    [
        (["a", "b"], 0.5, 0.5, "too few for a validation and a test share"),
        (["a", "b", "c"], 1.5, 0.0, r"dataset.validation_size=1.5 is outside \[0, 1\)"),
    ],
)
def test_impossible_splits_name_the_fix(groups, validation, test, message):
    with pytest.raises(ConfigError, match=message):
        assign_splits(groups, validation, test, 0)


def test_unknown_split_by_names_the_options():
    with pytest.raises(ConfigError, match="one of: file, repo"):
        group_of({"repo": "r", "hexsha": "h"}, "directory")
