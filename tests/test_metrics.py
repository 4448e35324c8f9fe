import math

import numpy as np
import pytest
import torch

from codistill.eval.baselines import copy_previous_line, empty_middle
from codistill.eval.metrics import (
    bits_per_byte,
    bleu,
    bootstrap_interval,
    edit_similarity,
    empty_rate,
    exact_match,
    fim_intervals,
    fim_metrics,
    length_ratio,
)
from codistill.losses import IGNORE_INDEX, sequence_nll


def test_metrics_exact_values():
    preds, refs = ["abc", "", "x = 1\n"], ["abc", "de", "x = 2\n"]
    assert exact_match(preds, refs) == pytest.approx(1 / 3)
    assert edit_similarity(preds, refs) == pytest.approx((1 + 0 + 5 / 6) / 3)
    assert empty_rate(preds) == pytest.approx(1 / 3)
    assert empty_rate(["  \n", "a"]) == 0.0
    assert length_ratio(preds, refs) == pytest.approx(9 / 11)
    assert bleu(refs, refs) == pytest.approx(100.0)
    assert bleu(["zzz"], ["abc"]) == 0.0
    assert edit_similarity([""], [""]) == 1.0


def test_fim_metrics_refuses_empty_input():
    with pytest.raises(ValueError):
        fim_metrics([], [])
    assert set(fim_metrics(["a"], ["a"])) == {"exact_match", "edit_sim", "bleu", "empty_rate", "length_ratio"}


def test_bits_per_byte_of_a_unigram_model_by_hand():
    """A model that ignores the context: p(a) = 1/2, p(b) = 1/4, p(<end>) = 1/4 at every position. The
    middle "ab" then costs 1 + 2 bits, its end 2 bits: 5 bits over 2 bytes."""
    probs = torch.tensor([0.5, 0.25, 0.25])  # ids: a, b, end
    labels = torch.tensor([[0, 1, 2], [1, 2, IGNORE_INDEX]])  # "ab<end>", "b<end>"
    logits = probs.log().expand(2, 3, 3)
    nll = sequence_nll(logits, labels, shift=False)
    torch.testing.assert_close(nll, torch.tensor([5 * math.log(2), 4 * math.log(2)]))
    assert bits_per_byte(nll.tolist(), ["ab", "b"]) == pytest.approx(9 / 3)
    assert bits_per_byte([8 * math.log(2)], ["é"]) == pytest.approx(4.0)  # 2 UTF-8 bytes, not 1 character


def test_bootstrap_intervals_hold_the_mean_and_narrow_with_more_examples():
    rng = np.random.default_rng(0)
    small, large = rng.random(20), rng.random(2000)
    lo, hi = bootstrap_interval(lambda i: small[i].mean(), len(small))
    assert lo < small.mean() < hi
    lo2, hi2 = bootstrap_interval(lambda i: large[i].mean(), len(large))
    assert hi2 - lo2 < (hi - lo) / 4 and lo2 < large.mean() < hi2
    assert bootstrap_interval(lambda i: small[i].mean(), 20) == (lo, hi)  # seeded
    intervals = fim_intervals(["a", "b", "", "d"], ["a", "x", "c", "d"])
    assert intervals["exact_match_low"] <= 0.5 <= intervals["exact_match_high"]
    assert set(intervals) == {f"{m}_{e}" for m in ("exact_match", "edit_sim", "empty_rate") for e in ("low", "high")}
    same = fim_intervals(["a"] * 5, ["a"] * 5)
    assert same["exact_match_low"] == same["exact_match_high"] == 1.0


@pytest.mark.parametrize(
    "prefix, expected",
    [
        ("a = 1\nb = 2\n", "b = 2\n"),  # a line-mode gap: the line above it
        ("a = 1\nb = ", "a = 1\n"),  # a gap inside a line: the complete line above
        ("b = ", ""),
        ("", ""),
    ],
)
def test_the_copy_line_baseline(prefix, expected):
    assert copy_previous_line(prefix, "rest\n") == expected and empty_middle(prefix, "") == ""
