"""The LightningModule of recipe 1: a seq2seq or causal student learns to fill in the middle, from labels
and, with a KD loss, from the teacher's distribution (the step is codistill.models.distiller's)."""

import random

import torch
from pytorch_lightning.loggers import WandbLogger
from pytorch_lightning.utilities import rank_zero_warn
from transformers import get_linear_schedule_with_warmup

from codistill.backends.hf import HFBackend
from codistill.data.batching import right_padded
from codistill.data.fim import FIMTokens
from codistill.data.schema import MIDDLE, PROMPT, TEACHER_MIDDLE
from codistill.distributed import whole_model, zero3
from codistill.eval.metrics import edit_similarity, exact_match, fim_intervals, fim_metrics
from codistill.eval.models import CausalModel, Seq2SeqModel
from codistill.eval.standings import BASELINE_NAMES, standings
from codistill.generation import Sampling, generate_ids
from codistill.losses import IGNORE_INDEX, DistillationLoss, TeacherTokens, sequence_nll
from codistill.models.distiller import Distiller


class FIMDistiller(Distiller):
    """Trains on the label task (and, for losses that use rationales, the rationale task); validation
    generates middles and scores them against the ground truth and the teacher (with 95% bootstrap
    intervals), and measures the bits per byte of the ground-truth middle. A causal student is told
    by its FIM sentinels (`fim`); its loss falls on the middle and its end-of-text. With a KD loss,
    `teacher` (a codistill.teacher_logits source) gives the teacher's part of each batch."""

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
        gradient_checkpointing: bool = False,
    ):
        super().__init__(model, tokenizer, optimizer, loss, teacher, gradient_checkpointing)
        self.save_hyperparameters(ignore=["model", "tokenizer", "loss", "optimizer", "teacher", "fim"])
        self.causal = not model.config.is_encoder_decoder
        self.fim = FIMTokens(**fim) if fim else None
        self.predictions: list[dict] = []

    def label_inputs(self, batch: dict) -> dict[str, torch.Tensor]:
        return batch["label"]

    def rationale_loss(self, batch: dict) -> torch.Tensor:
        return self.model(**batch["rationale"]).loss

    def schedule(self, optimizer, total_steps: int):
        return get_linear_schedule_with_warmup(optimizer, self.hparams.warmup_steps, max(1, total_steps))

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        if self.loss.lmbda and random.random() < self.loss.lmbda:
            batch = self.on_policy(batch)
        return super().training_step(batch, batch_idx)

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        losses = self.losses(batch)
        self.log_dict({f"val/{k}": v for k, v in losses.items()}, batch_size=len(batch[MIDDLE]))
        truth = batch["truth"]  # the whole ground-truth middle and its end: the likelihood bits per byte needs
        nll = sequence_nll(self.logits(truth), truth["labels"], shift=self.causal).tolist()
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
        samples = self._causal_samples(prompts, Sampling(n=1, temperature=1.0), "on-policy samples")
        self.model.train(was_training)
        eos = self.tokenizer.eos_token_id
        targets = [[*s, eos] for s in samples]
        ids, attention = right_padded([p + t for p, t in zip(prompts, targets, strict=True)], eos)
        labels, _ = right_padded(
            [[IGNORE_INDEX] * len(p) + t for p, t in zip(prompts, targets, strict=True)], IGNORE_INDEX
        )
        label = {"input_ids": ids, "attention_mask": attention, "labels": labels}
        label = {k: v.to(self.device) for k, v in label.items()}
        return {**batch, "label": label, "teacher": TeacherTokens(**label), "on_policy": True}

    def _stop_ids(self) -> set[int]:
        vocab = self.tokenizer.get_vocab()
        return {self.tokenizer.eos_token_id} | {vocab[t] for t in (self.fim.prefix, self.fim.suffix, self.fim.middle)}

    def _causal_samples(self, prompts: list[list[int]], sampling: Sampling, desc: str) -> list[list[int]]:
        """One sample per prompt from a causal student, up to its first stop token, in one `generate` call
        per rank (every rank makes as many: under ZeRO-3 they step together, `synced_gpus`)."""
        with whole_model(self._strategy(), self.model):
            out = generate_ids(
                self.model,
                prompts,
                self.tokenizer.pad_token_id,
                self.hparams.max_new_tokens,
                len(prompts),
                self._stop_ids(),
                sampling,
                desc,
                synced_gpus=self._synced(),
            )
        return [samples[0] for samples in out]

    def _strategy(self):
        return self._trainer.strategy if self._trainer is not None else None

    def _synced(self) -> bool:
        return self._trainer is not None and generation_needs_all_ranks(self._trainer.strategy)

    @torch.no_grad()
    def generate(self, inputs: dict) -> list[str]:
        if self.causal:
            return self.tokenizer.batch_decode(self._causal_samples(_prompts(inputs), Sampling(), "validation"))
        with whole_model(self._strategy(), self.model):
            ids = self.model.generate(
                input_ids=inputs["input_ids"],
                attention_mask=inputs["attention_mask"],
                max_new_tokens=self.hparams.max_new_tokens,
                do_sample=False,
                num_beams=1,
                synced_gpus=self._synced(),
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
