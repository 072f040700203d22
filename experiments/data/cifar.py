"""``cifar10`` / ``cifar100`` through torchvision's dataset classes, as ImageTasks.

torchvision md5-checks every batch file before it unpickles any (and can download the archive);
we only turn its generic "not found or corrupted" error into one line that names the file and
says what to do, because on an offline machine that line is the whole user interface.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torchvision.datasets import CIFAR10, CIFAR100
from torchvision.datasets.utils import calculate_md5

from experiments.data import register_dataset
from experiments.data.images import ImageTask, boolean


class CorruptDataError(RuntimeError, ValueError):
    """A data file that fails its checksum. A ValueError, so the CLI reports it as bad input in
    one line; a RuntimeError, like the integrity error torchvision itself raises."""


def _expected_files(cls: type[CIFAR10]) -> list[tuple[str, str]]:
    """(file name, md5) of every file torchvision checks, read at call time from the class."""
    listed = [*cls.train_list, *cls.test_list, (cls.meta["filename"], cls.meta["md5"])]
    return [(name, md5) for name, md5 in listed]


def _explain(cls: type[CIFAR10], root: Path, err: Exception) -> Exception:
    """Why torchvision refused ``root`` (``err``: its integrity error or the failed download's
    OSError): which files are missing and where to put them, or which file is corrupted."""
    folder = root / cls.base_folder
    missing = [name for name, _ in _expected_files(cls) if not (folder / name).is_file()]
    if missing:
        fetch = f"fetch {cls.url}"
        extract = f"extract {cls.filename} into {root} (makes {cls.base_folder}/)"
        if isinstance(err, OSError):
            hint = f"download failed ({err}); {fetch} where there is network, then {extract}"
        else:
            hint = f"{fetch} and {extract}, or set dataset.download=true"
        return FileNotFoundError(
            f"{cls.__name__} files missing in {folder}: {', '.join(missing)}; {hint}"
        )
    for name, md5 in _expected_files(cls):
        actual = calculate_md5(str(folder / name))
        if actual != md5:
            return CorruptDataError(
                f"{folder / name} is corrupted or truncated (md5 {actual}, expected {md5}); "
                f"delete it and extract {cls.filename} ({cls.url}) into {root} again"
            )
    return CorruptDataError(f"{cls.__name__} in {folder} could not be loaded: {err}")


def _split(dataset: CIFAR10) -> tuple[torch.Tensor, torch.Tensor]:
    """torchvision's (N, H, W, C) uint8 array and label list as (N, C, H, W) uint8 + int64."""
    images = torch.from_numpy(dataset.data).permute(0, 3, 1, 2).contiguous()
    return images, torch.tensor(dataset.targets, dtype=torch.int64)


def load_cifar(
    cls: type[CIFAR10], root: Path, download: bool
) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """(train, test) image/label tensors, or one line on what is missing or corrupted."""
    try:
        train = cls(str(root), train=True, download=download)
    except (OSError, RuntimeError) as err:  # a failed download or integrity check
        raise _explain(cls, root, err) from None
    return _split(train), _split(cls(str(root), train=False))


def _register(name: str, cls: type[CIFAR10], num_classes: int) -> None:
    """One builder per class; the signature is spelled out because it is the config schema."""

    @register_dataset(name)
    def build(
        device: torch.device,
        seed: int,
        data_dir: Path,
        batch_size: int = 128,
        eval_batch_size: int = 1000,
        val_size: float = 5000,
        preprocess: str = "standardize",
        augment: bool = True,
        download: bool = False,
        crop_size: int | None = None,
    ) -> ImageTask:
        train, test = load_cifar(cls, Path(data_dir), boolean("download", download))
        return ImageTask(
            name=name,
            source=f"torchvision {cls.__name__} ({cls.url}), md5-verified",
            num_classes=num_classes,
            train=train,
            test=test,
            device=device,
            seed=seed,
            batch_size=batch_size,
            eval_batch_size=eval_batch_size,
            val_size=val_size,
            preprocess=preprocess,
            augment=augment,
            crop_size=crop_size,
        )


_register("cifar10", CIFAR10, 10)
_register("cifar100", CIFAR100, 100)  # fine labels
