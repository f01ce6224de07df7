"""The sweep's pictures: curves.png (test accuracy and train loss against epoch, a line per
configuration) and summary.png (final test accuracy per configuration with std error bars).
Figures are drawn on matplotlib's Agg canvas without pyplot, so no global backend state is touched.
"""
from __future__ import annotations

import statistics
from pathlib import Path
from typing import Sequence

from .runs import Configuration, Job, find_axes
from .stats import finite, mean_std

__all__ = ["figure", "mean_curve", "plot_curves", "plot_summary"]


def figure(rows: int = 1, cols: int = 1, size: tuple[float, float] = (10, 4)):
    """A figure on the Agg canvas and its grid of axes (always 2-D)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False)
    return fig, axes


def mean_curve(jobs: Sequence[Job], key: str) -> tuple[list[float], list[float]]:
    """Epochs and the mean of column `key` over the jobs that have a finite value at that epoch."""
    by_epoch: dict[float, list[float]] = {}
    for job in jobs:
        for i, row in enumerate(job.metrics, start=1):
            epoch = finite(row.get("epoch"))
            value = finite(row.get(key))
            if value is not None:
                by_epoch.setdefault(epoch if epoch is not None else float(i), []).append(value)
    epochs = sorted(by_epoch)
    return epochs, [statistics.fmean(by_epoch[e]) for e in epochs]


def plot_curves(configurations: Sequence[Configuration], path: Path) -> None:
    """Two panels against epoch, test accuracy and train loss, one line per configuration
    (partial runs included: the mean at an epoch is over the seeds that reached it)."""
    from matplotlib.ticker import MaxNLocator

    axes_keys, _ = find_axes(configurations)
    fig, axes = figure(1, 2, (12, 4.5))
    panels = (("test_acc", "test accuracy (%)"), ("train_loss", "train loss"))
    plotted = False
    for ax, (key, title) in zip(axes[0], panels):
        last_epoch = 0.0
        for config in configurations:
            epochs, values = mean_curve(config.jobs, key)
            if epochs:
                n = sum(1 for j in config.jobs if j.metrics)
                ax.plot(epochs, values, marker="o" if len(epochs) < 30 else None, markersize=3,
                        label=f"{config.label(axes_keys)} (n={n})")
                plotted, last_epoch = True, max(last_epoch, epochs[-1])
        if last_epoch:  # whole epochs on the axis, even for a run of one or two epochs
            ax.set_xlim(0.5, last_epoch + 0.5)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        ax.set_title(title + " (mean over seeds)")
        ax.grid(alpha=0.3)
    if plotted:
        axes[0][1].legend(fontsize="small" if len(configurations) < 12 else "x-small",
                          loc="center left", bbox_to_anchor=(1.02, 0.5))
    else:
        axes[0][0].text(0.5, 0.5, "no epoch finished yet", ha="center", va="center",
                        transform=axes[0][0].transAxes)
    fig.savefig(path, dpi=110)


def plot_summary(configurations: Sequence[Configuration], path: Path) -> None:
    """Final test accuracy per configuration (completed jobs), mean with std error bars."""
    axes_keys, _ = find_axes(configurations)
    labels, means, stds = [], [], []
    for config in configurations:
        mean, std, n = mean_std([j.get("test_acc") for j in config.completed])
        if mean is not None:
            labels.append(f"{config.label(axes_keys)} (n={n})")
            means.append(mean)
            stds.append(std or 0.0)
    fig, axes = figure(1, 1, (8, max(2.5, 0.4 * len(labels) + 1.2)))
    ax = axes[0][0]
    if labels:
        positions = list(range(len(labels)))
        ax.barh(positions, means, xerr=stds, capsize=4, color="tab:blue", alpha=0.8)
        ax.set_yticks(positions)
        ax.set_yticklabels(labels, fontsize="small")
        ax.invert_yaxis()
        low = min(m - s for m, s in zip(means, stds))
        high = max(m + s for m, s in zip(means, stds))
        margin = max(1.0, 0.1 * (high - low))
        left = max(0.0, low - margin)
        ax.set_xlim(left, min(100.0, high + margin) if high <= 100 else high)
        for y, (m, s) in enumerate(zip(means, stds)):
            # inside the bar's left end, where no error bar or axis edge can cover it
            ax.text(left + 0.01 * (ax.get_xlim()[1] - left), y,
                    f"{m:.2f}" + (f" ± {s:.2f}" if s else ""), va="center", ha="left",
                    fontsize="small", color="white", fontweight="bold", zorder=5,
                    bbox=dict(facecolor="tab:blue", edgecolor="none", pad=1))
    else:
        ax.text(0.5, 0.5, "no completed job yet", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("final-epoch test accuracy (%), mean ± std over seeds")
    ax.grid(axis="x", alpha=0.3)
    fig.savefig(path, dpi=110)
