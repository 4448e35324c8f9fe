"""`Distiller`: the training step every student shares. The loss (codistill.losses.DistillationLoss) gets the
student's label output and, when it reads the teacher, the batch's teacher part as its source
(codistill.teacher_logits) hands it over; the recipes (`models/fim.py`, `models/causal.py`) supply their
inputs, targets, validation and schedule. With `loss.hidden` the step also runs hidden-state matching, whose
projections (`hidden_match`) are a submodule here: trained and checkpointed with the student, never part of the
exported model."""

import pytorch_lightning as pl
import torch

from codistill.distributed import zero3
from codistill.losses import (
    AtTargets,
    DistillationLoss,
    HiddenStateMatch,
    Projection,
    heads_apply,
    outputs_at,
    target_mask,
)
from codistill.models.optim import build_optimizer


class Distiller(pl.LightningModule):
    """`model` learns from `loss`; `teacher` (a teacher source, or None) is a plain attribute: never
    trained, wrapped by DDP/DeepSpeed or checkpointed. Whether steps take the fused kernels is decided once,
    by the loss, when fitting or validating starts (`fused`). `gradient_checkpointing` recomputes each layer's
    activations in the backward pass instead of keeping them (transformers' own switch): a long context or a
    1B student fits in far less memory (flan-t5-small's real-size step: 6.5 GiB instead of over 24, for one
    more forward pass of each layer; docs/benchmarks.md)."""

    causal: bool  # the student predicts the next token (its targets are shifted)

    def __init__(
        self,
        model,
        tokenizer,
        optimizer,
        loss: DistillationLoss | None = None,
        teacher=None,
        gradient_checkpointing: bool = False,
    ):
        super().__init__()
        self.model, self.tokenizer, self.optimizer_factory = model, tokenizer, optimizer
        self.loss, self.teacher = loss or DistillationLoss(), teacher
        self.fused = False
        self.hidden_match = None  # a submodule of this module, not of `model`: save_pretrained never holds it
        if self.loss.hidden is not None:  # an online teacher (codistill.compatibility)
            self.hidden_match = HiddenStateMatch(self.loss.hidden, model.config, teacher.model.config)
        if gradient_checkpointing:  # non-reentrant: works with frozen inputs and under DeepSpeed
            self.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        self.model.train()  # from_pretrained returns eval mode; Lightning keeps submodule modes as found

    # what a recipe supplies
    def label_inputs(self, batch: dict) -> dict[str, torch.Tensor]:
        """The student's `input_ids`, `attention_mask` and `labels` (-100: no target) for the label task."""
        raise NotImplementedError

    def teacher_part(self, batch: dict):
        """The batch's teacher part, as its source collated it."""
        return batch["teacher"]

    def rationale_loss(self, batch: dict) -> torch.Tensor | None:
        return None

    def batch_size(self, batch: dict) -> int:
        return len(self.label_inputs(batch)["input_ids"])

    def schedule(self, optimizer, total_steps: int):
        raise NotImplementedError

    # the common step
    def on_fit_start(self) -> None:
        if self.teacher is not None:
            self.teacher.to(self.device)
        whole_head = self.causal and not (self._trainer is not None and zero3(self._trainer.strategy))
        self.fused = self.loss.needs_teacher and self.loss.fused(self.device, self.teacher, whole_head)

    def on_validation_start(self) -> None:
        self.on_fit_start()

    def logits(self, inputs: dict) -> torch.Tensor:
        """The student's logits, without the model's own loss (ours reads the logits once, in chunks)."""
        if self.causal:
            return self.model(input_ids=inputs["input_ids"], attention_mask=inputs.get("attention_mask")).logits
        decoder_input_ids = self.model.prepare_decoder_input_ids_from_labels(labels=inputs["labels"])
        return self.model(
            input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], decoder_input_ids=decoder_input_ids
        ).logits

    def losses(self, batch: dict) -> dict[str, torch.Tensor]:
        """The loss's parts on `batch`; a batch the student sampled itself says `on_policy` (GKD)."""
        inputs, match = self.label_inputs(batch), self.hidden_match
        if self.fused:
            student = Projection.of(self.model, inputs["input_ids"], inputs.get("attention_mask"))
        elif self.causal and (heads_apply(self.model) or match is not None):  # the head at the target rows only
            mask, _ = target_mask(inputs["labels"], shift=True)
            layers = match.student_layers if match is not None else ()
            student = AtTargets(
                *outputs_at(self.model, inputs["input_ids"], inputs.get("attention_mask"), mask, layers)
            )
        else:
            student = self.logits(inputs)
        teacher = None
        if match is not None:  # the teacher's logits and states at its targets, one forward pass
            teacher = self.teacher.hidden_batch(self.teacher_part(batch), match.teacher_layers)
        elif self.loss.needs_teacher:
            teacher = self.teacher.teacher_batch(self.teacher_part(batch), self.fused)
        rationale = self.rationale_loss(batch) if self.loss.uses_rationale else None
        on_policy = batch.get("on_policy", False)
        labels = inputs["labels"]
        out = self.loss(student, labels, teacher, shift=self.causal, rationale_loss=rationale, on_policy=on_policy)
        if match is not None:
            out = self.loss.with_hidden(out, match(student.states, mask, teacher.states, teacher.mask))
        return out

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        losses = self.losses(batch)
        self.log_dict({f"train/{k}": v for k, v in losses.items()}, prog_bar=True, batch_size=self.batch_size(batch))
        return losses["loss"]

    def configure_optimizers(self):
        optimizer = build_optimizer(
            self.optimizer_factory, [p for p in self.parameters() if p.requires_grad], self.trainer.strategy
        )
        schedule = self.schedule(optimizer, self.trainer.estimated_stepping_batches)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
