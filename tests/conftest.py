"""Shared fixtures: configs composed with Hydra's compose API, tiny models built once per session."""

import os
import socket
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict

import codistill
from codistill.config import CONFIG_DIR
from codistill.data.corpus import load_sample_corpus
from codistill.models.tiny import tiny_gpt_bigcode, tiny_t5

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
INFILLING_DIR = Path(codistill.__file__).parent / "data" / "human_eval_infilling"  # shipped in the package
os.environ.setdefault("WANDB_MODE", "offline")
if os.environ.get("PYTEST_XDIST_WORKER"):  # one thread per worker (and its subprocesses): the workers share the
    os.environ["OMP_NUM_THREADS"] = "1"  # cores, and tiny models train as fast on one thread as on two
    torch.set_num_threads(1)


# the longest modules, longest first (seconds on 2 cores, `--durations=0` summed per file): test_train_app
# 186 (its module fixture runs the embedded default), test_distillation 76, test_sandbox 49, test_eval 47,
# test_scaling 47, test_launch 44
LONGEST_FIRST = ("test_train_app", "test_distillation", "test_sandbox", "test_eval", "test_scaling", "test_launch")


def pytest_collection_modifyitems(config, items) -> None:
    """Under xdist a module's tests go to one worker, modules in collection order: the longest go first, so
    none runs alone at the end while the other workers wait."""
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.stem, len(rank)))  # stable: the rest keep their order


def pytest_xdist_auto_num_workers(config) -> int:
    """`-n auto`: one worker per core, at most 4 (each holds torch, transformers and Lightning: about 1 GB)."""
    return max(1, min(4, len(os.sched_getaffinity(0))))


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="session")
def tiny_teacher_dir(cache_dir) -> str:
    return tiny_gpt_bigcode(str(cache_dir))


@pytest.fixture(scope="session")
def tiny_student_dir(cache_dir) -> str:
    return tiny_t5(str(cache_dir))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} is absent (it ships beside the repository in codistill's workspace)")
    return SHARED_DATA


# Tests of codistill-train and codistill-generate label with the tiny random teacher (built in a second),
# train on the ground truth (a random teacher's middles carry no signal) and train no control arm, unless
# they name another teacher, label source or control: the embedded default's pretrained teacher takes a
# minute to build, and only the tests of the default run itself pay for it (`embedded=True`), once per
# session. Subprocess tests of recipe 1 put TINY_TEACHER on their command lines.
TINY_TEACHER = ["teacher=tiny_gpt_bigcode", "data.label_source=ground_truth", "~control"]


def compose_config(
    name: str, tmp_path: Path, cache_dir: Path, overrides: list[str] = (), embedded: bool = False
) -> DictConfig:
    """A composed config whose paths point into `tmp_path` (no Hydra run dir under compose); `embedded`:
    the embedded default's own teacher, labels and control, not the tiny teacher's (see TINY_TEACHER)."""
    tiny = name in ("train", "generate") and not embedded
    overrides = list(overrides)
    if tiny and not any(o.lstrip("~").startswith("control") for o in overrides):
        overrides = ["~control", *overrides]
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name=name, overrides=overrides)
        tiny = tiny and not any(o.startswith("teacher=") for o in overrides)
        if tiny and cfg.teacher.name == "pretrained_gpt_bigcode":  # the default's, not an experiment's
            cfg = compose(config_name=name, overrides=[TINY_TEACHER[0], *overrides])
    chosen = any(o.split("=")[0].endswith("label_source") for o in overrides)
    if tiny and cfg.teacher.name == "tiny_gpt_bigcode" and "label_source" in cfg.data and not chosen:
        cfg.data.label_source = "ground_truth"
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path / "out")
        cfg.paths.data_dir = str(tmp_path / "data")
        cfg.paths.cache_dir = str(cache_dir)
        cfg.paths.log_dir = str(tmp_path / "logs")
        cfg.paths.infilling_dir = str(INFILLING_DIR)  # whatever CODISTILL_INFILLING_DIR says
    return cfg


@pytest.fixture
def make_config(tmp_path, cache_dir):
    return lambda name, overrides=(): compose_config(name, tmp_path, cache_dir, overrides)


@pytest.fixture(scope="session")
def tiny_teacher_tokenizer(tiny_teacher_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_teacher_dir)


@pytest.fixture
def infilling_dir() -> Path:
    return INFILLING_DIR


def free_port() -> int:
    """A loopback port no one listens on now (for a process group's rendezvous)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def santacoder_at_toy_size(tmp_path: Path, teacher_dir: str, layers: int = 1) -> list[str]:
    """experiment=moonscript_santacoder_tiny_kd with santacoder swapped for its architecture at toy size (the
    tiny teacher) and a 32-wide student of `layers` layers around its tokenizer, on the bundled MoonScript
    sample, on CPU in fp32."""
    corpus = tmp_path / "moon.jsonl"
    load_sample_corpus().to_json(str(corpus))
    return [
        "experiment=moonscript_santacoder_tiny_kd",
        f"teacher.backend.name_or_path={teacher_dir}",
        "student.name_or_path.n_positions=1024",
        "student.name_or_path.n_embd=32",
        f"student.name_or_path.n_layer={layers}",
        "student.name_or_path.n_head=2",
        "trainer.accelerator=cpu",
        "trainer.precision=32-true",
        f"dataset.corpus.source={corpus}",
        "data.num_workers=0",
        "data.max_source_length=512",
    ]


def served_teacher(base_url: str, tokenizer_dir: str, out: Path) -> list[str]:
    """codistill-generate against a teacher served at `base_url` (the loopback fake) with the tokenizer in
    `tokenizer_dir`, its distributions over the ground truth, the dataset saved to `out`."""
    return [
        "debug=fdr",
        "teacher=openai_compatible",
        f"teacher.backend.tokenizer={tokenizer_dir}",
        f"teacher.backend.client.base_url={base_url}",
        "data.label_source=ground_truth",
        f"save_local={out}",
    ]
