"""Tiny CIFAR-10/100 directories in the real python on-disk format, written at test time.

The real batch files are Python 2 cPickle protocol-2 dicts whose keys and raw array bytes are
Python 2 byte strings: ``pickle.load(f, encoding="bytes")`` gives ``b"data"`` (uint8 (N, 3072),
rows of 1024 R, 1024 G, 1024 B values) and ``b"labels"`` / ``b"fine_labels"``, while
torchvision's ``encoding="latin1"`` gives str keys. The writer below emits the same opcodes, so
the loader under test meets what it will meet on disk. Our files cannot match torchvision's
md5s; ``trust_fixture`` points the class's md5 lists at the fixture so its real check still runs.
"""

from __future__ import annotations

import hashlib
import pickle
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from torchvision.datasets import CIFAR10


class _Python2Pickler(pickle._Pickler):
    """Writes str and bytes as Python 2 ``str`` (SHORT_BINSTRING / BINSTRING), like cPickle did."""

    dispatch = pickle._Pickler.dispatch.copy()

    def _save_py2_str(self, obj: str | bytes) -> None:
        raw = obj.encode("latin-1") if isinstance(obj, str) else obj
        if len(raw) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(raw)]) + raw)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(raw)) + raw)
        self.memoize(obj)

    dispatch[str] = _save_py2_str
    dispatch[bytes] = _save_py2_str


@dataclass
class CifarFixture:
    """What was written: train/test images (N, 3072) uint8 and labels, and each file's md5."""

    root: Path
    train_data: np.ndarray
    train_labels: list[int]
    test_data: np.ndarray
    test_labels: list[int]
    md5: dict[str, str]


def _dump(path: Path, obj: dict) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        _Python2Pickler(f, protocol=2).dump(obj)
    return hashlib.md5(path.read_bytes()).hexdigest()


def _images(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)


def write_cifar10(root: Path, per_batch: int = 20, test: int = 30, seed: int = 0) -> CifarFixture:
    """``cifar-10-batches-py/`` with data_batch_1..5 of ``per_batch`` images, test_batch, meta."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    md5, datas, labels = {}, [], []
    for i in range(1, 6):
        data, lab = _images(rng, per_batch), rng.integers(0, 10, per_batch).tolist()
        batch = {"batch_label": f"training batch {i} of 5", "labels": lab, "data": data}
        md5[f"data_batch_{i}"] = _dump(folder / f"data_batch_{i}", batch)
        datas.append(data)
        labels += lab
    test_data, test_labels = _images(rng, test), rng.integers(0, 10, test).tolist()
    batch = {"batch_label": "testing batch 1 of 1", "labels": test_labels, "data": test_data}
    md5["test_batch"] = _dump(folder / "test_batch", batch)
    meta = {"num_cases_per_batch": per_batch, "label_names": [f"c{k}" for k in range(10)]}
    md5["batches.meta"] = _dump(folder / "batches.meta", meta)
    return CifarFixture(root, np.concatenate(datas), labels, test_data, test_labels, md5)


def write_cifar100(root: Path, train: int = 100, test: int = 30, seed: int = 0) -> CifarFixture:
    """``cifar-100-python/`` with train, test (fine and coarse labels) and meta."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-100-python"
    md5, splits = {}, {}
    for name, n in (("train", train), ("test", test)):
        data, fine = _images(rng, n), rng.integers(0, 100, n).tolist()
        coarse = [k // 5 for k in fine]
        splits[name] = (data, fine)
        batch = {"batch_label": name, "fine_labels": fine, "coarse_labels": coarse, "data": data}
        md5[name] = _dump(folder / name, batch)
    meta = {
        "fine_label_names": [f"f{k}" for k in range(100)],
        "coarse_label_names": [f"c{k}" for k in range(20)],
    }
    md5["meta"] = _dump(folder / "meta", meta)
    return CifarFixture(root, *splits["train"], *splits["test"], md5)


def trust_fixture(monkeypatch: pytest.MonkeyPatch, cls: type[CIFAR10], md5: dict[str, str]) -> None:
    """Replace the md5s in ``cls``'s file lists with the fixture's (undone after the test)."""
    monkeypatch.setattr(cls, "train_list", [[n, md5[n]] for n, _ in cls.train_list])
    monkeypatch.setattr(cls, "test_list", [[n, md5[n]] for n, _ in cls.test_list])
    monkeypatch.setattr(cls, "meta", {**cls.meta, "md5": md5[cls.meta["filename"]]})
