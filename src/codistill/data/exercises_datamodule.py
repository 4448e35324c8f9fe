"""Synthetic exercises for a causal student: the prompt is a function's signature and docstring (`problem`),
the target its body (`solution`). The loss covers the solution and its end-of-text token only.

Training batches are length-grouped (little padding) or, with `packing=True`, blocks of exactly
`max_length` tokens cut from the concatenated examples (no padding at all).
"""

from itertools import chain
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from datasets import Dataset, DatasetDict, load_dataset
from pytorch_lightning.utilities import rank_zero_info, rank_zero_warn
from torch.utils.data import DataLoader

from codistill.data.batching import (
    EpochShuffle,
    LengthGroupedBatchSampler,
    MidEpochResume,
    epoch_batches,
    padding_fraction_of,
    right_padded,
)
from codistill.errors import ConfigError
from codistill.losses import IGNORE_INDEX

SAMPLE_EXERCISES = Path(__file__).parent / "exercises_sample.jsonl"
COLUMNS = ("problem", "solution")


def load_exercises(path: str) -> Dataset:
    """The rows of a JSON Lines file of exercises, checked for the `problem` and `solution` columns."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise ConfigError(
            f"data.path={path} is not a file: point data.path at a JSON Lines file with one exercise per line, "
            f'{{"problem": <signature + docstring>, "solution": <body>}} (e.g. the bundled {SAMPLE_EXERCISES.name})'
        )
    try:
        rows = load_dataset("json", data_files=str(file), split="train")
    except Exception as exc:  # noqa: BLE001 - datasets raises several kinds for unreadable JSON
        raise ConfigError(f"data.path={path} is not readable JSON Lines ({exc}): fix or regenerate the file") from exc
    missing = [c for c in COLUMNS if c not in rows.column_names]
    if missing:
        raise ConfigError(
            f"data.path={path} lacks the column(s) {missing} (has: {', '.join(rows.column_names)}): every line "
            'needs "problem" (a function signature + docstring) and "solution" (the function body)'
        )
    return rows.select_columns(list(COLUMNS))


def encode_exercises(rows: dict, tokenizer, max_length: int) -> dict:
    """A batched `datasets.map` function: `input_ids = problem + solution + [eos]`, labels -100 on the problem.

    Problem and solution are tokenized separately, as at inference, where the prompt is the problem alone;
    with a byte-level BPE the two id lists decode to `problem + solution` exactly. Sequences longer than
    `max_length` are cut from the right; `truncated` records it and `supervised` says whether any label the
    model can predict (a non -100 label after position 0: the labels are shifted) survived."""
    for column in COLUMNS:
        bad = sum(not isinstance(text, str) for text in rows[column])
        if bad:
            raise ConfigError(f"{bad} exercise(s) have a {column} that is not a string (null?): fix the data file")
    eos = tokenizer.eos_token_id
    problems = tokenizer(rows["problem"], add_special_tokens=False)["input_ids"]
    solutions = tokenizer(rows["solution"], add_special_tokens=False)["input_ids"]
    out = {"input_ids": [], "labels": [], "length": [], "truncated": [], "supervised": []}
    for problem, solution in zip(problems, solutions, strict=True):
        ids = problem + solution + [eos]
        labels = [IGNORE_INDEX] * len(problem) + solution + [eos]
        out["truncated"].append(len(ids) > max_length)
        ids, labels = ids[:max_length], labels[:max_length]
        out["input_ids"].append(ids)
        out["labels"].append(labels)
        out["length"].append(len(ids))
        out["supervised"].append(any(label != IGNORE_INDEX for label in labels[1:]))
    return out


def pack_examples(examples: Dataset, block_size: int) -> tuple[dict[str, torch.Tensor], dict[str, int]]:
    """Concatenate the examples, in order, and cut the stream into blocks of exactly `block_size` tokens.

    Labels travel with their tokens (the -100 on problem tokens stays), an example may straddle two blocks,
    and the final partial block is dropped, as is a block with no predictable label (it would give a NaN
    loss). Returns int32 tensors `input_ids` and `labels` of shape (blocks, block_size) and the counts."""
    ids, labels = (
        np.concatenate(
            [np.fromiter(chain.from_iterable(b[column]), dtype=np.int32) for b in examples.iter(batch_size=4096)]
            or [np.zeros(0, dtype=np.int32)]
        )
        for column in ("input_ids", "labels")
    )
    total = len(ids)
    n_blocks = total // block_size
    ids = ids[: n_blocks * block_size].reshape(n_blocks, block_size)
    labels = labels[: n_blocks * block_size].reshape(n_blocks, block_size)
    keep = (labels[:, 1:] != IGNORE_INDEX).any(axis=1)
    stats = {
        "blocks": int(keep.sum()),
        "tail_tokens": total - n_blocks * block_size,
        "unsupervised_blocks": int((~keep).sum()),
    }
    return {"input_ids": torch.from_numpy(ids[keep]), "labels": torch.from_numpy(labels[keep])}, stats


class _Blocks(torch.utils.data.Dataset):
    def __init__(self, tensors: dict[str, torch.Tensor]):
        self.tensors = tensors

    def __len__(self) -> int:
        return len(self.tensors["input_ids"])

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {k: v[index] for k, v in self.tensors.items()}


class ExercisesDataModule(MidEpochResume, pl.LightningDataModule):
    """Loads a JSON Lines file of exercises, splits off a seeded validation set and yields batches
    `{"input_ids", "attention_mask", "labels"}` (long tensors, right-padded with the pad id, or eos if the
    tokenizer has no pad token; labels -100 on the problem and the padding), ready for `model(**batch)`.

    An online `teacher` (KD losses) scores these same batches, so it needs nothing from here.

    Training batches are length-grouped (`train_batches`), or with `packing=True` blocks of exactly
    `max_length` tokens (`packed`, see `pack_examples`). Validation is never packed: padded batches of
    `eval_batch_size` rows sorted by length."""

    def __init__(
        self,
        path: str,
        tokenizer,
        micro_batch_size: int = 4,
        eval_batch_size: int = 8,
        max_length: int = 512,
        validation_size: float = 0.05,
        seed: int = 1234,
        packing: bool = False,
        num_workers: int = 0,
        teacher=None,
    ):
        super().__init__()
        if teacher is not None and not teacher.online:
            raise ConfigError(
                "offline teacher distributions are stored in recipe 1's dataset only: use teacher_logits=online "
                "for exercises"
            )
        if tokenizer.eos_token_id is None:
            raise ConfigError("the student's tokenizer has no eos token: use a tokenizer with an end-of-text token")
        if not 0 < validation_size < 1:
            raise ConfigError(f"data.validation_size={validation_size} is outside (0, 1): set a share such as 0.05")
        if max_length < 2:
            raise ConfigError(f"data.max_length={max_length} is too small: set it to at least 2 (e.g. 512)")
        self.path, self.tokenizer, self.seed, self.packing = path, tokenizer, seed, packing
        self.micro_batch_size, self.eval_batch_size, self.num_workers = micro_batch_size, eval_batch_size, num_workers
        self.max_length, self.validation_size = max_length, validation_size
        self.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.splits: DatasetDict | None = None  # tokenized examples, `train` in packing order
        self.packed: dict[str, torch.Tensor] | None = None
        self.packing_stats: dict[str, int] = {}

    def setup(self, stage: str | None = None) -> None:
        if self.splits is not None:
            return
        rows = load_exercises(self.path)
        n_val = max(1, round(self.validation_size * len(rows)))
        if len(rows) - n_val < 1:
            raise ConfigError(
                f"data.path={self.path} holds {len(rows)} exercise(s): too few for a training and a validation "
                "split; add exercises or lower data.validation_size"
            )
        split = rows.train_test_split(test_size=n_val, seed=self.seed)
        self.splits = DatasetDict(
            {name: self._tokenize(split[key], name) for name, key in (("train", "train"), ("validation", "test"))}
        )
        val = self.splits["validation"]
        self.splits["validation"] = val.select(np.argsort(val["length"], kind="stable"))  # less padding
        self._check_round_trip(split["train"][0])
        if self.packing:
            self.packed, self.packing_stats = pack_examples(self.splits["train"], self.max_length)
            stats = self.packing_stats
            rank_zero_info(
                f"packed the training exercises into {stats['blocks']} blocks of {self.max_length} tokens; dropped "
                f"the final partial block ({stats['tail_tokens']} tokens) and {stats['unsupervised_blocks']} blocks "
                "with no solution token"
            )
            if stats["blocks"] == 0:
                raise ConfigError(
                    f"the training exercises hold fewer than data.max_length={self.max_length} tokens with a solution "
                    "token: lower data.max_length, add exercises or set data.packing=false"
                )

    def _tokenize(self, rows: Dataset, name: str) -> Dataset:
        encoded = rows.map(
            encode_exercises,
            batched=True,
            fn_kwargs={"tokenizer": self.tokenizer, "max_length": self.max_length},
            remove_columns=rows.column_names,
            desc=f"tokenizing {name}",
        )
        truncated = sum(encoded["truncated"])
        kept = encoded.filter(lambda supervised: supervised, input_columns="supervised")
        if truncated or len(kept) < len(encoded):
            rank_zero_info(
                f"{name}: cut {truncated} of {len(encoded)} exercises to data.max_length={self.max_length} tokens "
                f"and dropped {len(encoded) - len(kept)} left with no solution token to learn"
            )
        if len(kept) == 0:
            raise ConfigError(
                f"every {name} exercise's problem fills data.max_length={self.max_length} tokens, leaving no solution "
                "token to learn: raise data.max_length"
            )
        return kept.select_columns(["input_ids", "labels", "length"])

    def _check_round_trip(self, row: dict) -> None:
        """Tokenizing problem and solution apart must decode to their concatenation (byte-level BPE does; a
        SentencePiece tokenizer adding a prefix space would not)."""
        encoded = encode_exercises({k: [row[k]] for k in COLUMNS}, self.tokenizer, max_length=2**62)
        text = self.tokenizer.decode(encoded["input_ids"][0][:-1], clean_up_tokenization_spaces=False)
        expected = row["problem"] + row["solution"]
        if text != expected:
            rank_zero_warn(
                "the tokenizer does not round-trip problem + solution tokenized apart "
                f"({expected[:60]!r}... decodes to {text[:60]!r}...): check its prefix-space and normalisation"
            )

    def collate(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        input_ids, attention_mask = right_padded([r["input_ids"] for r in rows], self.pad_token_id)
        labels, _ = right_padded([r["labels"] for r in rows], IGNORE_INDEX)
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}

    def _train_set(self):
        return _Blocks(self.packed) if self.packing else self.splits["train"].select_columns(["input_ids", "labels"])

    def _train_lengths(self) -> list[int]:
        if self.packing:
            return [self.max_length] * len(self.packed["input_ids"])
        return list(self.splits["train"]["length"])

    def _batch_sampler(self) -> LengthGroupedBatchSampler:
        lengths = self._train_lengths()
        return LengthGroupedBatchSampler(
            EpochShuffle(len(lengths), self.seed), self.micro_batch_size, lengths=lengths, seed=self.seed
        )

    def train_batches(self, epoch: int = 0) -> list[list[int]]:
        """The training batches (indices into the examples, or into the packed blocks) of one epoch."""
        self.setup()
        return epoch_batches(self._batch_sampler(), epoch)

    def padding_fraction(self, epoch: int = 0) -> float:
        """The share of pad tokens in the training batches of one epoch (0 when packing)."""
        return padding_fraction_of(self.train_batches(epoch), self._train_lengths())

    def train_dataloader(self) -> DataLoader:
        return self.resumable_loader(
            self._train_set(),
            self._batch_sampler(),
            num_workers=self.num_workers,
            collate_fn=self.collate,
        )

    def val_dataloader(self) -> DataLoader:
        return DataLoader(
            self.splits["validation"].select_columns(["input_ids", "labels"]),
            batch_size=self.eval_batch_size,
            shuffle=False,
            num_workers=self.num_workers,
            collate_fn=self.collate,
        )
