"""Where the Hydra configs live (`conf/` in a source checkout, `codistill/conf` in a wheel), the config
resolver for data files bundled with the package, building a node (`build`), and the config as loggers may
see it."""

import re
from pathlib import Path

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf

from codistill.errors import ConfigError, user_error
from codistill.precision import lightning_precision

_PACKAGED = Path(__file__).parent / "conf"
_CHECKOUT = Path(__file__).parents[2] / "conf"

CONFIG_DIR = str(_PACKAGED if _PACKAGED.is_dir() else _CHECKOUT)

# ${codistill.data:exercises_sample.jsonl}: a data file bundled with the package
if not OmegaConf.has_resolver("codistill.data"):
    OmegaConf.register_new_resolver("codistill.data", lambda name: str(Path(__file__).parent / "data" / name))
# ${codistill.precision:auto,${.accelerator}}: bf16-mixed where the hardware multiplies bf16 natively, else 32-true
if not OmegaConf.has_resolver("codistill.precision"):
    OmegaConf.register_new_resolver("codistill.precision", lightning_precision)


def devices_per_node(devices) -> int:
    """`trainer.devices` as the GPU and task count of a SLURM job: a number, a device list or "0,1"."""
    if isinstance(devices, int) and devices > 0:
        return devices
    if isinstance(devices, ListConfig | list | tuple):
        return len(devices)
    text = str(devices).strip()
    if text.isdigit() and int(text) > 0:
        return int(text)
    if "," in text:
        return len([d for d in text.split(",") if d.strip()])
    raise ConfigError(
        f"hydra/launcher=slurm needs the GPUs per node as a number, but trainer.devices={devices}: "
        "set trainer.devices=N (SLURM must know how many to allocate before Lightning can count them)"
    )


# ${codistill.devices_per_node:${trainer.devices}}: the hydra/launcher=slurm GPU and task counts
if not OmegaConf.has_resolver("codistill.devices_per_node"):
    OmegaConf.register_new_resolver("codistill.devices_per_node", devices_per_node)

_SECRET = re.compile(r"(^|_)(api_key|secret|password|token)$", re.IGNORECASE)


def loggable(cfg: DictConfig) -> dict:
    """The resolved config for loggers, with any value under a secret-looking key (`*api_key`,
    `*token`, `*secret`, `*password`) replaced: an `${oc.env:...}` must not carry a key into wandb."""

    def scrub(node):
        if isinstance(node, dict):
            return {k: "<redacted>" if _SECRET.search(str(k)) and v is not None else scrub(v) for k, v in node.items()}
        if isinstance(node, list):
            return [scrub(v) for v in node]
        return node

    return scrub(OmegaConf.to_container(cfg, resolve=True))


def build(node, **kwargs):
    """`hydra.utils.instantiate`, but a ConfigError raised by the target surfaces as itself."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as exc:
        user = user_error(exc)
        if user is None:
            raise
        raise user from None
