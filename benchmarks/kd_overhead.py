"""What logit distillation costs per training step: label-only vs offline top-k KD vs online KD.

One causal student (a GPTBigCode built from config with the tiny teacher's byte-level BPE, `--student-dim`
wide, `--student-layers` deep) learns recipe 1's FIM task on the embedded default's dataset (the bundled
MoonScript sample, `codistill-train`'s config composed with Hydra's compose API), through
`codistill.assembly`'s parts (what codistill-train fits: `FIMDistiller` on `FIMDataModule`), in a plain loop
(forward, loss, backward, AdamW step; data loading included), on CPU in fp32:

- label_only: cross-entropy on the middle (`loss=label_only`);
- offline top-k: `loss=forward_kl` (ce_weight 0.5) from the teacher's top-k distributions stored in the
  dataset (`teacher_logits=offline`, one run per `--top-k`);
- sampled: the same loss from `--samples` draws per token stored in the dataset (`teacher_logits=sampled`);
  the embedded teacher is random, so nearly every draw is a distinct id: the most it can store and cost;
- online: `loss=forward_kl` with the teacher (`--teacher-dim` wide, `--teacher-layers` deep) scoring
  every batch beside the student (`teacher_logits=online`, dense logits), and with hidden-state matching on
  top (`loss=forward_kl_hidden`: the two models' states at evenly spaced layers, a trained projection);
- across tokenizers (rows "own:..."): the same student around its own byte-level BPE (`--own-vocab`
  tokens, other merges) learning label-only (its own baseline), ULD online, and ALM (`loss=alm`) online and
  from the stored likelihood of each teacher token (`teacher_logits=likelihoods`).

Throughput is target tokens (the middles and their end-of-text) per second over `--steps` steps after
`--warmup-steps`, the median of `--repeats` runs per method, methods interleaved. Ratios are against
label_only in the same run (the cross-tokenizer arms: against their own student's label_only). Storage is the
Arrow bytes of the stored teacher columns per stored token.

    python benchmarks/kd_overhead.py [--steps 40] [--repeats 3] [--top-k 8 32 128] [--samples 64] [--threads 1]
    python benchmarks/kd_overhead.py --quick   # every arm for a few steps (tests/test_benchmarks.py)
"""

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")

import torch  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from omegaconf import open_dict  # noqa: E402

from codistill.assembly import assemble, prepare  # noqa: E402
from codistill.config import (
    CONFIG_DIR,  # noqa: E402
    build,  # noqa: E402
)
from codistill.data import schema  # noqa: E402
from codistill.data.fim_datamodule import load_distillation_dataset  # noqa: E402
from codistill.models.tiny import tiny_gpt_bigcode  # noqa: E402
from codistill.tables import print_table, transposed  # noqa: E402


def config(tmp: Path, overrides: list[str]):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=["student=tiny_gpt_bigcode", "~control", *overrides])
    with open_dict(cfg):
        cfg.paths.data_dir, cfg.paths.cache_dir = str(tmp / "data"), str(tmp / "cache")
        cfg.paths.output_dir = str(tmp / "out")
    return cfg


def stored(cfg, form: str) -> float:
    """Arrow bytes per label token of the dataset `cfg` builds, in its stored `form`."""
    train = load_distillation_dataset(build(cfg.data.source).cached())["train"]
    return schema.distribution_bytes_per_token(train)[form]


def one_run(cfg, student_dir: str, args) -> float:
    """Target tokens per second of `args.steps` steps after `args.warmup_steps`."""
    torch.manual_seed(0)
    with open_dict(cfg):
        cfg.student.name_or_path = student_dir
    parts = assemble(prepare(cfg))  # what codistill-train fits, stepped here by a plain loop
    datamodule, module = parts.datamodule, parts.module
    datamodule.setup()
    module.on_fit_start()  # the teacher on the module's device, the loss's path chosen
    optimizer = torch.optim.AdamW(module.parameters(), lr=1e-3)
    tokens, step, start = 0, 0, None
    while step < args.warmup_steps + args.steps:
        for batch in datamodule.train_dataloader():
            if step == args.warmup_steps:
                start = time.perf_counter()
            out = module.losses(batch)
            out["loss"].backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if step >= args.warmup_steps:
                tokens += int((batch["label"]["labels"] != -100).sum())
            step += 1
            if step == args.warmup_steps + args.steps:
                break
    return tokens / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup-steps", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--top-k", type=int, nargs="+", default=[8, 32, 128])
    parser.add_argument("--samples", type=int, nargs="+", default=[64], help="draws per token, teacher_logits=sampled")
    parser.add_argument("--student-dim", type=int, default=128)
    parser.add_argument("--student-layers", type=int, default=4)
    parser.add_argument("--teacher-dim", type=int, default=256)
    parser.add_argument("--teacher-layers", type=int, default=6)
    parser.add_argument("--own-vocab", type=int, default=600, help="the cross-tokenizer student's BPE size")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--quick", action="store_true", help="a few steps of tiny models: that every arm runs")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.warmup_steps, args.repeats, args.top_k, args.samples = 3, 1, 1, [8], [8]
        args.student_dim = args.teacher_dim = 64
        args.student_layers = args.teacher_layers = 2
    if args.threads:
        torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="kd-overhead-"))
    cache = str(tmp / "cache")
    student_dir = tiny_gpt_bigcode(cache, n_embd=args.student_dim, n_layer=args.student_layers, seed=1)
    teacher = [
        "teacher=tiny_gpt_bigcode",
        f"teacher.backend.name_or_path.n_embd={args.teacher_dim}",
        f"teacher.backend.name_or_path.n_layer={args.teacher_layers}",
        f"data.micro_batch_size={args.batch_size}",
    ]
    own_dir = tiny_gpt_bigcode(
        cache, vocab_size=args.own_vocab, n_embd=args.student_dim, n_layer=args.student_layers, seed=1
    )
    methods = {"label_only": (config(tmp, [*teacher, "loss=label_only"]), student_dir)}  # name: (cfg, student)
    storage = {}
    for k in args.top_k:
        cfg = config(tmp, [*teacher, "loss=forward_kl", "teacher_logits=offline", f"teacher_logits.top_k={k}"])
        storage[f"offline top-{k}"], methods[f"offline top-{k}"] = stored(cfg, "top_k"), (cfg, student_dir)
    for n in args.samples:
        cfg = config(tmp, [*teacher, "loss=forward_kl", "teacher_logits=sampled", f"teacher_logits.samples={n}"])
        storage[f"sampled n={n}"], methods[f"sampled n={n}"] = stored(cfg, "sampled"), (cfg, student_dir)
    methods["online (dense)"] = (config(tmp, [*teacher, "loss=forward_kl", "teacher_logits=online"]), student_dir)
    hidden = config(tmp, [*teacher, "loss=forward_kl_hidden", "teacher_logits=online"])
    methods["online+hidden"] = (hidden, student_dir)
    own = {
        "own:label_only": ["loss=label_only"],
        "own:uld online": ["loss=uld", "teacher_logits=online"],
        "own:alm online": ["loss=alm", "teacher_logits=online"],
        "own:alm stored": ["loss=alm", "teacher_logits=likelihoods"],
    }
    for name, overrides in own.items():
        methods[name] = (config(tmp, [*teacher, *overrides]), own_dir)
    storage["own:alm stored"] = stored(methods["own:alm stored"][0], "likelihoods")
    build(methods["label_only"][0].data.source).cached()
    runs = {name: [] for name in methods}
    for _ in range(args.repeats):
        for name, (cfg, student) in methods.items():
            runs[name].append(one_run(cfg, student, args))
    rows = {}
    for name, values in runs.items():
        base = statistics.median(runs["own:label_only" if name.startswith("own:") else "label_only"])
        speed = statistics.median(values)
        rows[name] = {
            "target tokens/s": round(speed),
            "vs label_only": round(speed / base, 3),
            "step cost": f"{base / speed - 1:+.1%}",
            "stored bytes/token": round(storage[name], 1) if name in storage else "-",
        }
    print_table(f"KD overhead ({args.steps} steps x {args.repeats} runs, median; CPU fp32)", transposed(rows))


if __name__ == "__main__":
    main()
