"""Export a trained run's model to a file other programs can run, and check that it computes the
same logits.

    python -m cifar_tricks.export RUN                      # RUN/export/model.pt (TorchScript)
    python -m cifar_tricks.export RUN --format onnx        # RUN/export/model.onnx
    python -m cifar_tricks.export RUN --format pt2         # RUN/export/model.pt2 (torch.export)

The weights are the ones the run reported (`inference.load_run`: the EMA's with `trick=[ema]`;
`--weights model` for the trained ones, `--checkpoint best` for checkpoints/best.pt). By default
the run's normalisation is part of the exported module, so it takes what a camera or a PNG
decoder gives: float32 images `(B, 3, H, W)` in [0, 1] (pixel / 255), any batch size, and returns
logits; a deployment needs no mean and std that could be forgotten or mistyped.
`--no-preprocessing` exports the bare model, which takes normalised images as training fed it.
Beside the file, `<file>.json` (model.onnx.json, ...) records the input it expects, the class
names and the check below.

Every export is checked: the file is loaded back with its own runtime (torch.jit.load,
onnxruntime, torch.export.load), run on a batch of the run's test images (random images when the
dataset is not at hand), and compared with the eager model; the command prints the largest
absolute logit difference and fails when it exceeds 1e-4 x max(1, largest |logit|).

TorchScript is deprecated in recent PyTorch (it still loads in libtorch/C++ and older Pythons);
`pt2` (torch.export) is its successor. ONNX needs `pip install onnx onnxscript onnxruntime`
(`pip install -e ".[onnx]"`): onnxscript is torch's exporter, onnxruntime checks the file.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from .errors import CifarTricksError, DatasetError, DatasetNotFoundError
from .inference import CHECKPOINTS, WEIGHTS, LoadedRun, load_run
from .run_folder import claimed

__all__ = ["FORMATS", "Deployable", "export_run", "main"]

log = logging.getLogger("cifar_tricks")

CHECK_IMAGES = 64  # test images the exported file is checked on
RELATIVE_TOLERANCE = 1e-4


class MissingPackageError(CifarTricksError, ImportError):
    """An export format needs a package that is not installed; the message names it."""


class ExportMismatchError(CifarTricksError, RuntimeError):
    """The exported file does not reproduce the model's logits."""


class Deployable(nn.Module):
    """The model behind the run's preprocessing (or none): what gets exported."""

    def __init__(self, model: nn.Module, preprocess: nn.Module | None) -> None:
        super().__init__()
        self.preprocess = preprocess if preprocess is not None else nn.Identity()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(self.preprocess(images))


def _batch_dimension() -> dict:
    return {"images": {0: torch.export.Dim("batch", min=1, max=65536)}}


def _quietly(function: Callable, *args, **kwargs):
    """Without TorchScript's deprecation warnings: noise to a user who chose the format."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*deprecated.*", category=FutureWarning)
        warnings.filterwarnings("ignore", message=".*deprecated.*", category=DeprecationWarning)
        return function(*args, **kwargs)


def _save_torchscript(module: nn.Module, example: torch.Tensor, path: Path) -> None:
    _quietly(torch.jit.trace, module, example).save(str(path))


def _load_torchscript(path: Path) -> Callable[[torch.Tensor], torch.Tensor]:
    return _quietly(torch.jit.load, str(path), map_location="cpu")


def _save_onnx(module: nn.Module, example: torch.Tensor, path: Path) -> None:
    torch.onnx.export(module, (example,), str(path), input_names=["images"],
                      output_names=["logits"], dynamic_shapes=_batch_dimension(), dynamo=True,
                      external_data=False, verbose=False)


def _load_onnx(path: Path) -> Callable[[torch.Tensor], torch.Tensor]:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda images: torch.from_numpy(session.run(None, {"images": images.numpy()})[0])


def _save_pt2(module: nn.Module, example: torch.Tensor, path: Path) -> None:
    torch.export.save(torch.export.export(module, (example,), dynamic_shapes=_batch_dimension()),
                      str(path))


def _load_pt2(path: Path) -> Callable[[torch.Tensor], torch.Tensor]:
    return torch.export.load(str(path)).module()


@dataclass(frozen=True)
class Format:
    suffix: str
    save: Callable[[nn.Module, torch.Tensor, Path], None]
    load: Callable[[Path], Callable[[torch.Tensor], torch.Tensor]]
    packages: tuple[str, ...] = ()  # importable names it needs (pip names alike)


FORMATS = {
    "torchscript": Format(".pt", _save_torchscript, _load_torchscript),
    "onnx": Format(".onnx", _save_onnx, _load_onnx, ("onnx", "onnxscript", "onnxruntime")),
    "pt2": Format(".pt2", _save_pt2, _load_pt2),
}


def _check_packages(name: str, fmt: Format) -> None:
    missing = [p for p in fmt.packages if importlib.util.find_spec(p) is None]
    if missing:
        raise MissingPackageError(
            f"--format {name} needs {', '.join(fmt.packages)} ({', '.join(missing)} not "
            f"installed): pip install {' '.join(fmt.packages)} (or pip install -e \".[onnx]\" "
            f"in the source tree)")


def _check_images(run: LoadedRun) -> tuple[torch.Tensor, str]:
    """uint8 images to check the export on: the run's first test images, else random ones."""
    try:
        images = run.data().test.images[:CHECK_IMAGES]
        return images, f"{len(images)} test images"
    except (DatasetNotFoundError, DatasetError) as e:
        size = int(run.config["data"].get("image_size", 32))
        log.warning("checking on random images: the run's dataset is not at hand (%s)", e)
        generator = torch.Generator().manual_seed(0)
        images = torch.randint(0, 256, (CHECK_IMAGES, 3, size, size), dtype=torch.uint8,
                               generator=generator)
        return images, f"{CHECK_IMAGES} random images"


@dataclass
class Exported:
    path: Path
    max_abs_diff: float
    tolerance: float
    checked_on: str


def export_run(run_dir: str | Path, format: str = "torchscript", out: str | Path | None = None,
               preprocessing: bool = True, checkpoint: str = "last",
               weights: str = "eval") -> Exported:
    """Export the run's model (see the module docstring), check the file, return where it is and
    how far its logits are from the eager model's."""
    if format not in FORMATS:
        raise ValueError(f"format={format!r} is not an export format; choose one of "
                         f"{', '.join(FORMATS)}")
    fmt = FORMATS[format]
    _check_packages(format, fmt)
    run_dir = Path(run_dir)
    run = load_run(run_dir, weights=weights, checkpoint=checkpoint, device="cpu")
    module = Deployable(run.model, run.preprocess if preprocessing else None).eval()
    images, checked_on = _check_images(run)
    inputs = images.float() / 255 if preprocessing else run.preprocess(images)
    path = Path(out) if out is not None else run_dir / "export" / f"model{fmt.suffix}"
    inside_run = run_dir.resolve() in path.resolve().parents
    with claimed(run_dir) if inside_run else contextlib.nullcontext():
        path.parent.mkdir(parents=True, exist_ok=True)
        with torch.no_grad():
            fmt.save(module, inputs[:2], path)
            expected = module(inputs)
            got = fmt.load(path)(inputs).float()
        diff = float((got - expected).abs().max())
        tolerance = RELATIVE_TOLERANCE * max(1.0, float(expected.abs().max()))
        result = Exported(path, diff, tolerance, checked_on)
        _write_card(run, result, format, preprocessing, tuple(inputs.shape[1:]))
    if not diff <= tolerance:
        raise ExportMismatchError(
            f"{path} does not reproduce the model: its logits differ by up to {diff:.3g} (allowed "
            f"{tolerance:.3g}) on {checked_on}. Try another --format (torchscript, pt2, onnx).")
    return result


def _write_card(run: LoadedRun, result: Exported, format: str, preprocessing: bool,
                shape: tuple[int, ...]) -> None:
    """`<file>.json` (model.pt.json) beside the file: what it takes and returns, and its check."""
    data = run.config["data"]
    card = {
        "file": result.path.name, "format": format, "run": str(run.path.resolve()),
        "checkpoint": str(run.checkpoint), "epoch": run.epoch, "weights": run.weights,
        "input": {"name": "images", "shape": ["batch", *shape], "dtype": "float32",
                  "range": "[0, 1] (pixel / 255)" if preprocessing else
                  "normalised: (pixel / 255 - mean) / std",
                  "mean": data["mean"], "std": data["std"], "preprocessing_included":
                  preprocessing},
        "output": {"name": "logits", "shape": ["batch", len(run.class_names)]},
        "class_names": run.class_names,
        "check": {"max_abs_diff": result.max_abs_diff, "tolerance": result.tolerance,
                  "on": result.checked_on},
        "summary_test_acc": run.summary.test_acc if run.summary else None,
    }
    result.path.with_name(result.path.name + ".json").write_text(json.dumps(card, indent=2) + "\n")


def main(argv: list[str] | None = None) -> None:
    """`python -m cifar_tricks.export RUN [--format F] [--out PATH] [--no-preprocessing]`."""
    parser = argparse.ArgumentParser(prog="python -m cifar_tricks.export",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="the run folder (summary.json, checkpoints/)")
    parser.add_argument("--format", choices=list(FORMATS), default="torchscript")
    parser.add_argument("--out", type=Path, default=None,
                        help="the file to write (default: RUN/export/model.<pt|onnx|pt2>)")
    parser.add_argument("--no-preprocessing", dest="preprocessing", action="store_false",
                        help="export the bare model, which takes normalised images (by default "
                             "it takes float images in [0, 1] and normalises them itself)")
    parser.add_argument("--checkpoint", choices=list(CHECKPOINTS), default="last")
    parser.add_argument("--weights", choices=list(WEIGHTS), default="eval",
                        help="eval: the weights the run reported (EMA's with trick=[ema]); "
                             "model: the trained ones")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        result = export_run(args.run, args.format, args.out, args.preprocessing, args.checkpoint,
                            args.weights)
    except CifarTricksError as e:
        from .jobs import exit_with

        exit_with(e)
    print(f"wrote {result.path} ({args.format}); checked on {result.checked_on}: max abs logit "
          f"difference {result.max_abs_diff:.3g} (tolerance {result.tolerance:.3g})")


if __name__ == "__main__":
    main()
