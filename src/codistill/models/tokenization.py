"""Lossless code tokenization for SentencePiece (T5) students, baked into the saved `tokenizer.json`.

T5's pipeline loses code: its normaliser and whitespace split turn newlines and tabs into spaces, collapse
runs of spaces and strip the ends, and characters outside the vocabulary (`{`, emoji, CJK) become `<unk>`.
`lossless` rebuilds a loaded T5-style (Unigram) tokenizer from the `tokenizers` library's own components,
so plain `AutoTokenizer.from_pretrained(student)` round-trips every string, in transformers, pipelines and
serving engines alike:

- no normaliser or whitespace split of its own: every character reaches the Unigram model as written;
- byte fallback: a character the vocabulary lacks (`\\n`, `\\t`, `{`, emoji) becomes its UTF-8 bytes, the
  pieces `<0x0A>` ..., which `decoders.ByteFallback` turns back into text;
- a space is the metaspace `▁`, never prepended, so a leading space survives and encodings concatenate at
  the FIM markers; runs of 2, 4, 8 and 16 are single pieces (indentation);
- the normaliser writes `<` and a literal `▁` as their byte pieces, and the vocabulary's other pieces
  holding `<` are never chosen, so text cannot spell a byte piece;
- the FIM markers are added tokens, neither normalised nor special: `skip_special_tokens` (what pipelines
  decode with) keeps them, and keeps whitespace, which is no added token at all.

The new pieces extend the Unigram vocabulary, so their ids follow it and the model's embeddings grow to
match; a student saved by the escaping wrapper this replaced keeps every id and its meaning.
"""

import json
from pathlib import Path

from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from codistill.data.formatting import LEGACY_TASK_PREFIXES, TASK_PREFIXES

BYTE_PIECES = [f"<0x{b:02X}>" for b in range(256)]
METASPACE = "\u2581"  # SentencePiece's visible space
SPACE_RUNS = [METASPACE * n for n in (16, 8, 4, 2)]
LEGACY_SPACE_RUNS = ["<sp16>", "<sp8>", "<sp4>", "<sp2>"]  # the same ids' names in the escaping wrapper
NEVER = -1e6  # the score of a piece holding `<`: any other segmentation wins
CODEC_FILE = "codistill_tokenizer.json"


def _byte_escape(char: str) -> str:
    return "".join(BYTE_PIECES[b] for b in char.encode("utf-8"))


def lossless(tokenizer, markers: tuple[str, ...] = ()) -> PreTrainedTokenizerFast:
    """`tokenizer` (a T5-style Unigram tokenizer, lossless already or not) rebuilt to round-trip every
    string, with `markers` as atomic added tokens. Existing ids keep their meaning."""
    spec = json.loads(tokenizer.backend_tokenizer.to_str())["model"]
    if spec["type"] != "Unigram":
        raise ValueError(f"lossless() rebuilds SentencePiece (Unigram) tokenizers, not {spec['type']}")
    specials = set(tokenizer.all_special_tokens)
    vocab = [(p, NEVER if "<" in p and p not in specials and p not in BYTE_PIECES else s) for p, s in spec["vocab"]]
    known = {p for p, _ in vocab}
    vocab += [(p, 0.0) for p in BYTE_PIECES + SPACE_RUNS if p not in known]
    backend = Tokenizer(models.Unigram(vocab, unk_id=spec["unk_id"], byte_fallback=True))
    backend.normalizer = normalizers.Sequence(
        [normalizers.Replace("<", _byte_escape("<")), normalizers.Replace(METASPACE, _byte_escape(METASPACE))]
    )
    backend.pre_tokenizer = pre_tokenizers.Metaspace(METASPACE, prepend_scheme="never", split=False)
    backend.decoder = decoders.Sequence(
        [decoders.Metaspace(METASPACE, prepend_scheme="never", split=False), decoders.ByteFallback(), decoders.Fuse()]
    )
    backend.post_processor = tokenizer.backend_tokenizer.post_processor
    codec = set(BYTE_PIECES + LEGACY_SPACE_RUNS)
    for token_id, token in sorted(tokenizer.added_tokens_decoder.items()):
        if token.content not in codec:
            (backend.add_special_tokens if token.special else backend.add_tokens)([token])
            if backend.token_to_id(token.content) != token_id:
                raise ValueError(f"{token.content!r} would move from id {token_id}: the student would misread it")
    missing = [m for m in markers if m not in backend.get_vocab()]
    backend.add_tokens([AddedToken(m, normalized=False, special=False) for m in missing])
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token=tokenizer.eos_token,
        pad_token=tokenizer.pad_token,
        unk_token=tokenizer.unk_token,
        model_max_length=tokenizer.model_max_length,
        clean_up_tokenization_spaces=False,  # it deletes spaces before punctuation
        split_special_tokens=True,  # `</s>` in code is text, not the end of it
    )


class CodeTokenizer:
    """A student's lossless tokenizer (`base`, what transformers loads from the folder) and what codistill
    adds to it: the task prefixes the student learnt, recorded beside it (students saved before the record
    learnt the legacy `[label]` ones), and `encode`/`decode` as the datamodule and evaluation call them
    (no special tokens added; padding and eos dropped)."""

    def __init__(self, tokenizer, markers: tuple[str, ...] = (), task_prefixes: dict[str, str] | None = None):
        self.original = tokenizer  # as loaded: the ids past its length are new (codistill.models.loading)
        self.base = lossless(tokenizer, markers)
        self.markers = tuple(markers)
        self.task_prefixes = dict(task_prefixes or TASK_PREFIXES)

    def __call__(self, text, **kwargs):
        return self.base(text, **kwargs)

    def encode(self, text: str) -> list[int]:
        return self.base.encode(text, add_special_tokens=False)

    def decode(self, ids) -> str:
        return self.base.decode([int(i) for i in ids], skip_special_tokens=True)

    def batch_decode(self, sequences) -> list[str]:
        return [self.decode(ids) for ids in sequences]

    def __len__(self) -> int:
        return len(self.base)

    def get_vocab(self) -> dict[str, int]:
        return self.base.get_vocab()

    @property
    def pad_token_id(self) -> int:
        return self.base.pad_token_id

    @property
    def eos_token_id(self) -> int:
        return self.base.eos_token_id

    def save_pretrained(self, directory: str | Path) -> None:
        self.base.save_pretrained(directory)
        config = Path(directory, "tokenizer_config.json")
        # transformers 5 writes its own class name; the alias also loads in transformers 4 (vLLM, TGI)
        config.write_text(json.dumps({**json.loads(config.read_text()), "tokenizer_class": "PreTrainedTokenizerFast"}))
        record = {"markers": list(self.markers), "task_prefixes": self.task_prefixes}
        Path(directory, CODEC_FILE).write_text(json.dumps(record, indent=2))

    @classmethod
    def from_pretrained(cls, name_or_path: str, markers: tuple[str, ...] | None = None) -> "CodeTokenizer":
        """Load a tokenizer (a Hub id or a folder) and make it lossless; a saved student keeps its markers and
        task prefixes. One saved before the prefixes were recorded learnt the legacy `[label]` ones."""
        saved = Path(name_or_path, CODEC_FILE)
        record = json.loads(saved.read_text()) if saved.is_file() else {}
        if markers is None:
            markers = tuple(record.get("markers", ()))
        prefixes = record.get("task_prefixes", LEGACY_TASK_PREFIXES if record else TASK_PREFIXES)
        return cls(AutoTokenizer.from_pretrained(name_or_path), markers, prefixes)
