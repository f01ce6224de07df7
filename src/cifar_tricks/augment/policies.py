"""Learned and random augmentation policies, drawn per image and applied batched on the device.

- AutoAugment (Cubuk et al. 2019, https://arxiv.org/abs/1805.09501): per image one of 25
  sub-policies, each two ops applied with their own probability.
- RandAugment (Cubuk et al. 2020, https://arxiv.org/abs/1909.13719): per image `num_ops` ops
  drawn uniformly, all at one fixed magnitude.
- TrivialAugment Wide (Mueller & Hutter 2021, https://arxiv.org/abs/2103.10158): per image one
  op at a magnitude bin drawn uniformly.

The policies, magnitude spaces, random-sign rule and image ops are torchvision's own
(`torchvision.transforms.v2.AutoAugment` and friends: `_get_policies`, `_AUGMENTATION_SPACE`,
`_apply_image_or_video_transform`, which calls `transforms.v2.functional`), so one image comes out
distributed exactly as torchvision's per-image transform would make it. (The seed used the
DeepVoltaire `CIFAR10Policy`: the same 25 sub-policies, slightly different magnitude scales, and
rotations that were never negated.)

What differs is the batching. `sample` draws every image's choices at once as tensors from the
loader's generator and turns them into op codes: `ops[i, s]` indexes a table of the distinct
(op, signed magnitude) pairs, entry 0 being the identity. The pure function `apply_ops` then runs,
slot after slot, each torchvision op once on the group of images that drew it: a few dozen calls
per batch instead of one per image.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import AutoAugmentPolicy, InterpolationMode
from torchvision.transforms.v2._utils import _setup_fill_arg

from . import BatchAugment

__all__ = ["AutoAugment", "RandAugment", "TrivialAugmentWide", "apply_ops"]

Op = tuple[str, float]  # (torchvision transform_id, signed magnitude)
IDENTITY: Op = ("Identity", 0.0)

# Used only for its op mapping, `_apply_image_or_video_transform(image, transform_id, magnitude,
# interpolation, fill)`, which reads nothing from the instance: all three policies share it.
_TORCHVISION_OPS = v2.RandAugment()


def apply_ops(images: torch.Tensor, ops: torch.Tensor, table: Sequence[Op], *,
              interpolation: InterpolationMode = InterpolationMode.NEAREST,
              fill: float | Sequence[float] = 128.0) -> torch.Tensor:
    """Applies `table[ops[i, 0]]`, then `table[ops[i, 1]]`, ... to image `i` of `images`.

    Args:
        images: `(B, C, H, W)` uint8.
        ops: `(B, S)` int64 codes into `table`, one per image and op slot; code 0 is the identity.
        table: the distinct ops, `(transform_id, magnitude)` as torchvision's AutoAugment family
            names and scales them; `table[0]` must be the identity.
        interpolation: of the geometric ops.
        fill: pixel value(s) of the area a geometric op uncovers.

    Returns:
        A new uint8 tensor; `images` is left as it is.
    """
    if table[0] != IDENTITY:
        raise ValueError(f"table[0] must be the identity {IDENTITY}, got {table[0]}")
    batch, slots = ops.shape
    out = images.clone()
    if batch == 0 or slots == 0:
        return out
    # One key per (slot, op), slot-major, so that sorting groups the images of each op, slot by
    # slot in order; `order % batch` is the image of a sorted key.
    keys = (ops.t() + len(table) * torch.arange(slots, device=ops.device)[:, None]).reshape(-1)
    order = torch.argsort(keys, stable=True)
    groups, sizes = torch.unique_consecutive(keys[order], return_counts=True)
    # The one device-to-host transfer: which (slot, op) groups exist and how large they are. The
    # members of each group stay on the device.
    groups, sizes = torch.stack([groups, sizes]).tolist()
    fill_arg = _setup_fill_arg(fill)
    for key, members in zip(groups, order.split(sizes)):
        transform_id, magnitude = table[key % len(table)]
        if transform_id == "Identity":
            continue
        index = members % batch
        group = _TORCHVISION_OPS._apply_image_or_video_transform(
            out.index_select(0, index), transform_id, magnitude,
            interpolation=interpolation, fill=fill_arg)
        out.index_copy_(0, index, group)
    return out


class _OpTable:
    """The distinct (op, signed magnitude) pairs of a policy at one image size; 0 = identity."""

    def __init__(self) -> None:
        self.entries: list[Op] = [IDENTITY]
        self._codes: dict[Op, int] = {IDENTITY: 0}

    def codes(self, transform_id: str, magnitudes: torch.Tensor | None, index: int,
              signed: bool) -> tuple[int, int]:
        """The codes of op `transform_id` at `magnitudes[index]` as (drawn positive, drawn
        negative); torchvision's rule: no magnitude means 0.0, only signed ops are negated."""
        magnitude = 0.0 if magnitudes is None else float(magnitudes[index])
        negated = -magnitude if signed and magnitudes is not None else magnitude
        return self._code((transform_id, magnitude)), self._code((transform_id, negated))

    def _code(self, op: Op) -> int:
        if op[0] == "Identity":
            return 0
        if op not in self._codes:
            self._codes[op] = len(self.entries)
            self.entries.append(op)
        return self._codes[op]


class _Policy(BatchAugment):
    """Shared by the three policies: a per-size op table, sampling, and `apply_ops`."""

    stage = "policy"

    def __init__(self, interpolation: str, fill: float | Sequence[float]) -> None:
        modes = ("nearest", "bilinear")
        if interpolation not in modes:
            raise ValueError(f"interpolation must be one of {modes}, got {interpolation!r}")
        fills = fill if isinstance(fill, (list, tuple)) else [fill]
        if len(fills) not in (1, 3) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 255
                for v in fills):
            raise ValueError(f"fill must be a pixel value in [0, 255], or one per channel, got "
                             f"{fill!r}")
        self.interpolation = interpolation
        self.fill = float(fill) if isinstance(fill, (int, float)) else [float(v) for v in fill]
        self._interpolation = InterpolationMode(interpolation)
        self._tables: dict[tuple[int, int], tuple[list[Op], torch.Tensor]] = {}
        self._codes_on: dict[tuple[int, int, torch.device], torch.Tensor] = {}

    def _build(self, table: _OpTable, height: int, width: int) -> torch.Tensor:
        """Fills `table` and returns the code tensor that `sample` indexes with its draws."""
        raise NotImplementedError

    def _draw(self, batch_size: int, codes: torch.Tensor,
              generator: torch.Generator) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def _table(self, height: int, width: int) -> tuple[list[Op], torch.Tensor]:
        if (height, width) not in self._tables:
            table = _OpTable()
            codes = self._build(table, height, width)
            self._tables[height, width] = table.entries, codes
        return self._tables[height, width]

    def op_table(self, height: int, width: int) -> list[Op]:
        """The ops that `sample(...)["ops"]` indexes, for images of this size."""
        return self._table(height, width)[0]

    def sample(self, batch_size: int, height: int, width: int,
               generator: torch.Generator) -> dict[str, torch.Tensor]:
        """Every image's random choices, on `generator`'s device. The key `ops` holds the
        `(batch_size, slots)` codes into `op_table(height, width)`; the others are the raw draws."""
        key = (height, width, generator.device)
        if key not in self._codes_on:
            self._codes_on[key] = self._table(height, width)[1].to(generator.device)
        return self._draw(batch_size, self._codes_on[key], generator)

    def __call__(self, images: torch.Tensor, targets: torch.Tensor,
                 generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        batch, _, height, width = images.shape
        ops = self.sample(batch, height, width, generator)["ops"]
        return apply_ops(images, ops, self.op_table(height, width),
                         interpolation=self._interpolation, fill=self.fill), targets


def _negate(shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    """torchvision's random sign: a signed magnitude is negated when `rand() <= 0.5`."""
    return torch.rand(shape, device=generator.device, generator=generator) <= 0.5


class AutoAugment(_Policy):
    """AutoAugment: per image, one of the policy's sub-policies drawn uniformly; each of its two
    ops is applied, in order, with its own probability, at its fixed magnitude (of 10 bins) with
    a random sign where the op is signed.

    Args:
        policy: "cifar10", "imagenet" or "svhn" (torchvision's `AutoAugmentPolicy`).
        interpolation: of rotations, shears and translations ("nearest" or "bilinear").
        fill: pixel value(s) of the uncovered area; 128, the AutoAugment paper's CIFAR fill.
    """

    def __init__(self, policy: str = "cifar10", interpolation: str = "nearest",
                 fill: float | Sequence[float] = 128) -> None:
        super().__init__(interpolation, fill)
        policies = [p.value for p in AutoAugmentPolicy]
        if policy not in policies:
            raise ValueError(f"policy must be one of {policies}, got {policy!r}")
        self.policy = policy
        self._tv = v2.AutoAugment(AutoAugmentPolicy(policy))
        self._policies = self._tv._policies
        self._probabilities = torch.tensor([[p for _, p, _ in sub] for sub in self._policies])

    def _build(self, table: _OpTable, height: int, width: int) -> torch.Tensor:
        # codes[sub-policy, slot, negated]
        codes = torch.zeros(len(self._policies), 2, 2, dtype=torch.long)
        for i, sub_policy in enumerate(self._policies):
            for slot, (transform_id, _, magnitude_index) in enumerate(sub_policy):
                magnitudes_fn, signed = self._tv._AUGMENTATION_SPACE[transform_id]
                codes[i, slot] = torch.tensor(table.codes(
                    transform_id, magnitudes_fn(10, height, width), magnitude_index, signed))
        return codes

    def _draw(self, batch_size, codes, generator):
        device = generator.device
        policy = torch.randint(len(self._policies), (batch_size,), device=device,
                               generator=generator)
        applied = (torch.rand(batch_size, 2, device=device, generator=generator)
                   <= self._probabilities.to(device)[policy])
        negated = _negate((batch_size, 2), generator)
        slot = torch.arange(2, device=device)
        ops = torch.where(applied, codes[policy[:, None], slot, negated.long()], 0)
        return {"ops": ops, "policy": policy, "applied": applied, "negated": negated}


def _check_bins(num_magnitude_bins: int) -> None:
    # torchvision's magnitude tables divide by num_magnitude_bins - 1
    if num_magnitude_bins < 2:
        raise ValueError(f"num_magnitude_bins must be at least 2, got {num_magnitude_bins}")


class RandAugment(_Policy):
    """RandAugment: per image, `num_ops` ops drawn uniformly (with replacement) from torchvision's
    14 (identity included), each at bin `magnitude` of `num_magnitude_bins`, signed at random.

    Args:
        num_ops: ops applied in sequence to each image.
        magnitude: the magnitude bin, `0 <= magnitude < num_magnitude_bins`.
        num_magnitude_bins: the number of magnitude bins.
        interpolation: of rotations, shears and translations.
        fill: pixel value(s) of the uncovered area.
    """

    def __init__(self, num_ops: int = 2, magnitude: int = 9, num_magnitude_bins: int = 31,
                 interpolation: str = "nearest", fill: float | Sequence[float] = 128) -> None:
        super().__init__(interpolation, fill)
        _check_bins(num_magnitude_bins)
        if num_ops < 0:
            raise ValueError(f"num_ops must be non-negative, got {num_ops}")
        if not 0 <= magnitude < num_magnitude_bins:
            raise ValueError(f"magnitude must be in [0, {num_magnitude_bins}), got {magnitude}")
        self.num_ops, self.magnitude = num_ops, magnitude
        self.num_magnitude_bins = num_magnitude_bins
        self._space = v2.RandAugment._AUGMENTATION_SPACE

    def _build(self, table: _OpTable, height: int, width: int) -> torch.Tensor:
        return torch.tensor([  # (op, negated)
            table.codes(transform_id, magnitudes_fn(self.num_magnitude_bins, height, width),
                        self.magnitude, signed)
            for transform_id, (magnitudes_fn, signed) in self._space.items()])

    def _draw(self, batch_size, codes, generator):
        shape = (batch_size, self.num_ops)
        op = torch.randint(len(codes), shape, device=generator.device, generator=generator)
        negated = _negate(shape, generator)
        return {"ops": codes[op, negated.long()], "op": op, "negated": negated}


class TrivialAugmentWide(_Policy):
    """TrivialAugment Wide: per image one op of torchvision's 14 (identity included) and one of
    `num_magnitude_bins` magnitude bins, both uniform, signed at random.

    Args:
        num_magnitude_bins: the number of magnitude bins.
        interpolation: of rotations, shears and translations.
        fill: pixel value(s) of the uncovered area.
    """

    def __init__(self, num_magnitude_bins: int = 31, interpolation: str = "nearest",
                 fill: float | Sequence[float] = 128) -> None:
        super().__init__(interpolation, fill)
        _check_bins(num_magnitude_bins)
        self.num_magnitude_bins = num_magnitude_bins
        self._space = v2.TrivialAugmentWide._AUGMENTATION_SPACE

    def _build(self, table: _OpTable, height: int, width: int) -> torch.Tensor:
        bins = self.num_magnitude_bins
        return torch.tensor([  # (op, magnitude bin, negated)
            [table.codes(transform_id, magnitudes_fn(bins, height, width), b, signed)
             for b in range(bins)]
            for transform_id, (magnitudes_fn, signed) in self._space.items()])

    def _draw(self, batch_size, codes, generator):
        device = generator.device
        op = torch.randint(codes.shape[0], (batch_size, 1), device=device, generator=generator)
        magnitude_bin = torch.randint(self.num_magnitude_bins, (batch_size, 1), device=device,
                                      generator=generator)
        negated = _negate((batch_size, 1), generator)
        return {"ops": codes[op, magnitude_bin, negated.long()], "op": op,
                "magnitude_bin": magnitude_bin, "negated": negated}
