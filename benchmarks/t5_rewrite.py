"""What the lossless rewrite of a pretrained T5 tokenizer costs the model before any training.

codistill rewrites a SentencePiece (T5) student's tokenizer so it round-trips code (`codistill.models.
tokenization`): newlines, tabs, `{` and `<` become byte pieces, runs of spaces become pieces, the FIM markers
are added, and words keep no prepended word-start `▁`. The new tokens get new embedding and head rows, and
text the model knew is cut into other pieces. This measures what that does to a T5 that knows code:

1. A flan-t5-shaped double (100 sentinels, untied head padded to a multiple of 128) is trained for `--steps`
   steps to continue code through its own tokenizer (T5's pipeline: newlines and indentation lost), on the
   training files of `../shared/data/moonscript` (all but `--held-out` files).
2. Its bits per byte on continuing held-out files (`--context` characters in, the next `--target` out) are
   measured through:
   - T5's own tokenizer: the reference, what the model knows (the text it predicts has lost its layout, so
     this is a floor, not an equal footing);
   - the rewrite with its new rows at the initializer's noise (what codistill did before);
   - the rewrite with its new rows from the pieces T5 used for their text (`codistill.models.loading.
     init_new_rows`, what it does now);
   - that, with a word-start `▁` inserted at the start of the text and after every newline (a decoder can
     remove it again), so a line's first word keeps T5's word-start piece (`▁local`, not `lo c al`): an
     alternative measured, not adopted (see docs/benchmarks.md).

Bits per byte count the UTF-8 bytes of the original target text in every arm.

    python benchmarks/t5_rewrite.py [--steps 600] [--threads 2] [--quick]
"""

import argparse
import gzip
import json
import math
import time
from pathlib import Path

import torch
from tokenizers import normalizers
from transformers import AutoTokenizer

from codistill.eval.metrics import utf8_bytes
from codistill.models.loading import load_student, seq2seq_model
from codistill.models.tiny import brief_training, continuation_batches, tiny_t5
from codistill.models.tokenization import METASPACE
from codistill.tables import print_table

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "moonscript" / "moonscript.jsonl.gz"


def files() -> list[str]:
    with gzip.open(SHARED, "rt", encoding="utf-8") as f:
        return [json.loads(line)["content"] for line in f]


def windows(texts: list[str], context: int, target: int, limit: int) -> list[tuple[str, str]]:
    """(context, target) character windows, left to right through each text, `limit` in all."""
    out = []
    for text in texts:
        for start in range(0, len(text) - context - target, context + target):
            out.append((text[start : start + context], text[start + context : start + context + target]))
    return out[:limit]


def bits_per_byte(model, encode, pairs: list[tuple[str, str]]) -> tuple[float, float]:
    """(bits per byte of the targets, bytes per target token) for `encode(text) -> ids`."""
    nats, tokens, size = 0.0, 0, 0
    with torch.no_grad():
        for context, target in pairs:
            labels = encode(target)
            if not labels:
                continue
            out = model(input_ids=torch.tensor([encode(context)]), labels=torch.tensor([labels]))
            nats += out.loss.item() * len(labels)
            tokens += len(labels)
            size += utf8_bytes(target)
    return nats / math.log(2) / size, size / tokens


def noise_rows(model, first: int) -> None:
    """The rows past `first` at T5's initializer (std `initializer_factor`), as `resize_token_embeddings`
    without mean resizing leaves them."""
    std = model.config.initializer_factor
    torch.manual_seed(0)
    with torch.no_grad():
        for table in (model.get_input_embeddings().weight, model.get_output_embeddings().weight):
            table[first:].normal_(std=std)


def with_line_start_word_pieces(tokenizer) -> None:
    """`tokenizer` (a lossless one) writing a `▁` before the text and after each newline, before its model."""
    backend = tokenizer.backend_tokenizer
    extra = [normalizers.Replace("\n", "\n" + METASPACE), normalizers.Prepend(METASPACE)]
    backend.normalizer = normalizers.Sequence([backend.normalizer, *extra])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--d-model", type=int, default=128)
    parser.add_argument("--vocab", type=int, default=1300, help="pieces: the most the sample gives (flan-t5: 32,000)")
    parser.add_argument("--held-out", type=int, default=30)
    parser.add_argument("--context", type=int, default=300)
    parser.add_argument("--target", type=int, default=120)
    parser.add_argument("--windows", type=int, default=300)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cache-dir", default=str(Path.home() / ".cache" / "codistill" / "bench"))
    parser.add_argument("--quick", action="store_true", help="20 steps, 8 windows: checks that it runs")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.windows, args.d_model = 20, 8, 64
    torch.set_num_threads(args.threads)
    if not SHARED.is_file():
        raise SystemExit(f"{SHARED} is missing: this benchmark reads the shared MoonScript files")
    texts = files()
    train, held_out = texts[: -args.held_out], texts[-args.held_out :]

    started = time.perf_counter()
    base = tiny_t5(args.cache_dir, vocab_size=args.vocab, d_model=args.d_model, extra_ids=100, head_multiple=128)
    pretrained = Path(args.cache_dir) / f"t5_rewrite-{Path(base).name}-steps{args.steps}"
    if not (pretrained / "config.json").is_file():
        model, tokenizer = seq2seq_model(base), AutoTokenizer.from_pretrained(base)
        brief_training(model, continuation_batches(tokenizer, train, seed=0), args.steps, seed=0)
        model.save_pretrained(pretrained)
        tokenizer.save_pretrained(pretrained)
    print(f"pretrained T5 double: {pretrained} ({time.perf_counter() - started:.0f} s)")

    pairs = windows(held_out, args.context, args.target, args.windows)
    own = AutoTokenizer.from_pretrained(pretrained)
    rows = {}
    bpb, per_token = bits_per_byte(
        seq2seq_model(pretrained), lambda t: own(t, add_special_tokens=False)["input_ids"], pairs
    )
    rows["T5's own tokenizer (lossy)"] = {"bits per byte": bpb, "bytes per token": per_token}
    arms = {
        "rewrite, new rows at noise": "noise",
        "rewrite, new rows from pieces": "pieces",
        "+ line-start word pieces": "word starts",
    }
    for arm, variant in arms.items():
        student = load_student(str(pretrained))
        if variant == "noise":
            noise_rows(student.model, len(student.tokenizer.original))
        if variant == "word starts":
            with_line_start_word_pieces(student.tokenizer.base)
        bpb, per_token = bits_per_byte(student.model, student.tokenizer.encode, pairs)
        rows[arm] = {"bits per byte": bpb, "bytes per token": per_token}
    reference = rows["T5's own tokenizer (lossy)"]["bits per byte"]
    for row in rows.values():
        row["vs own tokenizer"] = row["bits per byte"] / reference
    print_table(f"held-out MoonScript, {len(pairs)} windows, T5 double trained {args.steps} steps", rows)


if __name__ == "__main__":
    main()
