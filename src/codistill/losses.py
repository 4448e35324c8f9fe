"""Distillation losses: pure functions of per-task losses, so their arithmetic is testable exactly."""

import torch

from codistill.errors import ConfigError


class StepByStepLoss:
    """Distilling Step-by-Step (Hsieh et al. 2023), the original code's `task_prefix` mode: the student learns the
    label and the rationale as two tasks with their own prefixes;
    `loss = alpha * label_loss + (1 - alpha) * rationale_loss`."""

    uses_rationale = True

    def __init__(self, alpha: float = 0.5):
        if not 0.0 <= alpha <= 1.0:
            raise ConfigError(f"loss.alpha={alpha} is outside [0, 1]: set loss.alpha between 0 and 1")
        self.alpha = float(alpha)

    def __call__(self, label_loss: torch.Tensor, rationale_loss: torch.Tensor) -> torch.Tensor:
        return self.alpha * label_loss + (1.0 - self.alpha) * rationale_loss


class LabelOnlyLoss:
    """Standard distillation (the original code's `standard` mode): the label loss alone; no rationales."""

    uses_rationale = False

    def __call__(self, label_loss: torch.Tensor, rationale_loss: torch.Tensor | None = None) -> torch.Tensor:
        return label_loss
