"""The trained student as a plain `save_pretrained` folder, whatever strategy trained it, and the run's
summary beside it (metrics.json, metrics.md, predictions.jsonl)."""

import json
import tempfile
from pathlib import Path

from omegaconf import OmegaConf
from pytorch_lightning.loggers import WandbLogger
from pytorch_lightning.strategies import DeepSpeedStrategy
from pytorch_lightning.utilities.deepspeed import convert_zero_checkpoint_to_fp32_state_dict
from transformers import PreTrainedModel

from codistill.config import build
from codistill.eval.report import write_report
from codistill.eval.standings import gap_closed
from codistill.generation import resolve_device
from codistill.models.card import write_model_card
from codistill.tables import markdown_table, print_table, transposed

MODEL_PREFIX = "model."  # the LightningModule attribute that holds the Hugging Face model


def trained_model(module, checkpoint: str, strategy) -> PreTrainedModel:
    """The student with its trained weights in full. Under DeepSpeed a checkpoint is a folder of ZeRO
    shards (under ZeRO-3 the module's own parameters are partitioned): they are merged into one fp32
    state dict, and its model weights (not the module's other state, such as buffers of counters)
    are loaded into a fresh copy of the model."""
    if not (isinstance(strategy, DeepSpeedStrategy) and checkpoint and Path(checkpoint).is_dir()):
        return module.model
    with tempfile.TemporaryDirectory() as tmp:
        merged = convert_zero_checkpoint_to_fp32_state_dict(checkpoint, f"{tmp}/fp32.ckpt")
    weights = {k.removeprefix(MODEL_PREFIX): v for k, v in merged["state_dict"].items() if k.startswith(MODEL_PREFIX)}
    model = type(module.model)._from_config(module.model.config)
    model.load_state_dict(weights)
    return model


def on_evaluation_device(model: PreTrainedModel) -> PreTrainedModel:
    """The model in eval mode on this process's accelerator: after `trainer.validate` Lightning's
    teardown has moved it to the CPU, where generation on a 1B model would take hours."""
    return model.to(resolve_device("auto")).eval()


def export_student(
    module, tokenizer, checkpoint: str, trainer, folder: Path, log_model: bool, metrics: dict
) -> PreTrainedModel:
    """Save the trained student to `folder` (model and tokenizer) and, with `log_model`, upload it to
    every wandb run as a model artifact carrying its validation `metrics`. Returns the exported model."""
    model = trained_model(module, checkpoint, trainer.strategy)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger) and log_model:
            import wandb  # only with a wandb logger: the package is slow to import and heavy to ship

            artifact = wandb.Artifact(f"student-{logger.experiment.id}", type="model", metadata=metrics)
            artifact.add_dir(str(folder))
            logger.experiment.log_artifact(artifact)
    return model


def final_checkpoint(trainer, output_dir: str) -> str:
    """With no checkpoint to export from, DeepSpeed saves one now (every rank writes its shards: under
    ZeRO-3 no rank holds the whole model); other strategies export the module as it is."""
    if not isinstance(trainer.strategy, DeepSpeedStrategy):
        return ""
    folder = str(Path(output_dir) / "checkpoints" / "final.ckpt")
    trainer.save_checkpoint(folder)
    return folder


def export_and_score(cfg, module, tokenizer, trainer, checkpoint: str, metrics: dict) -> dict:
    """Rank 0's part after fitting: the model card, the student saved to <output_dir>/student, and the
    `after_training` tasks run on it the way its module says it is evaluated (report in <output_dir>/eval).
    Returns the summary's entries for them."""
    out = Path(cfg.paths.output_dir)
    log_model = bool(OmegaConf.select(cfg, "logger.wandb.log_model", default=False))
    write_model_card(out / "student", cfg, metrics)  # first, so a logged model artifact carries it
    model = export_student(module, tokenizer, checkpoint, trainer, out / "student", log_model, metrics)
    scores = {}
    if cfg.get("after_training"):
        scored, sandbox = module.as_evaluated(on_evaluation_device(model)), build(cfg.sandbox)
        results = [build(task).run(scored, sandbox) for task in cfg.after_training.values()]
        scores = write_report(out / "eval", results, "student after training")
    return {"student": str(out / "student"), "after_training": scores, "checkpoint": checkpoint}


def write_summary(out: Path, metrics: dict, predictions: list[dict], standings: dict | None = None, **extra) -> None:
    """metrics.json (the validation metrics, `standings`, the bits-per-byte gap closed, and `extra`),
    predictions.jsonl and metrics.md: first `standings` (codistill.eval.standings: teacher, student, control
    and baselines on the same gaps) and the gap closed, where there are any, then the validation metrics."""
    metrics = {k: float(v) for k, v in metrics.items()}
    closed = gap_closed(standings or {})
    summary = {"metrics": metrics, "standings": standings or {}, "gap_closed": closed, **extra}
    summary["validation_rows"] = len(predictions)
    (out / "metrics.json").write_text(json.dumps(summary, indent=2))
    with open(out / "predictions.jsonl", "w", encoding="utf-8") as f:
        for row in predictions:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    rows = {"student (val)": {k.removeprefix("val/"): v for k, v in metrics.items()}}
    text = ""
    if standings:
        print_table("where the student stands (validation gaps, in files no model trained on)", transposed(standings))
        text += "## Where the student stands (validation gaps)\n\n" + markdown_table(standings)
        if closed is not None:
            line = f"Distillation closed {closed:.0%} of the control-to-teacher gap in bits per byte."
            print(line)
            text += f"\n{line}\n"
        text += "\n## Every validation metric\n\n"
    print_table("validation", rows)
    (out / "metrics.md").write_text(text + markdown_table(rows))
