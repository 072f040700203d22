"""Image datasets as Tasks: augmentation, batch determinism, splits, preprocessing, CIFAR."""

from __future__ import annotations

import importlib.util
import itertools
import pickle
import re
import urllib.error
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import torchvision.datasets.cifar as tv_cifar
import yaml
from cifar_fixture import trust_fixture, write_cifar10, write_cifar100
from torch import nn
from torchvision.datasets import CIFAR10, CIFAR100

import experiments.data.cifar  # noqa: F401  (registers cifar10 and cifar100)
from experiments.data import DATASETS, build_task
from experiments.data.augment import CropFlip, apply_crop_flip, draw_crop_flip
from experiments.data.images import ImageTask, derived_seed
from experiments.data.preprocess import GcnZca
from experiments.data.shapes import CLASSES, generate_shapes

ROOT = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")


def shapes_task(tmp_path: Path, **options: object) -> ImageTask:
    opts = {"train_size": 240, "test_size": 60, "batch_size": 32, "val_size": 0.25} | options
    return build_task("shapes", device=CPU, seed=0, data_dir=tmp_path, **opts)


def random_images(n: int, seed: int = 0, size: int = 32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g)


def as_rows(images: torch.Tensor) -> set[bytes]:
    return {img.numpy().tobytes() for img in images}


# ---------------------------------------------------------------- augmentation


def reference_crop_flip(image: torch.Tensor, top: int, left: int, flip: bool, pad: int):
    """One image by slicing: zero canvas, paste, crop, maybe mirror."""
    c, h, w = image.shape
    canvas = torch.zeros(c, h + 2 * pad, w + 2 * pad, dtype=image.dtype)
    canvas[:, pad : pad + h, pad : pad + w] = image
    crop = canvas[:, top : top + h, left : left + w]
    return crop.flip(-1) if flip else crop


def test_crop_flip_matches_per_image_reference() -> None:
    images = random_images(64, size=32)
    draws = draw_crop_flip(64, 4, torch.Generator().manual_seed(1))
    # pin the extremes so every border case is exercised whatever the draw
    draws.top[:4], draws.left[:4] = torch.tensor([0, 8, 0, 8]), torch.tensor([0, 8, 8, 0])
    draws.flip[:4] = torch.tensor([True, False, True, False])
    out = apply_crop_flip(images, draws, 4)
    for i in range(64):
        ref = reference_crop_flip(images[i], *(int(t[i]) for t in draws), pad=4)
        assert torch.equal(out[i], ref), i


def test_crop_flip_works_on_float_and_non_square() -> None:
    images = torch.randn(5, 2, 6, 9)
    draws = CropFlip(
        torch.tensor([0, 1, 2, 3, 4]),
        torch.tensor([4, 3, 2, 1, 0]),
        torch.tensor([True, False, True, True, False]),
    )
    out = apply_crop_flip(images, draws, 2)
    for i in range(5):
        ref = reference_crop_flip(images[i], *(int(t[i]) for t in draws), pad=2)
        assert torch.equal(out[i], ref)


def test_draws_cover_every_offset_and_flip_half_the_time() -> None:
    d = draw_crop_flip(20000, 4, torch.Generator().manual_seed(0))
    for t in (d.top, d.left):
        counts = torch.bincount(t, minlength=9)
        assert len(counts) == 9 and counts.min() > 20000 / 9 * 0.9
    assert abs(d.flip.float().mean().item() - 0.5) < 0.02


# ---------------------------------------------------------------- batches


def test_train_batch_is_a_pure_function_of_seed_and_step(tmp_path: Path) -> None:
    a, b = shapes_task(tmp_path), shapes_task(tmp_path)
    x0, y0 = a.train_batch(3)
    a.train_batch(40)  # another epoch in between must not matter (cached permutation)
    x1, y1 = a.train_batch(3)
    x2, y2 = b.train_batch(3)
    assert torch.equal(x0, x1) and torch.equal(y0, y1)
    assert torch.equal(x0, x2) and torch.equal(y0, y2)
    assert not torch.equal(x0, a.train_batch(4)[0])
    other_seed = build_task(
        "shapes",
        device=CPU,
        seed=1,
        data_dir=tmp_path,
        train_size=240,
        test_size=60,
        batch_size=32,
        val_size=0.25,
    )
    assert not torch.equal(x0, other_seed.train_batch(3)[0])


def test_augmentation_draws_anew_every_step_and_again_on_resume() -> None:
    """A training set of one image repeated: batches then differ only by their crops and flips,
    which must change from step to step (within and across epochs) and be the same for a
    fresh task (a resumed run) at the same step. Each crop is one of the 9 x 9 x 2 possible."""
    image = random_images(1, seed=3)
    copies = (image.expand(40, -1, -1, -1).clone(), torch.zeros(40, dtype=torch.long))
    test = (image.clone(), torch.zeros(1, dtype=torch.long))

    def task() -> ImageTask:
        return ImageTask(
            name="one-image", source="test", num_classes=2, train=copies, test=test,
            device=CPU, seed=0, batch_size=13, val_size=1, preprocess="none",
        )  # fmt: skip

    first, resumed = task(), task()
    assert first.steps_per_epoch == 3
    batches = [first.train_batch(step)[0] for step in range(7)]
    for a, b in itertools.combinations(batches, 2):
        assert not torch.equal(a, b)
    assert torch.equal(resumed.train_batch(5)[0], batches[5])
    possible = {
        reference_crop_flip(image[0], top, left, flip, pad=4).float().div(255).numpy().tobytes()
        for top in range(9)
        for left in range(9)
        for flip in (False, True)
    }
    seen = as_rows(torch.cat(batches))
    assert seen <= possible and len(seen) > 30


def test_augmented_batches_are_cropped_flipped_pixels_in_unit_range(tmp_path: Path) -> None:
    task = shapes_task(tmp_path, preprocess="none")
    plain = shapes_task(tmp_path, preprocess="none", augment=False)
    x, _ = task.train_batch(0)
    x_plain, _ = plain.train_batch(0)
    assert x.shape == x_plain.shape == (32, 3, 32, 32)
    assert not torch.equal(x, x_plain)
    assert x.dtype == torch.float32 and x.min() >= 0 and x.max() <= 1


def test_an_epoch_visits_training_images_once_in_a_new_order(tmp_path: Path) -> None:
    task = shapes_task(tmp_path, preprocess="none", augment=False, batch_size=40)
    n_train = task.meta["train_size"]
    assert task.steps_per_epoch == n_train // 40 == 4  # 180 train, remainder dropped

    def epoch(e: int) -> torch.Tensor:
        batches = [task.train_batch(e * task.steps_per_epoch + i)[0] for i in range(4)]
        return (torch.cat(batches) * 255).round().to(torch.uint8)

    e0, e1 = epoch(0), epoch(1)
    train_rows = as_rows(task.splits["train"][0])
    assert len(as_rows(e0)) == 160 and as_rows(e0) <= train_rows
    assert not torch.equal(e0, e1)


def test_probe_batch_is_fixed_preprocessed_and_unaugmented(tmp_path: Path) -> None:
    task = shapes_task(tmp_path)
    probe = task.probe_batch()
    stored = task.splits["train"][0][:32]
    assert torch.equal(probe, task.preprocess.batch(stored))
    assert torch.equal(probe, task.probe_batch())


# ---------------------------------------------------------------- splits and validation


def test_splits_are_disjoint_and_sized(tmp_path: Path) -> None:
    task = shapes_task(tmp_path, preprocess="none")
    meta = task.meta
    assert (meta["train_size"], meta["val_size"], meta["test_size"]) == (180, 60, 60)
    train, val = (as_rows(task.splits[k][0]) for k in ("train", "val"))
    assert len(train) == 180 and len(val) == 60 and not train & val
    whole = generate_shapes(240, seed=derived_seed(0, "shapes-train"))[0]
    assert train | val == as_rows(whole)


def test_val_split_depends_on_the_run_seed(tmp_path: Path) -> None:
    a = shapes_task(tmp_path, preprocess="none")
    b = build_task(
        "shapes",
        device=CPU,
        seed=5,
        data_dir=tmp_path,
        train_size=240,
        test_size=60,
        batch_size=32,
        val_size=60,
        preprocess="none",
    )
    assert b.meta["val_size"] == 60
    assert as_rows(a.splits["val"][0]) != as_rows(b.splits["val"][0])
    assert a.meta["sha256"] == b.meta["sha256"]  # same data, different split


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"val_size": 0}, "val_size 0"),
        ({"val_size": 240}, "val_size 240"),
        ({"val_size": 1.5}, "val_size 1.5"),
        ({"val_size": "10"}, "val_size"),
        ({"batch_size": 0}, "batch_size must be a positive integer"),
        ({"batch_size": 500}, "batch_size 500 exceeds the 180 training images"),
        ({"eval_batch_size": -1}, "eval_batch_size"),
        ({"train_size": 0}, "train_size"),
        ({"augment": "false"}, "augment must be true or false, got 'false'"),
        (
            {"preprocess": "zca"},
            "unknown preprocess 'zca'; choose from: gcn_zca, none, standardize",
        ),
    ],
)
def test_bad_options_fail_with_one_clear_line(tmp_path, options, message) -> None:
    with pytest.raises(ValueError, match="^" + re.escape(message)) as err:
        shapes_task(tmp_path, **options)
    assert "\n" not in str(err.value)


def test_unknown_option_names_the_valid_ones(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="has no option 'crop'; valid: batch_size"):
        shapes_task(tmp_path, crop=True)


# ---------------------------------------------------------------- loss and evaluation


class FixedLogits(nn.Module):
    """Logits from a fixed random projection of the input, with a child in its own mode."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(3 * 32 * 32, 10)
        self.drop = nn.Dropout(0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.proj(x.flatten(1)))


def test_evaluate_matches_full_batch_cross_entropy_and_restores_modes(tmp_path: Path) -> None:
    task = shapes_task(tmp_path, eval_batch_size=7)  # 60 val images: last chunk is partial
    torch.manual_seed(0)
    model = FixedLogits()
    model.train()
    model.drop.eval()
    result = task.evaluate(model, "val")
    assert model.training and not model.drop.training
    x, y = task.splits["val"]
    model.eval()
    logits = model(task.preprocess.batch(x))
    assert result["loss"] == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-5)
    assert result["error"] == pytest.approx((logits.argmax(1) != y).float().mean().item())
    assert set(task.evaluate(model, "test")) == {"loss", "error"}
    with pytest.raises(ValueError, match="unknown split 'train'; choose from: val, test"):
        task.evaluate(model, "train")


def test_training_loss_is_mean_cross_entropy(tmp_path: Path) -> None:
    task = shapes_task(tmp_path)
    model = FixedLogits().eval()
    batch = task.train_batch(0)
    expected = F.cross_entropy(model(batch[0]), batch[1])
    assert torch.allclose(task.training_loss(model, batch, 0), expected)
    assert task.metric == "error" and task.num_outputs == 10 and task.in_channels == 3
    assert task.state_dict() == {}


# ---------------------------------------------------------------- preprocessing


def test_standardize_fits_on_the_training_split_only(tmp_path: Path) -> None:
    task = shapes_task(tmp_path)
    train = task.splits["train"][0].double() / 255
    std, mean = torch.std_mean(train, dim=(0, 2, 3), correction=0)
    assert task.meta["preprocess"]["mean"] == pytest.approx(mean.tolist(), abs=1e-9)
    assert task.meta["preprocess"]["std"] == pytest.approx(std.tolist(), abs=1e-9)
    with_val = torch.cat([task.splits["train"][0], task.splits["val"][0]]).double() / 255
    assert mean.tolist() != pytest.approx(with_val.mean(dim=(0, 2, 3)).tolist(), abs=1e-6)
    x = task.probe_batch().double()
    assert torch.allclose(x, (train[:32] - mean[:, None, None]) / std[:, None, None], atol=1e-5)


def correlated_images(n: int, size: int = 4) -> torch.Tensor:
    """Smooth images (strong pixel correlations, like photos) so whitening has work to do."""
    g = torch.Generator().manual_seed(0)
    coarse = torch.rand(n, 3, 2, 2, generator=g)
    smooth = F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
    noisy = smooth + 0.05 * torch.randn(n, 3, size, size, generator=g)
    return (noisy.clamp(0, 1) * 255).round().to(torch.uint8)


def gcn_reference(images: torch.Tensor, scale: float = 55.0) -> torch.Tensor:
    x = images.reshape(len(images), -1).double()
    x = x - x.mean(1, keepdim=True)
    return scale * x / x.norm(dim=1, keepdim=True)


def test_gcn_zca_whitens_train_to_identity_off_the_constant_direction() -> None:
    images = correlated_images(4000)
    prep = GcnZca(bias=1e-6)
    prep.fit(images)
    white = prep.store(images).reshape(4000, -1).double()
    d = white.shape[1]
    # GCN removes each image's mean, so the all-ones direction has no variance left to whiten
    off_constant = torch.eye(d, dtype=torch.float64) - 1.0 / d
    assert torch.allclose(torch.cov(white.T, correction=0), off_constant, atol=2e-3)
    assert white.mean(0).abs().max() < 1e-4


def test_gcn_zca_default_bias_shrinks_each_eigendirection() -> None:
    images = correlated_images(3000)
    prep = GcnZca()
    prep.fit(images)
    gcn = gcn_reference(images)
    assert torch.allclose(gcn.norm(dim=1), torch.full((3000,), 55.0, dtype=torch.float64))
    lam, vec = torch.linalg.eigh(torch.cov(gcn.T, correction=0))
    expected = (vec * (lam.clamp_min(0) / (lam.clamp_min(0) + 0.1))) @ vec.T
    white = prep.store(images).reshape(3000, -1).double()
    assert torch.allclose(torch.cov(white.T, correction=0), expected, atol=2e-4)


def test_gcn_zca_task_fits_on_train_and_keeps_whitened_floats() -> None:
    images, labels = correlated_images(300, size=8), torch.arange(300) % 10

    def task(preprocess: str) -> ImageTask:
        return ImageTask(
            name="t",
            source="test",
            num_classes=10,
            train=(images[:250], labels[:250]),
            test=(images[250:], labels[250:]),
            device=CPU,
            seed=3,
            batch_size=32,
            val_size=50,
            preprocess=preprocess,
        )

    white, raw = task("gcn_zca"), task("none")
    reference = GcnZca()
    reference.fit(raw.splits["train"][0])  # the same seed gives the same split
    for split in ("train", "val", "test"):
        stored = white.splits[split][0]
        assert stored.dtype == torch.float32
        assert torch.allclose(stored, reference.store(raw.splits[split][0]), atol=1e-5)
    x, _ = white.train_batch(0)
    assert x.shape == (32, 3, 8, 8) and x.dtype == torch.float32
    assert white.meta["preprocess"] == {"name": "gcn_zca", "gcn_scale": 55.0, "zca_bias": 0.1}


# ---------------------------------------------------------------- shapes


def test_shapes_are_deterministic_balanced_and_hashed(tmp_path: Path) -> None:
    x, y = generate_shapes(503, seed=7)
    x2, y2 = generate_shapes(503, seed=7)
    assert torch.equal(x, x2) and torch.equal(y, y2)
    assert x.shape == (503, 3, 32, 32) and x.dtype == torch.uint8
    counts = torch.bincount(y, minlength=len(CLASSES))
    assert len(counts) == 10 and counts.max() - counts.min() <= 1
    assert not torch.equal(x, generate_shapes(503, seed=8)[0])
    a = shapes_task(tmp_path)
    assert a.meta["source"] == "procedural shapes v1, seed 0"
    assert a.meta["sha256"] == shapes_task(tmp_path).meta["sha256"]
    assert a.meta["sha256"] != shapes_task(tmp_path, data_seed=1).meta["sha256"]


# ---------------------------------------------------------------- CIFAR


@pytest.mark.parametrize(
    ("name", "cls", "write", "train_n"),
    [("cifar10", CIFAR10, write_cifar10, 100), ("cifar100", CIFAR100, write_cifar100, 100)],
)
def test_cifar_fixture_loads_through_torchvision(tmp_path, monkeypatch, name, cls, write, train_n):
    fx = write(tmp_path)
    trust_fixture(monkeypatch, cls, fx.md5)
    task = build_task(
        name, device=CPU, seed=0, data_dir=tmp_path, batch_size=16, val_size=20, preprocess="none"
    )
    assert task.num_outputs == (10 if name == "cifar10" else 100)
    assert (task.meta["train_size"], task.meta["val_size"], task.meta["test_size"]) == (80, 20, 30)
    # every stored image carries its own label: CIFAR rows are 1024 R, 1024 G, 1024 B values
    label_of = {row.tobytes(): lab for row, lab in zip(fx.train_data, fx.train_labels, strict=True)}
    label_of |= {row.tobytes(): lab for row, lab in zip(fx.test_data, fx.test_labels, strict=True)}
    seen = 0
    for split in ("train", "val", "test"):
        x, y = task.splits[split]
        for img, lab in zip(x, y, strict=True):
            assert label_of[img.numpy().reshape(-1).tobytes()] == lab.item()
            seen += 1
    assert seen == train_n + 30
    assert torch.equal(task.splits["test"][0], torch.from_numpy(fx.test_data).view(30, 3, 32, 32))


def test_missing_cifar_files_say_where_to_put_which_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as err:
        build_task("cifar10", device=CPU, seed=0, data_dir=tmp_path)
    msg = str(err.value)
    assert "\n" not in msg
    for part in (
        str(tmp_path / "cifar-10-batches-py"),
        "data_batch_1",
        "test_batch",
        "batches.meta",
        "cifar-10-python.tar.gz",
        CIFAR10.url,
        "dataset.download=true",
    ):
        assert part in msg


def test_failed_download_says_so_and_where_to_put_the_archive(tmp_path, monkeypatch) -> None:
    def offline(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(tv_cifar, "download_and_extract_archive", offline)
    with pytest.raises(FileNotFoundError, match="download failed") as err:
        build_task("cifar100", device=CPU, seed=0, data_dir=tmp_path, download=True)
    msg = str(err.value)
    assert "cifar-100-python.tar.gz" in msg and CIFAR100.url in msg and "\n" not in msg


def test_corrupted_cifar_file_is_named_before_any_unpickling(tmp_path, monkeypatch) -> None:
    fx = write_cifar10(tmp_path)
    trust_fixture(monkeypatch, CIFAR10, fx.md5)
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    batch.write_bytes(batch.read_bytes()[:-100])

    def no_unpickling(*args: object, **kwargs: object) -> None:
        raise AssertionError("unpickled a file that failed its md5 check")

    monkeypatch.setattr(pickle, "load", no_unpickling)
    with pytest.raises(RuntimeError, match="corrupted or truncated") as err:
        build_task("cifar10", device=CPU, seed=0, data_dir=tmp_path)
    msg = str(err.value)
    assert msg.startswith(str(batch)) and fx.md5["data_batch_3"] in msg and "\n" not in msg


# ---------------------------------------------------------------- configs and benchmark


@pytest.mark.parametrize("name", ["shapes", "cifar10", "cifar100"])
def test_dataset_yaml_lists_exactly_the_builder_options(name: str) -> None:
    cfg = yaml.safe_load((ROOT / "configs" / "dataset" / f"{name}.yaml").read_text())
    assert cfg.pop("name") == name
    assert cfg == DATASETS.defaults(name)


def test_bench_data_smoke(capsys: pytest.CaptureFixture[str]) -> None:
    spec = importlib.util.spec_from_file_location("bench_data", ROOT / "scripts" / "bench_data.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    rows = bench.main(["--n", "512", "--device", "cpu", "--workers", "0"])
    assert [r["path"].split(" (")[0] for r in rows] == [
        "batched crop+flip",
        "ImageTask.train_batch",
        "per-item DataLoader v2",
    ]
    assert all(r["images_per_s"] > 0 for r in rows)
    assert "images/s" in capsys.readouterr().out
