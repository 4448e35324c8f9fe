"""The LightningModule that fine-tunes a causal code model on exercises (loss on the solution tokens only),
from the labels alone or, with a KD loss, from the teacher's distribution too (`teacher_logits=online`)."""

import math

import torch
from transformers import get_cosine_schedule_with_warmup

from codistill.backends.hf import HFBackend
from codistill.errors import ConfigError
from codistill.eval.models import CausalModel
from codistill.losses import DistillationLoss, TeacherTokens
from codistill.models.distiller import Distiller


class CausalDistiller(Distiller):
    """Trains a causal LM on `{"input_ids", "attention_mask", "labels"}` batches (labels -100 where no loss
    is wanted) with a cosine schedule after a linear warmup of `warmup_steps` optimizer steps, or of
    `warmup_ratio` of all steps when given. With a KD `loss`, the online `teacher` scores the same tokens
    (it must share the student's tokenizer)."""

    causal = True

    def __init__(
        self,
        model,
        tokenizer,
        optimizer,
        warmup_steps: int = 0,
        warmup_ratio: float | None = None,
        loss: DistillationLoss | None = None,
        teacher=None,
        gradient_checkpointing: bool = False,
    ):
        if warmup_steps < 0:
            raise ConfigError(f"model.warmup_steps={warmup_steps} is negative: set it to 0 or more")
        if warmup_ratio is not None and not 0 <= warmup_ratio <= 1:
            raise ConfigError(
                f"model.warmup_ratio={warmup_ratio} is outside [0, 1]: set it between 0 and 1, "
                "or to null to use model.warmup_steps"
            )
        super().__init__(model, tokenizer, optimizer, loss, teacher, gradient_checkpointing)
        self.save_hyperparameters(ignore=["model", "tokenizer", "optimizer", "loss", "teacher"])
        self.register_buffer("tokens_seen", torch.zeros((), dtype=torch.long))  # all ranks, in checkpoints

    def label_inputs(self, batch: dict) -> dict[str, torch.Tensor]:
        return batch

    def teacher_part(self, batch: dict) -> TeacherTokens:
        """The teacher scores the student's own tokens (one tokenizer)."""
        return TeacherTokens(batch["input_ids"], batch.get("attention_mask"), batch["labels"])

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        mask = batch.get("attention_mask")
        tokens = mask.sum() if mask is not None else torch.tensor(batch["input_ids"].numel(), device=self.device)
        self.tokens_seen += self.trainer.strategy.reduce(tokens, reduce_op="sum").long()
        self.log("train/tokens_seen", self.tokens_seen.double(), batch_size=self.batch_size(batch))
        return super().training_step(batch, batch_idx)

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        losses = self.losses(batch)
        size = self.batch_size(batch)
        self.log_dict({f"val/{k}": v for k, v in losses.items()}, prog_bar=True, batch_size=size, sync_dist=True)

    def as_evaluated(self, model=None, max_new_tokens: int = 256) -> CausalModel:
        """This student (or `model`, its exported copy) as codistill.eval's tasks see it."""
        backend = HFBackend(model or self.model, self.tokenizer, "student", max_new_tokens=max_new_tokens)
        return CausalModel("student", backend)

    def warmup_steps(self, total_steps: int) -> int:
        ratio = self.hparams.warmup_ratio
        return round(ratio * total_steps) if ratio is not None else self.hparams.warmup_steps

    def schedule(self, optimizer, total_steps: float):
        if not math.isfinite(total_steps):
            raise ConfigError(
                "the training length is unbounded: set trainer.max_steps or trainer.max_epochs, "
                "the cosine schedule needs a number of steps"
            )
        total = max(1, int(total_steps))
        return get_cosine_schedule_with_warmup(optimizer, self.warmup_steps(total), total)
