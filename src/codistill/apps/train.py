"""codistill-train: dataset (built or reused) -> student training -> metrics and a saved student."""

import json
import logging
from pathlib import Path

import hydra
import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf

from codistill.apps.generate import cached_dataset
from codistill.config import CONFIG_DIR
from codistill.errors import ConfigError, build, exit_on_config_error
from codistill.eval.models import CausalModel, Seq2SeqModel
from codistill.eval.report import markdown_table, print_table, write_report
from codistill.eval.tasks import SandboxSettings

log = logging.getLogger(__name__)


def train(cfg: DictConfig) -> float:
    """Train the student and return the validation metric `cfg.monitor` of the saved student."""
    pl.seed_everything(cfg.seed, workers=True)
    extra = {"loss": build(cfg.loss)} if cfg.get("loss") else {}  # validated before any expensive step
    data_args = {}
    if "dataset_dir" in cfg.data and not cfg.data.dataset_dir:  # recipe 1: build or reuse the FIM dataset
        data_args["dataset_dir"] = cached_dataset(cfg)
    student = build(cfg.student)
    datamodule = build(cfg.data, tokenizer=student.tokenizer, **data_args)
    module = build(cfg.model, model=student.model, tokenizer=student.tokenizer, **extra)
    callbacks = [build(c) for c in (cfg.get("callbacks") or {}).values()]
    loggers = [build(c) for c in (cfg.get("logger") or {}).values()]
    trainer = build(cfg.trainer, callbacks=callbacks, logger=loggers or False, **accumulation(cfg))
    for logger in loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))

    trainer.fit(module, datamodule=datamodule)
    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    metrics = trainer.validate(module, datamodule=datamodule, ckpt_path=best or None, verbose=False)[0]
    export(cfg, student, module, metrics, best)
    return float(metrics[cfg.monitor])


def accumulation(cfg: DictConfig) -> dict:
    """accumulate_grad_batches from `effective_batch_size` (nothing when it is not set)."""
    if not cfg.get("effective_batch_size"):
        return {}
    micro = cfg.data.get("micro_batch_size") or cfg.data.get("batch_size")
    devices = cfg.trainer.get("devices") if isinstance(cfg.trainer.get("devices"), int) else 1
    steps, rest = divmod(cfg.effective_batch_size, micro * devices)
    if rest or not steps:
        raise ConfigError(
            f"effective_batch_size={cfg.effective_batch_size} is not a multiple of the micro batch size {micro} "
            f"x {devices} device(s): change one of them"
        )
    return {"accumulate_grad_batches": steps}


def score_after_training(cfg: DictConfig, student, module) -> dict[str, dict[str, float]]:
    """Run `after_training` tasks on the trained student; the report goes to <output_dir>/eval."""
    if not cfg.get("after_training"):
        return {}
    module.model.eval()
    if module.model.config.is_encoder_decoder:
        scored = Seq2SeqModel(module.model, student.tokenizer)
    else:
        scored = CausalModel(module.model, student.tokenizer, "student")
    results = [build(task).run(scored, SandboxSettings()) for task in cfg.after_training.values()]
    return write_report(Path(cfg.paths.output_dir) / "eval", results, "student after training")


def export(cfg: DictConfig, student, module, metrics: dict, checkpoint: str) -> None:
    """The student as a `save_pretrained` folder, plus metrics.json, predictions.jsonl and metrics.md,
    and the scores of the `after_training` tasks."""
    out = Path(cfg.paths.output_dir)
    student_dir = out / "student"
    module.model.save_pretrained(student_dir)
    student.tokenizer.save_pretrained(student_dir)
    metrics = {k: float(v) for k, v in metrics.items()}
    summary = {
        "metrics": metrics,
        "student": str(student_dir),
        "after_training": score_after_training(cfg, student, module),
        "checkpoint": checkpoint,
        "validation_rows": len(getattr(module, "predictions", [])),
    }
    (out / "metrics.json").write_text(json.dumps(summary, indent=2))
    with open(out / "predictions.jsonl", "w", encoding="utf-8") as f:
        for row in getattr(module, "predictions", []):
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
