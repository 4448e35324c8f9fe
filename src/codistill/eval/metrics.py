"""Fill-in-the-middle metrics: pure functions of predicted and reference strings.

Exact match alone hides near misses and empty outputs, so every report carries edit similarity, BLEU,
the empty-output rate and the length ratio next to it, bits per byte where a model gives likelihoods, and
bootstrap intervals where a difference between two runs matters.
"""

import math
from collections.abc import Callable

import numpy as np
from rapidfuzz.distance import Levenshtein
from sacrebleu.metrics import BLEU

_BLEU = BLEU(tokenize="13a", effective_order=True)


def exact_match(preds: list[str], refs: list[str]) -> float:
    """Share of predictions equal to their reference, character for character."""
    return sum(p == r for p, r in zip(preds, refs, strict=True)) / len(refs)


def edit_similarity(preds: list[str], refs: list[str]) -> float:
    """Mean of 1 - Levenshtein distance / length of the longer string (1.0 for two empty strings)."""
    return sum(Levenshtein.normalized_similarity(p, r) for p, r in zip(preds, refs, strict=True)) / len(refs)


def bleu(preds: list[str], refs: list[str]) -> float:
    """Corpus BLEU (sacrebleu, 13a tokenisation), 0-100."""
    return _BLEU.corpus_score(list(preds), [list(refs)]).score


def empty_rate(preds: list[str]) -> float:
    """Share of empty predictions: the T5 failure mode of an eos/pad/decoder-start mistake. (A blank
    line is a real middle, so whitespace counts as output.)"""
    return sum(p == "" for p in preds) / len(preds)


def length_ratio(preds: list[str], refs: list[str]) -> float:
    """Total predicted characters over total reference characters."""
    return sum(map(len, preds)) / max(1, sum(map(len, refs)))


def fim_metrics(preds: list[str], refs: list[str]) -> dict[str, float]:
    if not refs:
        raise ValueError("no references to score")
    return {
        "exact_match": exact_match(preds, refs),
        "edit_sim": edit_similarity(preds, refs),
        "bleu": bleu(preds, refs),
        "empty_rate": empty_rate(preds),
        "length_ratio": length_ratio(preds, refs),
    }


def utf8_bytes(text: str) -> int:
    return len(text.encode("utf-8"))


def bits_per_byte(nll: list[float], texts: list[str]) -> float:
    """The models' total negative log-likelihood of `texts` (nats, one sum per text) over ln 2 x their
    total UTF-8 bytes: a compression rate that does not depend on the tokenizer, so a T5 student, a causal
    student and the teacher are compared on one scale."""
    return sum(nll) / (math.log(2) * max(1, sum(map(utf8_bytes, texts))))


def bootstrap_interval(
    statistic: Callable[[np.ndarray], float], n: int, resamples: int = 1000, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """The percentile bootstrap interval of `statistic(indices)` over `n` examples drawn with replacement."""
    rng = np.random.default_rng(seed)
    values = np.sort([statistic(rng.integers(0, n, n)) for _ in range(resamples)])
    tail = (1 - level) / 2
    return float(np.quantile(values, tail)), float(np.quantile(values, 1 - tail))


def fim_intervals(preds: list[str], refs: list[str], resamples: int = 1000) -> dict[str, float]:
    """95% bootstrap intervals of exact match, edit similarity and empty rate: `<metric>_low`, `_high`."""
    per_example = {
        "exact_match": np.array([p == r for p, r in zip(preds, refs, strict=True)], dtype=float),
        "edit_sim": np.array([Levenshtein.normalized_similarity(p, r) for p, r in zip(preds, refs, strict=True)]),
        "empty_rate": np.array([p == "" for p in preds], dtype=float),
    }
    out = {}
    for name, values in per_example.items():
        out[f"{name}_low"], out[f"{name}_high"] = bootstrap_interval(
            lambda i, v=values: v[i].mean(), len(refs), resamples
        )
    return out
