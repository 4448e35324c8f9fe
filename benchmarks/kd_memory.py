"""What one logit-distillation step holds in GPU memory at a real vocabulary and length, and how long it takes.

A causal student and a larger teacher, both GPTBigCode with multi-query attention and starcoder's 49,152-token
vocabulary, randomly initialised from config (no download): the student `--student-dim` wide and
`--student-layers` deep in fp32 weights under bf16 autocast (`trainer.precision=bf16-mixed`), the teacher
twice as wide in bf16 with no grad (the online teacher). One batch of `--batch` x `--length` tokens, every
position a target. One forward and backward of the student per step (no optimizer step), same inputs for
every path:

- label_only: cross-entropy only, through `codistill.losses.DistillationLoss` (the baseline);
- naive: forward KL written the usual way: both models' logits, a float32 log-softmax of each, KL summed
  over the vocabulary;
- torch: `loss=forward_kl` through `DistillationLoss` on the logits (chunked over positions under activation
  checkpointing, `loss.kernel=torch`);
- liger: the same loss through liger-kernel's fused linear cross-entropy and JSD (`loss.kernel=liger`), on
  the hidden states and output embeddings: no [tokens, vocab] tensor outlives a chunk.

Peak is `torch.cuda.max_memory_allocated` during the step, less what the models, their gradients and the
inputs held before it; time is the median of `--repeats` steps after one warm-up. Ratios are against naive
in the same run; loss is the last step's. Needs a CUDA GPU (and liger-kernel for its row). `--quick` runs the
same paths at a tiny size (vocabulary 512, batch 2 x 64 tokens, a 64-wide student), on CPU where there is no
GPU: there it times them and measures no peak (nor runs liger): that every path runs, torch's loss equal to
naive's.

    python benchmarks/kd_memory.py [--batch 4] [--length 2048] [--student-dim 1024] [--student-layers 8] [--quick]
"""

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from transformers import GPTBigCodeConfig, GPTBigCodeForCausalLM

from codistill.losses import Dense, DistillationLoss, Projected, Projection, liger_installed
from codistill.tables import print_table

VOCAB = 49152  # starcoder's, santacoder's is 49,280


def model(dim: int, layers: int, length: int, vocab: int, device: str, dtype) -> GPTBigCodeForCausalLM:
    config = GPTBigCodeConfig(
        vocab_size=vocab, n_positions=length, n_embd=dim, n_layer=layers, n_head=dim // 64, multi_query=True
    )
    return GPTBigCodeForCausalLM(config).to(device, dtype)


def naive(student, teacher, ids, mask):
    logits = student(input_ids=ids).logits[:, :-1]
    with torch.no_grad():
        t = F.log_softmax(teacher(input_ids=ids).logits[:, :-1].float(), -1)
    s = F.log_softmax(logits.float(), -1)
    ce = F.cross_entropy(logits.flatten(0, 1).float(), ids[:, 1:].flatten())
    return 0.5 * ce + 0.5 * (t.exp() * (t - s)).sum(-1).mean()


def codistill(kernel: str | None):
    loss = DistillationLoss() if kernel is None else DistillationLoss("forward_kl", ce_weight=0.5, kernel=kernel)

    def step(student, teacher, ids, mask):
        if kernel is None:
            return loss(student(input_ids=ids).logits, ids, shift=True)["loss"]
        if kernel == "liger":
            with torch.no_grad():
                t = Projection.of(teacher, ids, None)
            return loss(Projection.of(student, ids, None), ids, Projected(t.hidden, t.weight, mask), shift=True)["loss"]
        with torch.no_grad():
            t = Dense(teacher(input_ids=ids).logits, mask)
        return loss(student(input_ids=ids).logits, ids, t, shift=True)["loss"]

    return step


def measure(step, student, teacher, ids, mask, repeats: int) -> dict[str, float]:
    """Peak (on CUDA only), time and loss of the step; no optimizer step, so every repeat's loss is the same."""
    cuda, peaks, times = ids.is_cuda, [], []
    for _ in range(repeats + 1):
        student.zero_grad(set_to_none=False)
        if cuda:
            torch.cuda.synchronize()
            before = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
        torch.manual_seed(0)  # the student's dropout: the same masks in every path and step, so their losses compare
        start = time.perf_counter()
        with torch.autocast(ids.device.type, dtype=torch.bfloat16):
            loss = step(student, teacher, ids, mask)
        loss.backward()
        if cuda:
            torch.cuda.synchronize()
            peaks.append(torch.cuda.max_memory_allocated() - before)
        times.append(time.perf_counter() - start)
        value = loss.item()
        del loss
    peak = {"peak GiB": max(peaks[1:]) / 2**30} if cuda else {}
    return {**peak, "step ms": 1000 * statistics.median(times[1:]), "loss": value}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--length", type=int, default=2048)
    parser.add_argument("--student-dim", type=int, default=1024)
    parser.add_argument("--student-layers", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, on CPU where there is no GPU: a smoke test")
    args = parser.parse_args()
    vocab, device = VOCAB, "cuda"
    if args.quick:
        args.batch, args.length, args.student_dim, args.student_layers, args.repeats = 2, 64, 64, 2, 1
        vocab, device = 512, "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    dims = (args.student_layers, args.length, vocab, device)
    student = model(args.student_dim, *dims, torch.float32).train()
    teacher = model(2 * args.student_dim, *dims, torch.bfloat16).eval().requires_grad_(False)
    student.gradient_checkpointing_enable()  # the layers' activations are the same for every path: keep them small
    ids = torch.randint(vocab, (args.batch, args.length), device=device)
    mask = torch.zeros_like(ids, dtype=torch.bool)
    mask[:, :-1] = True  # the teacher's positions that predict a target: all but the last
    paths = {"label_only": codistill(None), "naive": naive, "torch": codistill("torch")}
    if liger_installed() and device == "cuda":
        paths["liger"] = codistill("liger")
    rows = {}
    for name, step in paths.items():
        try:
            rows[name] = measure(step, student, teacher, ids, mask, args.repeats)
        except torch.OutOfMemoryError:
            rows[name] = {"peak GiB": float("inf"), "step ms": float("nan"), "loss": float("nan")}
        if device == "cuda":
            torch.cuda.empty_cache()
    for row in rows.values():
        if device == "cuda":
            row["peak / naive"] = row["peak GiB"] / rows["naive"]["peak GiB"]
        row["time / naive"] = row["step ms"] / rows["naive"]["step ms"]
    params = sum(p.numel() for p in student.parameters()) / 1e6
    title = (
        f"one KD step on {torch.cuda.get_device_name() if device == 'cuda' else 'CPU'}: batch {args.batch} x "
        f"{args.length} tokens, vocabulary {vocab}, student {params:.{2 if args.quick else 0}f}M"
    )
    print_table(title, rows)
    if device == "cpu":
        print("peak memory not measured: torch.cuda.max_memory_allocated needs a CUDA GPU")


if __name__ == "__main__":
    main()
