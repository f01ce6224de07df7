"""Images/s of the on-device batch loader next to torchvision's DataLoader + PIL pipeline.

    python benchmarks/data_pipeline.py                       # synthetic 50,000 images
    python benchmarks/data_pipeline.py --root /path/to/data  # CIFAR-10 from root/cifar-10-batches-py

Both produce normalised float batches of 128 with random crop (pad 4) and horizontal flip from the
same uint8 images, in the same process run; the ratio is the number to read (absolute times vary
with the machine and its load). The reference is what most CIFAR repositories do: a Dataset
returning PIL images, `RandomCrop(32, padding=4)`, `RandomHorizontalFlip`, `ToTensor`,
`Normalize` per image in 2 DataLoader workers.
"""
from __future__ import annotations

import argparse
import time

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", help="folder holding cifar-10-batches-py (default: synthetic)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--pil-images", type=int, default=20_000,
                        help="images timed for the (slow) PIL pipeline")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()

    data = (cifar10(args.root, num_classes=10, mean=MEAN, std=STD, download=False) if args.root
            else synthetic(num_train=50_000, num_test=10, mean=MEAN, std=STD))
    device = torch.device(args.device)
    split = data.train.to(device)
    ours = BatchLoader(split, 10, args.batch_size, MEAN, STD, train=True, crop_padding=4, flip=True)

    def our_epoch(epoch: int):
        ours.set_epoch(epoch)
        for images, targets in ours:
            yield images, targets
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    images_per_second(our_epoch(0), len(split))  # warm-up: padding, allocator, kernels
    ours_rate = max(images_per_second(our_epoch(e), len(split)) for e in (1, 2))

    pipeline = transforms.Compose([transforms.RandomCrop(32, padding=4),
                                   transforms.RandomHorizontalFlip(), transforms.ToTensor(),
                                   transforms.Normalize(MEAN, STD)])
    reference = DataLoader(PILImages(data.train.images, data.train.labels, pipeline),
                           batch_size=args.batch_size, shuffle=True, drop_last=True,
                           num_workers=args.workers, persistent_workers=args.workers > 0,
                           pin_memory=device.type == "cuda")

    def pil_batches():
        for images, labels in reference:
            yield images.to(device, non_blocking=True), labels.to(device, non_blocking=True)

    images_per_second(pil_batches(), 4 * args.batch_size)  # warm-up: start the workers
    pil_rate = images_per_second(pil_batches(), args.pil_images)

    print(f"data: {'CIFAR-10 from ' + args.root if args.root else 'synthetic'}, "
          f"{len(split)} images, batch {args.batch_size}, device {device}, "
          f"torch threads {torch.get_num_threads()}")
    print(f"| pipeline | images/s |\n|---|---:|\n"
          f"| cifar_tricks BatchLoader (crop+flip on {device}) | {ours_rate:,.0f} |\n"
          f"| DataLoader + PIL RandomCrop/Flip/ToTensor/Normalize, {args.workers} workers "
          f"| {pil_rate:,.0f} |")
    print(f"speed-up: {ours_rate / pil_rate:.1f}x")


if __name__ == "__main__":
    main()
