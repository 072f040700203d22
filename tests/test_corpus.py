"""dataset=linux: source order, size cap, cache, vocabulary, TBPTT batches and carried state."""

from __future__ import annotations

import collections
import hashlib
import io
import json
import math
import os
import shutil
import subprocess
import tarfile
import tracemalloc
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


def expected_corpus(files: dict[str, bytes] = FILES, cap: int = 10**9) -> bytes:
    """The selection rule written plainly: .c/.h files ranked by sha256 of their path, taken
    until ``cap`` bytes (the last one cut), joined in path order."""
    names = sorted((k for k in files if k.endswith((".c", ".h"))), key=_sha256_of)
    chosen: dict[str, bytes] = {}
    for name in names:
        room = cap - sum(map(len, chosen.values()))
        if room <= 0:
            break
        chosen[name] = files[name][:room]
    return b"".join(chosen[k] for k in sorted(chosen))


def _sha256_of(name: str) -> bytes:
    return hashlib.sha256(name.encode()).digest()


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


def _fifo(root: Path) -> Path:
    os.mkfifo(root / "pipe.tar")
    return root / "pipe.tar"


def _traversal(root: Path) -> Path:
    return make_tar(root / "evil.tar.gz", {"src/a.c": b"int a;", "../up.c": b"int b;"}, "w:gz")


def _absolute(root: Path) -> Path:
    return make_tar(root / "abs.tar", {"/etc/x.c": b"int a;"}, "w")


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (_missing, "no such file or directory"),
        (_not_an_archive, "neither a directory nor a tar archive"),
        (_corrupt_gzip, "neither a directory nor a tar archive"),
        (_truncated_archive, "cannot read corpus source"),
        (_no_sources, "holds no .c/.h files"),
        (lambda _: Path("/dev/zero"), "'/dev/zero' is not a regular file or a directory"),
        (_fifo, "is not a regular file or a directory"),
        (_traversal, "member '../up.c' outside the archive; refusing it"),
        (_absolute, "member '/etc/x.c' outside the archive"),
    ],
)
def test_bad_source_fails_in_one_line(tmp_path: Path, make, match: str) -> None:
    source = make(tmp_path)
    with pytest.raises(ValueError, match=match) as err:
        L.build_corpus(str(source), 1.0, tmp_path / "data")
    assert "\n" not in str(err.value)


# --- reading, cap, order -----------------------------------------------------------------------


def test_directory_reads_c_and_h_only(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "src")
    (tree / "link.h").symlink_to(tree / "a.c")  # symlinks are skipped, as tar members are
    os.mkfifo(tree / "pipe.c")  # not a regular file: skipped, never opened (it would block)
    corpus = L.build_corpus(str(tree), 1.0, tmp_path / "data")
    assert corpus.text == expected_corpus()
    assert corpus.manifest["files"] == 4
    assert corpus.manifest["sha256"] == hashlib.sha256(expected_corpus()).hexdigest()
    assert corpus.manifest["bytes"] == len(expected_corpus())


@pytest.mark.parametrize("cap", [1, 100, 450, 900, 1330, 10_000])
def test_size_cap_keeps_the_first_ranked_bytes_in_path_order(tmp_path: Path, cap: int) -> None:
    tree = make_tree(tmp_path / "src")
    corpus = L.build_corpus(str(tree), cap / L.MEGABYTE, tmp_path / "data")
    assert corpus.text == expected_corpus(cap=cap)
    assert len(corpus.text) == min(cap, len(expected_corpus()))
    assert corpus.manifest["selected_files"] == sorted(corpus.manifest["selected_files"])


def test_whole_source_under_the_cap_is_every_file_in_path_order(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "src")
    corpus = L.build_corpus(str(tree), 1.0, tmp_path / "data")
    sources = sorted(k for k in FILES if k.endswith((".c", ".h")))
    assert corpus.text == b"".join(FILES[k] for k in sources)
    assert corpus.manifest["selected_files"] == sources


@pytest.mark.parametrize("mode", ["w:gz", "w:xz", "w"])
@pytest.mark.parametrize("cap", [300, 10_000])
def test_tarball_equals_directory(tmp_path: Path, mode: str, cap: int) -> None:
    """Members come unsorted; the bounded streaming selection picks what the directory does."""
    tree = make_tree(tmp_path / "src")
    archive = make_tar(tmp_path / "src.tar.any", FILES, mode)
    from_dir = L.build_corpus(str(tree), cap / L.MEGABYTE, tmp_path / "d1")
    from_tar = L.build_corpus(str(archive), cap / L.MEGABYTE, tmp_path / "d2")
    assert from_tar.text == from_dir.text == expected_corpus(cap=cap)
    assert from_tar.manifest["source_kind"] == "tarball"
    assert from_tar.manifest["source_sha256"] == hashlib.sha256(archive.read_bytes()).hexdigest()
    assert from_tar.manifest["selected_files"] == from_dir.manifest["selected_files"]


def test_link_members_are_never_followed_and_are_counted(tmp_path: Path) -> None:
    archive = tmp_path / "links.tar"
    with tarfile.open(archive, "w") as tar:
        for name, data in FILES.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for kind, name in ((tarfile.SYMTYPE, "sym.c"), (tarfile.LNKTYPE, "hard.h")):
            link = tarfile.TarInfo(name)
            link.type, link.linkname = kind, "a.c"
            tar.addfile(link)
    corpus = L.build_corpus(str(archive), 1.0, tmp_path / "data")
    assert corpus.text == expected_corpus()
    assert corpus.manifest["skipped_links"] == 2
    assert "sym.c" not in corpus.manifest["selected_files"]


def test_source_kernel_takes_the_newest_debian_tarball(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setattr(L, "KERNEL_TARBALLS", str(tmp_path / "linux-source-*.tar.xz"))
    with pytest.raises(ValueError, match=r"apt-get install linux-source-6\.12") as err:
        L.build_corpus("kernel", 1.0, tmp_path / "data")
    assert "\n" not in str(err.value)
    make_tar(tmp_path / "linux-source-6.1.tar.xz", {"old.c": b"int old;"}, "w:xz")
    newest = make_tar(tmp_path / "linux-source-6.12.tar.xz", FILES, "w:xz")
    corpus = L.build_corpus("kernel", 1.0, tmp_path / "data")
    assert corpus.manifest["source"] == str(newest)
    assert corpus.text == expected_corpus()


def test_select_files_reads_only_what_can_still_be_kept() -> None:
    reads: list[tuple[str, int]] = []

    def entry(name: str, size: int):
        def read(n: int) -> bytes:
            reads.append((name, n))
            return b"x" * min(n, size)

        return name, read

    names = [f"f{i}.c" for i in range(8)]
    by_rank = sorted(names, key=_sha256_of)
    entries = [entry(n, 10) for n in reversed(by_rank)]  # worst order: best-ranked last
    kept = L.select_files(entries, 25)
    assert [n for n, _ in kept] == sorted(by_rank[:3])
    assert sorted(len(d) for _, d in kept) == [5, 10, 10]  # the third-ranked file is cut
    assert all(n <= 25 for _, n in reads)
    # once the best three are in, later (worse-ranked) files are never read ...
    late = L.select_files([*[entry(n, 10) for n in by_rank], entry(by_rank[-1] + "x", 10)], 25)
    assert [n for n, _ in late] == sorted(by_rank[:3])
    assert reads[-1][0] == by_rank[2] and reads[-1][1] == 5  # ... and the cut one only in part


def test_huge_sparse_file_in_a_directory_is_read_only_as_far_as_needed(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "src")
    with (tree / "huge.c").open("wb") as handle:
        handle.truncate(20 * 2**30)  # 20 GiB of holes: costs no disk, would cost memory
    tracemalloc.start()
    try:
        corpus = L.build_corpus(str(tree), 0.002, tmp_path / "data")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(corpus.text) == 2000 and peak < 20 * 2**20


@pytest.mark.skipif(shutil.which("tar") is None, reason="needs GNU tar to write sparse members")
def test_huge_sparse_member_in_a_tarball_is_read_only_as_far_as_needed(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "src")
    with (tree / "huge.c").open("wb") as handle:
        handle.truncate(4 * 2**30)
        handle.write(b"int tail;\n")  # data after the hole, so the member is not all holes
    archive = tmp_path / "sparse.tar.gz"
    subprocess.run(["tar", "-cSzf", str(archive), "-C", str(tree), "."], check=True)
    assert archive.stat().st_size < 2**20
    tracemalloc.start()
    try:
        corpus = L.build_corpus(str(archive), 0.002, tmp_path / "data")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(corpus.text) == 2000 and peak < 20 * 2**20


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
    assert manifest["sha256"] == hashlib.sha256(expected_corpus()).hexdigest()


def test_dataset_yaml_lists_exactly_the_builder_options() -> None:
    import yaml

    from experiments.data import DATASETS

    path = Path(__file__).parents[1] / "configs" / "dataset" / "linux.yaml"
    config = yaml.safe_load(path.read_text())
    assert config.pop("name") == "linux"
    assert config == DATASETS.defaults("linux")
