"""Reports people can read: a folder of single runs gets as axes exactly the settings that differ
and can change a result; long values are short in report.md and whole in report.csv; report.csv
names each column once; summary.png's value labels clear every error bar on an axis that spans
the data; curves.png keeps its legend off the data. Plot layouts are measured on the drawn
matplotlib artists, not only written."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from matplotlib.transforms import Bbox

from cifar_tricks.identity import NON_RESULT_KEYS, is_result_key
from cifar_tricks.report import collect_jobs, curves_figure, group_by_configuration, main
from cifar_tricks.report.display import ELLIPSIS, MAX_WIDTH, readable_value, readable_values
from cifar_tricks.report.plots import MARGIN
from test_report import completed, epochs, make_job

LONG_AUG = "[autoaugment,random_erase,mixup]"
LONG_LR = "0.0123456789012"
TEACHER = "/home/someone/outputs/2026-01-01/12-00-00/checkpoints/last.pt"


def single_run(folder: Path, overrides: list[str], summary: dict | None, config: str,
               model: str = "lenet") -> None:
    """A folder of `python run.py <overrides> hydra.run.dir=<folder>`, as written before summaries
    carried the job's identity (so the report reads Hydra's record of the command line)."""
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text("".join(f"- '{o}'\n" for o in overrides))
    (folder / ".hydra" / "config.yaml").write_text(config.replace("MODEL", model))
    choices = {"experiment": "smoke", "model": model, "optim": "sgd"}
    (folder / ".hydra" / "hydra.yaml").write_text(json.dumps({"hydra": {"runtime": {
        "choices": choices}}}))
    if summary is not None:
        (folder / "summary.json").write_text(json.dumps({**summary, "overrides": overrides,
                                                         "choices": choices}))


# a group's node in config.yaml is its config, not its name: the name is in the choices
SMOKE_CONFIG = ("model: {_target_: cifar_tricks.models.MODEL, num_classes: 10}\n"
                "optim:\n  lr: 0.02\ntrainer:\n  eval_batch_size: 500\naug: {}\n")


@pytest.fixture
def single_runs(tmp_path: Path) -> Path:
    """Five runs of one day: a differs from b in aug and in settings that change no result;
    c sets lr (a long float) and names the model the experiment sets anyway; d is a's
    configuration with another seed, still running (no summary yet), on another device and
    thread count; e picks another model."""
    day = tmp_path / "outputs" / "2026-01-01"
    single_run(day / "a",
               ["experiment=smoke", "trainer.eval_batch_size=64", "data.root=/scratch/x"],
               completed(90.0, 90.0, 99.0, 80.0, 0), SMOKE_CONFIG)
    single_run(day / "b", ["experiment=smoke", f"aug={LONG_AUG}", "trainer.num_threads=1",
                           "trainer.log_every=5"],
               completed(91.0, 91.0, 99.0, 80.0, 0),
               SMOKE_CONFIG.replace("aug: {}", "aug: {autoaugment: {}, random_erase: {}, "
                                                "mixup: {}}"))
    single_run(day / "c", ["experiment=smoke", f"optim.lr={LONG_LR}", "model=lenet"],
               completed(92.0, 92.0, 99.0, 80.0, 0), SMOKE_CONFIG.replace("0.02", LONG_LR))
    single_run(day / "d", ["experiment=smoke", "seed=1", "trainer.device=cpu",
                           "trainer.num_threads=2"], None, SMOKE_CONFIG)
    single_run(day / "e", ["experiment=smoke", "model=resnet20"],
               completed(93.0, 93.0, 99.0, 80.0, 0), SMOKE_CONFIG, model="resnet20")
    return tmp_path / "outputs"


def configuration_table(markdown: str) -> tuple[list[str], list[list[str]]]:
    """report.md's configuration table, whatever its first axis: header and rows in order."""
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if "| test acc |" in line)
    cells = [[c.strip() for c in line.strip().strip("|").split(" | ")]
             for line in lines[start:] if line.startswith("|")]
    return cells[0], cells[2:]


def test_single_runs_axes_are_the_result_settings_that_differ(single_runs):
    assert main([str(single_runs)]) == 0
    text = (single_runs / "report.md").read_text()
    header, rows = configuration_table(text)
    axes = header[:header.index("test acc")]
    # aug, optim.lr and model differ between the runs (c's model=lenet is what the others ran
    # with too); the seed makes replicates; the rest cannot change a result
    assert sorted(axes) == ["aug", "model", "optim.lr"]
    assert "5 jobs in 4 configurations" in text
    model = header.index("model")
    assert sorted(r[model] for r in rows) == ["lenet", "lenet", "lenet", "resnet20"]
    constants = next(line for line in text.splitlines() if line.startswith("Constant overrides"))
    assert constants == "Constant overrides: `experiment=smoke`."
    with open(single_runs / "report.csv", newline="") as f:
        csv_header = next(csv.reader(f))
    given = {"data.root", "trainer.eval_batch_size", "trainer.num_threads", "trainer.log_every",
             "trainer.device"}  # what the runs set that cannot change a result
    assert given <= set(NON_RESULT_KEYS) and not given & {*header, *csv_header}
    assert all(is_result_key(k) for k in [*header, *csv_header])
    # jobs are named by their folder below the reported one, so runs of several days stay apart
    with open(single_runs / "report.csv", newline="") as f:
        assert sorted(r["job"] for r in csv.DictReader(f)) == [
            f"2026-01-01/{name}" for name in "abcde"]


def test_long_values_are_short_in_report_md_and_whole_in_report_csv(single_runs):
    assert main([str(single_runs)]) == 0
    header, rows = configuration_table((single_runs / "report.md").read_text())
    aug, lr = header.index("aug"), header.index("optim.lr")
    cells = {(r[aug], r[lr]) for r in rows}
    assert cells == {("[]", "0.02"), ("[autoaugment,…,mixup]", "0.02"), ("[]", "0.01235")}
    with open(single_runs / "report.csv", newline="") as f:
        by_job = {r["job"].split("/")[-1]: r for r in csv.DictReader(f)}
    assert by_job["b"]["aug"] == LONG_AUG and by_job["c"]["optim.lr"] == LONG_LR
    assert set(by_job["b"]["configuration"].split(", ")) == {
        f"aug={LONG_AUG}", "optim.lr=0.02", "model=lenet"}
    # a setting a run did not override shows the value it ran with, not a gap
    assert (by_job["a"]["optim.lr"], by_job["d"]["optim.lr"], by_job["a"]["aug"]) == \
        ("0.02", "0.02", "[]")


@pytest.mark.parametrize("value, shown", [
    (LONG_LR, f"{float(LONG_LR):.4g}"),  # a sampled float: 4 significant digits
    ("0.30000000000000004", "0.3"),
    ("1e-05", "1e-05"), ("0.1", "0.1"), ("123456789012", "123456789012"),  # short, or exact
    (LONG_AUG, "[autoaugment,…,mixup]"),  # the first and last entries, in order
    ("[cutout,mixup,cutmix,ricap]", "[cutout,mixup,cutmix,ricap]"),  # fits: whole
    (TEACHER, "/home/…/checkpoints/last.pt"),  # the first component and the tail
    ("shake_resnet26_2x64d", "shake_resnet26_2x64d"),
])
def test_readable_value(value, shown):
    assert readable_value(value) == shown
    assert len(shown) <= max(MAX_WIDTH, len(value) if ELLIPSIS not in shown else 0)


def test_readable_values_keep_different_values_apart():
    long_lists = [f"[{'a' * 10},{middle * 16},{'d' * 10}]" for middle in "bc"]
    assert readable_value(long_lists[0]) == readable_value(long_lists[1]) == \
        f"[{'a' * 10},…,{'d' * 10}]"
    assert readable_values(long_lists) == {v: v for v in long_lists}  # shortened, they merge
    assert readable_values([LONG_AUG, "[]"]) == {LONG_AUG: "[autoaugment,…,mixup]", "[]": "[]"}


def test_report_csv_names_each_column_once(tmp_path):
    """A swept `model` is an override and a summary field, the seed an override and a summary
    field: one column each, holding the job's value (the override's while it has no summary)."""
    sweep = tmp_path / "sweep"
    for model in ("resnet20", "lenet"):
        for seed in (0, 1):
            make_job(sweep, [f"model={model}", f"seed={seed}"],
                     {**completed(90.0 + seed, 90.0, 99.0, 80.0, seed), "model": model})
    make_job(sweep, ["model=vgg16", "seed=0"], None)  # started, no summary yet
    assert main([str(sweep)]) == 0
    with open(sweep / "report.csv", newline="") as f:
        header, *cells = list(csv.reader(f))
    assert len(header) == len(set(header))
    rows = [dict(zip(header, r)) for r in cells]
    assert sorted((r["model"], r["seed"]) for r in rows) == [
        ("lenet", "0"), ("lenet", "1"), ("resnet20", "0"), ("resnet20", "1"), ("vgg16", "0")]


# ---------------------------------------------------------------------------- plot layout


def configurations_with(tmp_path: Path, accuracies: dict[str, list[float]]):
    """A sweep over aug, one job per seed with the given final test accuracies."""
    sweep = tmp_path / "sweep"
    for aug, accs in accuracies.items():
        for seed, acc in enumerate(accs):
            make_job(sweep, [f"aug={aug}", f"seed={seed}"], completed(acc, acc, 99.0, 80.0, seed),
                     epochs([acc - 10, acc], [1.0, 0.5]))
    return group_by_configuration(collect_jobs(sweep))


def error_bar_boxes(fig, ax) -> list[Bbox]:
    """Each configuration's error bar in pixels: its line from mean - std to mean + std, the
    caps (`|` markers, as long as their markersize, centred on the line) and the point."""
    data_line, caplines, (bar_lines,) = ax.containers[0].lines
    to_px = fig.dpi / 72
    cap_half = caplines[0].get_markersize() / 2 * to_px
    point_half = data_line.get_markersize() / 2 * to_px
    boxes = []
    for (x0, y), (x1, _) in filter(len, bar_lines.get_segments()):  # none for one seed
        (px0, py), (px1, _) = ax.transData.transform([(x0, y), (x1, y)])
        half = max(cap_half, point_half)
        boxes.append(Bbox([[min(px0, px1) - half, py - half], [max(px0, px1) + half, py + half]]))
    return boxes


ACCURACIES = {"[]": [93.1, 93.3, 93.2], "[cutout]": [93.8, 93.9, 93.7], LONG_AUG: [93.5, 93.6],
              "[mixup]": [93.45]}


def test_summary_value_labels_clear_every_error_bar_on_an_axis_spanning_the_data(tmp_path):
    from cifar_tricks.report import summary_figure

    configurations = configurations_with(tmp_path, ACCURACIES)
    fig = summary_figure(configurations)
    fig.canvas.draw()
    (ax,) = fig.axes
    bars = error_bar_boxes(fig, ax)
    labels = ax.texts
    assert len(bars) == 3 and len(labels) == 4  # the one-seed configuration has no error bar
    axes_box, figure_box = ax.get_window_extent(), fig.bbox
    for label in labels:
        box = label.get_window_extent()
        assert not any(box.overlaps(bar) for bar in bars), label.get_text()
        assert axes_box.x0 <= box.x0 and box.x1 <= axes_box.x1  # inside the data area
        assert axes_box.y0 <= box.y0 and box.y1 <= axes_box.y1
    # each label is its configuration's mean ± std, at its point
    by_mean = {round(label.xy[0], 6): label.get_text() for label in labels}
    assert by_mean == {93.2: "93.20 ± 0.10", 93.8: "93.80 ± 0.10", 93.55: "93.55 ± 0.07",
                       93.45: "93.45"}
    # the axis spans min(mean - std) .. max(mean + std) with MARGIN of that span, not 0..100
    low, high = 93.1, 93.9
    span = high - low
    left, _ = ax.get_xlim()
    assert ax.get_xlim() == pytest.approx((low - MARGIN * span, high + MARGIN * span))
    assert f"axis starts at {left:.4g}, not at 0" in ax.get_xlabel()
    # configuration labels: shortened as in report.md, whole inside the figure, not overlapping
    ticks = ax.get_yticklabels()
    assert any("aug=[autoaugment,…,mixup]" in t.get_text() for t in ticks)
    tick_boxes = [t.get_window_extent() for t in ticks]
    assert all(figure_box.x0 <= b.x0 and b.x1 <= figure_box.x1 for b in tick_boxes)
    assert not any(a.overlaps(b) for i, a in enumerate(tick_boxes) for b in tick_boxes[i + 1:])


def test_summary_axis_starts_at_0_only_when_the_data_come_near_it(tmp_path):
    from cifar_tricks.report import summary_figure

    accuracies = {"[]": [0.5, 1.5], "[cutout]": [99.5, 99.9]}
    fig = summary_figure(configurations_with(tmp_path, accuracies))
    fig.canvas.draw()
    (ax,) = fig.axes
    assert ax.get_xlim() == (0.0, 100.0)  # percentages: never beyond 0..100
    assert "not at 0" not in ax.get_xlabel()
    bars = error_bar_boxes(fig, ax)
    for label in ax.texts:  # the labels of points at the axis' ends stay inside it
        box = label.get_window_extent()
        assert ax.get_window_extent().contains(box.x0, box.y0)
        assert ax.get_window_extent().contains(box.x1, box.y1)
        assert not any(box.overlaps(bar) for bar in bars)


@pytest.mark.parametrize("count", [3, 14])
def test_curves_legend_stays_off_the_panels(tmp_path, count):
    accuracies = {f"[cutout,mixup,ricap,cutmix,autoaugment_{i}]": [50.0 + i] for i in range(count)}
    configurations = configurations_with(tmp_path, accuracies)
    fig = curves_figure(configurations)
    fig.canvas.draw()
    legend = (fig.legends or [fig.axes[1].get_legend()])[0]
    box = legend.get_window_extent()
    assert fig.bbox.x0 <= box.x0 and box.x1 <= fig.bbox.x1  # whole inside the figure
    assert fig.bbox.y0 <= box.y0 and box.y1 <= fig.bbox.y1
    for ax in fig.axes:
        assert not box.overlaps(ax.get_window_extent())
        assert ax.yaxis.get_offset_text().get_text() == ""  # ticks read as values
        styles = [(line.get_color(), line.get_linestyle(), line.get_marker())
                  for line in ax.get_lines()]
        assert len(set(styles)) == count  # every configuration drawn its own way
