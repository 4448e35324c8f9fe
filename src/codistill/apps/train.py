"""codistill-train: prepare, assemble, fit, validate, export the student, return the metric sweeps optimise."""

import logging
from dataclasses import dataclass
from pathlib import Path

import hydra
import pytorch_lightning as pl
from omegaconf import DictConfig
from pytorch_lightning.loggers import WandbLogger

from codistill.assembly import Prepared, assemble, prepare
from codistill.compatibility import local_teacher
from codistill.config import CONFIG_DIR
from codistill.control import control_config
from codistill.distributed import check_launch, start_ranks
from codistill.errors import exit_on_config_error, require
from codistill.eval.standings import standings
from codistill.models.export import export_and_score, final_checkpoint, write_summary

log = logging.getLogger(__name__)


@dataclass
class Fitted:
    metrics: dict  # the best checkpoint's validation metrics
    predictions: list[dict]  # its validation predictions (recipe 1), for the standings table
    summary: dict  # what the summary says of the export (rank 0)
    rank_zero: bool


def train(cfg: DictConfig) -> float:
    """Train the student (and its control, see conf/control) and return the validation metric `cfg.monitor`
    of the saved student."""
    require(cfg)
    check_launch(cfg)
    start_ranks(cfg)
    run = prepare(cfg)
    student = fit(run)
    arm = control_config(cfg, distils=run.loss is not None and run.loss.needs_teacher)
    control = fit(prepare(arm, teacher=run.teacher)) if arm is not None else None
    if student.rank_zero:
        out, extra, table = Path(cfg.paths.output_dir), {}, {}
        if control:
            write_summary(Path(arm.paths.output_dir), control.metrics, control.predictions, **control.summary)
            extra["control"] = {"output_dir": arm.paths.output_dir, "metrics": control.metrics}
        if student.predictions:  # recipe 1: where the student stands beside its teacher, control and baselines
            teacher = run.teacher() if local_teacher(cfg) else None  # a served one may not score prompts
            table = standings(student.predictions, teacher, control.predictions if control else None)
        write_summary(out, student.metrics, student.predictions, standings=table, **student.summary, **extra)
        log.info("saved the student to %s", out / "student")
    return float(student.metrics[cfg.monitor])


def fit(run: Prepared) -> Fitted:
    """Fit one student, validate its best checkpoint, export it and score it after training (rank 0); the
    summary is `train`'s to write, once the control is known."""
    pl.seed_everything(run.cfg.seed, workers=True)
    parts = assemble(run)
    trainer, module = parts.trainer, parts.module
    trainer.fit(module, datamodule=parts.datamodule, ckpt_path=run.cfg.get("ckpt_path"))
    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    metrics = trainer.validate(module, datamodule=parts.datamodule, ckpt_path=best or None, verbose=False)[0]
    checkpoint = best or final_checkpoint(trainer, run.cfg.paths.output_dir)
    summary = {}
    if trainer.is_global_zero:
        summary = export_and_score(run.cfg, module, parts.student.tokenizer, trainer, checkpoint, metrics)
    for logger in parts.loggers:
        if isinstance(logger, WandbLogger):  # the next job of a multirun (or the control) starts its own run
            logger.experiment.finish()
    return Fitted(metrics, getattr(module, "predictions", []), summary, trainer.is_global_zero)


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
@exit_on_config_error
def main(cfg: DictConfig) -> float:
    return train(cfg)


if __name__ == "__main__":
    main()
