"""Where the Hydra configs live: `conf/` in a source checkout, `codistill/conf` in a wheel."""

from pathlib import Path

_PACKAGED = Path(__file__).parent / "conf"
_CHECKOUT = Path(__file__).parents[2] / "conf"

CONFIG_DIR = str(_PACKAGED if _PACKAGED.is_dir() else _CHECKOUT)
