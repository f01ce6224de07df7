"""Optuna searches that continue, survive failing trials and never repeat themselves.

hydra-optuna-sweeper stays the engine: `Search` subclasses its implementation, and the Hydra
plugin `hydra_plugins.cifar_tricks_optuna_sweeper.optuna_sweeper.OptunaSweeper` (Hydra loads
sweepers only from the `hydra_plugins` package; `hydra.sweeper._target_` in conf/hparams_search/)
runs it. It changes four things:

- **Trial folders by trial number.** Each trial runs in `<sweep dir>/trial_<number>` (the
  study's number, unique in the study), so two searches on one study never share a folder.
- **A continued study proposes new points.** The sampler is reseeded for every trial from
  (its configured seed + the trial's number): the same seed gives the same search, a second
  invocation continues it instead of replaying the first one's proposals.
- **A failing trial does not end the search.** It is recorded as FAIL in the study (its error in
  its folder's summary.json) and the search runs its `n_trials`; it stops only when more than
  `max_failure_rate` x `n_trials` of this invocation's trials failed (the plugin's own check
  would stop at the first failing batch).
- **A search killed with -9 leaves no trial RUNNING.** When a study is opened, trials still
  RUNNING whose search process is gone (this host, a pid that no longer lives) are closed:
  COMPLETE with the value their folder recorded if it finished, FAIL otherwise.
"""
from __future__ import annotations

import logging
import os
import socket
from pathlib import Path
from typing import Any, Sequence

import optuna
from hydra.core.utils import JobReturn, JobStatus
from hydra.utils import instantiate
from hydra_plugins.hydra_optuna_sweeper._impl import OptunaSweeperImpl
from optuna.trial import TrialState

from .run_folder import RunFolder

__all__ = ["Search", "SearchFailedError", "trial_folder"]

log = logging.getLogger(__name__)

OWNER = "cifar_tricks.owner"  # trial system attribute: the search process that asked for it


def trial_folder(number: int) -> str:
    """The folder (below the sweep dir) of the study's trial `number`."""
    return f"trial_{number:04d}"


class SearchFailedError(RuntimeError):
    """Too many trials of a search failed; the search stopped."""


class Search(OptunaSweeperImpl):
    """hydra-optuna-sweeper's implementation with the four changes of the module docstring;
    it takes the plugin's settings unchanged."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # ours: a share of n_trials over the whole invocation; the plugin's per-batch check is
        # switched off (a rate above 1 never trips)
        self.failure_budget, self.max_failure_rate = self.max_failure_rate, 1.0
        self.failures = 0

    def setup(self, *, hydra_context: Any, task_function: Any, config: Any) -> None:
        super().setup(hydra_context=hydra_context, task_function=task_function, config=config)
        self.launcher = _CountingLauncher(self.launcher, self)

    def sweep(self, arguments: list[str]) -> None:
        self._close_stale_trials()
        try:
            return super().sweep(arguments)
        except ValueError as e:
            if "No trials are completed" not in str(e):
                raise
            raise SearchFailedError(
                f"no trial of study {self.study_name} completed: each one failed (see "
                f"summary.json in their folders under {self.sweep_dir})") from e

    def _configure_trials(self, trials: list[optuna.trial.Trial], search_space: dict,
                          fixed_params: dict) -> Sequence[Sequence[str]]:
        allowed = self.failure_budget * self.n_trials
        if self.failures > allowed:
            for trial in trials:  # asked already: close them, so none is left RUNNING
                trial.study.tell(trial, state=TrialState.FAIL)
            raise SearchFailedError(
                f"{self.failures} trials of this search failed, more than max_failure_rate "
                f"({self.failure_budget}) x n_trials ({self.n_trials}); the search stops. Their "
                f"errors are in summary.json of their folders under {self.sweep_dir}.")
        overrides = []
        for trial in trials:
            self._reseed(trial)
            trial.set_system_attr(OWNER, {"host": socket.gethostname(), "pid": os.getpid()})
            try:
                (trial_overrides,) = super()._configure_trials([trial], search_space,
                                                               fixed_params)
            except ValueError as e:  # e.g. a parameter's distribution differs from the study's
                for asked in trials:
                    asked.study.tell(asked, state=TrialState.FAIL)
                raise SearchFailedError(
                    f"cannot sample trial {trial.number} of study {self.study_name}: "
                    f"{str(e).rstrip('.')}. A "
                    f"study keeps each parameter's distribution: search another space under "
                    f"another hydra.sweeper.study_name.") from e
            overrides.append((*trial_overrides,
                              f"hydra.sweep.subdir={trial_folder(trial.number)}"))
        return overrides

    def _reseed(self, trial: optuna.trial.Trial) -> None:
        """A sampler of the configured kind, seeded with seed + the trial's number."""
        sampler = self.config.hydra.sweeper.sampler
        if sampler.get("seed") is None:
            return  # unseeded: every search differs anyway
        trial.study.sampler = instantiate(sampler, seed=sampler.seed + trial.number)

    def _close_stale_trials(self) -> None:
        """Close the RUNNING trials of the study whose search process is gone."""
        try:
            study = optuna.load_study(study_name=self.study_name, storage=self.storage)
        except KeyError:  # a new study
            return
        from .jobs import objective

        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            owner = trial.system_attrs.get(OWNER)
            if owner and owner.get("host") != socket.gethostname():
                log.warning("trial %d is RUNNING for a search on %s: left as it is",
                            trial.number, owner.get("host"))
                continue
            if owner and _alive(int(owner.get("pid", -1))):
                continue  # a live search on this machine owns it
            folder = Path(self.sweep_dir) / trial_folder(trial.number)
            summary = RunFolder(folder).read_summary()
            if summary is not None and summary.status.finished:
                value = objective(summary, self.config.get("optimized_metric") or "test_acc")
                study.tell(trial.number, value)
                log.info("trial %d: its search died after the trial %s; recorded its value %s "
                         "from %s", trial.number, summary.status, value, folder)
            else:
                study.tell(trial.number, state=TrialState.FAIL)
                log.info("trial %d: its search died while it ran (%s); recorded as FAIL",
                         trial.number, summary.status if summary else "no summary")


def _alive(pid: int) -> bool:
    """Whether a process with this pid exists on this machine."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, another user's
        return True
    return True


class _CountingLauncher:
    """The search's launcher, counting the trials whose job failed (the plugin records each
    one as FAIL and carries on; `Search` stops the search when they exceed the budget)."""

    def __init__(self, launcher: Any, search: Search) -> None:
        self.launcher, self.search = launcher, search

    def launch(self, job_overrides: Sequence[Sequence[str]],
               initial_job_idx: int) -> Sequence[JobReturn]:
        returns = self.launcher.launch(job_overrides, initial_job_idx)
        self.search.failures += sum(ret.status == JobStatus.FAILED for ret in returns)
        return returns

    def __getattr__(self, name: str) -> Any:
        return getattr(self.launcher, name)
