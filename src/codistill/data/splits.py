"""Seeded train / validation / test splits of a corpus by file or by repository, made before segmenting.

Invariants (tested): every file lands in exactly one split; files of one group (a file, or a repository
with `split_by=repo`) land together, so no segment of a file (or of a repository) is on two sides; the
assignment depends on the seed and the set of groups, not on the corpus order.
"""

import hashlib

import numpy as np

from codistill.errors import ConfigError

SPLITS = ("train", "validation", "test")
SPLIT_BY = ("file", "repo")


def assign_splits(groups: list[str], validation_size: float, test_size: float, seed: int) -> dict[str, str]:
    """{group: split}: `validation_size` and `test_size` of the distinct groups (at least one group for
    validation; test may be empty), the rest for training."""
    for name, share in (("validation_size", validation_size), ("test_size", test_size)):
        if not 0 <= share < 1:
            raise ConfigError(f"dataset.{name}={share} is outside [0, 1): set a share such as 0.1")
    distinct = sorted(set(groups))
    n_val = max(1, round(validation_size * len(distinct)))
    n_test = round(test_size * len(distinct))
    if n_val + n_test >= len(distinct):
        raise ConfigError(
            f"the corpus has {len(distinct)} files (or repositories) to split, too few for a validation and a test "
            "share and a training split: add files, or lower dataset.validation_size / dataset.test_size"
        )
    order = np.random.default_rng([seed, 7]).permutation(len(distinct))
    shuffled = [distinct[i] for i in order]
    names = ["validation"] * n_val + ["test"] * n_test
    return {group: names[i] if i < len(names) else "train" for i, group in enumerate(shuffled)}


def group_of(record: dict, split_by: str) -> str:
    """What keeps a segment with others: its file (`hexsha`), or its repository (a file without one is its
    own group)."""
    if split_by not in SPLIT_BY:
        raise ConfigError(f"dataset.split_by={split_by!r} is not one of: {', '.join(SPLIT_BY)}")
    return (record["repo"] or record["hexsha"]) if split_by == "repo" else record["hexsha"]


def file_id(row: dict) -> str:
    """A corpus row's file id: its `hexsha`, or a hash of its content where the corpus has none."""
    return row.get("hexsha") or hashlib.sha1(row["content"].encode("utf-8")).hexdigest()
