"""The README's real experiments at their real width, vocabulary, context and special tokens, for a few
training steps on this CPU: what a step costs and how much memory it takes, before anyone rents a GPU.

Each experiment runs in its own process (its peak resident memory is its own) through codistill's own
training step (`FIMDistiller` / `CausalDistiller.losses`, `DistillationLoss`, the online teacher source),
on random weights and random token batches of the experiment's shape; layers are cut (`--layers`) to fit
24 GiB, everything else is the real checkpoint's:

- moonscript_santacoder_tiny_kd: santacoder's shape as teacher (2,048 wide, 16 heads, multi-query, a
  49,280-row head over 49,157 tokens, 2,048 positions) beside a 512-wide 8-layer GPTBigCode student with its
  tokenizer, online forward KL at ce_weight 0.5, batches of 16 x 1,024 tokens, the last 64 of each the target;
- moonscript_santacoder_flan_t5: flan-t5-small (512 wide, 8 + 8 layers, 6 heads, a 32,128-row untied head),
  Distilling Step-by-Step (alpha 0.5: label and rationale tasks), batches of 16, inputs of 512 tokens,
  targets of 256;
- textbook_starcoder: starcoderbase-1b's shape (2,048 wide, 16 heads, multi-query, 49,152 tokens, 8,192
  positions) fine-tuned on exercises, batches of 4 x 1,024 tokens, the last half the solution.

The clock covers forward, backward and AdamW, `--steps` steps after one warm-up, median; fp32 (the GPU
configs' bf16-mixed is a GPU's business). Peak memory is the process's maximum resident set; an experiment
the kernel kills for memory is reported as such.

    python benchmarks/real_size.py [--layers 2] [--steps 3] [--threads 2] [--only NAME ...]
                                   [--gradient-checkpointing] [--quick]
"""

import argparse
import json
import resource
import signal
import statistics
import subprocess
import sys
import time

import torch
from tokenizers import Tokenizer, models
from transformers import (
    GPTBigCodeConfig,
    GPTBigCodeForCausalLM,
    PreTrainedTokenizerFast,
    T5Config,
    T5ForConditionalGeneration,
)

from codistill.backends.hf import HFBackend
from codistill.losses import IGNORE_INDEX, DistillationLoss, TeacherTokens
from codistill.models.causal import CausalDistiller
from codistill.models.fim import FIMDistiller
from codistill.models.tiny import SANTACODER_SPECIAL, untie_lm_head
from codistill.tables import markdown_table, print_table, transposed
from codistill.teacher import Teacher
from codistill.teacher_logits import OnlineTeacher

FIM = {"prefix": "<fim-prefix>", "suffix": "<fim-suffix>", "middle": "<fim-middle>"}
EXPERIMENTS = ("moonscript_santacoder_tiny_kd", "moonscript_santacoder_flan_t5", "textbook_starcoder")


def tokenizer_of(size: int) -> PreTrainedTokenizerFast:
    """A tokenizer of exactly `size` tokens with santacoder's special ones: the vocabulary's size is what a
    step's cost depends on, not its pieces."""
    vocab = {t: i for i, t in enumerate(SANTACODER_SPECIAL + [f"t{i}" for i in range(size - len(SANTACODER_SPECIAL))])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token=SANTACODER_SPECIAL[0]))
    return PreTrainedTokenizerFast(tokenizer_object=backend, eos_token=SANTACODER_SPECIAL[0])


def gpt_bigcode(vocab: int, width: int, layers: int, heads: int, positions: int) -> GPTBigCodeForCausalLM:
    config = GPTBigCodeConfig(
        vocab_size=vocab, n_embd=width, n_layer=layers, n_head=heads, n_positions=positions, multi_query=True
    )
    return GPTBigCodeForCausalLM(config)


def causal_batch(batch: int, length: int, targets: int, vocab: int) -> dict:
    ids = torch.randint(len(SANTACODER_SPECIAL), vocab, (batch, length), generator=torch.Generator().manual_seed(0))
    labels = ids.clone()
    labels[:, : length - targets] = IGNORE_INDEX
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}


def seq2seq_batch(batch: int, source: int, target: int, vocab: int) -> dict:
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(2, vocab, (batch, source), generator=generator)
    return {
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "labels": torch.randint(2, vocab, (batch, target)),
    }


def setup(name: str, layers: int, quick: bool):
    """(module, batch) of one experiment at its real size (`quick`: at toy size, that the path runs)."""
    scale = 16 if quick else 1
    if name == "moonscript_santacoder_tiny_kd":
        tokens, head = 49157 // scale, 49280 // scale
        tokenizer = tokenizer_of(tokens)
        teacher_model = gpt_bigcode(head, 2048 // scale, layers, 16, 2048).eval()
        teacher = Teacher("santacoder", HFBackend(teacher_model, tokenizer, "santacoder"), FIM, SANTACODER_SPECIAL[0])
        student = gpt_bigcode(tokens, 512 // scale, 8 // min(scale, 4), 8, 2048)
        loss = DistillationLoss("forward_kl", ce_weight=0.5)
        module = FIMDistiller(student, tokenizer, loss, None, fim=FIM, teacher=OnlineTeacher(teacher))
        label = causal_batch(16 // min(scale, 4), 1024 // scale, 64 // min(scale, 4), tokens)
        return module, {"label": label, "teacher": TeacherTokens(**label)}  # one tokenizer: the same tokens
    if name == "moonscript_santacoder_flan_t5":
        width = 512 // scale
        config = T5Config(
            vocab_size=32128 // scale,
            d_model=width,
            d_ff=2 * width,
            d_kv=64 // min(scale, 4),
            num_heads=6,
            num_layers=8 // min(scale, 4),
            feed_forward_proj="gated-gelu",
            tie_word_embeddings=False,
            decoder_start_token_id=0,
            pad_token_id=0,
            eos_token_id=1,
        )
        model = T5ForConditionalGeneration(config)
        untie_lm_head(model)
        module = FIMDistiller(model, None, DistillationLoss(alpha=0.5), None)
        batch = 16 // min(scale, 4)
        args = (batch, 512 // scale, 256 // scale, config.vocab_size)
        return module, {"label": seq2seq_batch(*args), "rationale": seq2seq_batch(*args)}
    model = gpt_bigcode(49152 // scale, 2048 // scale, layers, 16, 8192 // scale)
    return CausalDistiller(model, None, None), causal_batch(4, 1024 // scale, 512 // scale, 49152 // scale)


def one(name: str, layers: int, steps: int, quick: bool, checkpointing: bool) -> dict:
    """Median step seconds and peak resident GiB of one experiment, in this process (`checkpointing`: with
    `model.gradient_checkpointing=true`)."""
    torch.manual_seed(0)
    module, batch = setup(name, layers, quick)
    if checkpointing:  # what Distiller(gradient_checkpointing=True) switches on
        module.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    module.on_fit_start()  # the teacher on the module's device, the loss's path chosen
    optimizer = torch.optim.AdamW(module.model.parameters(), lr=1e-4)
    times = []
    for _ in range(steps + 1):
        started = time.perf_counter()
        module.losses(batch)["loss"].backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - started)
    parameters = sum(p.numel() for p in module.model.parameters())
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
    return {
        "student parameters (M)": round(parameters / 1e6, 1),
        "step s": round(statistics.median(times[1:]), 2),
        "peak GiB": round(peak, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, default=2, help="the 24-layer models' layers kept (memory)")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--quick", action="store_true", help="every experiment at 1/16 width, one step")
    parser.add_argument("--only", nargs="+", choices=EXPERIMENTS, default=EXPERIMENTS)
    parser.add_argument("--gradient-checkpointing", action="store_true", help="model.gradient_checkpointing=true")
    parser.add_argument("--one", choices=EXPERIMENTS, help=argparse.SUPPRESS)  # a child process's experiment
    args = parser.parse_args()
    if args.quick:
        args.steps = 1
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.one:
        print(json.dumps(one(args.one, args.layers, args.steps, args.quick, args.gradient_checkpointing)))
        return
    rows = {}
    for name in args.only:
        command = [sys.executable, __file__, "--one", name, "--layers", str(args.layers), "--steps", str(args.steps)]
        command += ["--threads", str(args.threads)] + (["--quick"] if args.quick else [])
        command += ["--gradient-checkpointing"] if args.gradient_checkpointing else []
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode == -signal.SIGKILL:  # the kernel's out-of-memory killer: this machine is too small
            rows[name] = {"step s": "killed", "peak GiB": "out of memory"}
        elif done.returncode:
            raise RuntimeError(f"{name} failed:\n{done.stderr[-3000:]}")
        else:
            rows[name] = json.loads(done.stdout.strip().splitlines()[-1])
        print(name, rows[name], flush=True)
    title = f"real-size steps on CPU ({args.layers} of 24 layers kept, fp32, median of {args.steps}"
    title += ", gradient checkpointing" if args.gradient_checkpointing else ""
    print_table(title + (", quick: 1/16 width)" if args.quick else ")"), transposed(rows))
    print(markdown_table(rows))


if __name__ == "__main__":
    main()
