"""The optimizer a LightningModule trains with: the configured one, or its DeepSpeed CPU twin."""

import functools

import torch
from pytorch_lightning.strategies import DeepSpeedStrategy

from codistill.errors import ConfigError

_ADAM_ARGS = ("lr", "betas", "eps", "weight_decay", "amsgrad")


def offloads_optimizer(strategy) -> bool:
    """Whether DeepSpeed keeps the optimizer states on the CPU (ZeRO-Offload)."""
    if not isinstance(strategy, DeepSpeedStrategy) or not strategy.config:
        return False
    offload = strategy.config.get("zero_optimization", {}).get("offload_optimizer") or {}
    return offload.get("device", "none") not in ("none", None)


def build_optimizer(factory: functools.partial, params, strategy) -> torch.optim.Optimizer:
    """`factory(params=params)`, except under ZeRO-Offload: there the optimizer step runs on the CPU and
    DeepSpeed refuses a torch optimizer, so Adam/AdamW become DeepSpeedCPUAdam with the same settings."""
    if not offloads_optimizer(strategy):
        return factory(params=params)
    if factory.func not in (torch.optim.Adam, torch.optim.AdamW):
        raise ConfigError(
            f"model.optimizer={factory.func.__name__} cannot run under DeepSpeed's optimizer offload (it needs "
            "DeepSpeedCPUAdam): use torch.optim.AdamW or torch.optim.Adam, or a trainer without offload"
        )
    from deepspeed.ops.adam import DeepSpeedCPUAdam

    settings = {k: v for k, v in factory.keywords.items() if k in _ADAM_ARGS}
    return DeepSpeedCPUAdam(params, adamw_mode=factory.func is torch.optim.AdamW, **settings)
