import pytest
import torch

from codistill.errors import ConfigError
from codistill.eval.metrics import bleu, edit_similarity, empty_rate, exact_match, fim_metrics, length_ratio
from codistill.losses import LabelOnlyLoss, StepByStepLoss


@pytest.mark.parametrize("alpha, expected", [(0.0, 3.0), (0.5, 2.0), (1.0, 1.0), (0.25, 2.5)])
def test_step_by_step_loss_arithmetic(alpha, expected):
    loss = StepByStepLoss(alpha)(torch.tensor(1.0), torch.tensor(3.0))
    assert loss.item() == expected


def test_step_by_step_loss_keeps_gradients_of_both_tasks():
    label, rationale = torch.tensor(2.0, requires_grad=True), torch.tensor(4.0, requires_grad=True)
    StepByStepLoss(0.3)(label, rationale).backward()
    assert label.grad.item() == pytest.approx(0.3) and rationale.grad.item() == pytest.approx(0.7)


@pytest.mark.parametrize("alpha", [-0.1, 1.5])
def test_alpha_outside_unit_interval_names_the_fix(alpha):
    with pytest.raises(ConfigError, match=r"loss.alpha=.* is outside \[0, 1\]"):
        StepByStepLoss(alpha)


def test_label_only_ignores_rationales():
    assert LabelOnlyLoss()(torch.tensor(1.5)).item() == 1.5


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
