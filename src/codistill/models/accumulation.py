"""`effective_batch_size`: the examples per optimizer step, whatever the micro-batch and device count."""

import pytorch_lightning as pl

from codistill.errors import ConfigError


def accumulation_steps(effective_batch_size: int, micro_batch_size: int, world_size: int) -> int:
    """Micro-batches per optimizer step so that micro x world x steps == effective."""
    steps, rest = divmod(effective_batch_size, micro_batch_size * world_size)
    if rest or not steps:
        raise ConfigError(
            f"effective_batch_size={effective_batch_size} is not a multiple of the micro batch size "
            f"{micro_batch_size} x {world_size} process(es): change one of them"
        )
    return steps


class EffectiveBatchSize(pl.Callback):
    """Sets `accumulate_grad_batches` when fitting starts, from the world size the trainer resolved
    (devices x nodes: `devices=auto`, device lists and `num_nodes` all count) and the datamodule's
    `micro_batch_size`. It runs before the strategy reads the setting (DeepSpeed copies it into its
    config) and before the learning-rate schedule counts the optimizer steps. `size=None` does nothing."""

    def __init__(self, size: int | None = None):
        self.size = size

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self.size is None or stage != "fit":
            return
        micro = trainer.datamodule.micro_batch_size
        trainer.accumulate_grad_batches = accumulation_steps(self.size, micro, trainer.world_size)
