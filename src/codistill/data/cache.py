"""The distillation dataset of a config, built once and cached under `paths.data_dir`.

The folder name carries a hash of everything that decides the content (`dataset`, `teacher`,
`rationale`, `seed`, the schema's version), so a second run with the same config pays for nothing and a
changed config (or schema) never reads a stale dataset. A folder appears only complete (written beside,
then renamed). Under a launch of several ranks each rank labels its shard of the segments (the teacher
runs on every GPU at once), the ranks wait for each other, rank 0 assembles and saves, and the others
then load what it saved.
"""

import hashlib
import logging
import shutil
from pathlib import Path

from datasets import DatasetDict
from omegaconf import DictConfig, OmegaConf

from codistill.data import schema
from codistill.data.build import build_fim_dataset
from codistill.distributed import barrier
from codistill.errors import ConfigError, build
from codistill.llm.store import ResultStore

log = logging.getLogger(__name__)


def build_dataset(cfg: DictConfig, shard: tuple[int, int] = (0, 1)) -> DatasetDict | None:
    """The dataset of this config; with shard (i, n), n > 1, only shard i is labelled and None is
    returned (see build_fim_dataset). Shard i writes to the result store as writer i."""
    if not 0 <= shard[0] < shard[1]:
        raise ConfigError(f"shard.index={shard[0]} must be in [0, shard.count={shard[1]})")
    corpus = build(cfg.dataset.corpus)
    teacher = build(cfg.teacher)
    rationale = build(cfg.rationale)
    container = OmegaConf.to_container(cfg.dataset, resolve=True)
    with ResultStore(cfg.paths.store_dir, writer=str(shard[0])) as store:
        return build_fim_dataset(
            corpus,
            teacher,
            rationale,
            store,
            cfg.dataset.language,
            container["segment"],
            container["fim"],
            cfg.dataset.validation_size,
            cfg.seed,
            shard,
        )


def dataset_key(cfg: DictConfig) -> str:
    """A stable hash of everything that decides the dataset's content, its columns included."""
    parts = {k: OmegaConf.to_container(cfg[k], resolve=True) for k in ("dataset", "teacher", "rationale")}
    parts["seed"] = cfg.seed
    parts["schema"] = schema.VERSION
    return hashlib.sha256(OmegaConf.to_yaml(OmegaConf.create(parts)).encode("utf-8")).hexdigest()[:12]


def cached_dataset(cfg: DictConfig, rank: int = 0, world: int = 1) -> str:
    """The folder of this config's dataset under paths.data_dir, built on first use. Every rank of a
    launch of `world` processes calls it; all return once rank 0 has saved the dataset."""
    target = Path(cfg.paths.data_dir) / f"{cfg.dataset.name}-{cfg.teacher.name}-{dataset_key(cfg)}"
    if not _complete(target):
        if world > 1:
            build_dataset(cfg, shard=(rank, world))
            barrier()
        if rank == 0:
            _save(build_dataset(cfg), target)
        barrier()
    else:
        log.info("reusing the distillation dataset in %s", target)
    return str(target)


def _complete(target: Path) -> bool:
    return (target / "dataset_dict.json").is_file()


def _save(data: DatasetDict, target: Path) -> None:
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    data.save_to_disk(str(tmp))
    tmp.rename(target)
    log.info("saved the distillation dataset to %s", target)
