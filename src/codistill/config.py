"""Where the Hydra configs live (`conf/` in a source checkout, `codistill/conf` in a wheel), and the
config resolver for data files bundled with the package."""

from pathlib import Path

from omegaconf import OmegaConf

_PACKAGED = Path(__file__).parent / "conf"
_CHECKOUT = Path(__file__).parents[2] / "conf"

CONFIG_DIR = str(_PACKAGED if _PACKAGED.is_dir() else _CHECKOUT)

# ${codistill.data:exercises_sample.jsonl}: a data file bundled with the package
if not OmegaConf.has_resolver("codistill.data"):
    OmegaConf.register_new_resolver("codistill.data", lambda name: str(Path(__file__).parent / "data" / name))
