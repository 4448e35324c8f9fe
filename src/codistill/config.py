"""Where the Hydra configs live (`conf/` in a source checkout, `codistill/conf` in a wheel), the config
resolver for data files bundled with the package, and the config as loggers may see it."""

import re
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

_PACKAGED = Path(__file__).parent / "conf"
_CHECKOUT = Path(__file__).parents[2] / "conf"

CONFIG_DIR = str(_PACKAGED if _PACKAGED.is_dir() else _CHECKOUT)

# ${codistill.data:exercises_sample.jsonl}: a data file bundled with the package
if not OmegaConf.has_resolver("codistill.data"):
    OmegaConf.register_new_resolver("codistill.data", lambda name: str(Path(__file__).parent / "data" / name))

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
