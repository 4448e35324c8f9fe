"""Score a small evaluation subset while a student trains."""

import pytorch_lightning as pl
from pytorch_lightning.trainer.states import TrainerFn

from codistill.eval.sandbox import SandboxSettings


class EvalCallback(pl.Callback):
    """Every `every_n_epochs` epochs while fitting, and at every `trainer.validate`, run `tasks`
    ({name: task from codistill.eval.tasks}, keep their `limit` small) on the module's current student
    and log `eval/<task>/<metric>`."""

    def __init__(
        self, tasks: dict, every_n_epochs: int = 1, sandbox: SandboxSettings | None = None, max_new_tokens: int = 128
    ):
        self.tasks, self.every_n_epochs, self.max_new_tokens = dict(tasks), every_n_epochs, max_new_tokens
        self.sandbox = sandbox or SandboxSettings()

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        between_epochs = trainer.state.fn == TrainerFn.FITTING and trainer.current_epoch % self.every_n_epochs
        if trainer.sanity_checking or between_epochs or not trainer.is_global_zero:
            return
        student = pl_module.as_evaluated(max_new_tokens=self.max_new_tokens)
        was_training = pl_module.model.training
        pl_module.model.eval()
        for name, task in self.tasks.items():
            metrics = task.run(student, self.sandbox).metrics
            pl_module.log_dict({f"eval/{name}/{k}": v for k, v in metrics.items()}, rank_zero_only=True)
        pl_module.model.train(was_training)
