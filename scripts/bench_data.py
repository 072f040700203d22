"""Throughput of the training-image paths: device-resident batched crop+flip vs per-item loading.

Every path makes one shuffled epoch of uint8 batches (drop last) with a pad-4 random 32x32 crop
and a horizontal flip, from the same uint8 (N, 3, 32, 32) tensor:
  - batched:    experiments.data.augment on whole index batches, on --device;
  - task:       ImageTask.train_batch (the trainer's real call: per-step generators, float /255);
  - per-item:   torchvision DataLoader over the tensor with transforms.v2 RandomCrop(32, padding=4)
                + RandomHorizontalFlip per image, for each --workers value (worker start-up
                counted, as a fresh epoch pays it).
Prints images/s per path and its speed relative to the fastest per-item path.
Run: python scripts/bench_data.py [--n 50000 | --quick] [--device cpu] [--workers 0 2] [--threads 1]
On a CPU shared with other jobs use --threads 1: oversubscribed OpenMP threads spin and make the
batched kernels (not the single-image ones) several times slower.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable, Iterator, Sequence

import torch
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from experiments.data.augment import apply_crop_flip, draw_crop_flip
from experiments.data.images import ImageTask

PAD = 4


class PerItem(Dataset):
    """The conventional path: index one image, transform it alone, let the loader collate."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.images, self.labels = images, labels
        self.transform = v2.Compose([v2.RandomCrop(32, padding=PAD), v2.RandomHorizontalFlip()])

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.transform(self.images[i]), self.labels[i]


def _timed(epoch: Callable[[], int], device: torch.device) -> float:
    """Images per second of one call of ``epoch`` (which returns how many images it made)."""
    start = time.perf_counter()
    n = epoch()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return n / (time.perf_counter() - start)


def batched_batches(
    images: torch.Tensor, labels: torch.Tensor, batch_size: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator(images.device).manual_seed(0)
    perm = torch.randperm(len(images), generator=g, device=images.device)
    for i in range(len(images) // batch_size):
        idx = perm[i * batch_size : (i + 1) * batch_size]
        yield apply_crop_flip(images[idx], draw_crop_flip(batch_size, PAD, g), PAD), labels[idx]


def task_epoch(task: ImageTask) -> int:
    for step in range(task.steps_per_epoch):
        task.train_batch(step)
    return task.steps_per_epoch * task.batch_size


def per_item_epoch(
    images: torch.Tensor, labels: torch.Tensor, batch_size: int, workers: int
) -> int:
    loader = DataLoader(
        PerItem(images, labels), batch_size, shuffle=True, drop_last=True, num_workers=workers
    )
    return sum(len(y) for _, y in loader)


def run(n: int, batch_size: int, device: torch.device, workers: Sequence[int]) -> list[dict]:
    """One epoch per path; rows of {path, workers, images_per_s, speedup}."""
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 10, (n,), generator=g)
    on_device = images.to(device), labels.to(device)
    cpu = torch.device("cpu")
    task = ImageTask(
        name="bench",
        source="random uint8",
        num_classes=10,
        train=(images, labels),
        test=(images[:1], labels[:1]),
        device=device,
        seed=0,
        batch_size=batch_size,
        val_size=1,
        preprocess="none",
        augment=True,
    )

    def batched(imgs: torch.Tensor, labs: torch.Tensor) -> int:
        return sum(len(y) for _, y in batched_batches(imgs, labs, batch_size))

    # warm-up on a few batches: first calls of gather / randperm / v2 pay one-off setup
    few = 4 * batch_size
    batched(on_device[0][:few], on_device[1][:few])
    per_item_epoch(images[:few], labels[:few], batch_size, 0)
    rows = [
        {
            "path": f"batched crop+flip ({device.type})",
            "workers": "-",
            "images_per_s": _timed(lambda: batched(*on_device), device),
        },
        {
            "path": f"ImageTask.train_batch ({device.type})",
            "workers": "-",
            "images_per_s": _timed(lambda: task_epoch(task), device),
        },
    ]
    for w in workers:
        rate = _timed(lambda w=w: per_item_epoch(images, labels, batch_size, w), cpu)
        rows.append(
            {"path": "per-item DataLoader v2 (cpu)", "workers": str(w), "images_per_s": rate}
        )
    reference = max(r["images_per_s"] for r in rows if r["path"].startswith("per-item"))
    for r in rows:
        r["speedup"] = r["images_per_s"] / reference
    return rows


def main(argv: Sequence[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50_000, help="images per epoch")
    parser.add_argument("--quick", action="store_true", help="2048 images: a ~1 s smoke run")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    n = 2048 if args.quick else args.n
    rows = run(n, args.batch_size, torch.device(args.device), args.workers)
    print(
        f"{n} images 3x32x32 uint8, batch {args.batch_size}, one epoch per path, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"THP_MEM_ALLOC_ENABLE={os.environ.get('THP_MEM_ALLOC_ENABLE', 'unset')}"
    )
    print(f"{'path':<36} {'workers':>7} {'images/s':>11} {'vs per-item':>11}")
    for r in rows:
        print(
            f"{r['path']:<36} {r['workers']:>7} {r['images_per_s']:>11,.0f} {r['speedup']:>10.2f}x"
        )
    return rows


if __name__ == "__main__":
    main()
