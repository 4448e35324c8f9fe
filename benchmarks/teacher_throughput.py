"""Teacher labelling throughput: batched generation against the reference scripts' per-sample loop.

Both paths label the same FIM prompts (segments of the bundled MoonScript sample, 96 tokens each, in the
tiny teacher's PSM format) greedily with the tiny GPTBigCode teacher on CPU:

- batched: `codistill.backends.hf.HFBackend.generate` (left padding, length-sorted batches, KV cache);
- per-sample: one prompt at a time, `tokenizer(prompt, return_tensors="pt")`, `model.generate(...,
  max_new_tokens=N, do_sample=False)`, decode the new tokens, cut at the first stop token.

A random tiny model emits a stop token within a few tokens for most prompts, which would leave nothing to
measure, so both paths share one model whose generation config sets `min_new_tokens = max_new_tokens`: the
stop tokens are masked until the last step, every prompt gets exactly N new tokens, in both paths alike. Both
run under `torch.inference_mode()` with torch's default thread count; generated tokens are counted from the
ids each path decodes. Each path is warmed up once, then timed over the same prompts in alternating runs;
the median is reported, and the outputs of the two paths must be identical.

    python benchmarks/teacher_throughput.py [--batch-size 16] [--prompts 64] [--max-new-tokens 32]
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("TQDM_DISABLE", "1")  # the backend's progress bars

import torch  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402

from codistill.backends.hf import HFBackend  # noqa: E402
from codistill.data.build import fim_records  # noqa: E402
from codistill.data.corpus import load_sample_corpus  # noqa: E402
from codistill.data.fim import FIMTokens  # noqa: E402
from codistill.generation import pad_id_of  # noqa: E402
from codistill.models.tiny import tiny_gpt_bigcode  # noqa: E402

FIM = FIMTokens(prefix="<fim-prefix>", suffix="<fim-suffix>", middle="<fim-middle>", pad="<fim-pad>")
STOP_TOKENS = ["<|endoftext|>", FIM.prefix, FIM.suffix, FIM.middle, FIM.pad]


class CountingDecode:
    """Wraps `tokenizer.decode` to count the ids each path decodes: its generated tokens after the cut."""

    def __init__(self, tokenizer):
        self.decode, self.tokens = tokenizer.decode, 0

    def __call__(self, ids, *args, **kwargs):
        self.tokens += len(ids)
        return self.decode(ids, *args, **kwargs)


def fim_prompts(tokenizer, count: int, segment_tokens: int) -> list[str]:
    records = fim_records(load_sample_corpus(), {"length": segment_tokens, "unit": "tokens"}, {}, tokenizer, seed=0)
    if len(records) < count:
        raise SystemExit(f"the sample corpus gives {len(records)} prompts of {segment_tokens} tokens; ask for fewer")
    return [FIM.psm(r["prefix"], r["suffix"]) for r in records[:count]]


def batched(model, tokenizer, prompts, max_new_tokens, batch_size, stop_ids) -> list[str]:
    backend = HFBackend(model, tokenizer, "tiny", max_new_tokens=max_new_tokens, batch_size=batch_size)
    return [g.text for g in backend.generate(prompts, tuple(tokenizer.convert_ids_to_tokens(sorted(stop_ids))))]


@torch.inference_mode()
def per_sample(model, tokenizer, prompts, max_new_tokens, batch_size, stop_ids) -> list[str]:
    outputs = []
    for prompt in prompts:
        inputs = tokenizer(prompt, return_tensors="pt")
        generated = model.generate(
            **inputs,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            eos_token_id=sorted(stop_ids),
            pad_token_id=pad_id_of(tokenizer),
        )
        new = generated[0, inputs["input_ids"].shape[1] :].tolist()
        cut = next((j for j, t in enumerate(new) if t in stop_ids), len(new))
        outputs.append(tokenizer.decode(new[:cut], skip_special_tokens=False))
    return outputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--segment-tokens", type=int, default=96, help="segment length of the FIM prompts")
    parser.add_argument("--repeats", type=int, default=3, help="alternating timed runs of each; the median counts")
    parser.add_argument("--cache-dir", default=".cache/codistill", help="where the tiny teacher is built once")
    parser.add_argument("--quick", action="store_true", help="8 prompts, 4 new tokens, one run: that both paths run")
    args = parser.parse_args()
    if args.quick:
        args.prompts, args.max_new_tokens, args.repeats, args.batch_size = 8, 4, 1, 4
    hf_logging.set_verbosity_error()

    folder = tiny_gpt_bigcode(args.cache_dir)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    model.generation_config.min_new_tokens = args.max_new_tokens  # full-length generation in both paths
    stop_ids = {tokenizer.convert_tokens_to_ids(t) for t in STOP_TOKENS}
    prompts = fim_prompts(tokenizer, args.prompts, args.segment_tokens)
    prompt_tokens = [len(tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prompts]
    assert all(tokenizer(p)["input_ids"] == tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts)

    counter = CountingDecode(tokenizer)
    tokenizer.decode = counter  # both paths decode through it
    paths = {"batched (HFBackend.generate)": batched, "per-sample loop": per_sample}
    seconds: dict[str, list[float]] = {name: [] for name in paths}
    tokens: dict[str, set[int]] = {name: set() for name in paths}
    outputs: dict[str, list[str]] = {}
    for run in range(1 + args.repeats):  # run 0 warms up; the paths alternate so machine load hits both alike
        for name, path in paths.items():
            counter.tokens = 0
            start = time.perf_counter()
            out = path(model, tokenizer, prompts, args.max_new_tokens, args.batch_size, stop_ids)
            elapsed = time.perf_counter() - start
            assert outputs.setdefault(name, out) == out, f"{name} is not deterministic"
            if run:
                seconds[name].append(elapsed)
                tokens[name].add(counter.tokens)

    (batched_out, single_out) = outputs.values()
    differ = [i for i, (a, b) in enumerate(zip(batched_out, single_out, strict=True)) if a != b]
    print(f"identical outputs: {'yes' if not differ else f'no, {len(differ)} of {len(prompts)} differ'}")
    assert not differ, f"prompts {differ[:10]} differ between the paths"
    assert all(len(t) == 1 for t in tokens.values())

    print(
        f"\ntiny GPTBigCode teacher on CPU ({torch.get_num_threads()} threads), {len(prompts)} FIM prompts of "
        f"{min(prompt_tokens)}-{max(prompt_tokens)} tokens (mean {statistics.mean(prompt_tokens):.0f}), "
        f"max_new_tokens={args.max_new_tokens}, batch size {args.batch_size}, median of {args.repeats} runs\n"
    )
    print(f"| {'path':<26} | {'prompts':>7} | {'generated tokens':>16} | {'seconds':>7} | {'tokens/s':>8} |")
    print(f"|{'-' * 28}|{'-' * 9}|{'-' * 18}|{'-' * 9}|{'-' * 10}|")
    rate = {}
    for name in paths:
        (count,), median = tokens[name], statistics.median(seconds[name])
        rate[name] = count / median
        print(f"| {name:<26} | {len(prompts):>7} | {count:>16} | {median:>7.2f} | {rate[name]:>8.0f} |")
    batched_rate, single_rate = rate.values()
    print(f"\nratio batched / per-sample: {batched_rate / single_rate:.2f}x")


if __name__ == "__main__":
    main()
