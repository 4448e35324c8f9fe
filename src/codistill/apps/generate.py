"""codistill-generate: build the distillation dataset (FIM segments, teacher middles, rationales)."""

import logging

import hydra
from datasets import DatasetDict
from omegaconf import DictConfig

from codistill.config import CONFIG_DIR, build
from codistill.data import schema
from codistill.errors import ConfigError, exit_on_config_error, require
from codistill.eval.metrics import fim_metrics
from codistill.tables import print_table

log = logging.getLogger(__name__)


def summarize(data: DatasetDict) -> dict[str, dict[str, float]]:
    """Per split: size, how the teacher's middles compare with the ground truth, and what its stored
    distributions cost per token."""
    rows = {}
    for name, split in data.items():
        teacher = fim_metrics(split[schema.TEACHER_MIDDLE], split[schema.MIDDLE])
        rows[name] = {"rows": len(split), **{f"teacher_{k}": v for k, v in teacher.items()}}
        for form, size in schema.distribution_bytes_per_token(split).items():
            rows[name][f"{form} bytes/token"] = round(size, 1)
    print_table("distillation dataset", rows)
    return rows


def generate(cfg: DictConfig) -> DatasetDict | None:
    """The dataset under codistill's column names; saved and pushed under those `column_names` asks for."""
    require(cfg, "dataset", "teacher", "rationale")
    if "source" not in cfg.data:
        raise ConfigError(
            f"codistill-generate builds recipe 1's FIM dataset, but this config trains on {cfg.data._target_}: "
            "use data=fim (recipe 2's data comes from codistill-exercises)"
        )
    if not cfg.save_local and not cfg.push_to_hub:
        raise ConfigError("save_local and push_to_hub are both null: set one, or the dataset is thrown away")
    schema.check_export(cfg.column_names)
    data = build(cfg.data.source).build(shard=(int(cfg.shard.index), int(cfg.shard.count)))
    if data is None:
        log.info(
            "shard %s of %s is labelled; once every shard is, run with shard.count=1 to assemble the dataset",
            cfg.shard.index,
            cfg.shard.count,
        )
        return None
    export = schema.exported(data, cfg.column_names)
    if cfg.save_local:
        export.save_to_disk(cfg.save_local)
        log.info("saved the distillation dataset to %s", cfg.save_local)
    if cfg.push_to_hub:
        export.push_to_hub(cfg.push_to_hub, private=cfg.private)
        log.info("pushed the dataset to the Hub as %s", cfg.push_to_hub)
    summarize(data)
    return data


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="generate")
@exit_on_config_error
def main(cfg: DictConfig) -> None:
    generate(cfg)


if __name__ == "__main__":
    main()
