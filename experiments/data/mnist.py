"""``fashion_mnist`` / ``mnist``: 28x28 grayscale clothes or digits via torchvision, as ImageTasks.

Fashion-MNIST (Xiao et al. 2017) is the real image set every machine of this project can have
without internet: Debian's ``dataset-fashion-mnist`` package installs its four idx files under
``DEBIAN_DIRS["FashionMNIST"]``. The four ``*-idx?-ubyte.gz`` files are taken from the first of

1. ``dataset.root`` when it is set (a folder holding them, e.g. a copy of the Debian one or
   torchvision's ``<root>/FashionMNIST/raw``);
2. the Debian folder, when it holds all four;
3. ``${paths.data_dir}/<Class>/raw``, where ``dataset.download=true`` has torchvision fetch them.

Checks: torchvision lists the md5 of each upstream .gz; a file that matches is the upstream file.
Debian recompressed the files (same content, other gzip headers, other md5), so a file that does
not match is accepted on its content: gzip's CRC-32 over the decompressed bytes (a truncated or
corrupted file fails to decompress) and torchvision's idx reader, which checks the magic number
and that the bytes fill the declared shape; then the split sizes and labels must be the
published ones. The files are decompressed into a temporary folder that only lives while they
load, so no half-written cache can outlive a crash. summary.json's ``sha256`` is over the
loaded tensors, the same for upstream and Debian files.

Augmentation is the shared batched random crop with zero padding; the horizontal flip is on for
Fashion-MNIST (mirrored clothes are still the same class) and off for digits (a mirrored 2 is
not a 2).
"""

from __future__ import annotations

import gzip
import tempfile
import zlib
from pathlib import Path

import torch
from torchvision.datasets import MNIST, FashionMNIST
from torchvision.datasets.utils import check_integrity, extract_archive

from experiments.data import register_dataset
from experiments.data.cifar import CorruptDataError
from experiments.data.images import ImageTask, boolean

#: Folders where a Debian package installs a class's four .gz files.
DEBIAN_DIRS: dict[str, Path] = {"FashionMNIST": Path("/usr/share/datasets/fashion-mnist")}
#: The package that fills each of DEBIAN_DIRS.
DEBIAN_PACKAGES = {"FashionMNIST": "dataset-fashion-mnist"}
#: The published split sizes (both sets): images per split, and the classes.
SPLIT_SIZES, NUM_CLASSES, SIDE = {"train": 60_000, "test": 10_000}, 10, 28
_DECOMPRESS_ERRORS = (OSError, EOFError, zlib.error, gzip.BadGzipFile)


def _files(cls: type[MNIST]) -> list[tuple[str, str]]:
    """(file name, upstream md5) of the four .gz files, read from torchvision's class."""
    return [(name, md5) for name, md5 in cls.resources]


def _holds_all(folder: Path, cls: type[MNIST]) -> bool:
    return all((folder / name).is_file() for name, _ in _files(cls))


def _remedies(cls: type[MNIST], offer_download: bool = True) -> str:
    """What the user can do when the files are nowhere: install the package, or download."""
    package = DEBIAN_PACKAGES.get(cls.__name__)
    steps = [f"apt-get install {package}"] if package else []
    steps += ["set dataset.download=true (needs internet)"] if offer_download else []
    return ", or ".join([*steps, "set dataset.root=<folder with the four .gz files>"])


def locate(cls: type[MNIST], root: str | None, data_dir: Path, download: bool) -> tuple[Path, str]:
    """The folder holding the four .gz files and where it came from (module doc, 1-3)."""
    names = ", ".join(name for name, _ in _files(cls))
    if root is not None:
        folder = Path(root).expanduser()
        if not _holds_all(folder, cls):
            missing = [n for n, _ in _files(cls) if not (folder / n).is_file()]
            raise FileNotFoundError(
                f"dataset.root={root!r} lacks {', '.join(missing)}; it must hold {names}"
            )
        return folder, "dataset.root"
    debian = DEBIAN_DIRS.get(cls.__name__)
    if debian is not None and _holds_all(debian, cls):
        return debian, f"Debian package {DEBIAN_PACKAGES[cls.__name__]}"
    raw = data_dir / cls.__name__ / "raw"
    if _holds_all(raw, cls):
        return raw, "paths.data_dir"
    if download:
        try:
            cls(str(data_dir), train=True, download=True)
        except (OSError, RuntimeError) as err:
            first = next((line for line in str(err).splitlines() if line.strip()), str(err))
            raise FileNotFoundError(
                f"{cls.__name__} download into {raw} failed ({first.strip()}); "
                f"{_remedies(cls, offer_download=False)}"
            ) from None
        return raw, f"downloaded by torchvision from {cls.mirrors[0]}"
    searched = [str(p) for p in (debian, raw) if p is not None]
    raise FileNotFoundError(
        f"{cls.__name__} files ({names}) not found in {' or '.join(searched)}; {_remedies(cls)}"
    )


def _check(cls: type[MNIST], folder: Path) -> str:
    """How the files are vouched for: torchvision's upstream md5s when all four match, else
    their content, checked while they load (module doc)."""
    if all(check_integrity(str(folder / name), md5) for name, md5 in _files(cls)):
        return "md5-verified against torchvision's list"
    return "content-checked (gzip CRC-32, idx headers, split sizes; md5 differs from upstream)"


def _split(dataset: MNIST, split: str, folder: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 1, 28, 28) uint8 images and int64 labels, or a one-line error if not as published."""
    images, labels = dataset.data, dataset.targets
    expected = (SPLIT_SIZES[split], SIDE, SIDE)
    if tuple(images.shape) != expected or labels.shape != (expected[0],):
        raise CorruptDataError(
            f"{folder}: the {split} files hold images {tuple(images.shape)} and labels "
            f"{tuple(labels.shape)}, not the published {expected}"
        )
    if images.dtype != torch.uint8:
        raise CorruptDataError(f"{folder}: the {split} images are {images.dtype}, not uint8")
    if not 0 <= int(labels.min()) <= int(labels.max()) < NUM_CLASSES:
        raise CorruptDataError(f"{folder}: the {split} labels lie outside 0..{NUM_CLASSES - 1}")
    return images.unsqueeze(1).contiguous(), labels.to(torch.int64)


def load_mnist(
    cls: type[MNIST], folder: Path
) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor], str]:
    """(train, test, check) from the four .gz files in ``folder``, decompressed to a temp dir."""
    check = _check(cls, folder)
    with tempfile.TemporaryDirectory(prefix="actlab-mnist-") as tmp:
        raw = Path(tmp, cls.__name__, "raw")
        raw.mkdir(parents=True)
        for name, _ in _files(cls):
            try:
                extract_archive(str(folder / name), str(raw))
            except _DECOMPRESS_ERRORS as err:
                raise CorruptDataError(
                    f"{folder / name} is corrupted or truncated ({err}); {_remedies(cls)}"
                ) from None
        try:
            train, test = cls(tmp, train=True), cls(tmp, train=False)
        except (AssertionError, RuntimeError, ValueError) as err:  # torchvision's idx checks
            raise CorruptDataError(f"{folder}: not valid idx files ({err})") from None
        return _split(train, "train", folder), _split(test, "test", folder), check


def _register(name: str, cls: type[MNIST], flip: bool) -> None:
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
        flip: bool = flip,
        crop_size: int | None = None,
        root: str | None = None,
        download: bool = False,
    ) -> ImageTask:
        folder, origin = locate(cls, root, Path(data_dir), boolean("download", download))
        train, test, check = load_mnist(cls, folder)
        return ImageTask(
            name=name,
            source=f"torchvision {cls.__name__} from {folder} ({origin}), {check}",
            num_classes=NUM_CLASSES,
            train=train,
            test=test,
            device=device,
            seed=seed,
            batch_size=batch_size,
            eval_batch_size=eval_batch_size,
            val_size=val_size,
            preprocess=preprocess,
            augment=augment,
            flip=boolean("flip", flip),
            crop_size=crop_size,
        )


_register("fashion_mnist", FashionMNIST, flip=True)
_register("mnist", MNIST, flip=False)
