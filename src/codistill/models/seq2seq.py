"""The LightningModule that trains a seq2seq student with a distillation loss."""

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import WandbLogger
from pytorch_lightning.strategies import DeepSpeedStrategy
from pytorch_lightning.utilities import rank_zero_warn
from transformers import get_linear_schedule_with_warmup

from codistill.data.schema import MIDDLE, PROMPT, TEACHER_MIDDLE
from codistill.eval.metrics import edit_similarity, exact_match, fim_metrics
from codistill.eval.models import Seq2SeqModel
from codistill.models.optim import build_optimizer


class Seq2SeqDistiller(pl.LightningModule):
    """Trains on the label task (and, for losses that use rationales, the rationale task);
    validation generates middles and scores them against the ground truth and the teacher."""

    def __init__(
        self, model, tokenizer, loss, optimizer, warmup_steps: int = 0, max_new_tokens: int = 128, table_rows: int = 32
    ):
        super().__init__()
        self.save_hyperparameters(ignore=["model", "tokenizer", "loss", "optimizer"])
        self.model, self.tokenizer, self.loss, self.optimizer_factory = model, tokenizer, loss, optimizer
        self.model.train()  # from_pretrained returns eval mode; Lightning keeps submodule modes as found
        self.predictions: list[dict] = []

    def _losses(self, batch: dict) -> dict[str, torch.Tensor]:
        out = {"label_loss": self.model(**batch["label"]).loss}
        if self.loss.uses_rationale:
            out["rationale_loss"] = self.model(**batch["rationale"]).loss
        out["loss"] = self.loss(out["label_loss"], out.get("rationale_loss"))
        return out

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        losses = self._losses(batch)
        size = len(batch[MIDDLE])
        self.log_dict({f"train/{k}": v for k, v in losses.items()}, prog_bar=True, batch_size=size)
        return losses["loss"]

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        losses = self._losses(batch)
        self.log_dict({f"val/{k}": v for k, v in losses.items()}, batch_size=len(batch[MIDDLE]))
        for prompt, middle, teacher_middle, student in zip(
            batch[PROMPT], batch[MIDDLE], batch[TEACHER_MIDDLE], self.generate(batch["label"]), strict=True
        ):
            self.predictions.append(
                {PROMPT: prompt, MIDDLE: middle, TEACHER_MIDDLE: teacher_middle, "student": student}
            )

    @torch.no_grad()
    def generate(self, inputs: dict) -> list[str]:
        ids = self.model.generate(
            input_ids=inputs["input_ids"],
            attention_mask=inputs["attention_mask"],
            max_new_tokens=self.hparams.max_new_tokens,
            do_sample=False,
            num_beams=1,
            synced_gpus=self._trainer is not None and generation_needs_all_ranks(self._trainer.strategy),
        )
        return self.tokenizer.batch_decode(ids.tolist())

    def as_evaluated(self, model=None, **kwargs) -> Seq2SeqModel:
        """This student (or `model`, its exported copy) as codistill.eval's tasks see it."""
        return Seq2SeqModel(model or self.model, self.tokenizer, **kwargs)

    def on_validation_epoch_start(self) -> None:
        self.predictions = []

    def on_validation_epoch_end(self) -> None:
        if torch.distributed.is_available() and torch.distributed.is_initialized():  # every rank scores them all
            parts = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(parts, self.predictions)
            # the distributed sampler repeats a few rows to even out the ranks: count each example once
            unique = {(r[PROMPT], r[MIDDLE], r[TEACHER_MIDDLE]): r for part in parts for r in part}
            self.predictions = list(unique.values())
        preds = [p["student"] for p in self.predictions]
        refs = [p[MIDDLE] for p in self.predictions]
        teacher = [p[TEACHER_MIDDLE] for p in self.predictions]
        metrics = fim_metrics(preds, refs)
        metrics["teacher_exact_match"] = exact_match(preds, teacher)
        metrics["teacher_edit_sim"] = edit_similarity(preds, teacher)
        self.log_dict({f"val/{k}": v for k, v in metrics.items()})
        if self.trainer.sanity_checking:
            return
        if metrics["empty_rate"] > 0.5:
            rank_zero_warn(f"the student generated empty middles for {metrics['empty_rate']:.0%} of validation inputs")
        columns = [PROMPT, TEACHER_MIDDLE, "student", MIDDLE]
        for logger in self.loggers:
            if isinstance(logger, WandbLogger):  # a table of sample predictions per validation
                rows = [[p[c] for c in columns] for p in self.predictions[: self.hparams.table_rows]]
                logger.log_table(key="val/predictions", columns=columns, data=rows)

    def configure_optimizers(self):
        optimizer = build_optimizer(
            self.optimizer_factory, [p for p in self.parameters() if p.requires_grad], self.trainer.strategy
        )
        schedule = get_linear_schedule_with_warmup(
            optimizer, self.hparams.warmup_steps, max(1, self.trainer.estimated_stepping_batches)
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


def generation_needs_all_ranks(strategy) -> bool:
    """Under ZeRO-3 each rank holds a slice of every weight, so every forward pass is collective: ranks
    that finish generating early must keep stepping (`synced_gpus`) or the others wait for ever."""
    return isinstance(strategy, DeepSpeedStrategy) and strategy.zero_stage_3 and strategy.world_size > 1
