"""Teacher pretraining against the machine's own bf16 matrix-multiply peak, measured in the same run.

The efficacy run's teacher by default (GPTBigCode, multi-query attention, 256 wide, 6 layers, 8,192-token
vocabulary, tied head, batches of 16 x 256 tokens): forward, backward and AdamW step, as
`codistill.models.pretrain` trains it (SDPA attention, bf16 autocast, fp32 weights and loss). The peak is the
median GFLOP/s of a 2048 x 2048 x 2048 bf16 matmul at the same thread count; a step's FLOPs are counted from
the model's shape (2 per multiply-add in every matmul, forward x 3 for forward and backward, attention's two
products at full length), so the share is the step's achieved GFLOP/s over the peak. The arms, one change each
on top of the one before, alternate after a warm-up (torch.compile's compilation is in its warm-up):

- today: what `codistill-pretrain` runs;
- fused AdamW: `torch.optim.AdamW(fused=True)`, one kernel for the optimizer step;
- compiled: `torch.compile` of the model (inductor's C++ kernels on CPU);
- no attention dropout: the 0.1 dropout on the attention probabilities off (residual and embedding dropout
  kept), so SDPA runs its fused CPU kernel instead of materialising the scores to drop some;
- no dropout: all of the model's 0.1 dropout off.

The last two are modelling changes, not free speed-ups, so they are reported apart.

    python benchmarks/pretrain_peak.py [--width 256] [--layers 6] [--vocab 8192] [--threads 2] [--quick]
"""

import argparse
import statistics
import time

import torch
from transformers import GPTBigCodeConfig, GPTBigCodeForCausalLM

from codistill.precision import autocast
from codistill.tables import print_table

CPU = torch.device("cpu")


def matmul_peak(repeats: int, size: int = 2048) -> float:
    """Median GFLOP/s of a `size`-cubed bf16 matmul."""
    a, b = torch.randn(size, size, dtype=torch.bfloat16), torch.randn(size, size, dtype=torch.bfloat16)
    a @ b
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - started)
    return 2 * size**3 / statistics.median(times) / 1e9


def step_flops(config: GPTBigCodeConfig, batch: int, length: int) -> float:
    """Training FLOPs of one step: 3 x the forward's matmuls (2 per multiply-add)."""
    d, head_dim = config.n_embd, config.n_embd // config.n_head
    kv = 2 * head_dim if config.multi_query else 2 * d
    inner = config.n_inner or 4 * d
    per_layer = 2 * d * d + d * kv + 2 * d * inner  # query and output projections, key-value, MLP
    tokens = batch * length
    matmuls = 2 * tokens * (config.n_layer * per_layer + config.vocab_size * d)
    attention = 2 * 2 * config.n_layer * batch * length * length * d
    return 3 * (matmuls + attention)


def build(config: GPTBigCodeConfig, fused: bool, compiled: bool):
    torch.manual_seed(0)
    model = GPTBigCodeForCausalLM(config).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=fused)
    return (torch.compile(model) if compiled else model), optimizer


def step_seconds(model, optimizer, batch) -> float:
    started = time.perf_counter()
    with autocast("bf16", CPU):
        loss = model(input_ids=batch, labels=batch).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--vocab", type=int, default=8192)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--length", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-compile", action="store_true", help="leave the torch.compile arm out")
    parser.add_argument("--quick", action="store_true", help="a small model, two rounds: that every arm runs")
    args = parser.parse_args()
    if args.quick:
        args.width, args.layers, args.vocab, args.batch, args.length, args.repeats = 64, 2, 1024, 2, 64, 2
    torch.set_num_threads(args.threads)

    def config(dropout: float, attention_dropout: float | None = None) -> GPTBigCodeConfig:
        return GPTBigCodeConfig(
            vocab_size=args.vocab,
            n_positions=args.length,
            n_embd=args.width,
            n_layer=args.layers,
            n_head=max(1, args.width // 32),
            multi_query=True,
            attn_pdrop=dropout if attention_dropout is None else attention_dropout,
            resid_pdrop=dropout,
            embd_pdrop=dropout,
        )

    compiled = not args.no_compile
    arms = {"today": ((0.1,), False, False), "fused AdamW": ((0.1,), True, False)}
    if compiled:
        arms["compiled"] = ((0.1,), True, True)
    arms["no attention dropout"] = ((0.1, 0.0), True, compiled)
    arms["no dropout"] = ((0.0,), True, compiled)
    batch = torch.randint(0, args.vocab, (args.batch, args.length), generator=torch.Generator().manual_seed(0))
    runs = {}
    for name, (dropout, fused, compile_it) in arms.items():
        model, optimizer = build(config(*dropout), fused, compile_it)
        warm = time.perf_counter()
        step_seconds(model, optimizer, batch)
        runs[name] = (model, optimizer, [], time.perf_counter() - warm)
    peak = matmul_peak(args.repeats * 4)
    for _ in range(args.repeats):
        for model, optimizer, times, _ in runs.values():
            times.append(step_seconds(model, optimizer, batch))
    flops = step_flops(config(0.1), args.batch, args.length)
    base = statistics.median(runs["today"][2])
    rows = {}
    for name, (_, _, times, warm) in runs.items():
        median = statistics.median(times)
        rows[name] = {
            "step ms": round(1000 * median),
            "tokens/s": round(args.batch * args.length / median),
            "GFLOP/s": round(flops / median / 1e9, 1),
            "share of bf16 peak": f"{flops / median / 1e9 / peak:.0%}",
            "vs today": round(base / median, 2),
            "warm-up s": round(warm, 1),
        }
    title = (
        f"pretraining step, {args.width} x {args.layers}, vocabulary {args.vocab}, {args.batch} x {args.length} "
        f"tokens, {args.threads} threads; bf16 matmul peak {peak:.0f} GFLOP/s; {flops / 1e9:.0f} GFLOP a step"
    )
    print_table(title, rows)


if __name__ == "__main__":
    main()
