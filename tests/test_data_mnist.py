"""dataset=fashion_mnist / mnist: idx.gz fixtures through torchvision, file sources, checks, flip.

The fixture files are written in the real idx format (big-endian magic 0x0803 / 0x0801, dims,
raw uint8), gzipped as published; they are far smaller than the real sets, so the published
split sizes are replaced by the fixture's for each test (``small_sets``).
"""

from __future__ import annotations

import gzip
import hashlib
import struct
import sys
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
import torch
import torchvision.datasets.mnist as tv_mnist
import yaml
from torchvision.datasets import FashionMNIST

from experiments.data import DATASETS, build_task
from experiments.data import mnist as M
from experiments.data.augment import apply_crop_flip, draw_crop_flip
from experiments.data.images import CROP_PAD, tensor_sha256
from experiments.models import build_model

CPU = torch.device("cpu")
N_TRAIN, N_TEST = 120, 40

pytestmark = pytest.mark.usefixtures("one_thread")


def _idx(path: Path, array: np.ndarray) -> None:
    """One idx file: 0x00 0x00 <type 0x08 = ubyte> <ndim>, big-endian int32 dims, the bytes."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}i", *array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


def write_idx_set(folder: Path, seed: int = 0) -> dict[str, np.ndarray]:
    """The four ``*-idx?-ubyte.gz`` files of a small set; returns what they hold."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    data = {}
    for split, n in (("train", N_TRAIN), ("t10k", N_TEST)):
        data[f"{split}-images"] = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        data[f"{split}-labels"] = rng.integers(0, 10, n, dtype=np.uint8)
        _idx(folder / f"{split}-images-idx3-ubyte.gz", data[f"{split}-images"])
        _idx(folder / f"{split}-labels-idx1-ubyte.gz", data[f"{split}-labels"])
    return data


@pytest.fixture
def small_sets(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Fixture-sized splits, and a Debian folder that is empty unless a test fills it."""
    monkeypatch.setattr(M, "SPLIT_SIZES", {"train": N_TRAIN, "test": N_TEST})
    debian = tmp_path / "debian-empty"
    debian.mkdir()
    monkeypatch.setitem(M.DEBIAN_DIRS, "FashionMNIST", debian)
    return debian


def build(name: str, data_dir: Path, **options) -> M.ImageTask:
    options = {"val_size": 20, "batch_size": 16, "eval_batch_size": 50, **options}
    return build_task(name, device=CPU, seed=0, data_dir=data_dir, **options)


@pytest.mark.parametrize("name", ["fashion_mnist", "mnist"])
def test_fixture_loads_through_torchvision_as_uint8_single_channel(name, small_sets, tmp_path):
    data = write_idx_set(tmp_path / "files")
    task = build(name, tmp_path / "data", root=str(tmp_path / "files"))
    images, labels = task.splits["test"]
    assert images.dtype == torch.uint8 and images.shape == (N_TEST, 1, 28, 28)
    assert torch.equal(images[:, 0], torch.from_numpy(data["t10k-images"]))
    assert torch.equal(labels, torch.from_numpy(data["t10k-labels"]).long())
    train, val = task.splits["train"][0], task.splits["val"][0]
    assert len(train) + len(val) == N_TRAIN and task.in_channels == 1
    expected = tensor_sha256(
        torch.from_numpy(data["train-images"]).unsqueeze(1),
        torch.from_numpy(data["train-labels"]).long(),
        torch.from_numpy(data["t10k-images"]).unsqueeze(1),
        torch.from_numpy(data["t10k-labels"]).long(),
    )
    assert task.meta["sha256"] == expected
    assert str(tmp_path / "files") in task.meta["source"] and "dataset.root" in task.meta["source"]
    assert "content-checked" in task.meta["source"]  # fixture bytes cannot match upstream md5s


def test_source_order_root_then_debian_then_data_dir(small_sets, tmp_path):
    write_idx_set(tmp_path / "data" / "FashionMNIST" / "raw", seed=3)
    assert "(paths.data_dir)" in build("fashion_mnist", tmp_path / "data").meta["source"]
    write_idx_set(small_sets, seed=2)
    from_debian = build("fashion_mnist", tmp_path / "data")
    assert f"{small_sets} (Debian package dataset-fashion-mnist)" in from_debian.meta["source"]
    write_idx_set(tmp_path / "given", seed=1)
    given = build("fashion_mnist", tmp_path / "data", root=str(tmp_path / "given"))
    assert "(dataset.root)" in given.meta["source"]
    assert given.meta["sha256"] != from_debian.meta["sha256"]


def test_upstream_md5_is_checked_when_the_files_are_upstream(small_sets, tmp_path, monkeypatch):
    write_idx_set(tmp_path / "files")
    md5 = [
        (name, hashlib.md5((tmp_path / "files" / name).read_bytes()).hexdigest())
        for name, _ in FashionMNIST.resources
    ]
    monkeypatch.setattr(FashionMNIST, "resources", md5)
    task = build("fashion_mnist", tmp_path / "data", root=str(tmp_path / "files"))
    assert "md5-verified" in task.meta["source"]


@pytest.mark.parametrize(
    ("name", "remedies", "absent"),
    [
        ("fashion_mnist", ["apt-get install dataset-fashion-mnist", "dataset.download=true"], []),
        ("mnist", ["dataset.download=true", "dataset.root"], ["apt-get"]),
    ],
)
def test_missing_files_fail_in_one_line_naming_the_remedies(
    name, remedies, absent, small_sets, tmp_path
):
    with pytest.raises(FileNotFoundError) as err:
        build(name, tmp_path / "data")
    message = str(err.value)
    assert "\n" not in message and "train-images-idx3-ubyte.gz" in message
    assert all(r in message for r in remedies) and not any(a in message for a in absent)


def test_root_without_the_files_names_what_is_missing(small_sets, tmp_path):
    write_idx_set(tmp_path / "files")
    (tmp_path / "files" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError, match=r"dataset.root=.* lacks t10k-labels-idx1-ubyte.gz"):
        build("fashion_mnist", tmp_path / "data", root=str(tmp_path / "files"))


def test_failed_download_is_one_line(small_sets, tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise URLError("no network")

    monkeypatch.setattr(tv_mnist, "download_and_extract_archive", offline)
    with pytest.raises(FileNotFoundError) as err:
        build("fashion_mnist", tmp_path / "data", download=True)
    message = str(err.value)
    assert "\n" not in message and "download" in message and "failed" in message
    assert "apt-get install dataset-fashion-mnist" in message


IMAGES = "train-images-idx3-ubyte.gz"


def _truncate(folder: Path) -> None:
    path = folder / IMAGES
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _flip_a_byte(folder: Path) -> None:
    path = folder / IMAGES
    raw = bytearray(gzip.decompress(path.read_bytes()))
    raw[100] ^= 0xFF
    good_crc = gzip.compress(bytes(raw))[-8:]  # the CRC of the changed content ...
    body = bytearray(path.read_bytes())
    body[-8:] = good_crc  # ... over the old deflate stream: a CRC mismatch
    path.write_bytes(bytes(body))


def _wrong_count(folder: Path) -> None:
    _idx(folder / IMAGES, np.zeros((N_TRAIN - 1, 28, 28), dtype=np.uint8))


def _label_ten(folder: Path) -> None:
    _idx(folder / "t10k-labels-idx1-ubyte.gz", np.full(N_TEST, 10, dtype=np.uint8))


@pytest.mark.parametrize(
    ("damage", "match"),
    [
        (_truncate, "train-images-idx3-ubyte.gz is corrupted or truncated"),
        (_flip_a_byte, "train-images-idx3-ubyte.gz is corrupted or truncated"),
        (_wrong_count, "not the published"),
        (_label_ten, "the test labels lie outside 0..9"),
    ],
)
def test_damaged_files_fail_in_one_line(damage, match, small_sets, tmp_path):
    write_idx_set(tmp_path / "files")
    damage(tmp_path / "files")
    with pytest.raises(ValueError, match=match) as err:
        build("fashion_mnist", tmp_path / "data", root=str(tmp_path / "files"))
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(("name", "flips"), [("fashion_mnist", True), ("mnist", False)])
def test_digits_are_cropped_but_never_flipped(name, flips, small_sets, tmp_path):
    write_idx_set(tmp_path / "files")
    task = build(name, tmp_path / "data", root=str(tmp_path / "files"), preprocess="none")
    assert task.meta["flip"] is flips
    for step in range(3):
        x, _ = task.train_batch(step)
        epoch, i = divmod(step, task.steps_per_epoch)
        idx = task._permutation(epoch)[i * task.batch_size : (i + 1) * task.batch_size]
        draws = draw_crop_flip(len(idx), CROP_PAD, task._generator("aug", step))
        if not flips:
            draws = draws._replace(flip=torch.zeros_like(draws.flip))
        expected = apply_crop_flip(task.splits["train"][0][idx], draws, CROP_PAD)
        assert torch.equal(x, expected.float() / 255)


def test_caffe_crops_of_the_grayscale_images(small_sets, tmp_path):
    """crop_size on 28-px images: random crop_size windows of the unpadded image to train on,
    the centre window to evaluate (nin_units_fmnist_cpu's 24-px crops)."""
    write_idx_set(tmp_path / "files")
    common = {"root": str(tmp_path / "files"), "preprocess": "none", "crop_size": 24}
    task = build("fashion_mnist", tmp_path / "data", **common)
    x, _ = task.train_batch(0)
    assert x.shape[1:] == (1, 24, 24)
    idx = task._permutation(0)[: task.batch_size]
    images = task.splits["train"][0][idx].float() / 255
    windows = {(t, left) for t in range(5) for left in range(5)}
    for i in range(len(x)):  # each a 24x24 window of its own image, maybe mirrored
        found = {
            (t, left)
            for t, left in windows
            for view in (x[i], x[i].flip(-1))
            if torch.equal(view, images[i, :, t : t + 24, left : left + 24])
        }
        assert found, f"image {i} is no 24x24 window of its source"
    still = build("fashion_mnist", tmp_path / "data", **common, augment=False)
    assert torch.equal(still.train_batch(0)[0], images[:, :, 2:26, 2:26])


@pytest.mark.parametrize("model", ["nin", "plainnet"])
def test_image_models_take_one_channel_28px(model):
    options = {
        "nin": {"widths": [8] * 8},
        "plainnet": {"depth": 6, "widths": [4, 8, 8], "stage_convs": [1, 1], "fc_widths": [8]},
    }[model]
    import activations

    net = build_model(
        model,
        lambda c, **kw: activations.build("relu", c, **kw),
        num_outputs=10,
        in_channels=1,
        **options,
    )
    assert net(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


@pytest.mark.parametrize("name", ["fashion_mnist", "mnist"])
def test_dataset_yaml_lists_exactly_the_builder_options(name: str) -> None:
    path = Path(__file__).parents[1] / "configs" / "dataset" / f"{name}.yaml"
    config = yaml.safe_load(path.read_text())
    assert config.pop("name") == name
    assert config == DATASETS.defaults(name)


def test_cli_without_files_prints_one_line_and_leaves_no_run_dir(
    small_sets, tmp_path, monkeypatch, capsys
):
    """The offline machine without the package: no network is tried (download=false)."""
    from experiments import train

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ACTLAB_RESULTS", raising=False)
    monkeypatch.delenv("ACTLAB_DATA", raising=False)
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    monkeypatch.setattr(train, "_TRACEBACKS", False)
    monkeypatch.setattr(sys, "argv", ["actlab-train", "dataset=fashion_mnist"])
    with pytest.raises(SystemExit) as stop:
        train.main()
    assert stop.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: FashionMNIST files")
    assert "apt-get install dataset-fashion-mnist" in err[0] and "dataset.download=true" in err[0]
    assert not (tmp_path / "results").exists()


REAL = M.DEBIAN_DIRS["FashionMNIST"]


@pytest.mark.slow
@pytest.mark.skipif(
    not all((REAL / name).is_file() for name, _ in FashionMNIST.resources),
    reason="needs Debian's dataset-fashion-mnist (apt-get install dataset-fashion-mnist)",
)
def test_real_fashion_mnist_trains_a_few_steps(tmp_path):
    from hydra import compose, initialize_config_dir

    from experiments.rundir import RunDir
    from experiments.train import CONFIG_DIR, run

    overrides = [
        "dataset=fashion_mnist",
        "dataset.batch_size=32",
        "model.widths=[8,8,8,8,8,8,8,8]",
        "trainer.max_steps=30",
        "trainer.eval_every=null",
        "trainer.checkpoint_every=null",
        "trainer.threads=1",
        f"paths.data_dir={tmp_path / 'data'}",
    ]
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
        cfg = compose("config", overrides=overrides)
    assert run(cfg, tmp_path / "run") == "completed"
    data = RunDir(tmp_path / "run").read_summary()["data"]
    assert f"{REAL} (Debian package dataset-fashion-mnist)" in data["source"]
    assert (data["train_size"], data["val_size"], data["test_size"]) == (55_000, 5_000, 10_000)
    assert data["preprocess"]["mean"][0] == pytest.approx(0.2860, abs=1e-3)  # published stats
    assert data["preprocess"]["std"][0] == pytest.approx(0.3530, abs=1e-3)
