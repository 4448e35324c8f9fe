"""Processes launched by torchrun or srun, before Lightning starts.

Each rank of such a launch runs the whole app, and Hydra names each rank's run folder after its own
clock. `start_ranks` starts the process group at once (Lightning and DeepSpeed reuse an existing one),
moves every rank into rank 0's run folder, and opens a CPU (gloo) group with a long timeout for
`barrier`, so the ranks can wait while rank 0 assembles the distillation dataset. Launches by Lightning
itself (`trainer.devices=N` without torchrun) need no early start: Lightning passes rank 0's run folder to
the processes it starts, and `barrier` then uses Lightning's own process group (its default timeout).
"""

import logging
import shutil
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning_fabric.plugins.environments import ClusterEnvironment, SLURMEnvironment, TorchElasticEnvironment
from omegaconf import DictConfig, open_dict

from codistill.errors import ConfigError

log = logging.getLogger(__name__)

_WAIT = timedelta(hours=24)  # a barrier may wait for the whole dataset build on rank 0
_control: dist.ProcessGroup | None = None


def launch_environment() -> ClusterEnvironment | None:
    """The torchrun or SLURM environment of a launch of several processes, else None."""
    for kind in (TorchElasticEnvironment, SLURMEnvironment):
        if kind.detect():
            environment = kind()
            if environment.world_size() > 1:
                return environment
    return None


def zero3(strategy) -> bool:
    """Whether each rank holds only a slice of every weight (DeepSpeed ZeRO stage 3)."""
    from pytorch_lightning.strategies import DeepSpeedStrategy

    return isinstance(strategy, DeepSpeedStrategy) and strategy.zero_stage_3


def rank_and_world() -> tuple[int, int]:
    return (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)


def start_ranks(cfg: DictConfig) -> tuple[int, int]:
    """Start the process group of a torchrun/srun launch and share rank 0's run folder; returns (rank, world)."""
    global _control
    environment = launch_environment()
    if environment is None or dist.is_initialized():
        return rank_and_world()
    on_gpu = torch.cuda.is_available() and str(cfg.trainer.get("accelerator", "auto")) in ("auto", "gpu", "cuda")
    if on_gpu:
        torch.cuda.set_device(environment.local_rank())
    dist.init_process_group(
        "nccl" if on_gpu else "gloo",
        init_method=f"tcp://{environment.main_address}:{environment.main_port}",
        rank=environment.global_rank(),
        world_size=environment.world_size(),
        timeout=timedelta(minutes=30),  # Lightning's default
    )
    _control = dist.new_group(backend="gloo", timeout=_WAIT)
    rank, world = rank_and_world()
    shared = [str(cfg.paths.output_dir)]
    dist.broadcast_object_list(shared, src=0, group=_control)
    if shared[0] != str(cfg.paths.output_dir):
        _drop_own_run_folder(Path(cfg.paths.output_dir))
        with open_dict(cfg):
            cfg.paths.output_dir = shared[0]
    log.info("rank %d of %d, run folder %s", rank, world, shared[0])
    return rank, world


@contextmanager
def whole_model(strategy, model):
    """`model`'s every weight on this rank for the time of a generation under ZeRO-3: gathered once, with
    DeepSpeed's per-module hooks off, then put back (the trace re-records on the next forward). Left alone,
    each new token's forward gathers and releases every layer, and the parameter coordinator's trace makes a
    long generation stall. Elsewhere, nothing. After TRL's `unwrap_model_for_generation`."""
    engine = getattr(strategy, "model", None) if strategy is not None and zero3(strategy) else None
    offload = getattr(engine, "optimizer", None)
    offload = getattr(offload, "parameter_offload", offload)  # a training engine's, or an inference engine's own
    if not hasattr(offload, "forward_hooks"):
        yield
        return
    import deepspeed

    with deepspeed.zero.GatheredParameters(list(model.parameters())):
        for param in offload.module.parameters():
            param.ds_active_sub_modules.clear()
        for hook in [*offload.forward_hooks, *offload.backward_hooks]:
            hook.remove()
        offload.forward_hooks, offload.backward_hooks = [], []
        try:
            yield
        finally:
            offload._register_deepspeed_module(offload.module)


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


def barrier() -> None:
    """Wait for every rank (no-op in a single process)."""
    if dist.is_initialized():
        dist.barrier(group=_control)


def _drop_own_run_folder(folder: Path) -> None:
    """Remove the run folder Hydra made for this rank, if it holds nothing but Hydra's own files."""
    if folder.is_dir() and all(p.name == ".hydra" or p.suffix == ".log" for p in folder.iterdir()):
        shutil.rmtree(folder, ignore_errors=True)
