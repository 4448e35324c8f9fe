import pytest

from codistill.eval.metrics import bleu, edit_similarity, empty_rate, exact_match, fim_metrics, length_ratio


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
