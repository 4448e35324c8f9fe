"""Pretrain a small fill-in-the-middle code model from scratch: a teacher that knows something, built on
any machine, and a starting point for languages no downloadable model covers.

The model is santacoder's architecture (GPTBigCode, multi-query attention) at a size given by config,
with a byte-level BPE trained on the corpus and santacoder's FIM and end-of-text tokens. The corpus is
real code every machine has, the running Python's standard library (test folders left out), plus the
training files of the distillation corpus (`corpus`: a dataset config's corpus node, split exactly as the
dataset splits it, so the teacher never sees a validation or test file). Training packs documents into
`seq_len`-token blocks; each document chunk is turned into a PSM fill-in-the-middle example with
probability `fim_rate` (character-level cut points, as santacoder was trained). A share `corpus_weight` of
the blocks comes from the distillation corpus, the rest from the standard library.

`pretrained_gpt_bigcode` returns a folder that `from_pretrained` loads, built once into `cache_dir` under
a name keyed by a hash of every setting, so it is a `_target_` for a teacher's `name_or_path` exactly as
`codistill.models.tiny.tiny_gpt_bigcode` is. Its `pretraining.json` holds the held-out bits per byte per
domain.
"""

import hashlib
import json
import math
import sysconfig
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from transformers import AutoTokenizer, get_cosine_schedule_with_warmup

from codistill.config import build
from codistill.data.splits import assign_splits, file_id, group_of
from codistill.errors import ConfigError
from codistill.eval.metrics import utf8_bytes
from codistill.generation import resolve_device
from codistill.models.tiny import SANTACODER_SPECIAL, byte_level_bpe, cached_folder, save_gpt_bigcode
from codistill.precision import autocast
from codistill.progress import tqdm
from codistill.rng import stable_rng

LEFT_OUT = {"test", "tests", "idlelib", "site-packages", "turtledemo", "lib2to3", "__pycache__"}
EOS, FIM_PREFIX, FIM_MIDDLE, FIM_SUFFIX = SANTACODER_SPECIAL[:4]


def stdlib_files() -> list[Path]:
    """The running Python's standard library modules, test and tool folders left out, in a fixed order."""
    root = Path(sysconfig.get_paths()["stdlib"])
    return sorted(p for p in root.rglob("*.py") if not LEFT_OUT & set(p.relative_to(root).parts))


def fim_document(text: str, rng, fim_rate: float) -> str:
    """`text` as one training document: with probability `fim_rate` in PSM order with cut points drawn
    uniformly over its characters, else left to right; always ending in end-of-text."""
    if rng.random() >= fim_rate or len(text) < 2:
        return text + EOS
    a, b = sorted(rng.sample(range(len(text) + 1), 2))
    return f"{FIM_PREFIX}{text[:a]}{FIM_SUFFIX}{text[b:]}{FIM_MIDDLE}{text[a:b]}{EOS}"


def chunks(text: str, size: int) -> list[str]:
    """`text` in pieces of about `size` characters, cut at line ends where there are any."""
    out, start = [], 0
    while start < len(text):
        end = min(len(text), start + size)
        cut = text.rfind("\n", start, end) + 1 if end < len(text) else end
        end = cut if cut > start else end
        out.append(text[start:end])
        start = end
    return out


def block_stream(tokenizer, texts: list[str], seq_len: int, chunk_chars: int, fim_rate: float, seed: int, passes: int):
    """[n, seq_len] token blocks: `passes` passes over the texts (each with its own FIM draws), packed."""
    ids: list[int] = []
    for p in range(passes):
        documents = [
            fim_document(piece, stable_rng(seed, p, i, j), fim_rate)
            for i, text in enumerate(texts)
            for j, piece in enumerate(chunks(text, chunk_chars))
        ]
        for start in range(0, len(documents), 256):
            for row in tokenizer(documents[start : start + 256], add_special_tokens=False, verbose=False)["input_ids"]:
                ids += row
    n = len(ids) // seq_len
    return torch.tensor(ids[: n * seq_len], dtype=torch.long).view(n, seq_len)  # [0, seq_len] for no text


def split_corpus(corpus, validation_size: float, test_size: float, seed: int, split_by: str) -> dict[str, list[str]]:
    """The distillation corpus's file contents per split, assigned as `codistill.data.build` assigns them."""
    rows = [{"repo": r.get("max_stars_repo_name") or "", "hexsha": file_id(r), "content": r["content"]} for r in corpus]
    groups = [group_of(r, split_by) for r in rows]
    assignment = assign_splits(groups, validation_size, test_size, seed)
    out: dict[str, list[str]] = {"train": [], "validation": [], "test": []}
    for row, group in zip(rows, groups, strict=True):
        out[assignment[group]].append(row["content"])
    return out


@torch.no_grad()
def bits_per_byte_of(model, tokenizer, texts: list[str], seq_len: int) -> float:
    """Left-to-right bits per byte of `texts`, each scored in windows of `seq_len` tokens."""
    nll, n_bytes = 0.0, sum(map(utf8_bytes, texts))
    for text in texts:
        ids = tokenizer(text + EOS, add_special_tokens=False, verbose=False)["input_ids"]
        for start in range(0, len(ids) - 1, seq_len):
            window = torch.tensor([ids[start : start + seq_len + 1]], device=model.device)
            logits = model(input_ids=window[:, :-1]).logits
            nll += F.cross_entropy(logits[0].float(), window[0, 1:], reduction="sum").item()
    return nll / (math.log(2) * max(1, n_bytes))


def pretrained_gpt_bigcode(
    cache_dir: str,
    corpus: dict | None = None,
    validation_size: float = 0.15,
    test_size: float = 0.15,
    split_by: str = "file",
    split_seed: int = 1234,
    stdlib: bool = True,
    corpus_weight: float = 0.3,
    vocab_size: int = 4096,
    n_positions: int = 512,
    n_embd: int = 128,
    n_layer: int = 4,
    n_head: int = 4,
    seq_len: int = 256,
    batch_size: int = 16,
    steps: int = 400,
    lr: float = 3e-3,
    fim_rate: float = 0.5,
    chunk_chars: int = 1500,
    held_out_stdlib: int = 12,
    seed: int = 0,
    precision: str = "auto",
    attention_dropout: float = 0.1,
    dropout: float = 0.1,
    compile: bool = False,
    device: str = "auto",
    tokenizer: str | DictConfig | None = None,
) -> str:
    """The pretrained teacher's folder (see the module docstring); `corpus` is a dataset's `corpus` config
    node, split with (`validation_size`, `test_size`, `split_seed`, `split_by`) as the dataset is. It
    trains on `device` (auto: a GPU where there is one) in `precision` (codistill.precision: auto is bf16
    autocast where the hardware has it). `attention_dropout` (on the attention probabilities) and `dropout`
    (residual and embedding) are transformers' 0.1 by default; attention dropout keeps SDPA off its fused
    kernel, which costs a 256-wide teacher half its step on a CPU (benchmarks/pretrain_peak.py). `compile`:
    `torch.compile` the model (half a minute of compilation, about 10% a step on a CPU). Neither `device`
    nor `compile` is part of the cache key. `tokenizer`: another model's folder (or the config node that builds
    it) whose tokenizer this one uses instead of training its own (`vocab_size` then unused): a student
    pretrained around its teacher's tokens, so token-wise KD applies."""
    settings = {k: v for k, v in locals().items() if k not in ("cache_dir", "device", "compile")}
    for name in ("corpus", "tokenizer"):
        if isinstance(settings[name], DictConfig):
            settings[name] = OmegaConf.to_container(settings[name], resolve=True)
    if tokenizer is None:  # the key of a model that trains its own tokenizer is what it was before the option
        del settings["tokenizer"]
    given = tokenizer
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode("utf-8")).hexdigest()[:12]

    def run(out: Path) -> None:
        torch.manual_seed(seed)
        splits = split_corpus(build(corpus), validation_size, test_size, split_seed, split_by) if corpus else {}
        library = [p.read_text(encoding="utf-8", errors="replace") for p in stdlib_files()] if stdlib else []
        held_out, library = library[:held_out_stdlib], library[held_out_stdlib:]
        own = splits.get("train", [])
        if given is not None:
            tokenizer = AutoTokenizer.from_pretrained(build(given) if isinstance(given, DictConfig) else given)
        else:
            tokenizer = byte_level_bpe(library + own * 20, vocab_size, n_positions)  # the small corpus, weighted up
        tokens_needed = steps * batch_size * seq_len
        own_passes = max(1, math.ceil(corpus_weight * tokens_needed / max(1, sum(map(len, own)) // 3)))
        library_blocks = block_stream(tokenizer, library, seq_len, chunk_chars, fim_rate, seed, 1)
        own_blocks = block_stream(tokenizer, own, seq_len, chunk_chars, fim_rate, seed, own_passes)
        if len(library_blocks) + len(own_blocks) == 0:
            raise ConfigError(
                f"no code to pretrain on (or less than one {seq_len}-token block): set "
                "teacher.backend.name_or_path.stdlib=true or give it a corpus"
            )
        weight = corpus_weight if len(library_blocks) and len(own_blocks) else float(len(own_blocks) > 0)
        where = resolve_device(device)
        rates = {"attn_pdrop": attention_dropout, "resid_pdrop": dropout, "embd_pdrop": dropout}
        model = save_gpt_bigcode(out, tokenizer, n_positions, n_embd, n_layer, n_head, seed, dropout=rates)
        model = model.to(where).train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.1, betas=(0.9, 0.95))
        forward = torch.compile(model) if compile else model
        schedule = get_cosine_schedule_with_warmup(optimizer, max(1, steps // 20), steps)
        rng, started = np.random.default_rng(seed), time.perf_counter()
        bar = tqdm(range(steps), desc="pretraining", unit="step")
        for _ in bar:
            stream = own_blocks if rng.random() < weight else library_blocks
            batch = stream[rng.integers(0, len(stream), batch_size)].to(where)
            with autocast(precision, where):
                loss = forward(input_ids=batch, labels=batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
        model.eval()
        report = {
            "settings": settings,
            "parameters": sum(p.numel() for p in model.parameters()),
            "seconds": round(time.perf_counter() - started, 1),
            "tokens": steps * batch_size * seq_len,
            "bits_per_byte": {},
        }
        if held_out:
            report["bits_per_byte"]["stdlib_held_out"] = bits_per_byte_of(model, tokenizer, held_out, seq_len)
        if splits.get("validation"):
            report["bits_per_byte"]["corpus_validation"] = bits_per_byte_of(
                model, tokenizer, splits["validation"], seq_len
            )
        model.cpu().save_pretrained(out)
        (out / "pretraining.json").write_text(json.dumps(report, indent=2))

    return cached_folder(cache_dir, f"pretrained_gpt_bigcode-d{n_embd}-l{n_layer}-v{vocab_size}-{key}", run)
