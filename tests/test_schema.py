"""The dataset's one set of column names."""

import pytest
from datasets import Dataset, DatasetDict

from codistill.data import schema
from codistill.data.datamodule import load_distillation_dataset
from codistill.errors import ConfigError

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


def test_a_dataset_missing_columns_names_them(data, tmp_path):
    data.remove_columns(["teacher_prompt", "rationale"]).save_to_disk(str(tmp_path / "old"))
    with pytest.raises(ConfigError, match=r"\[train\] lacks columns \['teacher_prompt', 'rationale'\]; regenerate"):
        load_distillation_dataset(str(tmp_path / "old"))
