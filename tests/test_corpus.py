"""dataset=linux: source order, size cap, cache, vocabulary, TBPTT batches and carried state."""

from __future__ import annotations

import collections
import hashlib
import io
import json
import math
import tarfile
from pathlib import Path

import pytest
import torch
from torch import nn

from experiments.data import build_task
from experiments.data import linux as L

CPU = torch.device("cpu")


pytestmark = pytest.mark.usefixtures("one_thread")


FILES = {  # deliberately not in sorted order
    "z/last.h": b"#define LAST 1\n" * 40,
    "a.c": b"int main(void) { return 0; }\n" * 30,
    "m/mid.h": b"struct mid { long x; };\n" * 50,
    "m/ab.c": b"static int ab;\n" * 20,
    "notes.txt": b"not source\n" * 10,
}


def make_tree(root: Path, files: dict[str, bytes] = FILES) -> Path:
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def sorted_source(files: dict[str, bytes] = FILES) -> bytes:
    """The expected corpus: .c/.h contents in sorted relative-path order."""
    return b"".join(files[k] for k in sorted(files) if k.endswith((".c", ".h")))


def make_tar(path: Path, files: dict[str, bytes], mode: str) -> Path:
    with tarfile.open(path, mode) as tar:
        for name, data in files.items():  # archive order = dict order, unsorted
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture
def no_system_sources(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(L, "SYSTEM_HEADERS", tmp_path / "missing-system")
    monkeypatch.setattr(L, "TORCH_HEADERS", tmp_path / "missing-torch")


# --- source selection -------------------------------------------------------------------------


def test_source_order(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    given = make_tree(tmp_path / "given")
    system = make_tree(tmp_path / "system")
    bundled = make_tree(tmp_path / "torch")
    monkeypatch.setattr(L, "SYSTEM_HEADERS", system)
    monkeypatch.setattr(L, "TORCH_HEADERS", bundled)
    assert L.resolve_source(str(given)) == given.resolve()
    assert L.resolve_source(None) == system.resolve()
    system.rename(tmp_path / "gone")
    assert L.resolve_source(None) == bundled.resolve()
    bundled.rename(tmp_path / "gone too")
    with pytest.raises(ValueError, match=r"no Linux source found .*dataset\.source") as err:
        L.resolve_source(None)
    assert "\n" not in str(err.value)


def test_machine_default_source_exists() -> None:
    """With nothing given, this machine yields a source (torch's headers at worst)."""
    assert L.resolve_source(None).is_dir()


def _missing(root: Path) -> Path:
    return root / "nope"


def _not_an_archive(root: Path) -> Path:
    (root / "x.txt").write_bytes(b"hello")
    return root / "x.txt"


def _corrupt_gzip(root: Path) -> Path:
    (root / "bad.tar.gz").write_bytes(b"\x1f\x8b" + b"\0" * 600)
    return root / "bad.tar.gz"


def _truncated_archive(root: Path) -> Path:
    big = {f"f{i}.c": bytes(range(256)) * 64 for i in range(8)}  # incompressible enough
    archive = make_tar(root / "cut.tar.gz", big, "w:gz")
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    return archive


def _no_sources(root: Path) -> Path:
    return make_tree(root / "empty", {"README": b"x"})


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (_missing, "no such file or directory"),
        (_not_an_archive, "neither a directory nor a tar archive"),
        (_corrupt_gzip, "neither a directory nor a tar archive"),
        (_truncated_archive, "cannot read corpus source"),
        (_no_sources, "holds no .c/.h files"),
    ],
)
def test_bad_source_fails_in_one_line(tmp_path: Path, make, match: str) -> None:
    source = make(tmp_path)
    with pytest.raises(ValueError, match=match) as err:
        L.build_corpus(str(source), 1.0, tmp_path / "data")
    assert "\n" not in str(err.value)


# --- reading, cap, order -----------------------------------------------------------------------


def test_directory_reads_sorted_c_and_h_only(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "src")
    (tree / "link.h").symlink_to(tree / "a.c")  # symlinks are skipped, as tar members would be
    corpus = L.build_corpus(str(tree), 1.0, tmp_path / "data")
    assert corpus.text == sorted_source()
    assert corpus.manifest["files"] == 4
    assert corpus.manifest["sha256"] == hashlib.sha256(sorted_source()).hexdigest()
    assert corpus.manifest["bytes"] == len(sorted_source())


@pytest.mark.parametrize("cap", [1, 100, 450, 900, 1330, 10_000])
def test_size_cap_keeps_the_sorted_prefix(tmp_path: Path, cap: int) -> None:
    tree = make_tree(tmp_path / "src")
    corpus = L.build_corpus(str(tree), cap / L.MEGABYTE, tmp_path / "data")
    assert corpus.text == sorted_source()[:cap]


@pytest.mark.parametrize("mode", ["w:gz", "w:xz", "w"])
@pytest.mark.parametrize("cap", [300, 10_000])
def test_tarball_equals_directory(tmp_path: Path, mode: str, cap: int) -> None:
    """Members come unsorted; the bounded streaming selection still yields the sorted prefix."""
    tree = make_tree(tmp_path / "src")
    archive = make_tar(tmp_path / "src.tar.any", FILES, mode)
    from_dir = L.build_corpus(str(tree), cap / L.MEGABYTE, tmp_path / "d1")
    from_tar = L.build_corpus(str(archive), cap / L.MEGABYTE, tmp_path / "d2")
    assert from_tar.text == from_dir.text == sorted_source()[:cap]
    assert from_tar.manifest["source_kind"] == "tarball"


def test_first_files_reads_only_what_it_keeps() -> None:
    reads = []

    def entry(name: str, size: int):
        return name, lambda: reads.append(name) or b"x" * size

    entries = [entry(n, 10) for n in ("c", "a", "d", "b", "e")]
    kept = L.first_files(entries, 25)
    assert [n for n, _ in kept] == ["a", "b", "c"]
    assert "e" not in reads  # a, b, c already held 25 bytes when e came


# --- cache ---------------------------------------------------------------------------------------


def test_rebuild_gives_same_hash_and_cache_is_reused(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "src")
    first = L.build_corpus(str(tree), 1.0, tmp_path / "a")
    again = L.build_corpus(str(tree), 1.0, tmp_path / "b")  # a fresh build elsewhere
    assert first.manifest["sha256"] == again.manifest["sha256"]
    manifest = json.loads((first.cache_dir / L.MANIFEST_FILE).read_text())
    assert manifest == first.manifest
    (tree / "a.c").write_bytes(b"changed")  # the cache, not the source, is read from now on
    cached = L.build_corpus(str(tree), 1.0, tmp_path / "a")
    assert cached.text == first.text


def test_corrupt_cache_fails_clearly(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "src")
    corpus = L.build_corpus(str(tree), 1.0, tmp_path / "data")
    (corpus.cache_dir / L.CORPUS_FILE).write_bytes(corpus.text[:-1] + b"!")
    with pytest.raises(ValueError, match=r"corrupt.*delete the directory") as err:
        L.build_corpus(str(tree), 1.0, tmp_path / "data")
    assert "\n" not in str(err.value)


def test_bad_size_fails(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="size_mb"):
        L.build_corpus(str(make_tree(tmp_path / "src")), 0, tmp_path / "data")


# --- task ---------------------------------------------------------------------------------


def text_task(tmp_path: Path, text: bytes, **options) -> L.TextTask:
    make_tree(tmp_path / "src", {"corpus.c": text})
    options = {"batch_size": 3, "eval_batch_size": 2, "seq_len": 4, **options}
    return build_task(
        "linux",
        device=CPU,
        seed=0,
        data_dir=tmp_path / "data",
        source=str(tmp_path / "src"),
        **options,
    )


def sample_text(n: int = 400) -> bytes:
    gen = torch.Generator().manual_seed(0)
    return bytes((97 + torch.randint(0, 20, (n,), generator=gen)).tolist())


def test_splits_vocab_and_meta(tmp_path: Path) -> None:
    text = sample_text(380) + b"@#" + sample_text(18)  # two bytes only val/test hold
    task = text_task(tmp_path, text, val_frac=0.1, test_frac=0.1)
    meta = task.meta
    assert (meta["train_chars"], meta["val_chars"], meta["test_chars"]) == (320, 40, 40)
    train = text[:320]
    assert task.vocab.symbols == bytes(sorted(set(train)))
    assert task.num_outputs == task.in_channels == len(set(train)) + 1 == meta["vocab_size"]
    ids = task.vocab.encode(b"@ab")
    assert ids[0] == task.vocab.unk and task.vocab.decode(ids.tolist()[1:]) == "ab"
    counts = collections.Counter(train)
    entropy = -sum(c / 320 * math.log(c / 320) for c in counts.values())
    assert meta["unigram_entropy_nats"] == pytest.approx(entropy, rel=1e-12)
    assert meta["unigram_entropy_bits"] == pytest.approx(entropy / math.log(2), rel=1e-12)
    assert meta["sha256"] == hashlib.sha256(text).hexdigest()
    assert task.metric == "bpc"


def test_batches_are_contiguous_streams_and_pure(tmp_path: Path) -> None:
    text = sample_text(400)
    task = text_task(tmp_path, text, val_frac=0.05, test_frac=0.05)
    ids = task.vocab.encode(text[:360])
    streams, length = 3, (360 - 1) // 3
    assert task.steps_per_epoch == length // 4
    rows_x, rows_y = [], []
    for step in range(task.steps_per_epoch):
        x, y = task.train_batch(step)
        assert x.shape == y.shape == (4, 3)
        rows_x.append(x)
        rows_y.append(y)
        again = task.train_batch(step + 7 * task.steps_per_epoch)
        assert torch.equal(again[0], x) and torch.equal(again[1], y)
    xs, ys = torch.cat(rows_x), torch.cat(rows_y)
    for b in range(streams):  # each column is one contiguous stretch, targets one ahead
        start = b * length
        assert torch.equal(xs[:, b], ids[start : start + xs.shape[0]])
        assert torch.equal(ys[:, b], ids[start + 1 : start + 1 + xs.shape[0]])
    assert torch.equal(task.probe_batch(), task.train_batch(0)[0])


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"batch_size": 50, "seq_len": 50}, "train split 360 characters, fewer than the 2501"),
        ({"eval_batch_size": 50}, "val split 20 characters, fewer than the 51"),
    ],
)
def test_too_small_corpus_fails_in_one_line(tmp_path: Path, options: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match) as err:
        text_task(tmp_path, sample_text(400), **options)
    assert "\n" not in str(err.value)


class Spy(nn.Module):
    """Uniform predictions; records the hidden state it is given and returns a fresh one."""

    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.vocab = vocab
        self.bias = nn.Parameter(torch.zeros(()))
        self.seen: list[torch.Tensor | None] = []

    def forward(self, x, hidden):
        self.seen.append(hidden)
        logits = torch.zeros(*x.shape, self.vocab) + self.bias
        return logits, torch.randn(1, x.shape[1], 2) + self.bias


def test_hidden_state_is_carried_reset_and_resumable(tmp_path: Path) -> None:
    task = text_task(tmp_path, sample_text(400))
    spe = task.steps_per_epoch
    model = Spy(task.num_outputs)
    loss = task.training_loss(model, task.train_batch(0), 0)
    assert model.seen[-1] is None
    assert loss.item() == pytest.approx(math.log(task.num_outputs))
    for step in range(1, spe + 1):
        task.training_loss(model, task.train_batch(step), step)
    assert model.seen[1] is not None and not model.seen[1].requires_grad
    assert model.seen[spe] is None  # epoch start: zero state again
    with pytest.raises(ValueError, match="steps must run in order"):
        task.training_loss(model, task.train_batch(spe + 5), spe + 5)
    saved = task.state_dict()
    fresh = text_task(tmp_path, sample_text(400))
    fresh.load_state_dict(saved)
    fresh.training_loss(model, fresh.train_batch(spe + 1), spe + 1)
    assert torch.equal(model.seen[-1], saved["hidden"])


def test_evaluate_uniform_model_scores_log_vocab(tmp_path: Path) -> None:
    task = text_task(tmp_path, sample_text(400))
    model = Spy(task.num_outputs).train()
    result = task.evaluate(model, "val")
    assert result["loss"] == pytest.approx(math.log(task.num_outputs), rel=1e-6)
    assert result["bpc"] == pytest.approx(result["loss"] / math.log(2))
    assert model.training and model.seen[0] is None
    assert model.seen[1] is not None  # carried across evaluation chunks
    with pytest.raises(ValueError, match="unknown split"):
        task.evaluate(model, "dev")


def test_prepare_corpus_script(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import runpy
    import sys

    tree = make_tree(tmp_path / "src")
    script = Path(__file__).parents[1] / "scripts" / "prepare_corpus.py"
    argv = [str(script), "--source", str(tree), "--data-dir", str(tmp_path / "data")]
    old = sys.argv
    sys.argv = argv
    try:
        runpy.run_path(str(script), run_name="__main__")
    finally:
        sys.argv = old
    printed = capsys.readouterr().out
    manifest = json.loads(printed[printed.index("{") :])
    assert manifest["sha256"] == hashlib.sha256(sorted_source()).hexdigest()


def test_dataset_yaml_lists_exactly_the_builder_options() -> None:
    import yaml

    from experiments.data import DATASETS

    path = Path(__file__).parents[1] / "configs" / "dataset" / "linux.yaml"
    config = yaml.safe_load(path.read_text())
    assert config.pop("name") == "linux"
    assert config == DATASETS.options("linux", fixed=("device", "seed", "data_dir"))
