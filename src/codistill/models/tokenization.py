"""Lossless code tokenization for SentencePiece (T5) students.

T5's SentencePiece normaliser turns newlines and tabs into spaces, collapses runs of spaces, strips the
ends, and maps characters outside its vocabulary (`{`, emoji, CJK) to `<unk>`: code does not round-trip.
`CodeTokenizer` escapes text before the base tokenizer sees it and undoes the escape when decoding:

- a character the base tokenizer reproduces exactly (printable ASCII, checked per tokenizer) stays;
- every other character becomes its UTF-8 bytes as added tokens `<0x0A>` (a newline), `<0xE6>` ...;
- a single space between two kept characters stays; any other run of spaces (indentation, alignment)
  becomes `<sp16>`/`<sp8>`/`<sp4>`/`<sp2>`/`<0x20>` tokens;
- `markers` (the FIM markers) pass through as atomic tokens.

`<` always escapes, so the text can never spell an added token by accident. Hence
`decode(encode(x)) == x` for every string x. Natural-language text the pretrained model already reads
(the task prefixes, kept in `task_prefixes`) bypasses the escape: `encode_text`.
"""

import json
import re
from pathlib import Path

from tokenizers import AddedToken
from transformers import AutoTokenizer

from codistill.data.formatting import LEGACY_TASK_PREFIXES, TASK_PREFIXES

BYTE_TOKENS = [f"<0x{b:02X}>" for b in range(256)]
SPACE_RUNS = [(16, "<sp16>"), (8, "<sp8>"), (4, "<sp4>"), (2, "<sp2>"), (1, "<0x20>")]
METASPACE = "\u2581"  # SentencePiece's visible space
CODEC_FILE = "codistill_tokenizer.json"


class CodeTokenizer:
    """A lossless wrapper around a Hugging Face SentencePiece tokenizer (see module docstring)."""

    def __init__(self, tokenizer, markers: tuple[str, ...] = (), task_prefixes: dict[str, str] | None = None):
        self.base = tokenizer
        self.markers = tuple(markers)
        self.task_prefixes = dict(task_prefixes or TASK_PREFIXES)
        codec = BYTE_TOKENS + [token for _, token in SPACE_RUNS[:-1]]
        vocab = tokenizer.get_vocab()
        missing = [t for t in codec + list(self.markers) if t not in vocab]
        tokenizer.add_tokens([AddedToken(t, normalized=False, special=False) for t in missing])
        self._piece_bytes = {t: bytes([b]) for b, t in enumerate(BYTE_TOKENS)}
        self._piece_bytes.update({t: b" " * n for n, t in SPACE_RUNS})
        self._skip_ids = set(tokenizer.all_special_ids) - {tokenizer.unk_token_id}
        self.safe = frozenset(c for c in map(chr, range(0x21, 0x7F)) if c != "<" and self._reproduces(c))
        pattern = "|".join(re.escape(m) for m in sorted(self.markers, key=len, reverse=True))
        self._marker_split = re.compile(f"({pattern})") if pattern else None

    def _reproduces(self, char: str) -> bool:
        ids = self.base.encode(char, add_special_tokens=False)
        return self.base.unk_token_id not in ids and self._decode_pieces(ids) == char

    # -- escape / unescape ------------------------------------------------------------------------
    def escape(self, text: str) -> str:
        """Rewrite `text` so that the base tokenizer keeps every character (markers untouched)."""
        parts = self._marker_split.split(text) if self._marker_split else [text]
        return "".join(p if p in self.markers else self._escape_plain(p) for p in parts)

    def _escape_plain(self, text: str) -> str:
        out = []
        for match in re.finditer(r" +|.", text, flags=re.DOTALL):
            chunk, start, end = match.group(), match.start(), match.end()
            if chunk[0] == " ":
                inner = 0 < start and end < len(text) and text[start - 1] in self.safe and text[end] in self.safe
                out.append(" " if len(chunk) == 1 and inner else _space_tokens(len(chunk)))
            elif chunk in self.safe:
                out.append(chunk)
            else:
                out.append("".join(BYTE_TOKENS[b] for b in chunk.encode("utf-8")))
        return "".join(out)

    def _decode_pieces(self, ids) -> str:
        out, segment, raw = [], [], bytearray()

        def flush():
            if segment:
                text = "".join(segment).replace(METASPACE, " ")
                out.append(text[1:] if text.startswith(" ") else text)  # SentencePiece's dummy prefix
                segment.clear()
            if raw:
                out.append(raw.decode("utf-8", errors="replace"))
                raw.clear()

        for token_id, piece in zip(ids, self.base.convert_ids_to_tokens(list(ids)), strict=True):
            if piece in self._piece_bytes:
                if segment:
                    flush()
                raw.extend(self._piece_bytes[piece])
            elif piece in self.markers:
                flush()
                out.append(piece)
            elif token_id in self._skip_ids:
                continue
            elif token_id == self.base.unk_token_id:
                flush()
                out.append("\ufffd")
            else:
                if raw:
                    flush()
                segment.append(piece)
        flush()
        return "".join(out)

    # -- the tokenizer interface the datamodule and model use ----------------------------------------
    def __call__(self, text, **kwargs):
        texts = [self.escape(t) for t in text] if isinstance(text, list) else self.escape(text)
        return self.base(texts, **kwargs)

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return self.base.encode(self.escape(text), add_special_tokens=add_special_tokens)

    def encode_text(self, text: str) -> list[int]:
        """Ids of `text` as the base tokenizer reads it, unescaped: for prose the pretrained model knows
        (a task prefix), not for code (whitespace is normalised away)."""
        return self.base.encode(text, add_special_tokens=False)

    def decode(self, ids) -> str:
        """Text for token ids; padding, eos and other special tokens are dropped, `<unk>` is U+FFFD."""
        return self._decode_pieces([int(i) for i in ids])

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

    # -- persistence ---------------------------------------------------------------------------------
    def save_pretrained(self, directory: str | Path) -> None:
        self.base.save_pretrained(directory)
        record = {"markers": list(self.markers), "task_prefixes": self.task_prefixes}
        Path(directory, CODEC_FILE).write_text(json.dumps(record, indent=2))

    @classmethod
    def from_pretrained(cls, name_or_path: str, markers: tuple[str, ...] | None = None) -> "CodeTokenizer":
        """Load a base tokenizer (a Hub id or a folder) and wrap it; a saved student keeps its markers and
        task prefixes. One saved before the prefixes were recorded learnt the legacy `[label]` ones."""
        saved = Path(name_or_path, CODEC_FILE)
        record = json.loads(saved.read_text()) if saved.is_file() else {}
        if markers is None:
            markers = tuple(record.get("markers", ()))
        prefixes = record.get("task_prefixes", LEGACY_TASK_PREFIXES if record else TASK_PREFIXES)
        return cls(AutoTokenizer.from_pretrained(name_or_path), markers, prefixes)


def _space_tokens(n: int) -> str:
    out = []
    for size, token in SPACE_RUNS:
        count, n = divmod(n, size)
        out.append(token * count)
    return "".join(out)
