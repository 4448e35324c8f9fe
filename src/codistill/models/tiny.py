"""Tiny, offline stand-ins for the real models: the real architectures at toy size.

Each builder trains a tokenizer on the bundled MoonScript sample, initialises the model with a fixed
seed, optionally trains it briefly on that sample (`train_steps`: weights that know something, as a real
checkpoint's do, where a test needs them), saves both with `save_pretrained` into a cache folder and
returns that folder, so everything downstream loads them with `from_pretrained` exactly as it loads
`bigcode/gpt_bigcode-santacoder` or `google/flan-t5-small`. A finished folder is reused; a half-written one
never is (atomic rename).
"""

import hashlib
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import sentencepiece as spm
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (
    AutoTokenizer,
    GPTBigCodeConfig,
    GPTBigCodeForCausalLM,
    PreTrainedTokenizerFast,
    T5Config,
    T5ForConditionalGeneration,
    T5Tokenizer,
)

from codistill.data.corpus import SAMPLE_DIR

SANTACODER_SPECIAL = ["<|endoftext|>", "<fim-prefix>", "<fim-middle>", "<fim-suffix>", "<fim-pad>"]
STARCODER_SPECIAL = ["<|endoftext|>", "<fim_prefix>", "<fim_middle>", "<fim_suffix>", "<fim_pad>"]
SPECIAL = {"santacoder": SANTACODER_SPECIAL, "starcoder": STARCODER_SPECIAL}  # the FIM spellings of each family


def sample_texts() -> list[str]:
    """The bundled MoonScript sample's files: what every double's tokenizer and brief training read."""
    return [p.read_text(encoding="utf-8") for p in sorted(SAMPLE_DIR.glob("*.moon"))]


def cached_folder(cache_dir: str, name: str, build: Callable[[Path], None]) -> str:
    """Build into a temp folder beside the target and rename it into place once complete."""
    target = Path(cache_dir).expanduser().resolve() / name
    if (target / "config.json").is_file():
        return str(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))
    try:
        build(tmp)
        tmp.rename(target)
    except OSError:
        if not (target / "config.json").is_file():  # lost a race only if the winner finished
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return str(target)


def byte_level_bpe(
    texts: list[str], vocab_size: int, n_positions: int, special: list[str] = SANTACODER_SPECIAL
) -> PreTrainedTokenizerFast:
    """A byte-level BPE trained on `texts` (lossless on any string) with `special`'s end-of-text and FIM
    tokens (santacoder's by default), as a transformers fast tokenizer."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    eos = special[0]
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=eos,
        bos_token=eos,
        unk_token=eos,
        additional_special_tokens=special[1:],
        model_max_length=n_positions,
    )


def tiny_gpt_bigcode(
    cache_dir: str,
    vocab_size: int = 1024,
    n_positions: int = 1024,
    n_embd: int = 64,
    n_layer: int = 2,
    n_head: int = 4,
    seed: int = 0,
    head_multiple: int = 1,
    family: str = "santacoder",
    train_steps: int = 0,
) -> str:
    """A GPTBigCode (santacoder's architecture, multi-query attention) with a byte-level BPE tokenizer
    carrying `family`'s FIM and end-of-text spellings (santacoder's `<fim-prefix>`, starcoder's
    `<fim_prefix>`). `head_multiple` > 1 pads the embeddings and the head past the tokenizer to a multiple of
    it, as santacoder's are (49,280 rows over 49,157 tokens). `train_steps` > 0: next-token training on the
    sample for that many steps."""

    def build(out: Path) -> None:
        fast = byte_level_bpe(sample_texts(), vocab_size, n_positions, SPECIAL[family])
        model = save_gpt_bigcode(out, fast, n_positions, n_embd, n_layer, n_head, seed, head_multiple)
        if train_steps:
            brief_training(model, causal_batches(fast, sample_texts(), seed), train_steps, seed)
            model.save_pretrained(out)

    padded = (f"-h{head_multiple}" if head_multiple > 1 else "") + ("" if family == "santacoder" else f"-{family}")
    padded += f"-t{train_steps}" if train_steps else ""
    return cached_folder(
        cache_dir, f"tiny_gpt_bigcode-v{vocab_size}-p{n_positions}-d{n_embd}-l{n_layer}-s{seed}{padded}", build
    )


def gpt_bigcode_with_tokenizer(
    cache_dir: str,
    tokenizer: str,
    n_positions: int = 2048,
    n_embd: int = 512,
    n_layer: int = 8,
    n_head: int = 8,
    seed: int = 0,
) -> str:
    """A GPTBigCode student initialised from config (multi-query attention, random weights) around an
    existing tokenizer (a Hub id or folder: santacoder's, so token-wise KD from santacoder applies)."""

    def build(out: Path) -> None:
        save_gpt_bigcode(out, AutoTokenizer.from_pretrained(tokenizer), n_positions, n_embd, n_layer, n_head, seed)

    name = f"{Path(tokenizer).name}-{hashlib.sha1(tokenizer.encode('utf-8')).hexdigest()[:8]}"
    return cached_folder(cache_dir, f"gpt_bigcode-{name}-p{n_positions}-d{n_embd}-l{n_layer}-s{seed}", build)


def save_gpt_bigcode(
    out: Path,
    tokenizer,
    n_positions: int,
    n_embd: int,
    n_layer: int,
    n_head: int,
    seed: int,
    head_multiple: int = 1,
    dropout: dict[str, float] | None = None,
) -> GPTBigCodeForCausalLM:
    """A randomly initialised GPTBigCode with multi-query attention around `tokenizer` (its embeddings and
    head padded to a multiple of `head_multiple` rows), saved with it and returned. `dropout`: config keys
    (`attn_pdrop`, `resid_pdrop`, `embd_pdrop`) over transformers' 0.1 each."""
    config = GPTBigCodeConfig(
        **(dropout or {}),
        vocab_size=-(-len(tokenizer) // head_multiple) * head_multiple,
        n_positions=n_positions,
        n_embd=n_embd,
        n_layer=n_layer,
        n_head=n_head,
        multi_query=True,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(seed)
    model = GPTBigCodeForCausalLM(config)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return model


def tiny_t5(
    cache_dir: str,
    vocab_size: int = 800,
    d_model: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    seed: int = 0,
    extra_ids: int = 0,
    head_multiple: int = 1,
    train_steps: int = 0,
) -> str:
    """A T5 v1.1 (flan-t5's architecture: gated-GELU, separate `lm_head`) with a SentencePiece unigram
    tokenizer trained with T5's default normalisation, so it has T5's whitespace bug to fix. `extra_ids`
    sentinel tokens and a head padded to a multiple of `head_multiple` rows make it flan-t5's shape (100
    sentinels; 32,128 rows over 32,100 tokens). `train_steps` > 0: that many steps of continuing the sample's
    code through this tokenizer, as T5 learnt its own (so it knows code as T5's pipeline writes it)."""

    def build(out: Path) -> None:
        lines = [line for text in sample_texts() for line in text.splitlines() if line.strip()]
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(lines),
            model_prefix=str(out / "spiece"),
            vocab_size=vocab_size,
            model_type="unigram",
            pad_id=0,
            eos_id=1,
            unk_id=2,
            bos_id=-1,
            num_threads=1,
            minloglevel=2,
        )
        tokenizer = T5Tokenizer.from_pretrained(out, extra_ids=extra_ids)
        config = T5Config(
            vocab_size=-(-len(tokenizer) // head_multiple) * head_multiple,
            d_model=d_model,
            d_ff=2 * d_model,
            d_kv=d_model // num_heads,
            num_heads=num_heads,
            num_layers=num_layers,
            feed_forward_proj="gated-gelu",
            tie_word_embeddings=False,
            decoder_start_token_id=0,
            pad_token_id=0,
            eos_token_id=1,
        )
        torch.manual_seed(seed)
        model = T5ForConditionalGeneration(config)
        untie_lm_head(model)
        if train_steps:
            brief_training(model, continuation_batches(tokenizer, sample_texts(), seed), train_steps, seed)
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)
        (out / "spiece.vocab").unlink(missing_ok=True)

    flan = f"-x{extra_ids}-h{head_multiple}" if extra_ids or head_multiple > 1 else ""
    flan += f"-t{train_steps}" if train_steps else ""
    return cached_folder(cache_dir, f"tiny_t5-v{vocab_size}-d{d_model}-l{num_layers}-s{seed}{flan}", build)


def untie_lm_head(model: T5ForConditionalGeneration) -> None:
    """Give a T5 its own `lm_head`, as T5 v1.1 / flan-t5 checkpoints have (transformers 5 ties it)."""
    head = torch.empty_like(model.shared.weight).normal_(std=model.config.d_model**-0.5)
    model.lm_head.weight = torch.nn.Parameter(head)
    model.config.tie_word_embeddings = False


def causal_batches(tokenizer, texts: list[str], seed: int, block: int = 128, rows: int = 8) -> list[dict]:
    """The texts, end-of-text between them, cut into `block`-token rows, shuffled into batches of `rows`."""
    ids = [i for text in texts for i in tokenizer(text, verbose=False)["input_ids"] + [tokenizer.eos_token_id]]
    blocks = torch.tensor(ids[: len(ids) // block * block]).view(-1, block)
    blocks = blocks[torch.randperm(len(blocks), generator=torch.Generator().manual_seed(seed))]
    return [{"input_ids": b, "labels": b} for b in blocks.split(rows)]


def continuation_batches(tokenizer, texts: list[str], seed: int, context: int = 96, target: int = 32, rows: int = 8):
    """(`context` tokens -> the next `target` tokens) pairs cut from the texts, shuffled into batches of `rows`."""
    ids = [i for text in texts for i in tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]]
    step = context + target
    pairs = torch.tensor(ids[: len(ids) // step * step]).view(-1, step)
    pairs = pairs[torch.randperm(len(pairs), generator=torch.Generator().manual_seed(seed))]
    return [{"input_ids": p[:, :context], "labels": p[:, context:].contiguous()} for p in pairs.split(rows)]


def brief_training(model, batches: list[dict], steps: int, seed: int, lr: float = 3e-3) -> None:
    """`steps` AdamW steps over `batches` (cycled): weights with what a real checkpoint has, some knowledge."""
    torch.manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    for step in range(steps):
        optimizer.zero_grad()
        model(**batches[step % len(batches)]).loss.backward()
        optimizer.step()
    model.eval()
