"""Image classification as a Task (experiments.task): device-resident splits, batched augmentation.

All images of a dataset sit on the training device (uint8, or float after GCN+ZCA), and a
training batch is an index slice of a per-epoch permutation, augmented in one gather
(experiments.data.augment). Both random streams are seeded from (seed, epoch) and
(seed, step), so ``train_batch(step)`` is a pure function of the step and a resumed run sees
exactly the batches it would have seen. The streams live on the device's own generator, so
batches are reproducible per device type, not across CPU and GPU.
"""

from __future__ import annotations

import hashlib
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from experiments.data.augment import apply_crop_flip, centre_crop, draw_crop_flip
from experiments.data.preprocess import build_preprocess
from experiments.modes import in_mode

#: pixels of zero padding before the random crop back to full size (the standard CIFAR recipe).
CROP_PAD = 4


def derived_seed(seed: int, purpose: str, index: int = 0) -> int:
    """An independent 63-bit seed per (seed, purpose, index), so the split, the epoch
    permutations and the per-step augmentation never share a stream even when indices coincide."""
    digest = hashlib.blake2b(f"{seed}/{purpose}/{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def tensor_sha256(*tensors: torch.Tensor) -> str:
    """sha256 over the raw bytes of the tensors in order (data identity for summary.json)."""
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.detach().cpu().contiguous().numpy())
    return h.hexdigest()


def positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def boolean(name: str, value: object) -> bool:
    """A config flag; strings like "false" would otherwise be silently truthy."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false, got {value!r}")
    return value


def _val_count(val_size: float, n_train: int) -> int:
    """``val_size`` is a count (int) or a fraction of the training images (float in (0, 1))."""
    if isinstance(val_size, bool) or not isinstance(val_size, int | float):
        raise ValueError(f"val_size must be an int count or a float fraction, got {val_size!r}")
    if isinstance(val_size, float):
        if not 0 < val_size < 1:
            raise ValueError(f"val_size {val_size!r} as a fraction must lie in (0, 1)")
        val_size = round(val_size * n_train)
    if not 0 < val_size < n_train:
        raise ValueError(f"val_size {val_size!r} must be in [1, {n_train - 1}] ({n_train} train)")
    return val_size


class ImageTask:
    """A classification Task over (train, test) uint8 image tensors; val is carved from train."""

    metric = "error"

    def __init__(
        self,
        *,
        name: str,
        source: str,
        num_classes: int,
        train: tuple[torch.Tensor, torch.Tensor],
        test: tuple[torch.Tensor, torch.Tensor],
        device: torch.device | str,
        seed: int,
        batch_size: int = 128,
        eval_batch_size: int = 1000,
        val_size: float = 5000,
        preprocess: str = "standardize",
        augment: bool = True,
        crop_size: int | None = None,
        flip: bool = True,
    ) -> None:
        (train_x, train_y), (test_x, test_y) = train, test
        self.device = torch.device(device)
        self.seed = seed
        self.batch_size = positive_int("batch_size", batch_size)
        self.eval_batch_size = positive_int("eval_batch_size", eval_batch_size)
        self.augment = boolean("augment", augment)
        side = min(train_x.shape[2:])
        if crop_size is not None and (
            isinstance(crop_size, bool)
            or not isinstance(crop_size, int)
            or not 0 < crop_size < side
        ):
            raise ValueError(
                f"dataset.crop_size={crop_size!r} is not allowed; use null (pad-{CROP_PAD} "
                f"full-size crops) or an integer in 1..{side - 1} (Caffe's crop_size)"
            )
        self.crop_size = crop_size
        #: mirror half the augmented images; off where a mirror image is another class (digits)
        self.flip = boolean("flip", flip)
        self.num_outputs = num_classes
        self.in_channels = train_x.shape[1]
        self.preprocess = build_preprocess(preprocess)

        n_val = _val_count(val_size, len(train_x))
        order = torch.randperm(
            len(train_x), generator=torch.Generator().manual_seed(derived_seed(seed, "val-split"))
        )
        val_idx, train_idx = order[:n_val].sort().values, order[n_val:].sort().values
        if self.batch_size > len(train_idx):
            raise ValueError(
                f"batch_size {batch_size} exceeds the {len(train_idx)} training images"
            )
        self.steps_per_epoch = len(train_idx) // self.batch_size

        raw = {
            "train": (train_x[train_idx], train_y[train_idx]),
            "val": (train_x[val_idx], train_y[val_idx]),
            "test": (test_x, test_y),
        }
        raw = {k: (x.to(self.device), y.to(self.device)) for k, (x, y) in raw.items()}
        self.preprocess.fit(raw["train"][0])
        #: split -> (stored images, labels) on the device; see experiments.data.preprocess.
        self.splits = {k: (self.preprocess.store(x), y) for k, (x, y) in raw.items()}
        self._perm_epoch, self._perm = -1, torch.empty(0)

        self.meta: dict[str, Any] = {
            "name": name,
            "source": source,
            "sha256": tensor_sha256(train_x, train_y, test_x, test_y),
            "num_classes": num_classes,
            "train_size": len(train_idx),
            "val_size": n_val,
            "test_size": len(test_x),
            "preprocess": self.preprocess.describe(),
            "augment": self.augment,
            "crop_size": self.crop_size,
            "flip": self.augment and self.flip,
        }

    def _generator(self, purpose: str, index: int) -> torch.Generator:
        return torch.Generator(self.device).manual_seed(derived_seed(self.seed, purpose, index))

    def _permutation(self, epoch: int) -> torch.Tensor:
        """The shuffled order of ``epoch``, cached because consecutive steps share it."""
        if epoch != self._perm_epoch:
            n = len(self.splits["train"][1])
            gen = self._generator("epoch", epoch)
            self._perm = torch.randperm(n, generator=gen, device=self.device)
            self._perm_epoch = epoch
        return self._perm

    def train_batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(inputs, labels) of global ``step``: slice ``step % steps_per_epoch`` of its epoch's
        permutation (the remainder of each epoch is dropped), cropped (and flipped, unless
        ``flip`` is off) if augmenting; the flips are drawn either way, so the crops match.

        With ``crop_size`` (Caffe's layout) the crop is a ``crop_size`` window of the unpadded
        image, at a random origin if augmenting, else the centre one (as at evaluation)."""
        epoch, i = divmod(step, self.steps_per_epoch)
        idx = self._permutation(epoch)[i * self.batch_size : (i + 1) * self.batch_size]
        x, y = self.splits["train"]
        x, y = x[idx], y[idx]
        if self.augment:
            if self.crop_size is None:
                draws = draw_crop_flip(len(x), CROP_PAD, self._generator("aug", step))
                pad, size = CROP_PAD, None
            else:
                span = min(x.shape[2:]) - self.crop_size
                draws = draw_crop_flip(len(x), 0, self._generator("aug", step), span=span)
                pad, size = 0, self.crop_size
            if not self.flip:
                draws = draws._replace(flip=torch.zeros_like(draws.flip))
            x = apply_crop_flip(x, draws, pad, size=size)
        else:
            x = self._eval_view(x)
        return self.preprocess.batch(x), y

    def _eval_view(self, x: torch.Tensor) -> torch.Tensor:
        """What evaluation sees of stored images: the centre crop with ``crop_size``, else all."""
        return x if self.crop_size is None else centre_crop(x, self.crop_size)

    def training_loss(
        self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor], step: int
    ) -> torch.Tensor:
        x, y = batch
        return F.cross_entropy(model(x), y)

    @torch.no_grad()
    def evaluate(self, model: nn.Module, split: str) -> dict[str, float]:
        """Mean cross-entropy (nats) and error over the whole split, in eval mode, without
        augmentation; every module's own train/eval flag is restored afterwards."""
        if split not in ("val", "test"):
            raise ValueError(f"unknown split {split!r}; choose from: val, test")
        with in_mode(model, training=False):
            x_all, y_all = self.splits[split]
            loss = torch.zeros((), dtype=torch.float64, device=self.device)
            wrong = torch.zeros((), dtype=torch.int64, device=self.device)
            for x, y in zip(
                x_all.split(self.eval_batch_size), y_all.split(self.eval_batch_size), strict=True
            ):
                logits = model(self.preprocess.batch(self._eval_view(x)))
                loss += F.cross_entropy(logits.float(), y, reduction="sum")
                wrong += (logits.argmax(1) != y).sum()
        n = len(y_all)
        return {"loss": loss.item() / n, "error": wrong.item() / n}

    def probe_batch(self) -> torch.Tensor:
        """The first ``batch_size`` training images, preprocessed, never augmented (centre
        crops with ``crop_size``)."""
        return self.preprocess.batch(self._eval_view(self.splits["train"][0][: self.batch_size]))

    def sample_text(self, model: nn.Module, seed: int) -> None:
        """A classifier writes no text."""
        return None

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            raise ValueError(f"an image task has no state to load, got keys {sorted(state)}")
