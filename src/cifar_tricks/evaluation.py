"""`mode=eval`: evaluate a trained run, or every completed job of a sweep, from its checkpoint.

    python run.py mode=eval eval.run=outputs/2026-01-01/12-00-00            # one run
    python run.py mode=eval eval.run=outputs/... eval.tta=flip_translate    # + TTA accuracy
    python run.py mode=eval eval.run=multirun/2026-01-01/12-00-00           # every job: a table

A run is rebuilt from the config its checkpoint records (model, data, normalisation, precision,
evaluation batching), with the weights its summary reports (`inference.WEIGHTS`), and evaluated
on its test split and, when it held one out, its validation split, through the trainer's own
loader, so the test top-1 is the summary's `test_acc`. The eval command may change only settings
that change no result (`identity.NON_RESULT_KEYS`: `data.root`, `trainer.device`, ...); any other
override is refused, since the run is evaluated as it was trained.

It writes next to the run, where its other results are (Hydra's folder of the eval command keeps
only the command's log): `<run>/eval/eval.json` (top-1, top-5, loss, per-class accuracy, the
confusion matrix; plain and, with `eval.tta`, test-time augmented) and `<run>/eval/confusion.png`;
for a sweep also `eval.md` and `eval.csv` (a row per job) in the sweep folder. `eval.out=DIR`
writes there instead (a sweep's jobs in subfolders of it), leaving the run folders untouched.
"""
from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torch import nn
from tqdm import tqdm

from .build import build, eval_loader, resolve_device
from .config import Progress, is_config_group, resolved
from .data import BatchLoader
from .errors import CifarTricksError, ConfigError, FolderBusyError
from .identity import NON_RESULT_KEYS, is_result_key
from .inference import CHECKPOINTS, WEIGHTS, build_model, class_names, read_run_checkpoint
from .precision import autocast_for, uses_channels_last
from .progress import shows_bar
from .run_folder import RunFolder, Status, claimed, write_text
from .tta import TTA, with_tta

if TYPE_CHECKING:
    from .jobs import Job

__all__ = ["evaluate_mode", "evaluate_run", "evaluate_sweep", "split_metrics", "predict"]

log = logging.getLogger("cifar_tricks")

EVAL_DIR = "eval"  # a run's evaluation, next to its checkpoints
TOP_K = 5


# ------------------------------------------------------------------------------------ metrics

def split_metrics(logits: torch.Tensor, labels: torch.Tensor,
                  names: Sequence[str]) -> dict[str, Any]:
    """Accuracy (%), top-5 accuracy (top-k for fewer than 5 classes), mean cross-entropy,
    per-class accuracy and the confusion matrix (rows: true class, columns: predicted) of the
    logits `(N, C)` of one split."""
    count, classes = logits.shape
    predicted = logits.argmax(1)
    top_k = logits.topk(min(TOP_K, classes), dim=1).indices
    confusion = torch.bincount(labels * classes + predicted, minlength=classes * classes)
    confusion = confusion.view(classes, classes).cpu()
    per_class = confusion.diag().double() / confusion.sum(1).double()
    return {
        "images": count,
        "top1": 100 * int((predicted == labels).sum()) / count,
        "top5": 100 * int((top_k == labels[:, None]).any(1).sum()) / count,
        "loss": float(F.cross_entropy(logits.float(), labels, reduction="sum")) / count,
        "per_class_acc": {name: (100 * float(a) if a == a else None)  # None: no such images
                          for name, a in zip(names, per_class)},
        "confusion": confusion.tolist(),
    }


@torch.no_grad()
def predict(model: nn.Module, loader: BatchLoader, autocast: Any = None,
            channels_last: bool = False, bar: bool = False,
            name: str = "eval") -> tuple[torch.Tensor, torch.Tensor]:
    """Logits `(N, C)` (float) and labels `(N,)` of every batch of an evaluation loader, batched
    on its device; a tqdm bar when `bar`, else one log line at the end."""
    model.eval()
    logits, labels = [], []
    start = time.perf_counter()
    for images, targets in tqdm(loader, desc=name, leave=False, dynamic_ncols=True,
                                disable=not bar, unit="batch"):
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with (autocast or contextlib.nullcontext)():
            logits.append(model(images).float())
        labels.append(targets.argmax(1))
    out = torch.cat(logits), torch.cat(labels)
    if not bar:
        seconds = time.perf_counter() - start
        log.info("%s: %d images in %.1f s (%.0f img/s)", name, len(out[1]), seconds,
                 len(out[1]) / max(seconds, 1e-9))
    return out


# ------------------------------------------------------------------------------------ one run

def command_settings(cfg: DictConfig, overrides: Sequence[str]) -> dict[str, Any]:
    """The eval command's overrides that apply to the evaluated run: settings that change no
    result (`trainer.device=cpu`, `data.root=...`), with their composed values. Any other
    override (a group, `optim.lr=...`) is refused: the run is evaluated as it was trained."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    settings = {}
    for override in OverridesParser.create().parse_overrides(list(overrides)):
        key = override.key_or_group
        if key in ("mode", "eval") or key.startswith("eval."):
            continue
        if is_config_group(key) or is_result_key(key):
            raise ConfigError(
                f"{override.input_line}: mode=eval evaluates a run as it was trained, so it takes "
                f"only eval.* and settings that change no result ({', '.join(NON_RESULT_KEYS)}). "
                f"Drop {override.input_line} from the command.")
        value = OmegaConf.select(cfg, key)
        settings[key] = resolved(value) if OmegaConf.is_config(value) else value
    return settings


def _effective_config(config: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    """The run's config with the eval command's settings (that change no result) applied."""
    conf = OmegaConf.create(config)
    for key, value in settings.items():
        OmegaConf.update(conf, key, value, merge=False)
    return OmegaConf.to_container(conf)


def _options(node: DictConfig) -> DictConfig:
    """The `eval` node, each option checked against what exists."""
    if node.get("run") is None:
        raise ConfigError("mode=eval needs eval.run: the run folder to evaluate (eval.run="
                          "outputs/2026-01-01/12-00-00) or a sweep folder (eval.run=multirun/...)")
    for key, known in (("tta", TTA), ("checkpoint", CHECKPOINTS), ("weights", WEIGHTS)):
        if node[key] not in known:
            raise ConfigError(f"eval.{key}={node[key]} is not an option; choose one of "
                              f"{', '.join(known)}")
    if not Path(node.run).is_dir():
        raise ConfigError(f"eval.run={node.run} is not a folder: give a run folder (with "
                          f"summary.json and checkpoints/) or a sweep folder of them")
    return node


def _is_run(folder: Path) -> bool:
    return (folder / "summary.json").is_file() or (folder / "checkpoints").is_dir()


class _DataCache:
    """Each dataset built once per eval command (a sweep's jobs mostly share theirs)."""

    def __init__(self) -> None:
        self.built: dict[str, Any] = {}

    def get(self, data_config: dict[str, Any]) -> Any:
        key = json.dumps(data_config, sort_keys=True, default=str)
        if key not in self.built:
            self.built[key] = build(OmegaConf.create(data_config), "data")
        return self.built[key]


def evaluate_run(run_dir: Path, out_dir: Path | None = None, tta: str = "none",
                 checkpoint: str = "last", weights: str = "eval",
                 settings: dict[str, Any] | None = None,
                 cache: _DataCache | None = None) -> dict[str, Any]:
    """Evaluate one run folder (see the module docstring); returns what eval.json holds and
    writes it, with confusion.png, to `out_dir` (default `<run>/eval`). Writing into the run
    folder holds its lock throughout (one writer per folder: not while the run trains)."""
    run_dir = Path(run_dir)
    out_dir = Path(out_dir) if out_dir is not None else run_dir / EVAL_DIR
    inside = run_dir.resolve() in out_dir.resolve().parents
    try:
        with claimed(run_dir) if inside else contextlib.nullcontext():
            report = _evaluate(run_dir, tta, checkpoint, weights, settings or {},
                               cache or _DataCache())
            out_dir.mkdir(parents=True, exist_ok=True)
            write_text(out_dir / "eval.json", json.dumps(report, indent=2) + "\n")
            plot_confusion(report, out_dir / "confusion.png")
    except FolderBusyError as e:
        raise FolderBusyError(f"{e} Or write the evaluation elsewhere: eval.out=DIR.") from None
    return report


def _evaluate(run_dir: Path, tta: str, checkpoint: str, weights: str, settings: dict[str, Any],
              cache: _DataCache) -> dict[str, Any]:
    """What eval.json holds (see `evaluate_run`)."""
    path, state = read_run_checkpoint(run_dir, checkpoint)
    config = _effective_config(state["config"], settings)
    trainer = config["trainer"]
    device = resolve_device(trainer["device"])
    if trainer.get("num_threads"):
        torch.set_num_threads(trainer["num_threads"])
    names = class_names(config["data"])
    model = build_model(config, WEIGHTS[weights](state), device, path)
    channels_last = uses_channels_last(trainer.get("channels_last"), device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    autocast = autocast_for(device, trainer.get("precision", "auto"))
    bar = shows_bar(Progress(trainer.get("progress", "auto")))
    data = cache.get(config["data"])
    summary = RunFolder(run_dir).read_summary()
    logged = (state.get("history") or [{}])[-1]
    prefix = "raw_" if weights == "model" and "raw_test_acc" in logged else ""
    report: dict[str, Any] = {
        "run": str(run_dir.resolve()), "checkpoint": str(path), "epoch": state.get("epoch"),
        "weights": weights, "tta": tta, "device": str(device),
        "status": str(summary.status) if summary else None,
        "summary": {"test_acc": summary.test_acc if summary else None,
                    "val_acc": summary.val_acc if summary else None},
        # what training logged for these very weights at the checkpoint's epoch
        "logged": {"test_acc": logged.get(f"{prefix}test_acc"),
                   "val_acc": logged.get(f"{prefix}val_acc")},
        "class_names": names,
    }
    views = {"": model} if tta == "none" else {"": model, "_tta": with_tta(model, tta)}
    for split_name in ("test", "val"):
        split = getattr(data, split_name)
        if split is None:
            continue
        loader = eval_loader(split.to(device), data, trainer["eval_batch_size"],
                             trainer.get("limit_eval_batches"))
        for suffix, net in views.items():
            logits, labels = predict(net, loader, autocast, channels_last, bar,
                                     f"eval {split_name}{suffix.replace('_', ' ')}")
            report[f"{split_name}{suffix}"] = split_metrics(logits, labels, names)
    return report


def plot_confusion(report: dict[str, Any], path: Path) -> None:
    """The test split's confusion matrix, each row as shares of the true class, labelled with
    the class names (counts written in the cells up to 20 classes)."""
    from .report.plots import figure

    matrix = torch.tensor(report["test"]["confusion"], dtype=torch.float64)
    shares = matrix / matrix.sum(1, keepdim=True).clamp(min=1)
    names = report["class_names"]
    classes = len(names)
    many = classes > 20  # CIFAR-100: small labels, no counts, a finer image
    side = 16.0 if many else 4 + 0.45 * classes
    fig, axes = figure(size=(side + 1.5, side))
    ax = axes[0, 0]
    image = ax.imshow(shares.numpy(), cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, shrink=0.8, label="share of the true class")
    small = 5 if many else 10
    ax.set_xticks(range(classes), names, rotation=90 if many else 45,
                  ha="center" if many else "right", fontsize=small)
    ax.set_yticks(range(classes), names, fontsize=small)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    if not many:
        for (i, j), count in zip(((i, j) for i in range(classes) for j in range(classes)),
                                 matrix.flatten().tolist()):
            if count:
                ax.text(j, i, f"{count:.0f}", ha="center", va="center", fontsize=8,
                        color="white" if shares[i, j] > 0.5 else "black")
    test = report["test"]
    name = "/".join(Path(report["run"]).parts[-2:])
    name = name if len(name) <= 90 else "…" + name[-89:]
    ax.set_title(f"{name}\ntest top-1 {test['top1']:.2f}% "
                 f"({test['images']} images, {report['weights']} weights, "
                 f"epoch {report['epoch']})", fontsize=10)
    fig.savefig(path, dpi=160 if many else 120)


# ------------------------------------------------------------------------------------ sweep

SWEEP_COLUMNS = ("job", "status", "summary test_acc", "top1", "top5", "loss", "tta top1",
                 "val top1", "note")


def evaluate_sweep(sweep_dir: Path, out_dir: Path | None = None, tta: str = "none",
                   checkpoint: str = "last", weights: str = "eval",
                   settings: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Evaluate every completed job below `sweep_dir` and write eval.md / eval.csv (a row per
    job, named by the overrides that differ between jobs; the csv has all of them) to `out_dir`
    (default: the sweep folder). A job that is not completed, or cannot be evaluated, gets the
    reason in the `note` column; the others go on."""
    from .report.runs import collect_jobs

    sweep_dir = Path(sweep_dir)
    jobs = collect_jobs(sweep_dir)
    if not jobs:
        raise ConfigError(f"eval.run={sweep_dir} holds no run (no summary.json in it or below "
                          f"it): give a run folder or a sweep folder")
    cache = _DataCache()
    rows = []
    keys = dict.fromkeys(k for job in jobs for k in job.overrides)
    varying = [k for k in keys if len({job.overrides.get(k) for job in jobs}) > 1]
    for job in jobs:
        label = ", ".join(f"{k}={job.overrides[k]}" for k in varying if k in job.overrides)
        row: dict[str, Any] = {"job": label or job.path.name, "status": str(job.status),
                               "summary test_acc": job.get("test_acc"), "path": str(job.path),
                               "overrides": " ".join(f"{k}={v}" for k, v in job.overrides.items())}
        rows.append(row)
        if job.status is not Status.completed:
            row["note"] = "not evaluated: not completed"
            continue
        job_out = None if out_dir is None else Path(out_dir) / job.path.relative_to(sweep_dir)
        try:
            report = evaluate_run(job.path, job_out, tta, checkpoint, weights, settings, cache)
        except CifarTricksError as e:
            row["note"] = f"not evaluated: {e}"
            log.warning("%s: %s", job.path, e)
            continue
        row.update({"top1": report["test"]["top1"], "top5": report["test"]["top5"],
                    "loss": report["test"]["loss"],
                    "tta top1": report.get("test_tta", {}).get("top1"),
                    "val top1": report.get("val", {}).get("top1")})
    _write_table(rows, Path(out_dir) if out_dir is not None else sweep_dir)
    return rows


def _write_table(rows: list[dict[str, Any]], folder: Path) -> None:
    from .report.stats import MISSING
    from .report.tables import markdown_table

    columns = [c for c in SWEEP_COLUMNS if any(r.get(c) is not None for r in rows)]

    def cell(value: Any) -> str:
        return MISSING if value is None else f"{value:.2f}" if isinstance(value, float) \
            else str(value)

    folder.mkdir(parents=True, exist_ok=True)
    write_text(folder / "eval.md", markdown_table(
        columns, [[cell(r.get(c)) for c in columns] for r in rows]) + "\n")
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=[*columns, "overrides", "path"],
                            extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    write_text(folder / "eval.csv", buffer.getvalue())


# ------------------------------------------------------------------------------------ the mode

def evaluate_mode(cfg: DictConfig, job: Job) -> float | None:
    """`mode=eval` (see the module docstring); returns the run's test top-1 (None: a sweep)."""
    options = _options(cfg.eval)
    settings = command_settings(cfg, job.overrides)
    target = Path(options.run)
    out = Path(options.out) if options.get("out") else None
    common = dict(tta=options.tta, checkpoint=options.checkpoint, weights=options.weights,
                  settings=settings)
    if not _is_run(target):
        rows = evaluate_sweep(target, out, **common)
        done = sum(1 for r in rows if r.get("top1") is not None)
        print(f"evaluated {done} of {len(rows)} jobs: {(out or target) / 'eval.md'}, eval.csv")
        return None
    report = evaluate_run(target, out, **common)
    print(describe(report, out or target / EVAL_DIR))
    return report["test"]["top1"]


def describe(report: dict[str, Any], folder: Path) -> str:
    """The lines the command prints: each split's numbers beside the summary's."""
    lines = []
    for key, values in report.items():
        if isinstance(values, dict) and "top1" in values:
            split = key.split("_")[0]
            reported = report["logged"].get(f"{split}_acc") if key == split else None
            beside = f"   (logged at epoch {report['epoch']}: {reported:.2f}%)" \
                if reported is not None else ""
            lines.append(f"{key:<9} top-1 {values['top1']:6.2f}%  top-5 {values['top5']:6.2f}%  "
                         f"loss {values['loss']:.4f}{beside}")
    lines.append(f"wrote {folder / 'eval.json'} and confusion.png")
    return "\n".join(lines)
