"""The LightningModule of recipe 1: a seq2seq or causal student learns to fill in the middle, from labels
and, with a KD loss, from the teacher's distribution (see codistill.losses and codistill.teacher_logits)."""

import random

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import WandbLogger
from pytorch_lightning.utilities import rank_zero_warn
from transformers import get_linear_schedule_with_warmup

from codistill.backends.hf import HFBackend
from codistill.data.batching import right_padded
from codistill.data.fim import FIMTokens
from codistill.data.schema import MIDDLE, PROMPT, TEACHER_MIDDLE
from codistill.distributed import zero3
from codistill.errors import ConfigError
from codistill.eval.metrics import edit_similarity, exact_match, fim_intervals, fim_metrics
from codistill.eval.models import CausalModel, Seq2SeqModel
from codistill.eval.standings import BASELINE_NAMES, standings
from codistill.generation import Sampling, generate_ids
from codistill.losses import IGNORE_INDEX, DistillationLoss, Projection, batch_losses, sequence_nll
from codistill.models.optim import build_optimizer
from codistill.teacher_logits import SampledTeacher


class FIMDistiller(pl.LightningModule):
    """Trains on the label task (and, for losses that use rationales, the rationale task); validation
    generates middles and scores them against the ground truth and the teacher (with 95% bootstrap
    intervals), and measures the bits per byte of the ground-truth middle. A causal student is told
    by its FIM sentinels (`fim`); its loss falls on the middle and its end-of-text. With a KD loss,
    `teacher` (a codistill.teacher_logits source) gives the teacher's distribution for each batch."""

    def __init__(
        self,
        model,
        tokenizer,
        loss: DistillationLoss,
        optimizer,
        warmup_steps: int = 0,
        max_new_tokens: int = 128,
        table_rows: int = 32,
        bootstrap_resamples: int = 1000,
        fim: dict | None = None,
        teacher=None,
    ):
        super().__init__()
        self.save_hyperparameters(ignore=["model", "tokenizer", "loss", "optimizer", "teacher", "fim"])
        self.model, self.tokenizer, self.loss, self.optimizer_factory = model, tokenizer, loss, optimizer
        self.causal = not model.config.is_encoder_decoder
        self.fim = FIMTokens(**fim) if fim else None
        if self.causal and self.fim is None:
            raise ConfigError(
                "a causal student needs its FIM sentinels: set student.fim (see student=tiny_gpt_bigcode)"
            )
        if self.causal and loss.uses_rationale:
            raise ConfigError(
                "a causal student learns no rationale task: set loss.alpha=1 (e.g. loss=label_only or loss=forward_kl)"
            )
        if loss.lmbda and not self.causal:
            raise ConfigError(
                "loss.lmbda > 0 (on-policy GKD) needs a causal student that shares the teacher's tokenizer"
            )
        if loss.needs_teacher and teacher is None:
            raise ConfigError(
                f"loss.divergence={loss.divergence} needs teacher_logits=online or teacher_logits=offline"
            )
        if teacher is not None and teacher.vocabulary is not None:
            loss.check_vocabularies(tokenizer.get_vocab(), teacher.vocabulary)
        if loss.lmbda and not getattr(teacher, "online", False):
            raise ConfigError("loss.lmbda > 0 scores the student's own samples: it needs teacher_logits=online")
        estimated = (loss.divergence, loss.temperature) == ("forward_kl", 1.0)  # what draws estimate unbiased
        if isinstance(teacher, SampledTeacher) and loss.needs_teacher and not estimated:
            raise ConfigError(
                "teacher_logits=sampled estimates forward KL at temperature 1 only: set loss=forward_kl and "
                "loss.temperature=1, or use teacher_logits=offline (top-k) for this loss"
            )
        self.teacher = teacher  # a plain attribute: never trained, wrapped or checkpointed
        self.model.train()  # from_pretrained returns eval mode; Lightning keeps submodule modes as found
        self.predictions: list[dict] = []

    def on_fit_start(self) -> None:
        if self.teacher is not None:
            self.teacher.to(self.device)

    def on_validation_start(self) -> None:
        self.on_fit_start()

    def _logits(self, inputs: dict) -> torch.Tensor:
        """The student's logits, without the model's own loss (ours reads the logits once, in chunks)."""
        if self.causal:
            return self.model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).logits
        decoder_input_ids = self.model.prepare_decoder_input_ids_from_labels(labels=inputs["labels"])
        return self.model(
            input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], decoder_input_ids=decoder_input_ids
        ).logits

    def _losses(self, batch: dict) -> dict[str, torch.Tensor]:
        label, on_policy = batch["label"], batch.get("on_policy", False)
        rationale = self.model(**batch["rationale"]).loss if self.loss.uses_rationale else None
        whole_head = self.causal and not (self._trainer is not None and zero3(self._trainer.strategy))
        if self.loss.needs_teacher and self.loss.fused(self.device, self.teacher, whole_head):
            student = Projection.of(self.model, label["input_ids"], label["attention_mask"])
            teacher = self.teacher.projection(batch)
        else:
            student = self._logits(label)
            teacher = self.teacher.distribution(batch) if self.loss.needs_teacher else None
        return batch_losses(self.loss, student, label["labels"], self.causal, teacher, rationale, on_policy)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        if self.loss.lmbda and random.random() < self.loss.lmbda:
            batch = self.on_policy(batch)
        losses = self._losses(batch)
        size = len(batch[MIDDLE])
        self.log_dict({f"train/{k}": v for k, v in losses.items()}, prog_bar=True, batch_size=size)
        return losses["loss"]

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        losses = self._losses(batch)
        self.log_dict({f"val/{k}": v for k, v in losses.items()}, batch_size=len(batch[MIDDLE]))
        truth = batch["truth"]  # the whole ground-truth middle and its end: the likelihood bits per byte needs
        nll = sequence_nll(self._logits(truth), truth["labels"], shift=self.causal).tolist()
        for prompt, middle, teacher_middle, student, loss in zip(
            batch[PROMPT], batch[MIDDLE], batch[TEACHER_MIDDLE], self.generate(batch["label"]), nll, strict=True
        ):
            self.predictions.append(
                {PROMPT: prompt, MIDDLE: middle, TEACHER_MIDDLE: teacher_middle, "student": student, "nll": loss}
            )

    def on_policy(self, batch: dict) -> dict:
        """GKD's on-policy batch: the student samples each middle itself (temperature 1), and the targets are
        its samples, which the online teacher then scores in the same tokens; only the divergence trains on
        them (they are no labels)."""
        was_training = self.model.training
        self.model.eval()
        prompts = _prompts(batch["label"])
        samples = generate_ids(
            self.model,
            prompts,
            self.tokenizer.pad_token_id,
            self.hparams.max_new_tokens,
            len(prompts),
            self._stop_ids(),
            Sampling(n=1, temperature=1.0),
            desc="on-policy samples",
        )
        self.model.train(was_training)
        eos = self.tokenizer.eos_token_id
        targets = [[*s[0], eos] for s in samples]
        ids, attention = right_padded([p + t for p, t in zip(prompts, targets, strict=True)], eos)
        labels, _ = right_padded(
            [[IGNORE_INDEX] * len(p) + t for p, t in zip(prompts, targets, strict=True)], IGNORE_INDEX
        )
        label = {"input_ids": ids, "attention_mask": attention, "labels": labels}
        label = {k: v.to(self.device) for k, v in label.items()}
        return {**batch, "label": label, "teacher": label, "on_policy": True}

    def _stop_ids(self) -> set[int]:
        vocab = self.tokenizer.get_vocab()
        return {self.tokenizer.eos_token_id} | {vocab[t] for t in (self.fim.prefix, self.fim.suffix, self.fim.middle)}

    @torch.no_grad()
    def generate(self, inputs: dict) -> list[str]:
        if self.causal:
            out = generate_ids(
                self.model,
                _prompts(inputs),
                self.tokenizer.pad_token_id,
                self.hparams.max_new_tokens,
                len(inputs["input_ids"]),
                self._stop_ids(),
                desc="validation",
            )
            return self.tokenizer.batch_decode([samples[0] for samples in out])
        ids = self.model.generate(
            input_ids=inputs["input_ids"],
            attention_mask=inputs["attention_mask"],
            max_new_tokens=self.hparams.max_new_tokens,
            do_sample=False,
            num_beams=1,
            synced_gpus=self._trainer is not None and generation_needs_all_ranks(self._trainer.strategy),
        )
        return self.tokenizer.batch_decode(ids.tolist())

    def as_evaluated(self, model=None, **kwargs) -> Seq2SeqModel | CausalModel:
        """This student (or `model`, its exported copy) as codistill.eval's tasks see it."""
        if not self.causal:
            return Seq2SeqModel(model or self.model, self.tokenizer, **kwargs)
        backend = HFBackend(model or self.model, self.tokenizer, "student", **kwargs)
        fim = {"prefix": self.fim.prefix, "suffix": self.fim.suffix, "middle": self.fim.middle}
        return CausalModel("student", backend, fim, self.tokenizer.eos_token)

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
        table = standings(self.predictions)  # the teacher's middles and the baselines on the same gaps
        metrics = fim_metrics(preds, refs)
        metrics["bits_per_byte"] = table["student"]["bits_per_byte"]
        metrics.update(fim_intervals(preds, refs, resamples=self.hparams.bootstrap_resamples))
        metrics["teacher_truth_edit_sim"] = table["teacher"]["edit_sim"]
        for name, row in BASELINE_NAMES.items():
            metrics[f"{name}_baseline_edit_sim"] = table[row]["edit_sim"]
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
    return zero3(strategy) and strategy.world_size > 1


def _prompts(inputs: dict) -> list[list[int]]:
    """Each causal example's prompt: its tokens before the first target."""
    prompts = []
    for ids, labels in zip(inputs["input_ids"].tolist(), inputs["labels"].tolist(), strict=True):
        first = next(i for i, t in enumerate(labels) if t != IGNORE_INDEX)
        prompts.append(ids[:first])
    return prompts
