"""Fill-in-the-middle metrics: pure functions of predicted and reference strings.

Exact match alone hides near misses and empty outputs, so every report carries edit similarity, BLEU,
the empty-output rate and the length ratio next to it.
"""

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
