"""User-facing errors: one line naming the problem and the fix, never a library traceback."""

import functools
import sys

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue


class ConfigError(ValueError):
    """Bad configuration or input. The message says what is wrong and how to fix it."""


def user_error(exc: BaseException | None) -> ConfigError | None:
    """Find a ConfigError in an exception's cause chain (Hydra wraps errors raised in targets)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, ConfigError):
            return exc
        if isinstance(exc, MissingMandatoryValue):  # a `???` in the config that the command did not fill
            key = exc.full_key or "a required key"
            return ConfigError(f"{key} is not set (it is ??? in the config): add {key}=... to the command")
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def require(cfg: DictConfig, *keys: str) -> None:
    """Fail at once, before any model loads, when a `???` under `keys` (all of cfg if none) is unset."""
    nodes = [OmegaConf.select(cfg, k) for k in keys] if keys else [cfg]
    missing = sorted(m for node in nodes if isinstance(node, DictConfig) for m in OmegaConf.missing_keys(node))
    if missing:
        raise ConfigError(f"{', '.join(missing)} not set (??? in the config): add {missing[0]}=... to the command")


def exit_on_config_error(task):
    """Wrap a Hydra task: a ConfigError prints `codistill: error: ...` and exits with status 2."""

    @functools.wraps(task)
    def wrapped(*args, **kwargs):
        try:
            return task(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - re-raised unless it is a user error
            user = user_error(exc)
            if user is None:
                raise
            print(f"codistill: error: {user}", file=sys.stderr)
            sys.exit(2)

    return wrapped
