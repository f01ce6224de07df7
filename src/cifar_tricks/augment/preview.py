"""See what an augmentation list does before spending GPU hours on it.

    python -m cifar_tricks.augment.preview aug=[autoaugment,cutout] data.root=/datasets
    python -m cifar_tricks.augment.preview aug=[mixup] data=synthetic --out mixup.png --n 8

Takes the same overrides as run.py, draws `--n` training images and writes a PNG: the top row the
images as stored, each row below one augmented draw of them through the full training pipeline
(crop/flip, then the configured augmentations in their fixed order). Titles give each augmented
image's target: its class, or for mixing ops the mixed classes with their weights.
"""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import torch
from omegaconf import OmegaConf

from ..build import build, build_augments, build_loaders
from ..config import compose
from ..data import Split

__all__ = ["preview"]


def _title(weights: torch.Tensor, classes: list[str]) -> str:
    top = weights.topk(min(2, len(weights)))
    parts = [(classes[int(i)], float(w)) for w, i in zip(top.values, top.indices) if w > 1e-3]
    if len(parts) == 1:
        return parts[0][0]
    return "\n".join(f"{name} {w:.2f}" for name, w in parts)


def preview(overrides: list[str], out: Path, n: int = 8, draws: int = 3, seed: int = 0) -> Path:
    """Write the preview grid for `overrides` (as given to run.py) to `out`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cfg = compose(overrides)
    data = build(cfg.data, "data")
    picked = Split(data.train.images[:n], torch.arange(n))
    labels = data.train.labels[:n].tolist()
    names = [f"#{i} {data.classes[labels[i]]}" for i in range(n)]
    # each picked image its own class, so a target tells which images an output came from
    shown_data = dataclasses.replace(data, train=picked, num_classes=n, classes=names)
    settings = dataclasses.replace(OmegaConf.to_object(cfg.trainer), batch_size=n,
                                   limit_train_batches=None)
    loader = build_loaders(shown_data, settings, seed, build_augments(cfg)).train
    mean = torch.tensor(data.mean).view(1, 3, 1, 1)
    std = torch.tensor(data.std).view(1, 3, 1, 1)

    fig, axes = plt.subplots(draws + 1, n, figsize=(1.6 * n, 1.9 * (draws + 1)), squeeze=False)
    for col in range(n):
        axes[0][col].imshow(picked.images[col].permute(1, 2, 0).numpy())
        axes[0][col].set_title(names[col], fontsize=7)
    for row in range(1, draws + 1):
        loader.set_epoch(row)
        images, targets = next(iter(loader))
        order = targets.argmax(1).argsort()  # the image whose main source is #0 first, ...
        shown = (images * std + mean).clamp(0, 1)
        for col, k in enumerate(order.tolist()):
            axes[row][col].imshow(shown[k].permute(1, 2, 0).numpy())
            axes[row][col].set_title(_title(targets[k], names), fontsize=6)
    for ax in axes.flat:
        ax.axis("off")
    title = ", ".join(cfg.aug) or "crop/flip only"
    fig.suptitle(f"top: stored images; below: {draws} draws of {title}", fontsize=9)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("overrides", nargs="*", help="config overrides, as for run.py")
    parser.add_argument("--out", type=Path, default=Path("aug_preview.png"))
    parser.add_argument("--n", type=int, default=8, help="images per row")
    parser.add_argument("--draws", type=int, default=3, help="augmented rows")
    args = parser.parse_args()
    print(preview(args.overrides, args.out, args.n, args.draws))


if __name__ == "__main__":
    main()
