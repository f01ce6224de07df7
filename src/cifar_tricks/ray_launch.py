"""Sweeps on a Ray cluster, one job per GPU: the implementation of the Hydra launcher
`hydra_plugins.cifar_tricks_ray_launcher.ray_launcher.RayLauncher` (conf/hydra/launcher/
ray_gpu.yaml and ray_cpu.yaml).

hydra-ray-launcher stays the engine: its job body (`_run_job`, Hydra's `run_job` in a Ray
worker) runs each job as a Ray task with the `hydra.launcher.ray.remote` options, in the cluster
that `ray.init(**hydra.launcher.ray.init)` starts or joins. `launch` replaces the plugin's
`_core.launch` to add:

- **A request no node can meet fails at once** (`hydra.launcher.check_resources`), naming what
  one job asks for, what the cluster has and the override that fixes it: Ray would keep such
  tasks waiting forever.
- **`num_cpus: auto`**: each job gets its share of a GPU node's CPUs, (the node's CPUs) /
  (the jobs its GPUs run at once); a job without a GPU gets one CPU.
- **torch's threads follow the job's CPUs**: the task calls `torch.set_num_threads(<its CPUs>)`
  (Ray's own OMP_NUM_THREADS=<its CPUs> only reaches a worker that has not imported torch yet,
  and workers of CPU tasks are reused); `trainer.num_threads=N` still wins.
- **A job without a GPU sees none** (CUDA_VISIBLE_DEVICES=""), so `trainer.device=auto` trains
  it on the CPU instead of on a GPU that Ray gave another job.
- **Jobs run in the sweep's working directory** (`hydra.runtime.cwd`, where it exists on the
  node): a relative `hydra.sweep.dir` or `data.root` means what it means with the basic
  launcher, also in a cluster that `ray start` started from another folder.
- **Only what the config says goes to `ray.init`** (null keys are left out): the plugin adds a
  75 MB `object_store_memory` when none is given, which `ray.init` refuses when it joins a
  running cluster.
- **`_node_ip_address: 127.0.0.1` keeps a local cluster on loopback**: Ray replaces a loopback
  node address with the machine's network address (so its servers would listen on every
  interface) unless its single-machine mode is on; a local cluster asked for a loopback address
  turns that mode on, and is refused if Ray put it on another address all the same.
- **What every job shares (Hydra's context, the task function, Hydra's singletons) goes to
  Ray's object store once per launch**, not once per job.
- **A job that Ray could not run (its worker died more than `max_retries` times, it exited)
  fails the sweep after the other jobs finished**, not while they are still training.

A job whose worker dies (killed, out of memory) is rerun by Ray up to `max_retries` times; it
lands in the same job folder (named by its overrides) and resumes from checkpoints/last.pt.
"""
from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from hydra.core.utils import JobReturn
from omegaconf import OmegaConf, open_dict

from .errors import CifarTricksError, ConfigError

__all__ = ["ClusterTooSmallError", "Node", "check_fits", "cpus_per_job", "job_options",
           "launch", "requested", "run_job"]

log = logging.getLogger(__name__)

LOOPBACK = ("127.0.0.1", "localhost", "::1")
# `ray.remote` option -> the Ray resource it asks for
OPTION_OF = {"CPU": "num_cpus", "GPU": "num_gpus", "memory": "memory"}


class ClusterTooSmallError(CifarTricksError, RuntimeError):
    """No node of the Ray cluster has what one job asks for; nothing was launched."""


class RayStartError(CifarTricksError, RuntimeError):
    """`ray.init` could not start or join the cluster that `hydra.launcher.ray.init` names."""


@dataclass(frozen=True)
class Node:
    """A live node of the Ray cluster: its address and its total resources (Ray's names)."""

    address: str
    resources: Mapping[str, float]


# ------------------------------------------------------------------------------ what a job asks

def requested(remote: Mapping[str, Any]) -> dict[str, float]:
    """What one job asks Ray for (`hydra.launcher.ray.remote`), by Ray's resource names; a task
    asks for one CPU unless told otherwise."""
    num_cpus = remote.get("num_cpus")
    wanted = {"GPU": float(remote.get("num_gpus") or 0),
              "CPU": 1.0 if num_cpus is None else float(num_cpus),
              "memory": float(remote.get("memory") or 0),
              **{str(k): float(v) for k, v in (remote.get("resources") or {}).items()}}
    return {k: v for k, v in wanted.items() if v > 0}


def cpus_per_job(num_gpus: float, nodes: Sequence[Node]) -> int:
    """`num_cpus: auto`: a GPU node's CPUs shared among the jobs its GPUs run at once (the
    smallest share over the nodes that can take a job), at least one; one for a CPU job."""
    if not num_gpus:
        return 1
    shares = [node.resources.get("CPU", 0) / math.floor(node.resources["GPU"] / num_gpus)
              for node in nodes if node.resources.get("GPU", 0) >= num_gpus]
    return max(1, math.floor(min(shares))) if shares else 1


def job_options(remote: Mapping[str, Any], nodes: Sequence[Node]) -> dict[str, Any]:
    """The `ray.remote` options of every job: the config's, null ones left out (Ray's
    defaults), `num_cpus: auto` replaced by the job's share (`cpus_per_job`)."""
    options = {k: v for k, v in remote.items() if v is not None}
    for key in ("num_gpus", "num_cpus", "memory"):
        value = options.get(key)
        if value is None or (key == "num_cpus" and value == "auto"):
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            allowed = "a number, or auto" if key == "num_cpus" else "a number"
            raise ConfigError(f"hydra.launcher.ray.remote.{key}={value}: what each job asks "
                              f"for must be {allowed} (0 or more)")
    if options.get("num_cpus") == "auto":
        options["num_cpus"] = cpus_per_job(float(options.get("num_gpus") or 0), nodes)
    return options


# ------------------------------------------------------------------------- can the cluster do it

def _amount(value: float) -> str:
    return f"{value:g}"


def _describe(resources: Mapping[str, float], keys: Sequence[str]) -> str:
    parts = []
    for key in keys:
        value = resources.get(key, 0)
        if key == "memory":
            parts.append(f"{value / 1e9:.3g} GB memory")
        elif key in ("CPU", "GPU"):
            parts.append(f"{_amount(value)} {key}{'' if value == 1 else 's'}")
        else:
            parts.append(f"{_amount(value)} {key}")
    return ", ".join(parts)


def check_fits(remote: Mapping[str, Any], nodes: Sequence[Node]) -> None:
    """Raise ClusterTooSmallError unless some node has everything one job asks for (Ray runs a
    task on one node; it would keep a task that fits none waiting forever)."""
    wanted = requested(remote)
    if any(all(node.resources.get(k, 0) >= v for k, v in wanted.items()) for node in nodes):
        return
    keys = list(wanted) + [k for k in ("CPU", "GPU") if k not in wanted]
    have = "; ".join(f"{node.address}: {_describe(node.resources, keys)}" for node in nodes)
    fixes = []
    for key, value in wanted.items():
        most = max((node.resources.get(key, 0) for node in nodes), default=0)
        option = f"hydra.launcher.ray.remote.{OPTION_OF.get(key, f'resources.{key}')}"
        if value <= most:
            continue
        if key == "GPU" and most == 0:
            fixes.append(f"no node has a GPU: run the jobs on CPUs with hydra/launcher=ray_cpu "
                         f"(or {option}=0)")
        elif most == 0:
            fixes.append(f"no node has {key}: leave out {option}")
        else:
            shown = int(most) if key == "memory" else _amount(most)
            fixes.append(f"{option}={shown} or less (the most any node has)")
    if not fixes:
        fixes.append("each of them exists on some node but no node has all of them: lower one")
    raise ClusterTooSmallError(
        f"hydra.launcher.ray.remote asks for {_describe(wanted, list(wanted))} per job, and no "
        f"node of the Ray cluster has that much ({len(nodes)} node{'s' * (len(nodes) != 1)}: "
        f"{have}). Ray would keep the jobs waiting forever, so none was launched. Fix: "
        f"{'; '.join(fixes)}. Or join a cluster that has them (hydra.launcher.ray.init.address="
        f"auto after `ray start --head` there); for a cluster that adds nodes on demand, "
        f"hydra.launcher.check_resources=false.")


def cluster_nodes() -> list[Node]:
    import ray

    return [Node(str(n["NodeManagerAddress"]), dict(n["Resources"]))
            for n in ray.nodes() if n.get("Alive")]


# ---------------------------------------------------------------------------------- the cluster

def _single_machine_mode() -> None:
    """Make Ray keep a loopback node address: its single-machine mode, for this process (the
    constant is read when Ray is imported) and for every process it starts (the variable)."""
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    from ray._private import ray_constants

    ray_constants.ENABLE_RAY_CLUSTER = False


def start(init: Mapping[str, Any]) -> None:
    """`ray.init` with the config's options (null ones left out): start a local cluster
    (`address` null) or join a running one (`address: auto` or host:port)."""
    import ray

    if ray.is_initialized():
        log.info("Ray is already running.")
        return
    options = {k: v for k, v in init.items() if v is not None}
    local = options.get("address") in (None, "local") and not os.environ.get("RAY_ADDRESS")
    loopback = local and str(options.get("_node_ip_address")) in LOOPBACK
    if loopback:
        _single_machine_mode()
    log.info("Initializing Ray with %s", options)
    try:
        ray.init(**options)
    except ConnectionError as e:
        raise RayStartError(
            f"hydra.launcher.ray.init.address={options.get('address')}: no running Ray cluster "
            f"was found ({e}). Start one first (`ray start --head`, see "
            f"conf/hydra/launcher/ray_gpu.yaml), or leave the address out "
            f"(hydra.launcher.ray.init.address=null) to start one for this sweep.") from None
    except ValueError as e:  # an option ray.init refuses, e.g. one a running cluster fixed
        raise RayStartError(f"ray.init refused hydra.launcher.ray.init={options}: {e}") from None
    if loopback:
        elsewhere = [n.address for n in cluster_nodes() if n.address not in LOOPBACK]
        if elsewhere:
            ray.shutdown()
            raise RayStartError(
                f"hydra.launcher.ray.init._node_ip_address={options['_node_ip_address']} but Ray "
                f"put the node on {', '.join(elsewhere)}; the cluster was stopped.")


# ----------------------------------------------------------------------------------- the jobs

def _use_the_task_resources() -> None:
    """torch uses as many threads as the task has CPUs; a task without a GPU sees none (Ray
    leaves CUDA_VISIBLE_DEVICES alone then, and trainer.device=auto would pick a GPU that Ray
    gave another job). Ray's GPU tasks start a fresh worker each (max_calls=1), so no worker
    turns from one kind to the other."""
    import ray

    context = ray.get_runtime_context()
    if not context.get_accelerator_ids().get("GPU"):
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    cpus = context.get_assigned_resources().get("CPU")
    if cpus:
        import torch

        torch.set_num_threads(max(1, math.floor(cpus)))


def run_job(shared: tuple, sweep_config: Any, cwd: str) -> JobReturn:
    """One sweep job, as a Ray task: in the sweep's working directory `cwd` (where this node
    has it), on the task's CPUs and GPUs only, through the plugin's job body. `shared` is
    (Hydra context, task function, Hydra's singleton state), put once for all jobs."""
    from hydra_plugins.hydra_ray_launcher._launcher_util import _run_job

    hydra_context, task_function, singleton_state = shared
    if os.path.isdir(cwd):
        os.chdir(cwd)
    _use_the_task_resources()
    try:
        return _run_job(hydra_context=hydra_context, sweep_config=sweep_config,
                        task_function=task_function, singleton_state=singleton_state)
    except SystemExit as e:
        # Our checks end a refused job with SystemExit (jobs.exit_with, e.g. from the job_dir
        # resolver: a folder another process writes). In a Ray task that would kill the worker,
        # which Ray retries as a crash: raise the check's own error instead, which Ray hands
        # to the driver as the job's failure.
        if isinstance(e.__context__, CifarTricksError):
            raise e.__context__ from None
        raise RuntimeError(f"the job exited (status {e.code})") from None


def _gather(refs: list) -> list[JobReturn]:
    """Every job's JobReturn, in order. A job that could not run (refused by one of our checks,
    its worker dead more than max_retries times) ends the sweep after all the others finished:
    our error as one message (`exit_with`), Ray's as it is."""
    import ray
    from ray.exceptions import RayError, RayTaskError

    from .jobs import exit_with

    returns: list[Any] = []
    first_error: BaseException | None = None
    for ref in refs:
        try:
            returns.append(ray.get(ref))
        except RayError as e:
            returns.append(None)
            cause = e.cause if isinstance(e, RayTaskError) else None
            first_error = first_error or (cause if isinstance(cause, CifarTricksError) else e)
    if isinstance(first_error, CifarTricksError):
        exit_with(first_error)
    if first_error is not None:
        raise first_error
    return returns


def launch(launcher: Any, job_overrides: Sequence[Sequence[str]],
           initial_job_idx: int) -> list[JobReturn]:
    """Run the jobs `job_overrides` (numbered from `initial_job_idx`) as Ray tasks at once;
    Ray queues those the cluster has no room for yet. Returns their JobReturns in order."""
    import ray
    from hydra.core.singleton import Singleton
    from hydra.core.utils import configure_log, filter_overrides, setup_globals

    from .jobs import exit_with

    setup_globals()
    config = launcher.config
    configure_log(config.hydra.hydra_logging, config.hydra.verbose)
    sweep_dir = Path(str(config.hydra.sweep.dir))
    sweep_dir.mkdir(parents=True, exist_ok=True)
    try:
        start(OmegaConf.to_container(launcher.ray_cfg.init, resolve=True))
        nodes = cluster_nodes()
        options = job_options(OmegaConf.to_container(launcher.ray_cfg.remote, resolve=True),
                              nodes)
        if launcher.check_resources:
            check_fits(options, nodes)
    except CifarTricksError as e:  # one clear message; nothing was launched
        ray.shutdown()
        exit_with(e)
    log.info("Ray launcher is launching %d jobs (each: %s) on %s; sweep output dir: %s",
             len(job_overrides), options,
             "; ".join(f"{n.address}: {_describe(n.resources, ['CPU', 'GPU'])}" for n in nodes),
             sweep_dir)

    task = ray.remote(**options)(run_job) if options else ray.remote(run_job)
    shared = ray.put((launcher.hydra_context, launcher.task_function, Singleton.get_state()))
    cwd = str(config.hydra.runtime.cwd)
    refs = []
    for idx, overrides in enumerate(job_overrides, start=initial_job_idx):
        log.info("\t#%d : %s", idx, " ".join(filter_overrides(overrides)))
        sweep_config = launcher.hydra_context.config_loader.load_sweep_config(
            config, list(overrides))
        with open_dict(sweep_config):
            # as the plugin does: Ray gives a task no job id of the kind SLURM gives
            sweep_config.hydra.job.id = f"job_id_for_{idx}"
            sweep_config.hydra.job.num = idx
        refs.append(task.remote(shared, sweep_config, cwd))
    return _gather(refs)
