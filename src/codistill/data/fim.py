"""Fixed-length segments and seeded fill-in-the-middle splits.

Invariants (property-tested): segments concatenate back to the file; for every split
`prefix + middle + suffix == segment` and the middle is never empty; the split of a segment depends only
on the seed and the segment's identity, not on the order in which segments are processed.
"""

import random
import re
from dataclasses import dataclass

from codistill.errors import ConfigError

_LINES = re.compile(r"[^\n]*\n|[^\n]+")


@dataclass(frozen=True)
class FIMTokens:
    """A model's fill-in-the-middle sentinels; prompts are built in prefix-suffix-middle (PSM) order."""

    prefix: str
    suffix: str
    middle: str
    pad: str | None = None

    def psm(self, prefix: str, suffix: str) -> str:
        return f"{self.prefix}{prefix}{self.suffix}{suffix}{self.middle}"


def segment_chars(text: str, length: int) -> list[str]:
    """Cut `text` into pieces of `length` characters (the last one may be shorter)."""
    return [text[i : i + length] for i in range(0, len(text), length)]


def segment_tokens(text: str, length: int, tokenizer) -> list[str]:
    """Cut `text` into pieces of `length` tokens, at token boundaries, as exact substrings of `text`.
    A cut never splits a character, so a piece can run up to 3 byte-level tokens long."""
    offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)["offset_mapping"]
    cuts = sorted({offsets[i][0] for i in range(length, len(offsets), length)} - {0})
    bounds = [0, *cuts, len(text)]
    return [text[a:b] for a, b in zip(bounds, bounds[1:], strict=False) if b > a]


def segment(text: str, length: int, unit: str = "tokens", tokenizer=None, min_length: int = 1) -> list[str]:
    """Fixed-length segments of a file in `unit` ("tokens" of `tokenizer`, or "chars"); segments
    shorter than `min_length` characters (a file's short tail) are dropped."""
    if unit == "tokens":
        pieces = segment_tokens(text, length, tokenizer)
    elif unit == "chars":
        pieces = segment_chars(text, length)
    else:
        raise ConfigError(f"dataset.segment.unit={unit!r} is not one of: tokens, chars")
    return [p for p in pieces if len(p) >= max(1, min_length)]


def split_fim(text: str, rng: random.Random, mode: str = "line", max_middle: int | None = None) -> tuple[str, str, str]:
    """Split a segment into (prefix, middle, suffix) at random points.

    `mode="line"` cuts at line boundaries and takes 1..max_middle whole lines as the middle;
    `mode="char"` cuts anywhere and takes 1..max_middle characters.
    """
    if not text:
        raise ValueError("cannot split an empty segment")
    if mode == "line":
        units = _LINES.findall(text)
    elif mode == "char":
        units = list(text)
    else:
        raise ConfigError(f"dataset.fim.mode={mode!r} is not one of: line, char")
    start = rng.randrange(len(units))
    longest = len(units) - start if max_middle is None else min(max_middle, len(units) - start)
    end = start + rng.randint(1, longest)
    return "".join(units[:start]), "".join(units[start:end]), "".join(units[end:])


FILL_HERE = "<FILL-HERE>"


def fill_here(prefix: str, suffix: str) -> str:
    """The segment as a reader sees it: the gap marked `<FILL-HERE>` (the `prompt` column)."""
    return f"{prefix}{FILL_HERE}{suffix}"
