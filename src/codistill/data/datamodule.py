"""Tokenized FIM batches for a seq2seq student: a label task and a rationale task per example."""

from pathlib import Path

import pytorch_lightning as pl
from datasets import DatasetDict, load_from_disk
from pytorch_lightning.utilities import rank_zero_info
from torch.utils.data import DataLoader
from transformers import DataCollatorForSeq2Seq

from codistill.data.build import COLUMNS
from codistill.data.formatting import LABEL_TASK, RATIONALE_TASK, encode_fim_input
from codistill.errors import ConfigError

LABEL_COLUMNS = {"teacher": "santacoder_outputs", "ground_truth": "label_middles"}


class FIMDataModule(pl.LightningDataModule):
    """Loads a saved distillation `DatasetDict` and yields batches
    `{"label": {...}, "rationale": {...}, "middle": [...], "teacher_middle": [...]}` whose model inputs
    are padded with the pad id and whose labels are padded with -100."""

    def __init__(
        self,
        dataset_dir: str,
        tokenizer,
        label_source: str = "teacher",
        batch_size: int = 8,
        eval_batch_size: int = 16,
        num_workers: int = 0,
        max_source_length: int = 512,
        max_target_length: int = 128,
        max_rationale_length: int = 128,
        drop_empty_labels: bool = True,
    ):
        super().__init__()
        if label_source not in LABEL_COLUMNS:
            raise ConfigError(f"data.label_source={label_source!r} is not one of: {', '.join(LABEL_COLUMNS)}")
        self.dataset_dir, self.tokenizer, self.label_column = dataset_dir, tokenizer, LABEL_COLUMNS[label_source]
        self.batch_size, self.eval_batch_size, self.num_workers = batch_size, eval_batch_size, num_workers
        self.max_source_length, self.max_target_length = max_source_length, max_target_length
        self.max_rationale_length, self.drop_empty_labels = max_rationale_length, drop_empty_labels
        self.collator = DataCollatorForSeq2Seq(tokenizer.base, label_pad_token_id=-100, padding=True)
        self.splits: DatasetDict | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.splits is not None:
            return
        raw = load_distillation_dataset(self.dataset_dir)
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
            {name: split.map(self._encode, desc=f"tokenizing {name}") for name, split in raw.items()}
        )

    def _encode(self, row: dict) -> dict:
        tok = self.tokenizer
        return {
            "label_input_ids": encode_fim_input(tok, LABEL_TASK, row["prefix"], row["suffix"], self.max_source_length),
            "label_labels": tok(row[self.label_column], max_length=self.max_target_length, truncation=True)[
                "input_ids"
            ],
            "rationale_input_ids": encode_fim_input(
                tok, RATIONALE_TASK, row["prefix"], row["suffix"], self.max_source_length
            ),
            "rationale_labels": tok(row["openai_rationale"], max_length=self.max_rationale_length, truncation=True)[
                "input_ids"
            ],
        }

    def collate(self, rows: list[dict]) -> dict:
        batch = {
            task: self.collator([{"input_ids": r[f"{task}_input_ids"], "labels": r[f"{task}_labels"]} for r in rows])
            for task in ("label", "rationale")
        }
        batch["middle"] = [r["label_middles"] for r in rows]
        batch["teacher_middle"] = [r["santacoder_outputs"] for r in rows]
        batch["prompt"] = [r["santacoder_prompts"] for r in rows]
        return batch

    def _loader(self, split: str, batch_size: int, shuffle: bool) -> DataLoader:
        return DataLoader(
            self.splits[split],
            batch_size=batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            collate_fn=self.collate,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("validation", self.eval_batch_size, shuffle=False)


def load_distillation_dataset(dataset_dir: str) -> DatasetDict:
    """A `DatasetDict` saved by codistill-generate, checked for the splits and columns training needs."""
    if not Path(dataset_dir, "dataset_dict.json").is_file():
        raise ConfigError(
            f"dataset_dir={dataset_dir} is not a saved dataset (no dataset_dict.json): run codistill-generate "
            "and pass its save_local folder as data.dataset_dir, or leave it null to build one"
        )
    data = load_from_disk(dataset_dir)
    needed = set(COLUMNS) | {"prefix", "suffix"}
    for split in ("train", "validation"):
        if split not in data:
            raise ConfigError(f"{dataset_dir} has no {split!r} split (has: {', '.join(data)}); regenerate it")
        missing = needed - set(data[split].column_names)
        if missing:
            raise ConfigError(
                f"{dataset_dir} [{split}] lacks columns {sorted(missing)}; regenerate it with codistill-generate"
            )
    return data
