"""What a training step of the embedded default's teacher costs on this CPU, by attention kernel and precision.

The teacher of `teacher=pretrained` (GPTBigCode, multi-query attention, 128 wide, 4 layers, a 4,096-token
vocabulary) trains on batches of 16 x 256 tokens. Each arm runs the same random batch through a forward,
backward and AdamW step: PyTorch's SDPA or transformers' eager attention, fp32 or bf16 autocast
(`codistill.precision`), at each thread count. The arms alternate, `--repeats` rounds after one warm-up
each, and the median step is compared with SDPA in fp32 (what `codistill-pretrain` ran before) at the same
thread count, in the same run.

    python benchmarks/pretrain_step.py [--threads 1 2] [--repeats 7] [--quick]
"""

import argparse
import statistics
import time

import torch
from transformers import GPTBigCodeConfig, GPTBigCodeForCausalLM

from codistill.precision import autocast
from codistill.tables import print_table, transposed

ARMS = [("sdpa", "fp32"), ("sdpa", "bf16"), ("eager", "fp32"), ("eager", "bf16")]  # the first is the baseline


def step_seconds(model, optimizer, batch, precision: str) -> float:
    started = time.perf_counter()
    with autocast(precision, torch.device("cpu")):
        loss = model(input_ids=batch, labels=batch).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return time.perf_counter() - started


def measure(threads: int, repeats: int, batch_size: int, length: int) -> dict[str, dict[str, float]]:
    torch.set_num_threads(threads)
    config = GPTBigCodeConfig(vocab_size=4096, n_positions=512, n_embd=128, n_layer=4, n_head=4, multi_query=True)
    batch = torch.randint(0, config.vocab_size, (batch_size, length), generator=torch.Generator().manual_seed(0))
    runs = {}
    for attention, precision in ARMS:
        torch.manual_seed(0)
        model = GPTBigCodeForCausalLM(config).train()
        model.set_attn_implementation(attention)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        step_seconds(model, optimizer, batch, precision)  # warm-up
        runs[attention, precision] = (model, optimizer, [])
    for _ in range(repeats):
        for (_, precision), (model, optimizer, times) in runs.items():
            times.append(step_seconds(model, optimizer, batch, precision))
    base = statistics.median(runs[ARMS[0]][2])
    rows = {}
    for (attention, precision), (_, _, times) in runs.items():
        median = statistics.median(times)
        rows[f"{attention} {precision}"] = {
            "step ms": round(1000 * median, 1),
            "tokens/s": round(batch_size * length / median),
            "speedup vs sdpa fp32": round(base / median, 2),
        }
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="tiny batches, two rounds: checks the script runs")
    args = parser.parse_args()
    batch_size, length, repeats = (2, 32, 2) if args.quick else (16, 256, args.repeats)
    for threads in args.threads:
        rows = measure(threads, repeats, batch_size, length)
        print_table(f"a pretraining step, {batch_size} x {length} tokens, {threads} thread(s)", transposed(rows))


if __name__ == "__main__":
    main()
