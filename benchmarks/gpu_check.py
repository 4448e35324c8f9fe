"""The GPU checks a lent GPU runs in one go: both recipes' students under ZeRO-2 and ZeRO-3, bf16, the liger
path; per run its validation rounds' seconds (a stall shows as a round far longer than the others, or as a
run stopped at `--timeout`), its training tokens per second and its peak GPU memory.

Each case is `codistill-train`'s own config and `codistill.assembly` (what the app fits), 2 epochs with a
validation round after each (and Lightning's sanity round first), in its own process so that DeepSpeed
starts clean. The embedded default's teacher and dataset are built once, by the first case, into
`paths.cache_dir`.

    bash benchmarks/gpu_check.sh                      # on the GPU: every case, a table into $OUT
    python benchmarks/gpu_check.py --quick            # on CPU: the same cases, DeepSpeed and liger replaced
                                                      # by the CPU trainer and chunked loss (rehearses the harness)
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir
from omegaconf import open_dict

from codistill.assembly import assemble, prepare
from codistill.config import CONFIG_DIR
from codistill.tables import markdown_table

SEQ2SEQ = ["experiment=step_by_step_tiny"]
CASES = {
    "causal, ZeRO-2": ["trainer=deepspeed_stage_2"],
    "causal, ZeRO-3": ["trainer=deepspeed_stage_3"],
    "seq2seq, ZeRO-2": [*SEQ2SEQ, "trainer=deepspeed_stage_2"],
    "seq2seq, ZeRO-3": [*SEQ2SEQ, "trainer=deepspeed_stage_3"],
    "causal, liger, bf16": ["trainer=gpu", "teacher_logits=online", "loss.kernel=liger"],
}
COMMON = ["~control", "trainer.devices=1", "trainer.max_epochs=2", "trainer.check_val_every_n_epoch=1"]
QUICK = [  # on CPU: the CPU trainer for DeepSpeed's GPU one (loss.kernel=auto is chunked there), the tiny teacher
    "trainer=cpu",
    "teacher=tiny_gpt_bigcode",
    "data.label_source=ground_truth",
    "+trainer.limit_train_batches=2",
    "+trainer.limit_val_batches=1",
]


class Clock(pl.Callback):
    """Each validation round's seconds and the training batches' input tokens (padding included) and seconds."""

    def __init__(self):
        self.rounds, self.tokens, self.train_seconds, self.started = [], 0, 0.0, 0.0

    def _sync(self, trainer) -> None:
        if trainer.strategy.root_device.type == "cuda":
            torch.cuda.synchronize()

    def on_validation_start(self, trainer, module) -> None:
        self._sync(trainer)
        self.started = time.perf_counter()

    def on_validation_end(self, trainer, module) -> None:
        self._sync(trainer)
        self.rounds.append(round(time.perf_counter() - self.started, 2))

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        parts = (batch, *batch.values())  # recipe 1's batch holds one part per task, recipe 2's is one
        self.tokens += sum(p["input_ids"].numel() for p in parts if isinstance(p, dict) and "input_ids" in p)
        self._sync(trainer)
        self.started = time.perf_counter()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self._sync(trainer)
        self.train_seconds += time.perf_counter() - self.started


def run_case(name: str, overrides: list[str], out: Path) -> dict:
    """One case in this process: fit, then what it took."""
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = str(out / name.replace(", ", "-").replace(" ", "_"))
    parts = assemble(prepare(cfg))
    clock = Clock()
    parts.trainer.callbacks.append(clock)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    parts.trainer.fit(parts.module, datamodule=parts.datamodule)
    peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None
    return {
        "validation rounds s": clock.rounds,
        "train input tokens/s": round(clock.tokens / max(clock.train_seconds, 1e-9)),
        "peak GPU GiB": round(peak, 2) if peak is not None else "-",
        "steps": parts.trainer.global_step,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="outputs/gpu_check")
    parser.add_argument("--timeout", type=int, default=150, help="seconds a case may run before it counts as stalled")
    parser.add_argument("--only", nargs="*", choices=list(CASES), help="these cases only")
    parser.add_argument("--cache-dir", help="paths.cache_dir (default: the config's)")
    parser.add_argument("--quick", action="store_true", help=QUICK[0] + " and a few batches: rehearse on CPU")
    parser.add_argument("--case", help=argparse.SUPPRESS)  # a child process: run this case, print its JSON
    args = parser.parse_args()
    out = Path(args.out).resolve()
    extra = [
        *COMMON,
        *(QUICK if args.quick else []),
        *([f"paths.cache_dir={args.cache_dir}"] if args.cache_dir else []),
    ]
    if args.case:
        replaced = ("trainer=", "loss.kernel=") if args.quick else ()
        case = [o for o in CASES[args.case] if not o.startswith(replaced)]
        print("CASE " + json.dumps(run_case(args.case, [*case, *extra], out)))
        return
    rows = {}
    for name in args.only or CASES:
        command = [sys.executable, __file__, "--case", name, "--out", str(out)]
        command += [flag for flag, on in (("--quick", args.quick),) if on]
        command += ["--cache-dir", args.cache_dir] if args.cache_dir else []
        started = time.perf_counter()
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout)
        except subprocess.TimeoutExpired:
            rows[name] = {"status": f"stalled: over {args.timeout} s"}
            continue
        result = [line for line in done.stdout.splitlines() if line.startswith("CASE ")]
        if done.returncode or not result:
            rows[name] = {"status": f"failed: {(done.stderr.strip().splitlines() or ['?'])[-1][:200]}"}
            continue
        rows[name] = {"status": "ok", "wall s": f"{time.perf_counter() - started:.0f}", **json.loads(result[0][5:])}
        print(f"{name}: {rows[name]}", flush=True)
    table = markdown_table(rows)
    print(table)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_check.md").write_text(table + "\n")
    (out / "gpu_check.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
