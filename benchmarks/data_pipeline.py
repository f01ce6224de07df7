"""Images/s of the on-device batch loader and augmentations next to torchvision's DataLoader + PIL.

    python benchmarks/data_pipeline.py                       # synthetic 50,000 images
    python benchmarks/data_pipeline.py --root /path/to/data  # root/cifar-10-batches-py

For each augmentation list ([], [cutout], [autoaugment], [autoaugment,random_erase,mixup]) both
sides produce normalised float batches of 128 with random crop (pad 4) and flip from the same uint8
images, in the same process run; the ratio is the number to read (absolute times vary with the
machine and its load). The reference is what most CIFAR repositories do: a Dataset returning PIL
images and a per-image transform pipeline in 2 DataLoader workers (AutoAugment on PIL, Cutout and
Random Erasing on each tensor, Mixup on the collated batch).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms
from torchvision.transforms import v2

from cifar_tricks.augment import split_stages
from cifar_tricks.data import BatchLoader, cifar10, synthetic

MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


class PILImages(Dataset):
    """What torchvision.datasets.CIFAR10 does per item: an HWC uint8 array to a PIL image."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform) -> None:
        self.images = images.permute(0, 2, 3, 1).contiguous().numpy()
        self.labels = labels.tolist()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.transform(Image.fromarray(self.images[i])), self.labels[i]


def images_per_second(batches, limit: int) -> float:
    seen, start = 0, time.perf_counter()
    for images, _ in batches:
        seen += len(images)
        if seen >= limit:
            break
    return seen / (time.perf_counter() - start)


AUG_DIR = Path(__file__).resolve().parents[1] / "conf" / "aug"
PIPELINES = ([], ["cutout"], ["autoaugment"], ["autoaugment", "random_erase", "mixup"])


def our_augments(names: list[str]):
    """The configured augmentations, built from conf/aug/<name>.yaml as run.py builds them."""
    return [instantiate(OmegaConf.load(AUG_DIR / f"{n}.yaml")[n]) for n in names]


def cutout_per_image(size: int = 16):
    """The seed's Cutout: one zero square per normalised image tensor, drawn per image."""
    def cutout(x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        cy, cx = torch.randint(h, ()).item(), torch.randint(w, ()).item()
        x = x.clone()
        x[:, max(cy - size // 2, 0):cy + size // 2, max(cx - size // 2, 0):cx + size // 2] = 0
        return x
    return cutout


def pil_pipeline(names: list[str]):
    """(per-image transform, per-batch transform) of the usual DataLoader recipe."""
    per_image = [transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip()]
    if "autoaugment" in names:
        per_image.append(transforms.AutoAugment(transforms.AutoAugmentPolicy.CIFAR10,
                                                fill=[128, 128, 128]))
    per_image += [transforms.ToTensor(), transforms.Normalize(MEAN, STD)]
    if "cutout" in names:
        per_image.append(cutout_per_image())
    if "random_erase" in names:
        per_image.append(transforms.RandomErasing(p=0.5, value="random"))
    per_batch = v2.MixUp(alpha=1.0, num_classes=10) if "mixup" in names else None
    return transforms.Compose(per_image), per_batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", help="folder holding cifar-10-batches-py (default: synthetic)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--pil-images", type=int, default=10_000,
                        help="images timed for each (slow) PIL pipeline")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()

    data = (cifar10(args.root, num_classes=10, mean=MEAN, std=STD, download=False) if args.root
            else synthetic(num_train=50_000, num_test=10, mean=MEAN, std=STD))
    device = torch.device(args.device)
    split = data.train.to(device)
    print(f"data: {'CIFAR-10 from ' + args.root if args.root else 'synthetic'}, "
          f"{len(split)} images, batch {args.batch_size}, device {device}, "
          f"torch threads {torch.get_num_threads()}")
    print("| aug | cifar_tricks img/s | DataLoader + PIL img/s | speed-up |\n|---|---:|---:|---:|")
    for names in PIPELINES:
        uint8, floats = split_stages(our_augments(names))
        ours = BatchLoader(split, 10, args.batch_size, MEAN, STD, train=True, crop_padding=4,
                           flip=True, uint8_transforms=uint8, float_transforms=floats)

        def our_epoch(epoch: int, ours: BatchLoader = ours):
            ours.set_epoch(epoch)
            yield from ours
            if device.type == "cuda":
                torch.cuda.synchronize(device)

        images_per_second(our_epoch(0), 10 * args.batch_size)  # warm-up
        ours_rate = images_per_second(our_epoch(1), len(split))

        per_image, per_batch = pil_pipeline(names)
        reference = DataLoader(PILImages(data.train.images, data.train.labels, per_image),
                               batch_size=args.batch_size, shuffle=True, drop_last=True,
                               num_workers=args.workers, persistent_workers=args.workers > 0,
                               pin_memory=device.type == "cuda")

        def pil_batches(reference: DataLoader = reference, per_batch=per_batch):
            for images, labels in reference:
                if per_batch is not None:
                    images, labels = per_batch(images, labels)
                yield images.to(device, non_blocking=True), labels.to(device, non_blocking=True)

        images_per_second(pil_batches(), 4 * args.batch_size)  # warm-up: start the workers
        pil_rate = images_per_second(pil_batches(), args.pil_images)
        print(f"| [{','.join(names)}] | {ours_rate:,.0f} | {pil_rate:,.0f} | "
              f"{ours_rate / pil_rate:.1f}x |", flush=True)


if __name__ == "__main__":
    main()
