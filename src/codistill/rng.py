"""Randomness that is a function of content: the same config draws the same FIM splits and exercise
prompts on every machine and after every restart."""

import hashlib
import random


def stable_rng(seed: int, *key: object) -> random.Random:
    """A generator seeded from (seed, key) through SHA-256, so it never depends on Python's salted hash."""
    digest = hashlib.sha256(repr((seed, *key)).encode("utf-8")).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))
