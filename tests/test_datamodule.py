"""Batches for the two tasks: plain-text task prefixes, markers kept, -100 label padding, eos-terminated targets."""

import pytest
import torch
from torch.utils.data import BatchSampler

from codistill.config import build
from codistill.data.fim_datamodule import FIMDataModule
from codistill.data.formatting import (
    FIM_MIDDLE,
    FIM_PREFIX,
    FIM_SUFFIX,
    LABEL_TASK,
    RATIONALE_TASK,
    TASK_PREFIXES,
    encode_fim_input,
)
from codistill.errors import ConfigError
from codistill.models.loading import load_student
from conftest import compose_config


@pytest.fixture(scope="module")
def student(tiny_student_dir):
    return load_student(tiny_student_dir)


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory, cache_dir):
    return build(compose_config("train", tmp_path_factory.mktemp("dm"), cache_dir).data.source).cached()


def _module(dataset_dir, student, **kwargs):
    dm = FIMDataModule(dataset_dir, student.tokenizer, micro_batch_size=4, **kwargs)
    dm.setup("fit")
    return dm


def test_batches_pad_inputs_with_pad_and_labels_with_minus_100(dataset_dir, student):
    dm = _module(dataset_dir, student, label_source="ground_truth")
    batch = next(iter(dm.train_dataloader()))
    tok = student.tokenizer
    for task in ("label", "rationale"):
        inputs = batch[task]
        assert inputs["input_ids"].shape == inputs["attention_mask"].shape
        assert ((inputs["input_ids"] == tok.pad_token_id) == (inputs["attention_mask"] == 0)).all()
        labels = inputs["labels"]
        assert (labels != tok.pad_token_id).all()  # padding is -100, never the pad id
        lengths = (labels != -100).sum(1)
        assert (labels[torch.arange(len(labels)), lengths - 1] == tok.eos_token_id).all()
    for ids, middle in zip(batch["label"]["labels"], batch["middle"], strict=True):
        assert tok.decode([i for i in ids.tolist() if i != -100]) == middle  # the exact middle, whitespace and all


def _task_prefix_ids(tok) -> dict[str, list[int]]:
    """The ids of `predict: ` and `explain: ` (Distilling Step-by-Step's) as the student's tokenizer writes text."""
    return {task: tok.encode(text) for task, text in TASK_PREFIXES.items()}


def test_inputs_are_a_plain_text_task_prefix_then_the_exact_fim_context(dataset_dir, student):
    dm = _module(dataset_dir, student, label_source="ground_truth")
    tok, expected = student.tokenizer, _task_prefix_ids(student.tokenizer)
    added = set(tok.base.added_tokens_decoder)
    n_label, n_rationale = len(expected[LABEL_TASK]), len(expected[RATIONALE_TASK])
    for row in dm.splits["validation"]:
        label, rationale = row["label_input_ids"], row["rationale_input_ids"]
        assert label[:n_label] == expected[LABEL_TASK] and rationale[:n_rationale] == expected[RATIONALE_TASK]
        assert not added & set(label[:n_label] + rationale[:n_rationale])  # text, not added tokens
        assert tok.decode(label[:n_label]) == TASK_PREFIXES[LABEL_TASK]
        context = label[n_label:]
        assert context == rationale[n_rationale:]  # the two tasks differ only in the prefix
        assert tok.decode(context) == f"{FIM_PREFIX}{row['prefix']}{FIM_SUFFIX}{row['suffix']}{FIM_MIDDLE}"


def test_label_source_picks_the_teacher_or_the_ground_truth(dataset_dir, student):
    teacher = _module(dataset_dir, student, label_source="teacher", drop_empty_labels=True)
    for row in teacher.splits["train"]:
        assert row["teacher_middle"].startswith(student.tokenizer.decode(row["label_labels"]))
        assert row["teacher_middle"] != ""  # empty teacher middles would teach empty outputs
    with pytest.raises(ConfigError, match="data.label_source"):
        FIMDataModule(dataset_dir, student.tokenizer, label_source="gold")


def test_long_contexts_keep_the_code_next_to_the_gap(student):
    tok, expected = student.tokenizer, _task_prefix_ids(student.tokenizer)
    prefix, suffix = "a\n" * 200 + "NEAR_PREFIX", "NEAR_SUFFIX" + "\nb" * 200
    ids = encode_fim_input(tok, LABEL_TASK, prefix, suffix, 64)
    text = tok.decode(ids)
    assert len(ids) <= 64 and ids[-1] == tok.eos_token_id
    assert "NEAR_PREFIX<fim_suffix>NEAR_SUFFIX" in text and text.endswith(FIM_MIDDLE)
    # the task prefixes differ in length, yet both tasks keep the same truncated context
    assert len(expected[LABEL_TASK]) != len(expected[RATIONALE_TASK])
    rationale = encode_fim_input(tok, RATIONALE_TASK, prefix, suffix, 64)
    assert rationale[len(expected[RATIONALE_TASK]) :] == ids[len(expected[LABEL_TASK]) :]


def test_a_missing_dataset_dir_names_the_fix(student, tmp_path):
    dm = FIMDataModule(str(tmp_path / "nothing"), student.tokenizer)
    with pytest.raises(ConfigError, match="is not a saved dataset"):
        dm.setup("fit")


def test_length_grouped_batches_pad_little_cover_every_example_once_and_are_reproducible(dataset_dir, student):
    dm = _module(dataset_dir, student, label_source="ground_truth", seed=7)
    random_batches = _module(dataset_dir, student, label_source="ground_truth", seed=7, group_by_length=False)
    grouped, random = dm.padding_fraction(epoch=0), random_batches.padding_fraction(epoch=0)
    assert grouped < 0.10 and grouped < random / 2, (grouped, random)

    n = len(dm.splits["train"])
    for epoch in (0, 1):
        batches = dm.train_batches(epoch=epoch)
        assert sorted(i for b in batches for i in b) == list(range(n))  # each example exactly once per epoch
        assert sorted(map(len, batches))[1:] == [4] * (len(batches) - 1)  # full batches but one
    batches = dm.train_batches(epoch=0)
    same = _module(dataset_dir, student, label_source="ground_truth", seed=7)
    assert same.train_batches(epoch=0) == batches
    assert same.train_batches(epoch=1) != batches  # the batches are shuffled anew each epoch
    assert _module(dataset_dir, student, label_source="ground_truth", seed=8).train_batches(epoch=0) != batches

    # the dataloader yields exactly these batches, every tensor padded to its batch's longest example
    loader = dm.train_dataloader()
    loader.batch_sampler.sampler.set_epoch(0)  # as Lightning does at the start of each epoch
    lengths = dm.train_lengths
    for batch, rows in zip(loader, batches, strict=True):
        assert batch["middle"] == [dm.splits["train"][i]["middle"] for i in rows]
        for task in ("label", "rationale"):
            for key, column in (("input_ids", f"{task}_input_ids"), ("labels", f"{task}_labels")):
                assert batch[task][key].size(1) == max(lengths[column][i] for i in rows)


def test_a_resumed_loader_skips_the_epochs_trained_batches_once_and_warns_where_restored_too_late():
    """MidEpochResume: a restored `epoch_batches_done` makes the next training loader's first pass skip that
    many batches of the epoch's fixed order (unloaded); a strategy that restores after building it is told."""
    import pytorch_lightning as pl

    from codistill.data.batching import EpochShuffle, MidEpochResume

    class Module(MidEpochResume, pl.LightningDataModule):
        pass

    loaded = []
    data = [torch.tensor([i]) for i in range(10)]
    dataset = type("Logged", (), {"__getitem__": lambda _, i: loaded.append(i) or data[i], "__len__": lambda _: 10})()
    batches = BatchSampler(EpochShuffle(10, seed=3), 2, drop_last=False)
    module = Module()
    module.load_state_dict({"epoch_batches_done": 3})
    loader = module.resumable_loader(dataset, batches)
    order = list(BatchSampler(EpochShuffle(10, seed=3), 2, drop_last=False))
    assert len(loader) == 5 and [b.flatten().tolist() for b in loader] == order[3:]
    assert sorted(loaded) == sorted(i for o in order[3:] for i in o)  # the skipped batches were never loaded
    assert len([b for b in loader]) == 5  # the next epoch starts at its first batch
    with pytest.warns(UserWarning, match="replays its first 2 batches"):
        module.load_state_dict({"epoch_batches_done": 2})
