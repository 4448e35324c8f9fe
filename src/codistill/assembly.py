"""What codistill-train fits, in two explicit steps that the app and the benchmarks share.

- `prepare(cfg)`: check that the loss, teacher source and student go together (before any model loads),
  then find the dataset or build it, which loads the teacher. The teacher is loaded at most once per run
  (`LazyTeacher`), and shared by labelling, online distillation and the standings table.
- `assemble(prepared)`: the student, the teacher source, the datamodule, the LightningModule, callbacks,
  loggers and the trainer, as the config says (`_target_`s), ready to fit.
"""

from dataclasses import dataclass

import pytorch_lightning as pl
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf

from codistill import compatibility
from codistill.config import build, loggable
from codistill.data.fim_datamodule import check_saved_dataset
from codistill.distributed import rank_and_world
from codistill.losses import BatchAligner, DistillationLoss


class LazyTeacher:
    """The run's teacher (codistill.teacher.Teacher, the `teacher` node), loaded on first call and kept."""

    def __init__(self, node: DictConfig):
        self.node, self.loaded = node, None

    def __call__(self):
        if self.loaded is None:
            self.loaded = build(self.node)
        return self.loaded


@dataclass
class Prepared:
    cfg: DictConfig
    loss: DistillationLoss | None  # None: the module's own default (recipe 2's label-only)
    dataset_dir: str | None  # recipe 1's dataset, found or built; None for a recipe that reads its own data
    teacher: LazyTeacher


@dataclass
class Assembled:
    student: object  # codistill.models.loading.Student
    datamodule: pl.LightningDataModule
    module: pl.LightningModule
    trainer: pl.Trainer
    loggers: list


def prepare(cfg: DictConfig, teacher: LazyTeacher | None = None) -> Prepared:
    """The checked config's loss and dataset; `teacher` is another run's, shared (the control arm's)."""
    loss = build(cfg.loss) if cfg.get("loss") else None
    compatibility.check(cfg, loss)
    prepared = Prepared(cfg, loss, cfg.data.get("dataset_dir"), teacher or LazyTeacher(cfg.teacher))
    if prepared.dataset_dir:
        check_saved_dataset(prepared.dataset_dir)
    elif "source" in cfg.data:  # every rank calls it: the ranks label it in shards, rank 0 saves it
        prepared.dataset_dir = build(cfg.data.source).cached(*rank_and_world(), load_teacher=prepared.teacher)
    return prepared


def assemble(prepared: Prepared) -> Assembled:
    cfg, loss = prepared.cfg, prepared.loss
    source = {}
    if loss is not None and loss.needs_teacher:
        online = get_class(cfg.teacher_logits._target_).online
        source["teacher"] = build(cfg.teacher_logits, **({"teacher": prepared.teacher()} if online else {}))
    student = build(cfg.student)
    teacher_vocabulary = source["teacher"].vocabulary if source else None
    compatibility.check_vocabularies(cfg, loss, student.tokenizer.get_vocab(), teacher_vocabulary)
    data = OmegaConf.to_container(cfg.data, resolve=True)
    data.pop("source", None)  # how prepare builds the dataset; the datamodule reads what it built
    if prepared.dataset_dir:
        data["dataset_dir"] = prepared.dataset_dir
    if loss is not None and loss.matches_likelihoods:  # ALM: the teacher's tokens read online, or stored ends
        teacher_tokenizer = getattr(source["teacher"], "tokenizer", None)
        source["aligner"] = BatchAligner(student.tokenizer, teacher_tokenizer, loss.chunks)
    datamodule = build(data, tokenizer=student.tokenizer, **source)
    model_loss = {"loss": loss} if loss is not None else {}
    teacher = {"teacher": source["teacher"]} if source else {}
    module = build(cfg.model, model=student.model, tokenizer=student.tokenizer, **model_loss, **teacher)
    callbacks = [build(c) for c in (cfg.get("callbacks") or {}).values()]
    loggers = [build(c) for c in (cfg.get("logger") or {}).values()]
    trainer = build(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    for logger in loggers:
        logger.log_hyperparams(loggable(cfg))
    return Assembled(student, datamodule, module, trainer, loggers)
