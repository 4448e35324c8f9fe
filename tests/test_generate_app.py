"""codistill-generate on the bundled corpus with the tiny teacher and the offline rationale model."""

import gzip
import json

import pytest
from datasets import DatasetDict, load_from_disk
from omegaconf import OmegaConf

from codistill.apps.generate import generate
from codistill.config import build
from codistill.data import schema
from codistill.data.fim_datamodule import load_distillation_dataset
from codistill.errors import ConfigError
from conftest import compose_config

# recipe 1's dataset with rationales and without stored distributions (those: tests/test_distillation.py)
WITH_RATIONALES = ["rationale=hf", "teacher_logits=online"]


@pytest.fixture(scope="module")
def generated(tmp_path_factory, cache_dir):
    tmp = tmp_path_factory.mktemp("generate")
    cfg = compose_config("generate", tmp, cache_dir, WITH_RATIONALES)
    return cfg, generate(cfg)


def test_dataset_has_the_columns_splits_and_fim_invariants(generated):
    cfg, data = generated
    assert set(data) == {"train", "validation", "test"}
    assert len(data["validation"]) >= 1 and len(data["test"]) >= 1 and len(data["train"]) > len(data["validation"])
    assert data["train"].features == data["validation"].features == data["test"].features == schema.FEATURES
    files = {name: set(split["hexsha"]) for name, split in data.items()}
    assert not files["train"] & files["validation"] and not files["train"] & files["test"]  # split by file
    assert not files["validation"] & files["test"] and sum(map(len, files.values())) == 12  # every bundled file
    for row in data["train"]:
        assert row["prompt"] == row["prefix"] + "<FILL-HERE>" + row["suffix"]
        assert row["teacher_prompt"] == f"<fim-prefix>{row['prefix']}<fim-suffix>{row['suffix']}<fim-middle>"
        assert row["middle"] and row["teacher"] == "tiny_gpt_bigcode"
        assert row["rationale_template"] == "explain_fim_v1" and row["path"].endswith(".moon")
    saved = load_from_disk(cfg.save_local)
    assert saved["train"]["middle"] == data["train"]["middle"]


def test_the_original_column_names_export_reads_back_as_the_same_rows(generated, tmp_path):
    cfg, data = generated
    original = OmegaConf.merge(cfg, {"column_names": "original", "save_local": str(tmp_path / "original")})
    assert generate(original)["train"].to_list() == data["train"].to_list()  # the app returns codistill's names
    saved = load_from_disk(str(tmp_path / "original"))
    assert set(saved["train"].column_names) == set(schema.FEATURES) - set(schema.ORIGINAL_NAMES) | set(
        schema.ORIGINAL_NAMES.values()
    )
    loaded = load_distillation_dataset(str(tmp_path / "original"))
    for split in ("train", "validation"):
        assert loaded[split].to_list() == data[split].to_list()


def test_push_to_hub_sends_the_dataset_dict_to_the_named_repo(tmp_path, cache_dir, monkeypatch):
    pushed = []
    monkeypatch.setattr(DatasetDict, "push_to_hub", lambda self, repo, private: pushed.append((repo, private, self)))
    overrides = ["save_local=null", "push_to_hub=me/moon-fim", "dataset.corpus.max_files=2"]
    data = generate(compose_config("generate", tmp_path, cache_dir, overrides))
    assert pushed == [("me/moon-fim", True, data)]
    assert not (tmp_path / "out").exists()
    with pytest.raises(ConfigError, match="save_local and push_to_hub are both null"):
        generate(compose_config("generate", tmp_path, cache_dir, ["save_local=null"]))


def test_generation_is_reproducible(generated, tmp_path, cache_dir):
    _, first = generated
    again = generate(compose_config("generate", tmp_path, cache_dir, WITH_RATIONALES))
    for split in ("train", "validation"):
        assert again[split].to_list() == first[split].to_list()


def test_train_reuses_a_cached_dataset_keyed_by_config(tmp_path, cache_dir):
    cfg = compose_config("train", tmp_path, cache_dir, ["dataset.corpus.max_files=2"])
    path = build(cfg.data.source).cached()
    stamp = (tmp_path / "data").stat().st_mtime_ns, sorted(p.name for p in (tmp_path / "data").iterdir())
    assert build(cfg.data.source).cached() == path
    assert ((tmp_path / "data").stat().st_mtime_ns, sorted(p.name for p in (tmp_path / "data").iterdir())) == stamp
    other = compose_config("train", tmp_path, cache_dir, ["dataset.corpus.max_files=2", "seed=7"])
    assert build(other.data.source).cached() != path


def test_local_stack_jsonl_gz_with_real_moonscript(shared_data, tmp_path, cache_dir):
    source = shared_data / "moonscript" / "moonscript.jsonl.gz"
    cfg = compose_config(
        "generate",
        tmp_path,
        cache_dir,
        [
            "dataset=moonscript_fim",
            f"dataset.corpus.source={source}",
            "dataset.corpus.max_files=4",
            "dataset.segment.length=128",
            "dataset.validation_size=0.2",
        ],
    )
    data = generate(cfg)
    with gzip.open(source, "rt", encoding="utf-8") as f:
        first = [json.loads(next(f)) for _ in range(4)]
    assert set(data["train"]["hexsha"]) | set(data["validation"]["hexsha"]) <= {r["hexsha"] for r in first}
    assert set(data["train"]["repo"]) <= {r["max_stars_repo_name"] for r in first}


@pytest.mark.parametrize(
    "override, message",
    [
        ("dataset.corpus.source=/no/such/file.jsonl", "dataset path /no/such/file.jsonl does not exist"),
        ("dataset.segment.length=5000", "dataset.segment.length=5000 tokens does not fit"),
        ("dataset.segment.unit=lines", "dataset.segment.unit='lines' is not one of"),
    ],
)
def test_bad_input_names_the_problem_and_the_fix(tmp_path, cache_dir, override, message):
    overrides = ["dataset=moonscript_fim", "dataset.corpus.source=" + str(tmp_path / "corpus.jsonl"), override]
    (tmp_path / "corpus.jsonl").write_text(
        json.dumps({"content": "x = 1\n" * 200}) + "\n" + json.dumps({"content": "y = 2\n" * 200}) + "\n"
    )
    with pytest.raises(ConfigError, match=message):
        generate(compose_config("generate", tmp_path, cache_dir, overrides))


def test_a_corpus_without_usable_files_names_the_fix(tmp_path, cache_dir):
    corpus = tmp_path / "empty.jsonl"
    corpus.write_text(json.dumps({"content": ""}) + "\n" + json.dumps({"content": "  "}) + "\n")
    cfg = compose_config("generate", tmp_path, cache_dir, ["dataset=moonscript_fim", f"dataset.corpus.source={corpus}"])
    with pytest.raises(ConfigError, match="has no usable file"):
        generate(cfg)
    corpus.write_text(json.dumps({"text": "x = 1" * 10}) + "\n")
    with pytest.raises(ConfigError, match="dataset.corpus.content_field"):
        generate(cfg)


def test_sharded_labelling_then_assembly_equals_one_run(tmp_path, cache_dir):
    base = ["dataset.corpus.max_files=3"]
    single = generate(compose_config("generate", tmp_path / "one", cache_dir, base))
    for index in range(2):
        shard = [f"shard.index={index}", "shard.count=2"]
        assert generate(compose_config("generate", tmp_path / "two", cache_dir, base + shard)) is None
    store = tmp_path / "two" / "data" / "store"
    records = {
        w: [json.loads(x) for p in store.glob(f"part-{w}-*.jsonl") for x in p.read_text().splitlines()]
        for w in ("0", "1")
    }
    assert records["0"] and records["1"]
    assert not {r["key"] for r in records["0"]} & {r["key"] for r in records["1"]}  # each computed once
    n_rows = len(single["train"]) + len(single["validation"])
    assert len(records["0"]) + len(records["1"]) == 2 * n_rows  # a teacher middle and a rationale per row
    assembled = generate(compose_config("generate", tmp_path / "two", cache_dir, base))
    for split in ("train", "validation"):
        assert assembled[split].to_list() == single[split].to_list()
    assert len(list(store.glob("part-*.jsonl"))) == 2  # assembling computed nothing new
