"""Batched random crop and horizontal flip, on the images' device.

Two layouts: the standard CIFAR recipe zero-pads and crops back to full size; Caffe's
``transform_param { crop_size }`` (the NIN prototxts) crops ``size`` x ``size`` windows without
padding at random in training and from the centre at test.

Augmentation runs on whole batches with one gather, so the training loop never leaves the
device or touches images one by one (the per-item DataLoader path is ~3x slower on CPU, see
scripts/bench_data.py). The draws are separate from their application so tests can replay
them against a per-image reference, and so the caller owns the random stream: batches must be
a pure function of (seed, step).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F


class CropFlip(NamedTuple):
    """Per-image draws: crop origin (top, left) in the padded image, and whether to mirror."""

    top: torch.Tensor
    left: torch.Tensor
    flip: torch.Tensor


def draw_crop_flip(
    n: int, pad: int, generator: torch.Generator, *, span: int | None = None
) -> CropFlip:
    """Uniform crop origins in [0, span] (default 2*pad) and fair-coin flips, as torchvision's
    RandomCrop(padding) plus RandomHorizontalFlip draw them, or Caffe's crop (span = image size
    minus crop size, every origin as likely); drawn on the generator's device."""
    device = generator.device
    high = 2 * pad if span is None else span
    top, left = torch.randint(0, high + 1, (2, n), generator=generator, device=device)
    mirror = torch.randint(0, 2, (n,), generator=generator, device=device).bool()
    return CropFlip(top, left, mirror)


def apply_crop_flip(
    images: torch.Tensor, draws: CropFlip, pad: int, size: int | None = None
) -> torch.Tensor:
    """Zero-pad ``images`` (N, C, H, W) by ``pad``, crop H x W (or ``size`` x ``size``) at the
    drawn origins, mirror where drawn. Padding is 0 in the stored units (black for uint8 pixels,
    as torchvision's default fill), and crop + flip are one gather: the flip just reverses the
    column index."""
    n, c, h, w = images.shape
    out_h, out_w = (h, w) if size is None else (size, size)
    padded = F.pad(images, (pad, pad, pad, pad))
    rows = draws.top[:, None] + torch.arange(out_h, device=images.device)
    ascending = torch.arange(out_w, device=images.device)
    cols = draws.left[:, None] + torch.where(draws.flip[:, None], out_w - 1 - ascending, ascending)
    index = rows[:, :, None] * (w + 2 * pad) + cols[:, None, :]
    index = index.reshape(n, 1, out_h * out_w).expand(n, c, out_h * out_w)
    return padded.reshape(n, c, -1).gather(2, index).reshape(n, c, out_h, out_w)


def centre_crop(images: torch.Tensor, size: int) -> torch.Tensor:
    """The ``size`` x ``size`` centre of ``images`` (N, C, H, W), origin ((H - size) // 2,
    (W - size) // 2) as Caffe's test-phase crop."""
    top, left = (images.shape[2] - size) // 2, (images.shape[3] - size) // 2
    return images[:, :, top : top + size, left : left + size]
