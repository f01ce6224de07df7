"""`hydra.sweeper._target_: hydra_plugins.cifar_tricks_optuna_sweeper.optuna_sweeper.OptunaSweeper`:
hydra-optuna-sweeper with `cifar_tricks.optuna_search.Search` as its implementation (the same
settings; see that module for what it changes)."""
from typing import Any

from hydra_plugins.hydra_optuna_sweeper.optuna_sweeper import OptunaSweeper as PluginSweeper


class OptunaSweeper(PluginSweeper):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # imported here, as the plugin does: Hydra imports every plugin module on each start
        from cifar_tricks.optuna_search import Search

        self.sweeper = Search(*args, **kwargs)
