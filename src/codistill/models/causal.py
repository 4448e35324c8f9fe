"""The LightningModule that fine-tunes a causal code model on exercises (loss on the solution tokens only)."""

import math

import pytorch_lightning as pl
import torch
from transformers import get_cosine_schedule_with_warmup

from codistill.backends.hf import HFBackend
from codistill.errors import ConfigError
from codistill.eval.models import CausalModel
from codistill.models.optim import build_optimizer


class CausalDistiller(pl.LightningModule):
    """Trains a causal LM on `{"input_ids", "attention_mask", "labels"}` batches (labels -100 where no loss
    is wanted; the model shifts them itself) with a cosine schedule after a linear warmup of `warmup_steps`
    optimizer steps, or of `warmup_ratio` of all steps when given."""

    def __init__(self, model, tokenizer, optimizer, warmup_steps: int = 0, warmup_ratio: float | None = None):
        super().__init__()
        if warmup_steps < 0:
            raise ConfigError(f"model.warmup_steps={warmup_steps} is negative: set it to 0 or more")
        if warmup_ratio is not None and not 0 <= warmup_ratio <= 1:
            raise ConfigError(
                f"model.warmup_ratio={warmup_ratio} is outside [0, 1]: set it between 0 and 1, "
                "or to null to use model.warmup_steps"
            )
        self.save_hyperparameters(ignore=["model", "tokenizer", "optimizer"])
        self.model, self.tokenizer, self.optimizer_factory = model, tokenizer, optimizer
        self.model.train()  # from_pretrained returns eval mode; Lightning keeps submodule modes as found
        self.register_buffer("tokens_seen", torch.zeros((), dtype=torch.long))  # all ranks, in checkpoints

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss = self.model(**batch).loss
        size = batch["input_ids"].size(0)
        mask = batch.get("attention_mask")
        tokens = mask.sum() if mask is not None else torch.tensor(batch["input_ids"].numel(), device=self.device)
        self.tokens_seen += self.trainer.strategy.reduce(tokens, reduce_op="sum").long()
        self.log("train/loss", loss, prog_bar=True, batch_size=size)
        self.log("train/tokens_seen", self.tokens_seen.double(), batch_size=size)
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        loss = self.model(**batch).loss
        self.log("val/loss", loss, prog_bar=True, batch_size=batch["input_ids"].size(0), sync_dist=True)

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
