"""Where a student's teacher distributions come from (`teacher_logits=online|offline|sampled`).

Every source describes the same positions: the teacher's tokens of the label the student learns, then the
teacher's end-of-text token, each predicted after the teacher's own PSM prompt (`teacher_prompt`). Each
source says what the datamodule must add to a row (`encode`) and to a batch (`collate`: the batch's
`"teacher"`, a typed part of codistill.losses.teacher_batch), and what the loss gets of that part in the
step (`teacher_batch`); the loss pairs it with the student's targets (`codistill.losses.targets.aligned`).

- `OnlineTeacher`: the run's one teacher model (codistill.teacher.Teacher) beside the student (eval mode,
  no grad) scores every batch: dense logits, no storage, one more forward pass per step. It is a plain
  attribute of the module, not a submodule, so it is never trained, never wrapped by DDP/DeepSpeed (each
  rank holds its replica) and never saved in a checkpoint.
- `OfflineTeacher`: codistill-generate stored the top-k ids, log-probabilities and tail mass per position
  as dataset columns (see codistill.data.schema); training needs no teacher in memory.
- `SampledTeacher`: codistill-generate stored n draws from the teacher's distribution per position (the
  distinct ids and their counts): their empirical distribution's forward KL has, in expectation, the
  gradient of the dense forward KL (random-sampling KD, Anshumann et al. 2025, "Sparse Logit Sampling"),
  where top-k is biased towards the head of the distribution.
- `StoredLikelihoods` (`loss=alm`): codistill-generate stored the teacher's log-probability of each of its own
  tokens of the label and where each ends in the text; the student's chunks are aligned to them in collate.

What a source gives decides which losses it serves: next-token `distributions` (top-k, draws, dense logits:
every loss but `alm`) and per-token `likelihoods` (`alm`); the online teacher gives both.
"""

import numpy as np
import torch
from transformers import AutoTokenizer

from codistill.data import schema
from codistill.data.batching import right_padded
from codistill.errors import ConfigError
from codistill.generation import context_length, encode_pair, pad_id_of
from codistill.losses import (
    EMPTY,
    IGNORE_INDEX,
    Dense,
    Draws,
    Likelihoods,
    Projected,
    Projection,
    TeacherTokens,
    TopK,
    heads_apply,
    logits_at,
    outputs_at,
    target_mask,
)


class OnlineTeacher:
    """The run's local teacher (codistill.teacher.Teacher, loaded once and shared) scoring each batch (see the
    module docstring)."""

    online = True
    forward_kl_only = False
    distributions, likelihoods = True, True
    columns = ("teacher_input_ids", "teacher_labels")  # what `encode` adds and `collate` reads
    requires = (schema.TEACHER_PROMPT,)  # what the dataset must hold

    def __init__(self, teacher):
        self.teacher = teacher
        self.model, self.tokenizer = teacher.backend.model.eval().requires_grad_(False), teacher.tokenizer

    @property
    def vocabulary(self) -> dict[str, int]:
        return self.tokenizer.get_vocab()

    def to(self, device) -> "OnlineTeacher":
        self.model.to(device)
        return self

    def encode(self, row: dict, label_column: str) -> dict:
        """The teacher's tokens for a row: its PSM prompt (oldest tokens dropped past the context), then the
        targets (the label and end-of-text, as offline scoring tokenizes them), with labels -100 on the prompt."""
        prompt, targets = encode_pair(
            self.tokenizer,
            row[schema.TEACHER_PROMPT],
            row[label_column] + self.teacher.eos_token,
            context_length(self.model),
        )
        return {"teacher_input_ids": prompt + targets, "teacher_labels": [IGNORE_INDEX] * len(prompt) + targets}

    def collate(self, rows: list[dict]) -> dict:
        inputs, attention = right_padded([r["teacher_input_ids"] for r in rows], pad_id_of(self.tokenizer))
        labels, _ = right_padded([r["teacher_labels"] for r in rows], IGNORE_INDEX)
        return {"teacher": TeacherTokens(inputs, attention, labels)}

    @torch.no_grad()
    def teacher_batch(self, tokens: TeacherTokens, fused: bool = False) -> Dense | Projected | Likelihoods:
        """The teacher's dense logits over its tokens, or (`fused`) its last hidden states and output
        embeddings, for the fused kernels; over the tokenizer's tokens only: a head padded past the tokenizer
        (santacoder's 49,280 rows over 49,157 tokens) has rows that are no token of the student's. Tokens
        with an `alignment` (loss=alm) give the `Likelihoods` of their targets instead."""
        width = len(self.tokenizer)
        if tokens.alignment is not None:
            mask, targets = target_mask(tokens.labels, shift=True)
            logits, _ = outputs_at(self.model, tokens.input_ids, tokens.attention_mask, mask)
            logprobs = torch.log_softmax(logits[..., :width].float(), -1)
            return Likelihoods(logprobs.gather(-1, targets[mask].unsqueeze(-1)).squeeze(-1), tokens.alignment)
        if fused:
            projection = Projection.of(self.model, tokens.input_ids, tokens.attention_mask)
            return Projected(projection.hidden, projection.weight[:width], tokens.mask)
        mask = tokens.mask
        if heads_apply(self.model):  # the head at the target rows only (codistill.losses.heads)
            logits = logits_at(self.model, tokens.input_ids, tokens.attention_mask, mask)
            return Dense(logits[..., :width], mask, at_targets=True)
        logits = self.model(input_ids=tokens.input_ids, attention_mask=tokens.attention_mask).logits
        return Dense(logits[..., :width], mask)

    @torch.no_grad()
    def hidden_batch(self, tokens: TeacherTokens, layers: tuple[int, ...]) -> Dense:
        """`teacher_batch`'s dense logits at the targets, and the teacher's hidden states there after each of
        `layers` (loss.hidden, codistill.losses.hidden), from the same forward pass."""
        mask = tokens.mask
        logits, states = outputs_at(self.model, tokens.input_ids, tokens.attention_mask, mask, layers)
        return Dense(logits[..., : len(self.tokenizer)], mask, at_targets=True, states=states)


class OfflineTeacher:
    """The teacher's top-k distributions stored by codistill-generate (`top_k` of them per position)."""

    online = False
    forward_kl_only = False  # a source whose distributions estimate forward KL at temperature 1 and no other
    distributions, likelihoods = True, False
    columns = (schema.TEACHER_TOPK_IDS, schema.TEACHER_TOPK_LOGPROBS, schema.TEACHER_TAIL_MASS)
    requires = schema.TEACHER_DISTRIBUTION_COLUMNS

    def __init__(self, top_k: int = 32, tokenizer: str | None = None):
        if top_k < 1:
            raise ConfigError(f"teacher_logits.top_k={top_k} must be at least 1")
        self.top_k, self.vocabulary = top_k, tokenizer_vocabulary(tokenizer)

    def to(self, device) -> "OfflineTeacher":
        return self

    def encode(self, row: dict, label_column: str) -> dict:
        stored = len(row[schema.TEACHER_TOPK_IDS][0]) if row[schema.TEACHER_TOPK_IDS] else self.top_k
        if stored < self.top_k:
            raise ConfigError(
                f"the dataset stores the top {stored} teacher tokens per position, fewer than "
                f"teacher_logits.top_k={self.top_k}: lower it, or regenerate with that top_k"
            )
        return check_label(row, label_column)

    def collate(self, rows: list[dict]) -> dict:
        """`TopK`: [B, L, k] ids and log-probabilities, [B, L] tail and mask (padding: id 0, masked out). A dataset
        stored with a larger k gives its first `top_k` ids, and the mass of the rest joins the tail."""
        lengths = _lengths(rows, schema.TEACHER_TOPK_IDS)
        width, k = int(lengths.max()), self.top_k
        ids, logprobs = np.zeros((len(rows), width, k), np.int64), np.zeros((len(rows), width, k), np.float32)
        tail = np.zeros((len(rows), width), np.float32)
        for i, row in enumerate(rows):
            n = lengths[i]
            if n:
                stored = np.asarray(row[schema.TEACHER_TOPK_LOGPROBS], np.float32)
                ids[i, :n] = np.asarray(row[schema.TEACHER_TOPK_IDS])[:, :k]
                logprobs[i, :n] = stored[:, :k]
                # the ids stored beyond the first k join the tail
                tail[i, :n] = np.asarray(row[schema.TEACHER_TAIL_MASS]) + np.exp(stored[:, k:]).sum(-1)
        mask = np.arange(width) < lengths[:, None]
        return {"teacher": TopK(*map(torch.from_numpy, (ids, logprobs, tail, mask)))}

    def teacher_batch(self, stored: TopK, fused: bool = False) -> TopK:
        """The batch's stored part, as it is (no teacher runs)."""
        return stored


class SampledTeacher(OfflineTeacher):
    """`samples` draws per position from the teacher's distribution, stored by codistill-generate, as the
    sparse distribution their counts make (each distinct id with count / n, nothing in the tail). It
    estimates forward KL at temperature 1 only: other divergences of an empirical distribution are biased."""

    forward_kl_only = True
    columns = (schema.TEACHER_SAMPLE_IDS, schema.TEACHER_SAMPLE_COUNTS)
    requires = schema.TEACHER_SAMPLE_COLUMNS

    def __init__(self, samples: int = 64, tokenizer: str | None = None):
        if samples < 1:
            raise ConfigError(f"teacher_logits.samples={samples} must be at least 1")
        self.samples, self.vocabulary = samples, tokenizer_vocabulary(tokenizer)

    def encode(self, row: dict, label_column: str) -> dict:
        counts = row[schema.TEACHER_SAMPLE_COUNTS]
        if counts and sum(counts[0]) != self.samples:
            raise ConfigError(
                f"the dataset stores {sum(counts[0])} draws per position, not teacher_logits.samples={self.samples}: "
                "set it to match, or regenerate with that number"
            )
        return check_label(row, label_column)

    def collate(self, rows: list[dict]) -> dict:
        """`Draws`: [B, L, d] ids and log(count / n) for the most distinct ids d at any position; the rest of a
        position's row repeats its first id with no mass (a repeated id with no mass changes no bucket)."""
        lengths = _lengths(rows, schema.TEACHER_SAMPLE_IDS)
        width = int(lengths.max())
        d = max((len(ids) for r in rows for ids in r[schema.TEACHER_SAMPLE_IDS]), default=1)
        ids = np.zeros((len(rows), width, d), np.int64)
        logprobs = np.full((len(rows), width, d), EMPTY, np.float32)
        for i, row in enumerate(rows):
            for j, (drawn, counts) in enumerate(
                zip(row[schema.TEACHER_SAMPLE_IDS], row[schema.TEACHER_SAMPLE_COUNTS], strict=True)
            ):
                ids[i, j] = drawn[0]
                ids[i, j, : len(drawn)] = drawn
                logprobs[i, j, : len(drawn)] = np.log(np.asarray(counts, np.float32) / self.samples)
        mask = np.arange(width) < lengths[:, None]
        return {"teacher": Draws(*map(torch.from_numpy, (ids, logprobs, mask)))}


class StoredLikelihoods:
    """The teacher's log-probability of each of its tokens of the label, and each token's end in the text,
    stored by codistill-generate (schema.TEACHER_LIKELIHOODS): `loss=alm` from a dataset, no teacher in memory,
    8 bytes a token. The datamodule aligns them to the student's tokens (codistill.losses.alignment)."""

    online = False
    forward_kl_only = False
    distributions, likelihoods = False, True
    vocabulary = None  # ALM compares no vocabularies
    columns = (schema.TEACHER_TOKEN_LOGPROBS, schema.TEACHER_TOKEN_ENDS)
    requires = schema.TEACHER_LIKELIHOOD_COLUMNS

    def __init__(self, stores_likelihoods: bool = True):
        if not stores_likelihoods:  # the config key tells the dataset's builder (data.source) to store them
            raise ConfigError("teacher_logits=likelihoods reads stored likelihoods: leave stores_likelihoods=true")

    def to(self, device) -> "StoredLikelihoods":
        return self

    def encode(self, row: dict, label_column: str) -> dict:
        return check_label(row, label_column)

    def collate(self, rows: list[dict]) -> dict:
        """`Likelihoods`: every example's log-probabilities end to end, and each example's token ends."""
        logprobs = [lp for r in rows for lp in r[schema.TEACHER_TOKEN_LOGPROBS]]
        ends = [list(r[schema.TEACHER_TOKEN_ENDS]) for r in rows]
        return {"teacher": Likelihoods(torch.tensor(logprobs, dtype=torch.float32), ends=ends)}

    def teacher_batch(self, stored: Likelihoods, fused: bool = False) -> Likelihoods:
        return stored


def check_label(row: dict, label_column: str) -> dict:
    """Nothing to add to the row, once its stored teacher columns are known to cover the label the student learns."""
    if row[schema.TEACHER_DISTRIBUTION_OF] != label_column:
        raise ConfigError(
            f"the dataset's teacher distributions cover {row[schema.TEACHER_DISTRIBUTION_OF]!r}, but the student "
            f"learns {label_column!r}: set data.label_source to match, or regenerate the dataset"
        )
    return {}


def tokenizer_vocabulary(tokenizer: str | None) -> dict[str, int] | None:
    """The teacher's vocabulary, to check the student can be compared with it token by token (None: unknown)."""
    return AutoTokenizer.from_pretrained(tokenizer).get_vocab() if tokenizer else None


def _lengths(rows: list[dict], column: str) -> np.ndarray:
    return np.fromiter((len(r[column]) for r in rows), dtype=np.int64, count=len(rows))
