"""One run over several processes: `torchrun --nproc_per_node=N run.py <overrides>`.

torchrun starts N copies of run.py and tells each its place through the environment (RANK,
LOCAL_RANK, WORLD_SIZE, MASTER_ADDR/PORT); on SLURM, submitit's `tasks_per_node=N` does the same.
Every rank composes the same config and builds the same run; the model trains under
DistributedDataParallel (NCCL on GPUs, gloo on CPU), each rank on its slice of every global batch
(`trainer.batch_size` is the global batch, so the learning rate and the results stay those of one
process). Rank 0 alone writes the run folder; metrics are summed over the ranks.

Without torchrun (WORLD_SIZE unset) everything here is a no-op: one process, rank 0.
"""
from __future__ import annotations

import datetime
import logging
import os
from pathlib import Path

import torch
import torch.distributed as dist

from cifar_tricks.errors import ConfigError

__all__ = ["world_size", "rank", "local_rank", "is_main", "init", "shutdown", "device_for",
           "all_reduce_sum", "hydra_arguments", "from_torchrun", "adopt_scheduler_environment",
           "quiet_other_ranks"]


def from_torchrun() -> bool:
    """Whether torchrun (torch.distributed.run) started this process."""
    return "TORCHELASTIC_RUN_ID" in os.environ


def adopt_scheduler_environment() -> None:
    """Inside a submitit job of several tasks (SLURM `tasks_per_node`), set RANK, WORLD_SIZE,
    MASTER_ADDR/PORT as torchrun would (submitit's TorchDistributedEnvironment); elsewhere do
    nothing. Idempotent."""
    if "WORLD_SIZE" in os.environ or "SUBMITIT_EXECUTOR" not in os.environ:
        return
    try:
        from submitit import JobEnvironment
        from submitit.helpers import TorchDistributedEnvironment

        if JobEnvironment().num_tasks > 1:  # each task keeps every GPU; LOCAL_RANK picks one
            TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
    except (ImportError, RuntimeError):  # no submitit, or not inside one of its jobs
        return


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", 1))


def rank() -> int:
    return int(os.environ.get("RANK", 0))


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", 0))


def is_main() -> bool:
    """Whether this process writes the run folder (rank 0, or the only process)."""
    return rank() == 0


def init(device: torch.device) -> None:
    """Join the process group (once per process) when torchrun started several processes."""
    if world_size() > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        # CIFAR_TRICKS_DIST_INIT=file:///path: meet through a file instead of the TCP store that
        # torchrun's MASTER_ADDR/MASTER_PORT imply (nothing listens on the network: the tests)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                                init_method=os.environ.get("CIFAR_TRICKS_DIST_INIT", "env://"),
                                rank=rank(), world_size=world_size())


def shutdown() -> None:
    """Leave the process group, if this process joined one. Without it gloo's threads may still
    run at interpreter exit, which aborts a rank that finished ("terminate called without an
    active exception") and fails the torchrun job."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def device_for(device: torch.device) -> torch.device:
    """Under torchrun each process drives the GPU of its local rank."""
    if world_size() > 1 and device.type == "cuda" and device.index is None:
        return torch.device("cuda", local_rank())
    return device


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """The sum over the ranks of `tensor` (a new tensor; the input is unchanged)."""
    if world_size() == 1 or not dist.is_initialized():
        return tensor
    total = tensor.detach().clone()
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total


def quiet_other_ranks() -> None:
    """Ranks other than 0 stop writing the job's log file (Hydra opened it in every task of a
    SLURM job), so run.log holds each line once."""
    if is_main():
        return
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, logging.FileHandler)]:
        root.removeHandler(handler)
        handler.close()


def hydra_arguments(arguments: list[str]) -> list[str]:
    """The command line each torchrun rank gives Hydra: every rank the same run folder (the
    default one is named by the time torchrun started, not by each rank's clock), and the ranks
    other than 0 writing nothing there (no .hydra/, no run.log)."""
    if world_size() == 1:
        return arguments
    extra = []
    if not any(a.startswith("hydra.run.dir=") for a in arguments):
        if int(os.environ.get("LOCAL_WORLD_SIZE", world_size())) < world_size():
            raise ConfigError("torchrun over several machines (--nnodes): give every machine the "
                              "same run folder on a shared file system, hydra.run.dir=<path>; "
                              "every rank resumes from its checkpoint")
        started = _launcher_start_time()
        extra.append(f"hydra.run.dir=outputs/{started:%Y-%m-%d}/{started:%H-%M-%S}-torchrun")
    if not is_main():
        extra += ["hydra.output_subdir=null", "hydra/job_logging=disabled"]
    return [*arguments, *extra]


def _launcher_start_time() -> datetime.datetime:
    """When the process that started this one (torchrun's agent) started: the same for every
    rank on this machine. From /proc on Linux; elsewhere, name the folder with hydra.run.dir."""
    try:
        fields = Path(f"/proc/{os.getppid()}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = int(fields[19])  # field 22 of stat: start time in clock ticks after boot
        boot = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime"))
    except (OSError, ValueError, IndexError, StopIteration):
        raise ConfigError("under torchrun on this system, give the run folder explicitly: "
                           "hydra.run.dir=outputs/<name> (the same on every rank)") from None
    return datetime.datetime.fromtimestamp(boot + ticks / os.sysconf("SC_CLK_TCK"))
