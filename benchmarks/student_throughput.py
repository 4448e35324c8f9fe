"""Student training throughput: codistill's Lightning module against a plain transformers Seq2SeqTrainer.

Both paths train the same task on the same data in the same process: the tiny T5 student of the embedded default
(`codistill.models.tiny.tiny_t5`, a freshly loaded copy per run through `codistill.models.loading.load_student`)
learns the label task of the embedded default's FIM dataset (`codistill-train`'s config composed with Hydra's
compose API, built by `codistill.data.cache.DistillationSource`), on CPU in fp32:

- lightning: what codistill-train fits (`codistill.assembly.assemble` of `student=tiny_t5 loss=label_only`:
  `FIMDistiller` on `FIMDataModule`'s length-grouped batches), under a bare `pytorch_lightning.Trainer`;
- hf: `transformers.Seq2SeqTrainer` on the same tokenized label-task features (`label_input_ids`,
  `label_labels` of the datamodule's training split), padded by `DataCollatorForSeq2Seq`, with its own
  length grouping (`train_sampling_strategy="group_by_length"`, the former `group_by_length=True`).

Same batch size, same number of optimizer steps, same optimizer (`torch.optim.AdamW`, same lr, no weight decay),
same linear decay without warm-up, gradient norm clipped at 1.0; no validation, logging, checkpoints or progress
bars in either. The model's `forward` is wrapped to count what each path feeds it: tokens are the non-pad input
positions (attention mask) plus the label positions that are not -100, and the padding fraction is the share of pad
positions in the `input_ids` and `labels` tensors. The clock runs from the end of optimizer step `--warmup-steps` to
the end of the last step (data loading, forward, backward, clipping, optimizer and framework overhead included).
The paths alternate, `--repeats` runs each; the median counts. The Trainer needs `accelerate` (`pip install
accelerate`). On a small machine shared with other processes, torch's threads wait on each other and single runs
vary by 2x and more: run it on an idle machine, or pin `--threads 1`, which varies far less.

    python benchmarks/student_throughput.py [--batch-size 8] [--steps 60] [--warmup-steps 5] [--repeats 3]
    python benchmarks/student_throughput.py --quick --cache-dir DIR   # both paths, a few steps (tests)
"""

import argparse
import contextlib
import functools
import importlib.util
import io
import logging
import os
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")  # datasets' and generation's progress bars

import pytorch_lightning as pl  # noqa: E402
import torch  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from omegaconf import open_dict  # noqa: E402
from transformers import (  # noqa: E402
    DataCollatorForSeq2Seq,
    Seq2SeqTrainer,
    Seq2SeqTrainingArguments,
    TrainerCallback,
)
from transformers.utils import logging as hf_logging  # noqa: E402

from codistill.assembly import assemble, prepare  # noqa: E402
from codistill.config import CONFIG_DIR  # noqa: E402
from codistill.models.loading import load_student  # noqa: E402
from codistill.models.tiny import tiny_t5  # noqa: E402

IGNORE_INDEX = -100


class FedCounter:
    """Counts the real and the padded positions of the inputs and labels each training step feeds the model:
    at its `forward` (the HF Trainer passes `labels`), or at the module's loss (codistill's module reads the
    logits and passes the decoder its shifted labels instead)."""

    def __init__(self):
        self.tokens = self.positions = 0

    def add(self, mask, labels) -> None:
        self.tokens += int(mask.sum()) + int((labels != IGNORE_INDEX).sum())
        self.positions += mask.numel() + labels.numel()

    def model(self, model) -> "FedCounter":
        forward = model.forward

        @functools.wraps(forward)  # keeps the signature the HF Trainer inspects
        def counted(*args, **kwargs):
            self.add(kwargs["attention_mask"], kwargs["labels"])
            return forward(*args, **kwargs)

        model.forward = counted
        return self

    def module(self, module) -> "FedCounter":
        losses = module.losses

        def counted(batch):
            inputs = module.label_inputs(batch)
            self.add(inputs["attention_mask"], inputs["labels"])
            return losses(batch)

        module.losses = counted
        return self


class Window:
    """The wall time and the fed tokens between the end of optimizer step `start` and of step `end`."""

    def __init__(self, counter: FedCounter, start: int, end: int):
        self.counter, self.start, self.end = counter, start, end
        self.seconds = self.tokens = self.positions = None

    def step_done(self, step: int) -> None:
        now = time.perf_counter()
        if step == self.start:
            self._t0, self._tokens0, self._positions0 = now, self.counter.tokens, self.counter.positions
        elif step == self.end:
            self.seconds = now - self._t0
            self.tokens = self.counter.tokens - self._tokens0
            self.positions = self.counter.positions - self._positions0

    def result(self) -> dict:
        assert self.seconds is not None, "the run stopped before its last step"
        return {"tokens": self.tokens, "seconds": self.seconds, "padding": 1 - self.tokens / self.positions}


class LightningWindow(pl.Callback):
    def __init__(self, window: Window):
        self.window = window

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.window.step_done(trainer.global_step)  # called after the optimizer step: steps done so far


class HFWindow(TrainerCallback):
    def __init__(self, window: Window):
        self.window = window

    def on_step_end(self, args, state, control, **kwargs):
        self.window.step_done(state.global_step)  # called after the optimizer step: steps done so far


def lightning_run(cfg, args) -> dict:
    """codistill-train's own parts (`codistill.assembly`: a freshly loaded student, its datamodule and module),
    fitted by a bare trainer (the run's own validates, logs and checkpoints)."""
    pl.seed_everything(args.seed, verbose=False)
    parts = assemble(prepare(cfg))
    window = Window(FedCounter().module(parts.module), args.warmup_steps, args.warmup_steps + args.steps)
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        precision="32-true",
        max_steps=args.warmup_steps + args.steps,
        gradient_clip_val=1.0,
        enable_checkpointing=False,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        callbacks=[LightningWindow(window)],
    )
    trainer.fit(parts.module, datamodule=parts.datamodule)
    return window.result()


def hf_run(student_dir: str, features, args) -> dict:
    student = load_student(student_dir)
    window = Window(FedCounter().model(student.model), args.warmup_steps, args.warmup_steps + args.steps)
    with tempfile.TemporaryDirectory() as out:
        training_args = Seq2SeqTrainingArguments(
            output_dir=out,
            per_device_train_batch_size=args.batch_size,
            max_steps=args.warmup_steps + args.steps,
            learning_rate=args.lr,
            weight_decay=0.0,
            optim="adamw_torch",
            lr_scheduler_type="linear",
            warmup_steps=0,
            max_grad_norm=1.0,
            train_sampling_strategy="group_by_length",
            report_to=[],
            save_strategy="no",
            eval_strategy="no",
            logging_strategy="no",
            disable_tqdm=True,
            use_cpu=True,
            seed=args.seed,
            dataloader_num_workers=0,
            dataloader_pin_memory=False,
            remove_unused_columns=False,  # the features hold input_ids and labels only
        )
        collator = DataCollatorForSeq2Seq(student.tokenizer.base, label_pad_token_id=IGNORE_INDEX, padding=True)
        trainer = Seq2SeqTrainer(
            model=student.model,
            args=training_args,
            train_dataset=features,
            data_collator=collator,
            callbacks=[HFWindow(window)],
        )
        with contextlib.redirect_stdout(io.StringIO()):  # the Trainer prints its own summary dict
            trainer.train()
    return window.result()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=8, help="the embedded default's data.micro_batch_size")
    parser.add_argument("--steps", type=int, default=60, help="timed optimizer steps per run")
    parser.add_argument("--warmup-steps", type=int, default=5, help="untimed optimizer steps before them (>= 1)")
    parser.add_argument("--repeats", type=int, default=3, help="alternating runs of each path; the median counts")
    parser.add_argument("--lr", type=float, default=3e-3, help="AdamW's learning rate (the embedded default's)")
    parser.add_argument("--threads", type=int, default=None, help="torch's intra-op threads (default: torch's own)")
    parser.add_argument("--cache-dir", default=".cache/codistill", help="tiny models and the dataset, built once")
    parser.add_argument("--quick", action="store_true", help="one run of each path, a few steps: that both run")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.warmup_steps, args.repeats = 3, 1, 1
    if importlib.util.find_spec("accelerate") is None:
        parser.error("transformers' Trainer needs accelerate: pip install accelerate")
    if args.warmup_steps < 1:
        parser.error("--warmup-steps must be at least 1: the clock starts at the end of that step")
    if args.threads:
        torch.set_num_threads(args.threads)
    hf_logging.set_verbosity_error()
    for name in ("pytorch_lightning", "lightning_fabric", "lightning.pytorch", "codistill", "datasets"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")

    cache = Path(args.cache_dir).resolve()
    overrides = ["student=tiny_t5", "loss=label_only", "~control", f"data.micro_batch_size={args.batch_size}"]
    overrides += [f"model.optimizer.lr={args.lr}", "model.optimizer.weight_decay=0", "model.warmup_steps=0"]
    if args.quick:  # the tiny random teacher labels in seconds; the default's pretrains for minutes
        overrides += ["teacher=tiny_gpt_bigcode"]
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    with open_dict(cfg):
        cfg.paths.cache_dir = str(cache)
        cfg.paths.data_dir = str(cache / "benchmark-data")
        cfg.paths.output_dir = cfg.paths.log_dir = str(cache / "benchmark-outputs")
    args.seed = cfg.seed
    student_dir = tiny_t5(str(cache))  # what student=tiny_t5 loads, for the Trainer's own copies
    datamodule = assemble(prepare(cfg)).datamodule
    datamodule.setup("fit")
    train = datamodule.splits["train"]
    features = train.select_columns(["label_input_ids", "label_labels"]).rename_columns(
        {"label_input_ids": "input_ids", "label_labels": "labels"}
    )

    paths = {"lightning (codistill)": lambda: lightning_run(cfg, args)}
    paths["hf Seq2SeqTrainer"] = lambda: hf_run(student_dir, features, args)
    runs: dict[str, list[dict]] = {name: [] for name in paths}
    for _ in range(args.repeats):  # alternate, so that machine load hits both alike
        for name, run in paths.items():
            runs[name].append(run())

    print(
        f"\ntiny T5 student on CPU ({torch.get_num_threads()} threads), fp32, label task of the embedded default's FIM "
        f"dataset ({len(train)} training examples), batch size {args.batch_size}, AdamW lr {args.lr}, "
        f"{args.steps} timed steps after {args.warmup_steps} warm-up steps, median of {args.repeats} alternating runs\n"
    )
    header = f"| {'path':<21} | {'steps':>5} | {'tokens':>6} | {'seconds':>7} | {'tokens/s':>8} | {'padding':>7} |"
    print(header)
    print("|" + "|".join("-" * len(cell) for cell in header.split("|")[1:-1]) + "|")
    rate = {}
    for name, results in runs.items():
        median = sorted(results, key=lambda r: r["tokens"] / r["seconds"])[len(results) // 2]  # odd --repeats
        rate[name] = median["tokens"] / median["seconds"]
        print(
            f"| {name:<21} | {args.steps:>5} | {median['tokens']:>6} | {median['seconds']:>7.2f} | "
            f"{rate[name]:>8.0f} | {median['padding']:>7.1%} |"
        )
    lightning, hf = rate.values()
    print(f"\nratio lightning / hf: {lightning / hf:.2f}x")
    for name, results in runs.items():
        every = " ".join(f"{r['tokens'] / r['seconds']:.0f}" for r in results)
        print(f"{name}, tokens/s of each run: {every}")
    print(
        f"FIMDataModule.padding_fraction() (both tasks' inputs and labels, one epoch): "
        f"{datamodule.padding_fraction():.1%}"
    )


if __name__ == "__main__":
    main()
