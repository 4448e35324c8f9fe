"""codistill-train: instantiate, fit, validate, export the student, return the metric sweeps optimise."""

import copy
import logging
from pathlib import Path

import hydra
import pytorch_lightning as pl
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict
from pytorch_lightning.loggers import WandbLogger
from pytorch_lightning.strategies import DeepSpeedStrategy

from codistill.backends.hf import HFBackend
from codistill.config import CONFIG_DIR, loggable
from codistill.data.fim_datamodule import check_saved_dataset
from codistill.distributed import start_ranks
from codistill.errors import ConfigError, build, exit_on_config_error, require
from codistill.eval.models import CausalModel
from codistill.eval.report import write_report
from codistill.eval.standings import standings
from codistill.models.card import write_model_card
from codistill.models.export import export_student, on_evaluation_device, write_summary
from codistill.models.fim import FIMDistiller

log = logging.getLogger(__name__)


def train(cfg: DictConfig) -> float:
    """Train the student (and its control, see conf/control) and return the validation metric `cfg.monitor`
    of the saved student."""
    require(cfg)
    check_launch(cfg)
    start_ranks(cfg)
    student = fit_and_export(cfg)
    arm = control_config(cfg)
    control = fit_and_export(arm) if arm is not None else None
    if student["rank_zero"]:
        out, predictions, extra, table = Path(cfg.paths.output_dir), student["predictions"], {}, {}
        if control:
            write_summary(Path(arm.paths.output_dir), control["metrics"], control["predictions"], **control["summary"])
            extra["control"] = {"output_dir": arm.paths.output_dir, "metrics": control["metrics"]}
        if student["recipe_1"]:
            table = standings(predictions, local_teacher(cfg), control["predictions"] if control else None)
        write_summary(out, student["metrics"], predictions, standings=table, **student["summary"], **extra)
        log.info("saved the student to %s", out / "student")
    return float(student["metrics"][cfg.monitor])


def fit_and_export(cfg: DictConfig) -> dict:
    """Fit one student, validate its best checkpoint, export it and score it after training (rank 0); the
    summary is `train`'s to write, once the control is known."""
    pl.seed_everything(cfg.seed, workers=True)
    extra = {"loss": build(cfg.loss)} if cfg.get("loss") else {}  # validated before the student loads
    check_inputs(cfg, extra.get("loss"))
    teacher = {}  # the teacher distributions' source, when the loss reads them
    if extra and extra["loss"].needs_teacher:
        if not cfg.get("teacher_logits"):
            raise ConfigError(
                f"loss.divergence={cfg.loss.divergence} reads the teacher's distribution: add teacher_logits=online "
                "or teacher_logits=offline"
            )
        teacher = {"teacher": build(cfg.teacher_logits)}
    student = build(cfg.student)
    datamodule = build(cfg.data, tokenizer=student.tokenizer, **teacher)
    module = build(cfg.model, model=student.model, tokenizer=student.tokenizer, **extra, **teacher)
    callbacks = [build(c) for c in (cfg.get("callbacks") or {}).values()]
    loggers = [build(c) for c in (cfg.get("logger") or {}).values()]
    trainer = build(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    for logger in loggers:
        logger.log_hyperparams(loggable(cfg))

    trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    metrics = trainer.validate(module, datamodule=datamodule, ckpt_path=best or None, verbose=False)[0]
    checkpoint = best or final_checkpoint(trainer, cfg)
    predictions = getattr(module, "predictions", [])
    result = {"metrics": metrics, "predictions": predictions, "rank_zero": trainer.is_global_zero}
    result["recipe_1"] = isinstance(module, FIMDistiller)
    if trainer.is_global_zero:
        out = Path(cfg.paths.output_dir)
        log_model = bool(OmegaConf.select(cfg, "logger.wandb.log_model", default=False))
        write_model_card(out / "student", cfg, metrics)  # first, so a logged model artifact carries it
        model = export_student(module, student.tokenizer, checkpoint, trainer, out / "student", log_model, metrics)
        scores = score_after_training(cfg, module, model)
        result["summary"] = {"student": str(out / "student"), "after_training": scores, "checkpoint": checkpoint}
    for logger in loggers:
        if isinstance(logger, WandbLogger):  # the next job of a multirun (or the control) starts its own run
            logger.experiment.finish()
    return result


def check_inputs(cfg: DictConfig, loss) -> None:
    """What a run's inputs must satisfy, checked before any model is built (the default's student and
    teacher source build the teacher first: a minute and more)."""
    if cfg.data.get("dataset_dir"):
        check_saved_dataset(cfg.data.dataset_dir)
    elif loss is not None and loss.uses_rationale and not cfg.get("rationale"):
        raise ConfigError(
            f"loss.alpha={cfg.loss.alpha} trains on rationales, but no rationale writer is chosen: add "
            "rationale=hf (a local model) or rationale=openai"
        )


def control_config(cfg: DictConfig) -> DictConfig | None:
    """The control arm's config: `cfg` with `cfg.control` merged over it, into <output_dir>/control; None
    without a control, in a sweep, or where the run learns nothing from the teacher (the control would be
    the run)."""
    if not cfg.get("control"):
        return None
    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        log.info("no control arm in a sweep: its jobs are compared with one another (add loss=label_only to it)")
        return None
    distils = bool(cfg.get("loss")) and build(cfg.loss).needs_teacher  # the loss says, as for the teacher source
    if not distils and OmegaConf.select(cfg, "data.label_source") != "teacher":
        log.info("no control arm: this run learns nothing from the teacher (it is its own control)")
        return None
    arm = copy.deepcopy(cfg)
    with open_dict(arm):  # the control may set keys the run's loss config lacks (loss.ce_weight of label_only)
        arm.merge_with(cfg.control)
        arm.control = arm.ckpt_path = None  # a resumed run's checkpoint is the student's, not its control's
        arm.paths.output_dir = str(Path(cfg.paths.output_dir) / "control")
    return arm


def check_launch(cfg: DictConfig) -> None:
    """Refuse multi-process training inside Hydra's basic multirun launcher: its jobs share one process,
    and Lightning's DDP relaunch of the script would start the whole sweep again in every rank."""
    strategy = str(cfg.trainer.get("strategy", {}).get("_target_", "")) if cfg.trainer.get("strategy") else ""
    several = cfg.trainer.get("devices") not in (1, "1") or cfg.trainer.get("num_nodes", 1) != 1
    if not (HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN and several):
        return
    if ("DDP" in strategy or "DeepSpeed" in strategy) and HydraConfig.get().launcher._target_.endswith("BasicLauncher"):
        raise ConfigError(
            "a multirun with the basic launcher cannot train on several devices per job: use "
            "hydra/launcher=slurm (one process group per job), or trainer.devices=1 for the sweep"
        )


def final_checkpoint(trainer: pl.Trainer, cfg: DictConfig) -> str:
    """With no checkpoint to export from, DeepSpeed saves one now (every rank writes its shards: under
    ZeRO-3 no rank holds the whole model); other strategies export the module as it is."""
    if not isinstance(trainer.strategy, DeepSpeedStrategy):
        return ""
    folder = str(Path(cfg.paths.output_dir) / "checkpoints" / "final.ckpt")
    trainer.save_checkpoint(folder)
    return folder


def local_teacher(cfg: DictConfig) -> CausalModel | None:
    """The teacher as an evaluated model, to score the ground truth's bits per byte beside the student's,
    where it is a local model (a served one may return no prompt log-probabilities)."""
    if not str(OmegaConf.select(cfg, "teacher.backend._target_", default="")).startswith(HFBackend.__module__):
        return None
    teacher = build(cfg.teacher)
    return CausalModel(teacher.name, teacher.backend, cfg.teacher.fim, cfg.teacher.eos_token)


def score_after_training(cfg: DictConfig, module, model) -> dict[str, dict[str, float]]:
    """Run `after_training` tasks on the exported student, the way its module says it is evaluated; the
    report goes to <output_dir>/eval."""
    if not cfg.get("after_training"):
        return {}
    scored, sandbox = module.as_evaluated(on_evaluation_device(model)), build(cfg.sandbox)
    results = [build(task).run(scored, sandbox) for task in cfg.after_training.values()]
    return write_report(Path(cfg.paths.output_dir) / "eval", results, "student after training")


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
@exit_on_config_error
def main(cfg: DictConfig) -> float:
    return train(cfg)


if __name__ == "__main__":
    main()
