"""Input preprocessing: fitted on the training split only, then applied to every split.

Each method has two stages so that images can stay compact on the device: ``store`` gives the
tensor kept for a split (uint8 pixels where the map is a cheap per-channel affine, a float
tensor where it is not), and ``batch`` turns a stored (possibly augmented) batch into model
input. Augmentation happens between the two, in stored units.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from activations.registry import Registry

PREPROCESSORS: Registry = Registry("preprocess")

#: images per chunk when a fit or transform goes through a (D x D) matrix, to bound memory.
_CHUNK = 4096


class Preprocess:
    """Identity storage of uint8 images; subclasses define the per-batch map and what they fit."""

    name: ClassVar[str]

    def fit(self, train: torch.Tensor) -> None:
        """Fit on the uint8 training images (N, C, H, W); never sees val or test."""

    def store(self, images: torch.Tensor) -> torch.Tensor:
        return images

    def batch(self, stored: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """What was fitted, for the run's meta (so a run can be audited without the data)."""
        return {"name": self.name}


@PREPROCESSORS.register("none")
class Scale(Preprocess):
    """Pixels to [0, 1]; nothing fitted."""

    name = "none"

    def batch(self, stored: torch.Tensor) -> torch.Tensor:
        return stored.float().div_(255)


@PREPROCESSORS.register("standardize")
class Standardize(Preprocess):
    """Per-channel (x/255 - mean) / std with population statistics of the training split.

    The statistics come from per-channel 256-bin histograms, which are exact for uint8 pixels
    and need no float copy of the whole split.
    """

    name = "standardize"

    def fit(self, train: torch.Tensor) -> None:
        counts = torch.stack(
            [torch.bincount(train[:, c].flatten(), minlength=256) for c in range(train.shape[1])]
        ).double()
        levels = torch.arange(256, dtype=torch.float64, device=train.device) / 255
        n = counts.sum(1)
        mean = counts @ levels / n
        std = (counts @ levels**2 / n - mean**2).sqrt()
        self.mean, self.std = mean.tolist(), std.tolist()
        shape = (-1, 1, 1)
        self._scale = (1 / (255 * std)).float().reshape(shape)
        self._shift = (-mean / std).float().reshape(shape)

    def batch(self, stored: torch.Tensor) -> torch.Tensor:
        return stored.float().mul_(self._scale).add_(self._shift)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "mean": self.mean, "std": self.std}


@PREPROCESSORS.register("gcn_zca")
class GcnZca(Preprocess):
    """Global contrast normalisation, then ZCA whitening fitted on the training split.

    Choices follow the pylearn2 maxout/NIN CIFAR practice [SEC: pylearn2's
    make_cifar10_gcn_whitened uses CIFAR10(gcn=55.) then ZCA; later reimplementations state
    "GCN scale factor 55, ZCA filter_bias 0.1"]: each image minus its own mean, scaled to L2 norm
    ``scale`` = 55 (about sqrt(3072), so pixels end with unit RMS; norms below 1e-8 are left
    alone); ZCA is W = V diag(1 / sqrt(lambda + bias)) V^T of the train covariance with
    ``bias`` = 0.1 added to every eigenvalue, which damps the noisiest directions instead of
    blowing them up. Stored as float32 (the whitened values are not pixels), so this method
    keeps 4x the device memory of the uint8 ones, and crop padding is 0 here, the whitened
    train mean, rather than black. Per-chunk products run in float32 (fast on
    CPUs and consumer GPUs alike); the covariance is summed and decomposed in float64.
    """

    name = "gcn_zca"

    def __init__(self, scale: float = 55.0, bias: float = 0.1) -> None:
        self.scale, self.bias = scale, bias

    def _gcn(self, images: torch.Tensor) -> torch.Tensor:
        x = images.reshape(len(images), -1).float()
        x = x - x.mean(1, keepdim=True)
        norm = x.norm(dim=1, keepdim=True) / self.scale
        return x / torch.where(norm < 1e-8, 1.0, norm)

    def fit(self, train: torch.Tensor) -> None:
        total = torch.zeros(train[0].numel(), dtype=torch.float64, device=train.device)
        gram = torch.zeros(len(total), len(total), dtype=torch.float64, device=train.device)
        for chunk in train.split(_CHUNK):
            x = self._gcn(chunk)
            total += x.sum(0, dtype=torch.float64)
            gram += (x.T @ x).double()
        mean = total / len(train)
        eigvals, eigvecs = torch.linalg.eigh(gram / len(train) - torch.outer(mean, mean))
        gain = (eigvals.clamp_min(0) + self.bias).rsqrt()
        self._mean = mean.float()
        self._whiten = ((eigvecs * gain) @ eigvecs.T).float()

    def store(self, images: torch.Tensor) -> torch.Tensor:
        out = torch.empty(images.shape, dtype=torch.float32, device=images.device)
        for src, dst in zip(images.split(_CHUNK), out.split(_CHUNK), strict=True):
            dst.copy_(((self._gcn(src) - self._mean) @ self._whiten).reshape(src.shape))
        return out

    def batch(self, stored: torch.Tensor) -> torch.Tensor:
        return stored

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "gcn_scale": self.scale, "zca_bias": self.bias}


def build_preprocess(name: str) -> Preprocess:
    """A fresh, unfitted preprocessor; unknown names fail with the valid choices."""
    return PREPROCESSORS.build(name)
