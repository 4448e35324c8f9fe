"""codistill-train: dataset (built or reused) -> student training -> metrics and a saved student."""

import json
import logging
from pathlib import Path

import hydra
import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf

from codistill.apps.generate import cached_dataset
from codistill.config import CONFIG_DIR
from codistill.errors import build, exit_on_config_error
from codistill.eval.report import markdown_table, print_table

log = logging.getLogger(__name__)


def train(cfg: DictConfig) -> float:
    """Train the student and return the validation metric `cfg.monitor` of the saved student."""
    pl.seed_everything(cfg.seed, workers=True)
    loss = build(cfg.loss)  # validated before any expensive step
    dataset_dir = cfg.dataset_dir or cached_dataset(cfg)
    student = build(cfg.student)
    datamodule = build(cfg.data, dataset_dir=dataset_dir, tokenizer=student.tokenizer)
    module = build(cfg.model, model=student.model, tokenizer=student.tokenizer, loss=loss)
    callbacks = [build(c) for c in (cfg.get("callbacks") or {}).values()]
    loggers = [build(c) for c in (cfg.get("logger") or {}).values()]
    trainer = build(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    for logger in loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))

    trainer.fit(module, datamodule=datamodule)
    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    metrics = trainer.validate(module, datamodule=datamodule, ckpt_path=best or None, verbose=False)[0]
    export(cfg, student, module, metrics, dataset_dir, best)
    return float(metrics[cfg.monitor])


def export(cfg: DictConfig, student, module, metrics: dict, dataset_dir: str, checkpoint: str) -> None:
    """The student as a `save_pretrained` folder, plus metrics.json, predictions.jsonl and metrics.md."""
    out = Path(cfg.paths.output_dir)
    student_dir = out / "student"
    module.model.save_pretrained(student_dir)
    student.tokenizer.save_pretrained(student_dir)
    metrics = {k: float(v) for k, v in metrics.items()}
    summary = {
        "metrics": metrics,
        "student": str(student_dir),
        "dataset": dataset_dir,
        "checkpoint": checkpoint,
        "validation_rows": len(module.predictions),
    }
    (out / "metrics.json").write_text(json.dumps(summary, indent=2))
    with open(out / "predictions.jsonl", "w", encoding="utf-8") as f:
        for row in module.predictions:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    rows = {"student (val)": {k.removeprefix("val/"): v for k, v in metrics.items()}}
    (out / "metrics.md").write_text(markdown_table(rows))
    print_table("validation", rows)
    log.info("saved the student to %s", student_dir)


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
@exit_on_config_error
def main(cfg: DictConfig) -> float:
    return train(cfg)


if __name__ == "__main__":
    main()
