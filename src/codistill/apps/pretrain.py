"""codistill-pretrain: build (or reuse) the pretrained teacher of `teacher=pretrained` and report it."""

import json
import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig

from codistill.config import CONFIG_DIR, build
from codistill.errors import exit_on_config_error
from codistill.tables import print_table

log = logging.getLogger(__name__)


def pretrain(cfg: DictConfig) -> str:
    """The teacher's folder; its held-out bits per byte per domain are printed and in pretraining.json."""
    folder = build(cfg.teacher.backend.name_or_path)
    report = json.loads((Path(folder) / "pretraining.json").read_text())
    rows = {domain: {"bits per byte": round(value, 4)} for domain, value in report["bits_per_byte"].items()}
    print_table(f"pretrained teacher: {report['parameters']:,} parameters, {report['tokens']:,} tokens", rows)
    log.info("the pretrained teacher is in %s", folder)
    return folder


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="pretrain")
@exit_on_config_error
def main(cfg: DictConfig) -> None:
    pretrain(cfg)


if __name__ == "__main__":
    main()
