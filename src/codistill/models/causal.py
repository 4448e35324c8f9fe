"""The LightningModule that fine-tunes a causal code model on exercises (loss on the solution tokens only),
from the labels alone or, with a KD loss, from the teacher's distribution too (`teacher_logits=online`)."""

import math

import pytorch_lightning as pl
import torch
from transformers import get_cosine_schedule_with_warmup

from codistill.backends.hf import HFBackend
from codistill.distributed import zero3
from codistill.errors import ConfigError
from codistill.eval.models import CausalModel
from codistill.losses import DistillationLoss, Projection, batch_losses
from codistill.models.optim import build_optimizer


class CausalDistiller(pl.LightningModule):
    """Trains a causal LM on `{"input_ids", "attention_mask", "labels"}` batches (labels -100 where no loss
    is wanted; the model shifts them itself) with a cosine schedule after a linear warmup of `warmup_steps`
    optimizer steps, or of `warmup_ratio` of all steps when given. With a KD `loss`, the online `teacher`
    scores the same tokens (it must share the student's tokenizer)."""

    def __init__(
        self,
        model,
        tokenizer,
        optimizer,
        warmup_steps: int = 0,
        warmup_ratio: float | None = None,
        loss: DistillationLoss | None = None,
        teacher=None,
    ):
        super().__init__()
        if warmup_steps < 0:
            raise ConfigError(f"model.warmup_steps={warmup_steps} is negative: set it to 0 or more")
        if warmup_ratio is not None and not 0 <= warmup_ratio <= 1:
            raise ConfigError(
                f"model.warmup_ratio={warmup_ratio} is outside [0, 1]: set it between 0 and 1, "
                "or to null to use model.warmup_steps"
            )
        self.loss = loss or DistillationLoss()
        if self.loss.uses_rationale or self.loss.lmbda:
            raise ConfigError(
                "exercises have no rationale task and no on-policy sampling: set loss.alpha=1 and loss.lmbda=0"
            )
        if self.loss.needs_teacher and (teacher is None or teacher.vocabulary != tokenizer.get_vocab()):
            raise ConfigError(
                f"loss.divergence={self.loss.divergence} on exercises scores the student's own tokens with the "
                "teacher: use teacher_logits=online with a teacher that shares the student's tokenizer"
            )
        self.save_hyperparameters(ignore=["model", "tokenizer", "optimizer", "loss", "teacher"])
        self.model, self.tokenizer, self.optimizer_factory, self.teacher = model, tokenizer, optimizer, teacher
        self.model.train()  # from_pretrained returns eval mode; Lightning keeps submodule modes as found
        self.register_buffer("tokens_seen", torch.zeros((), dtype=torch.long))  # all ranks, in checkpoints

    def on_fit_start(self) -> None:
        if self.teacher is not None:
            self.teacher.to(self.device)

    def on_validation_start(self) -> None:
        self.on_fit_start()

    def _losses(self, batch: dict) -> dict[str, torch.Tensor]:
        inputs = batch["input_ids"], batch.get("attention_mask")
        whole_head = not (self._trainer is not None and zero3(self._trainer.strategy))
        if self.loss.needs_teacher and self.loss.fused(self.device, self.teacher, whole_head):
            student, teacher = Projection.of(self.model, *inputs), self.teacher.projection(batch)
        else:
            student = self.model(input_ids=inputs[0], attention_mask=inputs[1]).logits
            teacher = self.teacher.distribution(batch) if self.loss.needs_teacher else None
        return batch_losses(self.loss, student, batch["labels"], True, teacher)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        losses = self._losses(batch)
        size = batch["input_ids"].size(0)
        mask = batch.get("attention_mask")
        tokens = mask.sum() if mask is not None else torch.tensor(batch["input_ids"].numel(), device=self.device)
        self.tokens_seen += self.trainer.strategy.reduce(tokens, reduce_op="sum").long()
        self.log_dict({f"train/{k}": v for k, v in losses.items()}, prog_bar=True, batch_size=size)
        self.log("train/tokens_seen", self.tokens_seen.double(), batch_size=size)
        return losses["loss"]

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        losses = self._losses(batch)
        size = batch["input_ids"].size(0)
        self.log_dict({f"val/{k}": v for k, v in losses.items()}, prog_bar=True, batch_size=size, sync_dist=True)

    def as_evaluated(self, model=None, max_new_tokens: int = 256) -> CausalModel:
        """This student (or `model`, its exported copy) as codistill.eval's tasks see it."""
        backend = HFBackend(model or self.model, self.tokenizer, "student", max_new_tokens=max_new_tokens)
        return CausalModel("student", backend)

    def warmup_steps(self, total_steps: int) -> int:
        ratio = self.hparams.warmup_ratio
        return round(ratio * total_steps) if ratio is not None else self.hparams.warmup_steps

    def configure_optimizers(self):
        optimizer = build_optimizer(
            self.optimizer_factory, [p for p in self.parameters() if p.requires_grad], self.trainer.strategy
        )
        total = self.trainer.estimated_stepping_batches
        if not math.isfinite(total):
            raise ConfigError(
                "the training length is unbounded: set trainer.max_steps or trainer.max_epochs, "
                "the cosine schedule needs a number of steps"
            )
        total = max(1, int(total))
        schedule = get_cosine_schedule_with_warmup(optimizer, self.warmup_steps(total), total)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
