"""codistill-generate: build the distillation dataset (FIM segments, teacher middles, rationales)."""

import hashlib
import logging
import shutil
from pathlib import Path

import hydra
from datasets import DatasetDict
from omegaconf import DictConfig, OmegaConf

from codistill.config import CONFIG_DIR
from codistill.data.build import build_fim_dataset
from codistill.errors import ConfigError, build, exit_on_config_error
from codistill.eval.metrics import fim_metrics
from codistill.eval.report import print_table
from codistill.llm.store import ResultStore

log = logging.getLogger(__name__)


def build_dataset(cfg: DictConfig) -> DatasetDict | None:
    """The dataset of this config (None for one shard of a sharded run: see build_fim_dataset)."""
    shard = (int(cfg.shard.index), int(cfg.shard.count)) if cfg.get("shard") else (0, 1)
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
    """A stable hash of everything that decides the dataset's content."""
    parts = {k: OmegaConf.to_container(cfg[k], resolve=True) for k in ("dataset", "teacher", "rationale")}
    parts["seed"] = cfg.seed
    return hashlib.sha256(OmegaConf.to_yaml(OmegaConf.create(parts)).encode("utf-8")).hexdigest()[:12]


def cached_dataset(cfg: DictConfig) -> str:
    """The dataset for this config under paths.data_dir, built on first use (written atomically)."""
    target = Path(cfg.paths.data_dir) / f"{cfg.dataset.name}-{cfg.teacher.name}-{dataset_key(cfg)}"
    if not (target / "dataset_dict.json").is_file():
        data = build_dataset(cfg)
        tmp = target.with_name(f".{target.name}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        data.save_to_disk(str(tmp))
        tmp.rename(target)
        log.info("saved the distillation dataset to %s", target)
    else:
        log.info("reusing the distillation dataset in %s", target)
    return str(target)


def summarize(data: DatasetDict) -> dict[str, dict[str, float]]:
    """Per split: size, and how the teacher's middles compare with the ground truth."""
    rows = {}
    for name, split in data.items():
        teacher = fim_metrics(split["santacoder_outputs"], split["label_middles"])
        rows[name] = {"rows": len(split), **{f"teacher_{k}": v for k, v in teacher.items()}}
    print_table("distillation dataset", rows)
    return rows


def generate(cfg: DictConfig) -> DatasetDict | None:
    if not cfg.save_local and not cfg.push_to_hub:
        raise ConfigError("save_local and push_to_hub are both null: set one, or the dataset is thrown away")
    data = build_dataset(cfg)
    if data is None:
        log.info(
            "shard %s of %s is labelled; once every shard is, run with shard.count=1 to assemble the dataset",
            cfg.shard.index,
            cfg.shard.count,
        )
        return None
    if cfg.save_local:
        data.save_to_disk(cfg.save_local)
        log.info("saved the distillation dataset to %s", cfg.save_local)
    if cfg.push_to_hub:
        data.push_to_hub(cfg.push_to_hub, private=cfg.private)
        log.info("pushed the dataset to the Hub as %s", cfg.push_to_hub)
    summarize(data)
    return data


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="generate")
@exit_on_config_error
def main(cfg: DictConfig) -> None:
    generate(cfg)


if __name__ == "__main__":
    main()
