"""`hydra.launcher._target_: hydra_plugins.cifar_tricks_ray_launcher.ray_launcher.RayLauncher`:
hydra-ray-launcher's local launcher with `cifar_tricks.ray_launch.launch` as its implementation
(conf/hydra/launcher/ray_gpu.yaml and ray_cpu.yaml; see that module for what it changes).

The plugin is an optional extra (`pip install -e ".[ray]"`). Hydra imports this module on every
start, so without the extra it must still import quietly: the launcher then refuses to start
with the command that installs it.
"""
from dataclasses import dataclass, field
from typing import Any, Dict, Sequence

from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

TARGET = "hydra_plugins.cifar_tricks_ray_launcher.ray_launcher.RayLauncher"

try:
    from hydra_plugins.hydra_ray_launcher._config import RayConf
    from hydra_plugins.hydra_ray_launcher.ray_launcher import RayLauncher as PluginLauncher
except ImportError:  # the `ray` extra is not installed
    PluginLauncher = None

    @dataclass
    class RayConf:  # type: ignore[no-redef]  # the plugin's, so that configs still compose
        init: Dict[str, Any] = field(default_factory=lambda: {"address": None})
        remote: Dict[str, Any] = field(default_factory=dict)


@dataclass
class RayLauncherConf:
    """The plugin's `ray` launcher config (`ray.init` and `ray.remote` options, passed to Ray)
    plus `check_resources`: refuse at once a request no node of the cluster can ever meet
    (false for an autoscaling cluster that adds such nodes on demand)."""

    _target_: str = TARGET
    ray: RayConf = field(default_factory=RayConf)
    check_resources: bool = True


ConfigStore.instance().store(group="hydra/launcher", name="cifar_tricks_ray",
                             node=RayLauncherConf, provider="cifar_tricks")


if PluginLauncher is not None:

    class RayLauncher(PluginLauncher):
        def __init__(self, ray: DictConfig, check_resources: bool = True) -> None:
            super().__init__(ray)
            self.check_resources = check_resources

        def launch(self, job_overrides: Sequence[Sequence[str]],
                   initial_job_idx: int) -> Sequence[JobReturn]:
            # imported here, as the plugin does: Hydra imports every plugin module on each start
            from cifar_tricks.ray_launch import launch

            return launch(self, job_overrides, initial_job_idx)

else:

    class RayLauncher(Launcher):  # type: ignore[no-redef]
        def __init__(self, **_: Any) -> None:
            raise ImportError("hydra/launcher=ray_gpu and ray_cpu need Ray and hydra-ray-launcher:"
                              " pip install -e \".[ray]\"")

        def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction,
                  config: DictConfig) -> None:
            raise NotImplementedError

        def launch(self, job_overrides: Sequence[Sequence[str]],
                   initial_job_idx: int) -> Sequence[JobReturn]:
            raise NotImplementedError

