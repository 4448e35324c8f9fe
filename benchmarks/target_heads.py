"""What computing a causal student's output head at the target rows only, and bf16 autocast, save per training
step.

A GPTBigCode student (multi-query attention, `--width` wide, `--layers` deep, santacoder's 49,152-token
vocabulary by default) learns FIM batches of `--batch` x `--length` tokens whose targets are the last
`--target-share` of each row (a middle and its end: about a tenth of a recipe-1 example). Each arm runs the
same batch through `codistill.losses.DistillationLoss` (label cross-entropy), backward and an AdamW step:

- full: the model's logits at every position ([B, L, V]), the loss reading the target rows;
- at targets: the hidden states gathered at the target rows first, the head applied to those only
  (`codistill.losses.heads`, what `Distiller` does for a causal student);

each in fp32 and, with `--bf16`, in bf16 autocast (`codistill.precision`; weights, optimizer and loss in fp32).
The arms alternate, `--repeats` rounds after one warm-up each; the median step of each is compared with the
full head in fp32 in the same run. Both heads give the same loss (tests/test_distillation.py checks it,
gradients too). The efficacy run's causal student: `--vocab 8192 --width 64 --layers 3 --batch 8 --length 264
--target-share 0.15`.

    python benchmarks/target_heads.py [--threads 2] [--repeats 5] [--bf16] [--quick]
"""

import argparse
import statistics
import time

import torch
from transformers import GPTBigCodeConfig, GPTBigCodeForCausalLM

from codistill.losses import IGNORE_INDEX, AtTargets, DistillationLoss, logits_at, target_mask
from codistill.precision import autocast
from codistill.tables import print_table


def step_seconds(model, optimizer, batch, labels, at_targets: bool, precision: str) -> float:
    loss = DistillationLoss()
    started = time.perf_counter()
    with autocast(precision, torch.device("cpu")):
        if at_targets:
            output = AtTargets(logits_at(model, batch, None, target_mask(labels, shift=True)[0]))
        else:
            output = model(input_ids=batch).logits
        value = loss(output, labels, shift=True)["loss"]
    value.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vocab", type=int, default=49152)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--length", type=int, default=512)
    parser.add_argument("--target-share", type=float, default=0.1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--bf16", action="store_true", help="both heads in bf16 autocast too")
    parser.add_argument("--dropout", type=float, default=0.1, help="GPTBigCode's attention, residual and embedding")
    parser.add_argument("--quick", action="store_true", help="a small model, two rounds: that the arms run")
    args = parser.parse_args()
    if args.quick:
        args.vocab, args.width, args.layers, args.length, args.repeats = 4096, 64, 2, 64, 2
    if args.threads:
        torch.set_num_threads(args.threads)
    config = GPTBigCodeConfig(
        vocab_size=args.vocab,
        n_positions=args.length,
        n_embd=args.width,
        n_layer=args.layers,
        n_head=4,
        multi_query=True,
        attn_pdrop=args.dropout,
        resid_pdrop=args.dropout,
        embd_pdrop=args.dropout,
    )
    torch.manual_seed(0)
    model = GPTBigCodeForCausalLM(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    batch = torch.randint(0, args.vocab, (args.batch, args.length), generator=torch.Generator().manual_seed(0))
    labels = batch.clone()
    labels[:, : int(args.length * (1 - args.target_share))] = IGNORE_INDEX  # the prompt: no target
    arms = {"full": (False, "fp32"), "at targets": (True, "fp32")}
    if args.bf16:
        arms |= {"full, bf16": (False, "bf16"), "at targets, bf16": (True, "bf16")}
    times = {name: [] for name in arms}
    for arm in arms.values():  # one warm-up each
        step_seconds(model, optimizer, batch, labels, *arm)
    for _ in range(args.repeats):
        for name, arm in arms.items():
            times[name].append(step_seconds(model, optimizer, batch, labels, *arm))
    base = statistics.median(times["full"])
    rows = {
        name: {"step ms": round(1000 * statistics.median(t), 1), "vs full": round(base / statistics.median(t), 3)}
        for name, t in times.items()
    }
    title = (
        f"output head at the target rows ({args.batch} x {args.length} tokens, {args.target_share:.0%} targets, "
        f"vocabulary {args.vocab}, {args.width} wide, {args.layers} layers, dropout {args.dropout}, "
        f"{torch.get_num_threads()} threads, "
        f"median of {args.repeats})"
    )
    print_table(title, rows)


if __name__ == "__main__":
    main()
