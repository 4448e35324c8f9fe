"""Hydra's Optuna sweeper, steered by the experiment: `hparams_search=optuna` searches the composed
config's `search_space` (the learning rate, plus the keys that the loss config and the experiment add)
in the direction of its `monitor_mode`, so one sweep config serves every recipe. Needs codistill[sweeps]."""

from omegaconf import DictConfig, OmegaConf

try:  # Hydra imports every module of hydra_plugins when it starts: without the extra, this one defines nothing
    from hydra_plugins.hydra_optuna_sweeper.optuna_sweeper import OptunaSweeper as _Optuna
except ImportError:
    _Optuna = None

DIRECTIONS = {"max": "maximize", "min": "minimize"}

if _Optuna is not None:

    class OptunaSweeper(_Optuna):
        """`direction: auto` follows `monitor_mode`; `params` given on the command line win over `search_space`."""

        def setup(self, *, hydra_context, task_function, config: DictConfig) -> None:
            impl = self.sweeper
            space = OmegaConf.to_container(config.get("search_space") or {}, resolve=True)
            impl.params = OmegaConf.create({**space, **dict(impl.params or {})})
            if impl.direction == "auto":
                impl.direction = DIRECTIONS[config.monitor_mode]
            super().setup(hydra_context=hydra_context, task_function=task_function, config=config)
