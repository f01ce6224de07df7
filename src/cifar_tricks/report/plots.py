"""The sweep's pictures: curves.png (test accuracy and train loss against epoch, a line per
configuration) and summary.png (final test accuracy per configuration, mean with std error bars).

Both are laid out to be read: configurations are labelled as in report.md (long values shortened,
display.py; long labels wrapped), tick labels are written without an offset, the legend sits
outside the data, and summary.png's axis spans the data (not 0-100, so a 93.1 vs 93.9 difference
shows) with every value label clear of every error bar. Figures are drawn on matplotlib's Agg
canvas without pyplot, so no global backend state is touched; `summary_figure` and
`curves_figure` return the figure so its layout can be inspected.
"""
from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Sequence

from .display import readable_axes
from .runs import Configuration, Job, find_axes
from .stats import finite, mean_std

__all__ = ["accuracy_limits", "configuration_labels", "curves_figure", "figure", "mean_curve",
           "plot_curves", "plot_summary", "summary_figure", "wrap_label"]

DPI = 110
LABEL_CHARS = 48  # a configuration label longer than this wraps at its `, ` separators
MARGIN = 0.1  # summary.png's axis: this fraction of the data's span beyond each side
ACCURACY_RANGE = (0.0, 100.0)  # percentages: summary.png's axis never leaves it
CAPSIZE = 4.0  # points: matplotlib draws a cap this far above and below its error bar
LABEL_GAP = 2.0  # points between a cap's top and its value label
AXES_WIDTH_IN = 5.5  # summary.png's data area; the figure widens with its tick labels
ROW_IN, LINE_IN = 0.5, 0.17  # summary.png: a configuration's row, and each extra label line
LEGEND_BESIDE_LINES = 12  # curves.png: a longer legend goes below the panels, in two columns
LEGEND_LINE_IN = 0.16
# curves.png: ten colours, then the next ten with another line style; a marker per
# configuration, hollow, so configurations with equal values are all visible
LINE_STYLES = ("-", "--", ":", "-.")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "*")


def figure(rows: int = 1, cols: int = 1, size: tuple[float, float] = (10, 4)):
    """A figure on the Agg canvas and its grid of axes (always 2-D)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False)
    return fig, axes


def wrap_label(text: str, width: int = LABEL_CHARS) -> str:
    """`text` broken into lines of at most `width` characters at its `, ` separators (a part
    longer than `width` keeps its own line whole)."""
    lines: list[str] = []
    for part in text.split(", "):
        if lines and len(lines[-1]) + 2 + len(part) <= width:
            lines[-1] += ", " + part
        else:
            lines.append(part)
    return "\n".join(lines)


def configuration_labels(configurations: Sequence[Configuration]) -> list[str]:
    """Each configuration's `k=v, ...` over the swept axes, values shortened as in report.md,
    wrapped to LABEL_CHARS."""
    axes_keys, _ = find_axes(configurations)
    shown = readable_axes([c.overrides for c in configurations], axes_keys)
    return [wrap_label(c.label(axes_keys, shown)) for c in configurations]


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


def curves_figure(configurations: Sequence[Configuration]):
    """Two panels against epoch, test accuracy and train loss, one line per configuration
    (partial runs included: the mean at an epoch is over the seeds that reached it)."""
    from matplotlib.ticker import MaxNLocator

    labels = configuration_labels(configurations)
    lines = sum(label.count("\n") + 1 for label in labels)
    below = lines > LEGEND_BESIDE_LINES  # a long legend beside the panels would squeeze them
    legend_in = LEGEND_LINE_IN * math.ceil(lines / 2) + 0.4 if below else 0.0
    fig, axes = figure(1, 2, (12, 4.5 + legend_in))
    panels = (("test_acc", "test accuracy (%)"), ("train_loss", "train loss"))
    plotted = False
    for ax, (key, title) in zip(axes[0], panels):
        last_epoch = 0.0
        for i, (config, label) in enumerate(zip(configurations, labels)):
            epochs, values = mean_curve(config.jobs, key)
            if epochs:
                n = sum(1 for j in config.jobs if j.metrics)
                ax.plot(epochs, values, color=f"C{i % 10}",
                        linestyle=LINE_STYLES[i // 10 % len(LINE_STYLES)],
                        marker=MARKERS[i % len(MARKERS)] if len(epochs) < 30 else None,
                        markersize=5, markerfacecolor="none", label=f"{label} (n={n})")
                plotted, last_epoch = True, max(last_epoch, epochs[-1])
        if last_epoch:  # whole epochs on the axis, even for a run of one or two epochs
            ax.set_xlim(0.5, last_epoch + 0.5)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        ax.ticklabel_format(axis="y", useOffset=False)  # 2.3054, not "+2.305" and 0.0004
        ax.set_title(title + " (mean over seeds)")
        ax.grid(alpha=0.3)
    if plotted and below:  # outside the panels: it never covers a line
        handles = {h.get_label(): h for ax in axes[0] for h in ax.get_legend_handles_labels()[0]}
        fig.legend(handles.values(), handles.keys(), loc="outside lower center", ncols=2,
                   fontsize="x-small")
    elif plotted:
        axes[0][1].legend(fontsize="small", loc="center left", bbox_to_anchor=(1.02, 0.5))
    else:
        axes[0][0].text(0.5, 0.5, "no epoch finished yet", ha="center", va="center",
                        transform=axes[0][0].transAxes)
        for ax in axes[0]:  # no data: a 0..1 scale would mean nothing
            ax.set_xticks([])
            ax.set_yticks([])
    return fig


def plot_curves(configurations: Sequence[Configuration], path: Path) -> None:
    curves_figure(configurations).savefig(path, dpi=DPI)


def accuracy_limits(lows: Sequence[float], highs: Sequence[float]) -> tuple[float, float]:
    """summary.png's axis: from the lowest mean - std to the highest mean + std, MARGIN of that
    span beyond each end (a point alone gets a span of 1% of its value, at least 1), kept
    inside ACCURACY_RANGE; so it starts at 0 only when the data come near 0."""
    low, high = min(lows), max(highs)
    span = high - low or max(1.0, abs(high) * 0.01)
    left, right = low - MARGIN * span, high + MARGIN * span
    bottom, top = ACCURACY_RANGE
    return max(bottom, left), (min(top, right) if high <= top else right)


def summary_figure(configurations: Sequence[Configuration]):
    """Final test accuracy per configuration with a completed job: a point at the mean over
    seeds, std error bars, the value written above the point. Points, not bars: the axis spans
    the data, and a bar's length from an axis that does not start at 0 would mislead."""
    rows = [(label, mean, std if n > 1 else math.nan, n) for config, label
            in zip(configurations, configuration_labels(configurations))
            for mean, std, n in [mean_std([j.get("test_acc") for j in config.completed])]
            if mean is not None]
    line_count = max((label.count("\n") + 1 for label, *_ in rows), default=1)
    row_in = ROW_IN + LINE_IN * (line_count - 1)
    fig, axes = figure(1, 1, (8, max(2.5, row_in * len(rows) + 1.4)))
    ax = axes[0][0]
    xlabel = "final-epoch test accuracy (%), mean ± std over seeds"
    if rows:
        labels, means, stds, ns = zip(*rows)
        positions = range(len(rows))
        bars = ax.errorbar(means, positions, xerr=stds, fmt="o", color="tab:blue",
                           ecolor="black", elinewidth=1.2, capsize=CAPSIZE, markersize=6,
                           zorder=3)
        for artist in bars.get_children():  # a point at 100 (the axis' end) is drawn whole
            artist.set_clip_on(False)
        ax.set_yticks(positions, [f"{label} (n={n})" for label, n in zip(labels, ns)],
                      fontsize="small")
        ax.set_ylim(len(rows) - 0.5, -0.75)  # first configuration on top, room for its value
        spread = [0.0 if math.isnan(s) else s for s in stds]  # one seed: no error bar
        left, right = accuracy_limits([m - s for m, s in zip(means, spread)],
                                      [m + s for m, s in zip(means, spread)])
        ax.set_xlim(left, right)
        if left > 0:
            xlabel += f"\naxis starts at {left:.4g}, not at 0"
        values = [ax.annotate(f"{m:.2f}" + (f" ± {s:.2f}" if n > 1 else ""), xy=(m, y),
                              xytext=(0, CAPSIZE + LABEL_GAP), textcoords="offset points",
                              ha="center", va="bottom", fontsize="small", zorder=4)
                  for y, (m, s, n) in enumerate(zip(means, stds, ns))]
        _fit_width_to_tick_labels(fig, ax)
        _keep_inside(fig, ax, values)
    else:
        ax.text(0.5, 0.5, "no completed job yet", ha="center", va="center", transform=ax.transAxes)
        ax.set_xticks([])  # no data: a 0..1 scale would mean nothing
        ax.set_yticks([])
    ax.set_xlabel(xlabel)
    ax.grid(axis="x", alpha=0.3)
    return fig


def plot_summary(configurations: Sequence[Configuration], path: Path) -> None:
    summary_figure(configurations).savefig(path, dpi=DPI)


def _fit_width_to_tick_labels(fig, ax) -> None:
    """Widen the figure by its longest configuration label, so the data area keeps
    AXES_WIDTH_IN and no label is cut at the figure's edge."""
    renderer = fig.canvas.get_renderer()
    widest = max(t.get_window_extent(renderer).width for t in ax.get_yticklabels()) / fig.dpi
    fig.set_figwidth(AXES_WIDTH_IN + widest + 0.6)


def _keep_inside(fig, ax, texts) -> None:
    """A value label centred above its point that would cross the axes' left or right side is
    aligned to start or end at the point instead (it stays above the error bar either way)."""
    fig.canvas.draw()
    box = ax.get_window_extent()
    for text in texts:
        extent = text.get_window_extent()
        if extent.x0 < box.x0:
            text.set_horizontalalignment("left")
        elif extent.x1 > box.x1:
            text.set_horizontalalignment("right")
