"""Two tokenizations of one text, cut into chunks whose boundaries both share (for `loss=alm`).

A token is known by where it ends: its end offset into the text, in characters (a tokenizer's offset mapping).
The end-of-text token that closes a label ends one past the text (`length + 1`), so the two sides' end-of-text
tokens form the last chunk together. Invariants of `chunk_ids`:

- a chunk's tokens on one side spell exactly the characters its tokens on the other side spell;
- chunks are the shortest such spans (`chunks="tokens"`), or (`chunks="space"`) the shortest that end before
  whitespace or at the end of the text, where both tokenizers start a new word (tokenkit's space alignment:
  a chunk cut inside a word compares likelihoods the two tokenizers split differently);
- no chunk crosses a boundary that only one side has; the pieces of a character that a byte-level tokenizer
  splits (`é` as two byte tokens, `\\n\\t` that one tokenizer's offsets give as one span) share one end, so they
  stay in one chunk;
- identical tokenizations give one chunk per token (`chunks="tokens"`);
- a token past the last shared boundary (one side truncated) or with no known end is in no chunk (-1).

Offsets are characters, not bytes: a character is never split between chunks, which only merges the chunks
a byte-level tokenizer could have cut inside a multi-byte character.
"""

from bisect import bisect_left

import torch

from codistill.losses.teacher_batch import Alignment, Likelihoods, TeacherTokens

CHUNKS = ("space", "tokens")


def token_ends(tokenizer, text: str) -> tuple[list[int], list[int]]:
    """(ids, end offsets) of `text` tokenized alone, no special tokens added; the ends never decrease (a token
    inside a character's bytes ends where the character does)."""
    encoding = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ends, last = [], 0
    for _, end in encoding["offset_mapping"]:
        last = max(last, end)
        ends.append(last)
    return list(encoding["input_ids"]), ends


def target_ends(
    targets: list[int], text_ids: list[int], text_ends: list[int], eos_id: int | None, length: int
) -> list[int | None]:
    """The end offset of each of a label's `targets` (its tokens of the text, then end-of-text), given the text's
    own tokenization (`token_ends`): the i-th target is the text's i-th token; an end-of-text right after the
    whole text ends at `length + 1`. From the first target that is neither (a truncated label's end-of-text,
    tokens of another tokenization), None."""
    out: list[int | None] = []
    for i, token in enumerate(targets):
        if i < len(text_ids) and token == text_ids[i]:
            out.append(text_ends[i])
        elif i == len(text_ids) and token == eos_id:
            out.append(length + 1)
        else:
            break
    return out + [None] * (len(targets) - len(out))


def chunk_ids(
    a_ends: list[int | None], b_ends: list[int | None], text: str, chunks: str = "space"
) -> tuple[list[int], list[int]]:
    """The chunk of each token on side a and side b (-1: none), chunks numbered from 0 in text order; see the
    module docstring for what a chunk is."""
    if chunks not in CHUNKS:
        raise ValueError(f"chunks={chunks!r} is not one of {CHUNKS}")
    shared = {e for e in a_ends if e is not None} & {e for e in b_ends if e is not None}
    if chunks == "space":
        shared = {e for e in shared if e >= len(text) or text[e].isspace()}
    boundaries = sorted(shared)

    def chunk_of(end: int | None) -> int:
        k = len(boundaries) if end is None else bisect_left(boundaries, end)
        return k if k < len(boundaries) else -1

    return [chunk_of(e) for e in a_ends], [chunk_of(e) for e in b_ends]


class BatchAligner:
    """The `Alignment` of a batch (codistill.losses.teacher_batch): each example's label text, the student's
    targets, and the teacher's, as ids (online: tokenized here by `teacher_tokenizer`) or as stored end
    offsets (offline)."""

    def __init__(self, student_tokenizer, teacher_tokenizer=None, chunks: str = "space"):
        self.student, self.teacher, self.chunks = student_tokenizer, teacher_tokenizer, chunks

    def __call__(self, texts: list[str], student_targets: list[list[int]], teacher_targets) -> Alignment:
        """`teacher_targets`: per example, the teacher's target ids (with a `teacher_tokenizer`), else their
        stored end offsets."""
        student, teacher, offset, covered = [], [], 0, 0
        for text, s_targets, t_targets in zip(texts, student_targets, teacher_targets, strict=True):
            s_ends = self._ends(self.student, text, s_targets)
            if self.teacher is not None:
                t_ends = self._ends(self.teacher, text, t_targets)
            else:  # stored, -1 where the teacher's token was not the text's
                t_ends = [e if e >= 0 else None for e in t_targets]
            s_chunks, t_chunks = chunk_ids(s_ends, t_ends, text, self.chunks)
            student += [c + offset if c >= 0 else -1 for c in s_chunks]
            teacher += [c + offset if c >= 0 else -1 for c in t_chunks]
            n = max(s_chunks + t_chunks, default=-1) + 1
            last = max((e for e, c in zip(s_ends, s_chunks, strict=True) if c >= 0), default=0)
            offset, covered = offset + n, covered + min(last, len(text))
        total = sum(map(len, texts))
        return Alignment(
            torch.tensor(student, dtype=torch.long),
            torch.tensor(teacher, dtype=torch.long),
            offset,
            covered / total if total else 1.0,
        )

    def attach(self, part: TeacherTokens | Likelihoods, texts: list[str], student_targets: list[list[int]]):
        """The teacher's part of a batch with its `alignment` set."""
        part.alignment = self(texts, student_targets, part.ends if isinstance(part, Likelihoods) else part.targets())
        return part

    @staticmethod
    def _ends(tokenizer, text: str, targets: list[int]) -> list[int | None]:
        ids, ends = token_ends(tokenizer, text)
        return target_ends(targets, ids, ends, tokenizer.eos_token_id, len(text))
