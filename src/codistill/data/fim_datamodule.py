"""Tokenized FIM batches: for a seq2seq student a label task and a rationale task per example; for a causal
student (one with FIM sentinels, `fim`) the PSM prompt followed by the label; with a teacher-logits source
(`teacher`, see codistill.teacher_logits), what it needs to give the teacher's distribution.

Training batches are length-grouped (`codistill.data.batching`): examples of similar input length share a
batch, so little of each batch is padding; the batches are shuffled, seeded by `seed` and the epoch.
"""

from pathlib import Path

import pytorch_lightning as pl
import torch
from datasets import DatasetDict, load_from_disk
from pytorch_lightning.utilities import rank_zero_info
from torch.utils.data import BatchSampler, DataLoader

from codistill.data import schema
from codistill.data.batching import (
    EpochShuffle,
    LengthGroupedBatchSampler,
    MidEpochResume,
    epoch_batches,
    padding_fraction_of,
    right_padded,
)
from codistill.data.fim import FIMTokens
from codistill.data.formatting import LABEL_TASK, RATIONALE_TASK, encode_causal_fim, encode_fim_input
from codistill.errors import ConfigError
from codistill.losses import IGNORE_INDEX

TASKS = (LABEL_TASK, RATIONALE_TASK)
# passed through to every batch under their own names
TEXT_COLUMNS = (schema.MIDDLE, schema.TEACHER_MIDDLE, schema.PROMPT)


class FIMDataModule(MidEpochResume, pl.LightningDataModule):
    """Loads a saved distillation `DatasetDict` (`dataset_dir`: codistill-generate's, or the one
    codistill.assembly.prepare built or found, see codistill.data.cache) and yields batches
    `{"label": {...}, "rationale": {...}, "middle": [...], "teacher_middle": [...], "prompt": [...]}` whose model inputs
    are padded with the pad id and whose labels are padded with -100. A causal student (`fim`: its FIM
    sentinels) has the label task only, its labels -100 on the prompt; a `teacher` source adds its part
    (`"teacher"`, see codistill.losses.teacher_batch), and an `aligner` (loss=alm, a
    codistill.losses.BatchAligner) the chunks its tokens share with the student's.

    With `group_by_length` (the default) the training batches hold examples of similar input length
    (`train_batches`, `padding_fraction`); otherwise they are random. Either way the order is fixed by
    `seed` and the epoch."""

    def __init__(
        self,
        dataset_dir: str,
        tokenizer,
        label_source: str = "teacher",
        micro_batch_size: int = 8,
        eval_batch_size: int = 16,
        num_workers: int = 0,
        max_source_length: int = 512,
        max_target_length: int = 128,
        max_rationale_length: int = 128,
        drop_empty_labels: bool = True,
        seed: int = 1234,
        group_by_length: bool = True,
        fim: dict | None = None,
        teacher=None,
        aligner=None,
    ):
        super().__init__()
        if label_source not in schema.LABEL_COLUMNS:
            raise ConfigError(f"data.label_source={label_source!r} is not one of: {', '.join(schema.LABEL_COLUMNS)}")
        self.dataset_dir, self.tokenizer = dataset_dir, tokenizer
        self.label_column = schema.LABEL_COLUMNS[label_source]
        self.micro_batch_size, self.eval_batch_size, self.num_workers = micro_batch_size, eval_batch_size, num_workers
        self.max_source_length, self.max_target_length = max_source_length, max_target_length
        self.max_rationale_length, self.drop_empty_labels = max_rationale_length, drop_empty_labels
        self.seed, self.group_by_length = seed, group_by_length
        self.fim, self.teacher, self.aligner = (FIMTokens(**fim) if fim else None), teacher, aligner
        self.tasks = (LABEL_TASK,) if self.fim else TASKS
        self.tensor_columns = tuple(f"{task}_{part}" for task in self.tasks for part in ("input_ids", "labels"))
        self.pad_token_id = tokenizer.pad_token_id
        self.splits: DatasetDict | None = None
        self.train_lengths: dict[str, list[int]] = {}  # token count of each tensor column, per training example

    def setup(self, stage: str | None = None) -> None:
        if self.splits is not None:
            return
        raw = load_distillation_dataset(self.dataset_dir)
        if self.teacher is not None and (missing := set(self.teacher.requires) - set(raw["train"].column_names)):
            raise ConfigError(
                f"{self.dataset_dir} has no teacher distributions (lacks {sorted(missing)}): build the dataset with "
                "teacher_logits=offline (codistill-generate or codistill-train), or use teacher_logits=online"
            )
        if self.drop_empty_labels:
            train = raw["train"].filter(lambda r: r[self.label_column] != "")
            if len(train) < len(raw["train"]):
                rank_zero_info(
                    f"dropped {len(raw['train']) - len(train)} training rows with an empty {self.label_column}"
                )
            if len(train) == 0:
                raise ConfigError(
                    f"every training row has an empty {self.label_column}: the teacher produced no middles; "
                    "use data.label_source=ground_truth or a teacher that fills in the middle"
                )
            raw["train"] = train
        self.splits = DatasetDict(
            {
                name: split.map(self._encode, fn_kwargs={"truth": name != "train"}, desc=f"tokenizing {name}")
                for name, split in raw.items()
            }
        )
        train = self.splits["train"].select_columns(list(self.tensor_columns))
        lengths = {column: [] for column in self.tensor_columns}
        for rows in train.iter(batch_size=4096):
            for column in self.tensor_columns:
                lengths[column] += map(len, rows[column])
        self.train_lengths = lengths

    def _encode(self, row: dict, truth: bool = False) -> dict:
        """The row's tensors; with `truth` (held-out splits) also the whole ground-truth middle and its end as
        targets (`truth_*`, never truncated), whose likelihood gives bits per byte."""
        extra = self.teacher.encode(row, self.label_column) if self.teacher is not None else {}
        if truth:
            extra.update(self._encode_label(row, schema.MIDDLE, "truth", max_target=10**9))
        return {**self._encode_label(row, self.label_column, "label", self.max_target_length), **extra}

    def _encode_label(self, row: dict, column: str, task: str, max_target: int) -> dict:
        tok, label = self.tokenizer, row[column]
        if self.fim is not None:
            ids, labels = encode_causal_fim(
                tok,
                self.fim,
                tok.eos_token_id,
                row[schema.PREFIX],
                row[schema.SUFFIX],
                label,
                self.max_source_length,
                max_target,
            )
            return {f"{task}_input_ids": ids, f"{task}_labels": labels}
        out = {
            f"{task}_input_ids": encode_fim_input(
                tok, LABEL_TASK, row[schema.PREFIX], row[schema.SUFFIX], self.max_source_length
            ),
            f"{task}_labels": tok(label, max_length=max_target, truncation=True)["input_ids"],
        }
        if task != "label":
            return out
        return {
            **out,
            "rationale_input_ids": encode_fim_input(
                tok, RATIONALE_TASK, row[schema.PREFIX], row[schema.SUFFIX], self.max_source_length
            ),
            "rationale_labels": tok(row[schema.RATIONALE], max_length=self.max_rationale_length, truncation=True)[
                "input_ids"
            ],
        }

    def collate(self, rows: list[dict]) -> dict:
        batch = {task: self._pad(rows, task) for task in self.tasks}
        if "truth_labels" in rows[0]:
            batch["truth"] = self._pad(rows, "truth")
        batch.update({column: [r[column] for r in rows] for column in TEXT_COLUMNS})
        if self.teacher is not None:
            batch.update(self.teacher.collate(rows))
        if self.aligner is not None:  # loss=alm: the two tokenizations of each label, cut into shared chunks
            targets = [[t for t in r["label_labels"] if t != IGNORE_INDEX] for r in rows]
            self.aligner.attach(batch["teacher"], [r[self.label_column] for r in rows], targets)
        return batch

    def _loaded_columns(self, split: str) -> list[str]:
        teacher = list(self.teacher.columns) if self.teacher is not None else []
        truth = ["truth_input_ids", "truth_labels"] if split != "train" else []
        return [*self.tensor_columns, *TEXT_COLUMNS, *teacher, *truth]

    def _pad(self, rows: list[dict], task: str) -> dict[str, torch.Tensor]:
        """`input_ids` right-padded with the pad id, `attention_mask`, and `labels` right-padded with -100."""
        input_ids, attention_mask = right_padded([r[f"{task}_input_ids"] for r in rows], self.pad_token_id)
        labels, _ = right_padded([r[f"{task}_labels"] for r in rows], IGNORE_INDEX)
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}

    def _group_lengths(self) -> list[int]:
        """What batches are grouped by: the longer of the two tasks' inputs. The inputs dominate a batch (both
        tasks encode one; they are several times longer than the targets), and on fixed-length segments a longer
        middle leaves a shorter prefix + suffix, so input + target length is nearly constant and groups nothing."""
        inputs = [self.train_lengths[f"{task}_input_ids"] for task in self.tasks]
        return [max(pair) for pair in zip(*inputs, strict=True)]

    def _batch_sampler(self) -> BatchSampler:
        shuffled = EpochShuffle(len(self.splits["train"]), self.seed)
        if not self.group_by_length:
            return BatchSampler(shuffled, self.micro_batch_size, drop_last=False)
        return LengthGroupedBatchSampler(shuffled, self.micro_batch_size, lengths=self._group_lengths(), seed=self.seed)

    def train_batches(self, epoch: int = 0) -> list[list[int]]:
        """The training batches (indices into the training split) of one epoch."""
        self.setup()
        return epoch_batches(self._batch_sampler(), epoch)

    def padding_fraction(self, epoch: int = 0) -> float:
        """The share of pad positions in one epoch's training batches, over all their padded tensors: both
        tasks' inputs and labels."""
        return padding_fraction_of(self.train_batches(epoch), *self.train_lengths.values())

    def train_dataloader(self) -> DataLoader:
        return self.resumable_loader(
            self.splits["train"].select_columns(self._loaded_columns("train")),
            self._batch_sampler(),
            num_workers=self.num_workers,
            collate_fn=self.collate,
        )

    def val_dataloader(self) -> DataLoader:
        return DataLoader(
            self.splits["validation"].select_columns(self._loaded_columns("validation")),
            batch_size=self.eval_batch_size,
            shuffle=False,
            num_workers=self.num_workers,
            collate_fn=self.collate,
        )


def check_saved_dataset(dataset_dir: str) -> None:
    """Fail at once, before any model is built, where `dataset_dir` holds no saved DatasetDict."""
    if not Path(dataset_dir, "dataset_dict.json").is_file():
        raise ConfigError(
            f"dataset_dir={dataset_dir} is not a saved dataset (no dataset_dict.json): run codistill-generate "
            "and pass its save_local folder as data.dataset_dir, or leave it null to build one"
        )


def load_distillation_dataset(dataset_dir: str) -> DatasetDict:
    """A `DatasetDict` saved by codistill-generate, under codistill's column names (whichever names it was
    saved with), checked for the splits and columns training needs."""
    check_saved_dataset(dataset_dir)
    data = schema.from_original(load_from_disk(dataset_dir))
    for split in ("train", "validation"):
        if split not in data:
            raise ConfigError(f"{dataset_dir} has no {split!r} split (has: {', '.join(data)}); regenerate it")
        schema.check_columns(data[split], f"{dataset_dir} [{split}]")
    return data
