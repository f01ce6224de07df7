"""The Optuna part of a report, for a sweep folder holding `optuna.db`: per study a trials table
(best first) with the best parameters, and optuna_history.png (objective per trial, running best).
Optuna is imported only when a sweep has a study."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from .plots import figure
from .stats import MISSING, finite
from .tables import markdown_table

__all__ = ["optuna_section", "plot_optuna_history"]


def _load_studies(db: Path) -> list:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = f"sqlite:///{db.resolve()}"
    return [optuna.load_study(study_name=s.study_name, storage=storage)
            for s in optuna.get_all_study_summaries(storage)]


def _trial_value(trial: Any) -> float | None:
    """The (first) objective of a trial; None until it has a finite one."""
    values = getattr(trial, "values", None)
    if values:
        return finite(values[0])
    return finite(getattr(trial, "value", None))


def _maximize(study: Any) -> bool:
    return str(study.directions[0]).lower().endswith("maximize")


def _param_cell(value: Any) -> str:
    """Sampled floats to 4 significant digits; other parameters as they are."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def optuna_section(sweep_dir: Path, history_png: Path | None = None) -> str:
    """For every study in `sweep_dir/optuna.db`: a trials table sorted by objective (best first;
    trials without a value last), the best parameters; plots optuna_history.png if asked.
    Empty string when the folder holds no optuna.db."""
    db = Path(sweep_dir) / "optuna.db"
    if not db.is_file():
        return ""
    studies = _load_studies(db)
    lines = ["## Optuna search", ""]
    if not studies:
        return "\n".join(lines + [f"`{db}` holds no study yet."])
    for study in studies:
        trials = study.get_trials(deepcopy=False)
        maximize = _maximize(study)
        param_names = list(dict.fromkeys(k for t in trials for k in t.params))
        done = [t for t in trials if _trial_value(t) is not None]
        ordered = sorted(done, key=lambda t: _trial_value(t), reverse=maximize)
        ordered += [t for t in trials if _trial_value(t) is None]
        direction = "maximize" if maximize else "minimize"
        lines += [f"### Study `{study.study_name}` ({direction}, {len(trials)} trials)", ""]
        if done:
            best = ordered[0]
            lines.append(f"Best value {_trial_value(best):.4g} (trial {best.number}); best "
                         "parameters: " + ", ".join(f"`{k}={v}`" for k, v in best.params.items()))
            lines.append("")
        header = ["trial", "value", *param_names, "state"]
        rows = [[str(t.number),
                 MISSING if (value := _trial_value(t)) is None else f"{value:.4g}",
                 *(_param_cell(t.params[p]) if p in t.params else MISSING for p in param_names),
                 t.state.name] for t in ordered]
        lines += [markdown_table(header, rows), ""]
    if history_png is not None:
        plot_optuna_history(studies, history_png)
    return "\n".join(lines).rstrip()


def plot_optuna_history(studies: Sequence[Any], path: Path) -> None:
    """Objective per trial (dots) and the running best (a step line), one panel per study."""
    from matplotlib.ticker import MaxNLocator

    fig, axes = figure(len(studies), 1, (8, 3.5 * len(studies)))
    for ax, study in zip(axes[:, 0], studies):
        maximize = _maximize(study)
        points = [(t.number, v) for t in study.get_trials(deepcopy=False)
                  if (v := _trial_value(t)) is not None]
        points.sort()
        if points:
            numbers, values = zip(*points)
            best, running = None, []
            for v in values:
                best = v if best is None else (max(best, v) if maximize else min(best, v))
                running.append(best)
            ax.plot(numbers, values, "o", label="objective", alpha=0.8)
            ax.step(numbers, running, where="post", color="tab:red", label="best so far")
            # beside the panel: inside, it would cover trials wherever it went
            ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
        else:
            ax.text(0.5, 0.5, "no finished trial yet", ha="center", va="center",
                    transform=ax.transAxes)
        ax.set_title(f"study {study.study_name}")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("trial")
        ax.set_ylabel("objective")
        ax.grid(alpha=0.3)
    fig.savefig(path, dpi=110)
