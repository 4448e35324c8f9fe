"""The dataset's one set of column names, the original recipe's names as an export that reads back."""

import pytest
from datasets import Dataset, DatasetDict, load_from_disk

from codistill.apps.generate import generate
from codistill.config import build
from codistill.data import schema
from codistill.data.fim_datamodule import load_distillation_dataset
from codistill.errors import ConfigError
from codistill.eval.sandbox import SandboxSettings
from codistill.eval.tasks import FIMHeldoutTask
from conftest import compose_config

PIECES = [("x = 1\n", "y = 2\n", "z = 3\n"), ("f = ->\n", "  1\n", "print f!\n"), ("a = {\n", "  b: 1\n", "}\n")]


def _row(prefix, middle, suffix):
    return {
        "prompt": f"{prefix}<FILL-HERE>{suffix}",
        "teacher_prompt": f"<fim-prefix>{prefix}<fim-suffix>{suffix}<fim-middle>",
        "prefix": prefix,
        "middle": middle,
        "suffix": suffix,
        "teacher_middle": "-- " + middle,
        "rationale": f"it sets {middle.strip()}",
        "repo": "me/moon",
        "path": "a.moon",
        "hexsha": "abc",
        "licenses": ["MIT"],
        "segment_index": 0,
        "fim_mode": "line",
        "teacher": "tiny_gpt_bigcode",
        "rationale_model": "tiny",
        "rationale_template": "explain_fim_v1",
    }


@pytest.fixture
def data():
    rows = Dataset.from_list([_row(*p) for p in PIECES], features=schema.FEATURES)
    return DatasetDict(train=rows, validation=rows.select([0]))


class Oracle:
    """Fills every gap with its ground truth."""

    def __init__(self, rows):
        self.middles = {r["prefix"] + "\0" + r["suffix"]: r["middle"] for r in rows}

    def infill(self, prefixes, suffixes, sampling):
        return [[self.middles[p + "\0" + s]] for p, s in zip(prefixes, suffixes, strict=True)]


def test_original_names_are_written_and_read_back_as_the_same_rows(data, tmp_path):
    schema.exported(data, "original").save_to_disk(str(tmp_path / "original"))
    saved = load_from_disk(str(tmp_path / "original"))["train"].column_names
    assert set(schema.ORIGINAL_NAMES.values()) <= set(saved) and not set(schema.ORIGINAL_NAMES) & set(saved)
    loaded = load_distillation_dataset(str(tmp_path / "original"))
    for split in ("train", "validation"):
        assert loaded[split].to_list() == data[split].to_list()
    assert schema.exported(data, "codistill") is data


def test_fim_heldout_reads_an_original_names_dataset_and_calls_the_ground_truth_middle(data, tmp_path):
    schema.exported(data, "original").save_to_disk(str(tmp_path / "original"))
    task = FIMHeldoutTask(str(tmp_path / "original"), split="train", bits_per_byte=False)
    result = task.run(Oracle(data["train"]), SandboxSettings())
    assert result.metrics["exact_match"] == 1.0 and result.metrics["teacher_exact_match"] == 0.0
    assert set(result.samples[0]) == {"prompt", "middle", "teacher_middle", "completion", "exact_match"}


def test_a_dataset_missing_columns_names_them(data, tmp_path):
    data.remove_columns(["teacher_prompt", "rationale"]).save_to_disk(str(tmp_path / "old"))
    with pytest.raises(ConfigError, match=r"\[train\] lacks columns \['teacher_prompt', 'rationale'\]; regenerate"):
        load_distillation_dataset(str(tmp_path / "old"))


def test_unknown_column_names_fail_before_anything_is_built(tmp_path, cache_dir):
    with pytest.raises(ConfigError, match="column_names='santacoder' is not one of: codistill, original"):
        generate(compose_config("generate", tmp_path, cache_dir, ["column_names=santacoder"]))
    assert not (tmp_path / "data").exists()


def test_the_cache_key_changes_with_the_schema(tmp_path, cache_dir, monkeypatch):
    source = build(compose_config("train", tmp_path, cache_dir).data.source)
    key = source.key()
    monkeypatch.setattr(schema, "VERSION", schema.VERSION + 1)
    assert source.key() != key
