"""``dataset=linux``: a byte-level character corpus built from Linux source on this machine.

No download: the text comes from the first source that exists, in this order:

1. ``dataset.source``: a kernel tree, a tar archive of one, or ``kernel``: the newest
   ``KERNEL_TARBALLS`` match (Debian's ``linux-source-6.12`` package installs
   /usr/src/linux-source-6.12.tar.xz, the kernel's own source);
2. the system's Linux uapi headers, ``SYSTEM_HEADERS`` (/usr/include/linux): the offline
   default, mostly #defines and structs;
3. the C/C++ headers shipped inside the installed torch package, ``TORCH_HEADERS``.

Selection: the source's regular .c and .h files (symlinks and hard links are never followed)
are ranked by the sha256 of their path inside the source, a fixed pseudo-random order that
samples the whole tree evenly (sorted paths would give 5 MB of arch/alpha and arch/arc) and
does not depend on the order of an archive's members. Files are taken in that rank until they
hold ``size_mb`` megabytes (10^6 bytes), the last one cut to fit, and concatenated in sorted
path order, so related files stay adjacent. A source smaller than the cap is used whole (the
uapi headers: 4.68 MB), in path order.

Bounded: an archive is streamed (``tarfile`` mode ``r|*``: decompressed once, front to back,
nothing unpacked to disk) and a file is read only up to the bytes it can still contribute, so
memory stays about ``size_mb`` whatever the source holds (a sparse .c file of terabytes costs
``size_mb``). Archive members whose path leaves the archive (absolute, or through ``..``) are
refused; a source that is neither a directory nor a regular file (``/dev/zero``) is refused
before anything is read.

The corpus is cached under ``data_dir`` as raw bytes plus a JSON manifest (source and, for an
archive, its sha256; the selected files; bytes; sha256 of the text), never pickled; a cache
whose bytes no longer match its manifest is an error, not something to rebuild silently behind
a study.

The vocabulary is byte-level like char-rnn's (exact for any encoding): the bytes seen in the
training split, sorted, plus one unknown symbol (always last) for bytes only val/test contain.
The split is contiguous: train, then val, then test.
"""

from __future__ import annotations

import bisect
import glob
import hashlib
import json
import lzma
import math
import os
import posixpath
import re
import tarfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from experiments.data import register_dataset
from experiments.modes import in_mode
from experiments.rundir import atomic_write

#: The system's Linux uapi headers (the linux/ directory of the system include path).
SYSTEM_HEADERS = Path("/usr/include/linux")
#: The C/C++ headers inside the installed torch package, present wherever torch is.
TORCH_HEADERS = Path(torch.__file__).resolve().parent / "include"
#: Where ``dataset.source=kernel`` looks: Debian's linux-source-<version> packages.
KERNEL_TARBALLS = "/usr/src/linux-source-*.tar.xz"
KERNEL_PACKAGE = "linux-source-6.12"
SUFFIXES = (".c", ".h")
MEGABYTE = 1_000_000
CORPUS_FILE, MANIFEST_FILE = "corpus.bin", "manifest.json"
#: Names the selection rule in cache keys and manifests; change it when the rule changes.
SELECTION = "sha256-ranked files up to size_mb, in path order"
_READ_ERRORS = (OSError, tarfile.TarError, EOFError, lzma.LZMAError, zlib.error)

#: (path inside the source, reader of at most n bytes) of one candidate file.
Entry = tuple[str, Callable[[int], bytes]]


@dataclass(frozen=True)
class Corpus:
    text: bytes
    manifest: dict[str, Any]
    cache_dir: Path


def resolve_source(source: str | os.PathLike[str] | None) -> Path:
    """The first of ``source``, SYSTEM_HEADERS, TORCH_HEADERS that exists (see module doc)."""
    if source is not None and str(source) == "kernel":
        return newest_kernel_tarball()
    if source is not None and str(source) != "":
        path = Path(source).expanduser().resolve()
        if not path.exists():
            raise ValueError(f"dataset.source={str(source)!r}: no such file or directory")
        if not (path.is_dir() or path.is_file()):  # a device or FIFO could be read forever
            raise ValueError(f"dataset.source={str(source)!r} is not a regular file or a directory")
        if path.is_dir() or _is_tar(path):
            return path
        raise ValueError(
            f"dataset.source={str(source)!r} is neither a directory nor a tar archive "
            "(.tar, .tar.gz, .tar.xz, ...)"
        )
    for candidate in (SYSTEM_HEADERS, TORCH_HEADERS):
        if candidate.is_dir():
            return candidate.resolve()
    raise ValueError(
        f"no Linux source found in {SYSTEM_HEADERS} or {TORCH_HEADERS}; "
        "set dataset.source=<kernel tree or .tar.xz>"
    )


def newest_kernel_tarball() -> Path:
    """The KERNEL_TARBALLS match of the highest version, or one line on how to get one."""
    found = [Path(p) for p in glob.glob(KERNEL_TARBALLS) if Path(p).is_file()]
    if not found:
        raise ValueError(
            f"dataset.source=kernel: no {KERNEL_TARBALLS}; apt-get install {KERNEL_PACKAGE}, "
            "or set dataset.source=<kernel tree or tarball>"
        )

    def version(path: Path) -> list[int]:
        return [int(n) for n in re.findall(r"\d+", path.name)]

    return max(found, key=version).resolve()


def _is_tar(path: Path) -> bool:
    try:
        return tarfile.is_tarfile(path)
    except _READ_ERRORS as err:
        raise ValueError(f"dataset.source={str(path)!r} cannot be read: {err}") from None


def _read_at_most(path: Path) -> Callable[[int], bytes]:
    def read(n: int) -> bytes:
        with path.open("rb") as handle:
            return handle.read(n)

    return read


def _directory_entries(root: Path) -> Iterator[Entry]:
    """Every regular .c/.h file under ``root`` (symlinks skipped), by relative posix path."""
    for folder, _, names in os.walk(root, onerror=_raise):  # an unreadable folder is an error
        for name in sorted(names):
            path = Path(folder, name)
            if path.suffix in SUFFIXES and path.is_file() and not path.is_symlink():
                yield path.relative_to(root).as_posix(), _read_at_most(path)


def _raise(err: OSError) -> None:
    raise err


def _tar_entries(archive: Path, skipped: dict[str, int]) -> Iterator[Entry]:
    """Every regular .c/.h member, in archive order, read from one front-to-back stream.

    Links (symbolic or hard) are counted in ``skipped`` and never followed; a member whose
    path leaves the archive is refused, since nothing else in such an archive can be trusted.
    """
    with tarfile.open(archive, mode="r|*") as tar:
        for member in tar:
            name = posixpath.normpath(member.name)
            if name.startswith("/") or name == ".." or name.startswith("../"):
                raise ValueError(
                    f"corpus source {archive} has member {member.name!r} outside the archive; "
                    "refusing it"
                )
            if posixpath.splitext(name)[1] not in SUFFIXES:
                continue
            if member.issym() or member.islnk():
                skipped["links"] = skipped.get("links", 0) + 1
            elif member.isreg():

                def read(n: int, member: tarfile.TarInfo = member) -> bytes:
                    handle = tar.extractfile(member)
                    assert handle is not None  # regular members always have data
                    return handle.read(n)

                yield name, read
        # tarfile ends the loop quietly when a header block comes back short or empty, which
        # is what a truncated archive looks like; a whole one ends with a zero block instead.
        if tar.fileobj.tell() < tar.offset + tarfile.BLOCKSIZE:
            raise tarfile.ReadError("unexpected end of archive (truncated?)")


def rank(name: str) -> bytes:
    """A file's place in the selection: sha256 of its path inside the source."""
    return hashlib.sha256(name.encode("utf-8", "surrogateescape")).digest()


def select_files(entries: Iterable[Entry], limit: int) -> list[tuple[str, bytes]]:
    """The files that, in ``rank`` order, hold the first ``limit`` bytes: [(path, data)] in
    path order, the rank-last one cut to fit.

    Entries may come in any order. Each is read only up to what the files ranked before it
    leave of ``limit``, and files pushed past the limit are dropped or cut as others arrive, so
    no more than about ``limit`` bytes are ever held.
    """
    kept: list[tuple[bytes, str, bytes]] = []  # (rank, path, data), sorted by rank
    for name, read in entries:
        key = rank(name)
        index = bisect.bisect([k for k, _, _ in kept], key)
        room = limit - sum(len(data) for _, _, data in kept[:index])
        if room <= 0:
            continue
        kept.insert(index, (key, name, read(room)))
        total, fitted = 0, []
        for key_, path, data in kept:
            if total >= limit:
                break
            fitted.append((key_, path, data[: limit - total]))
            total += len(fitted[-1][2])
        kept = fitted
    return sorted((path, data) for _, path, data in kept)


def read_source(path: Path, limit: int) -> tuple[bytes, dict[str, Any]]:
    """The selected .c/.h text of the source (module doc) and what the manifest says of it."""
    kind = "directory" if path.is_dir() else "tarball"
    skipped: dict[str, int] = {}
    entries = _directory_entries(path) if kind == "directory" else _tar_entries(path, skipped)
    try:
        files = select_files(entries, limit)
    except _READ_ERRORS as err:
        raise ValueError(f"cannot read corpus source {path}: {err}") from None
    if not files:
        raise ValueError(f"corpus source {path} holds no {'/'.join(SUFFIXES)} files")
    text = b"".join(data for _, data in files)
    info = {
        "source_kind": kind,
        "selection": SELECTION,
        "files": len(files),
        "first_file": files[0][0],
        "last_file": files[-1][0],
        **({"skipped_links": skipped["links"]} if skipped else {}),
        "selected_files": [name for name, _ in files],
    }
    return text, info


def file_sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def build_corpus(
    source: str | os.PathLike[str] | None, size_mb: float, data_dir: str | os.PathLike[str]
) -> Corpus:
    """Load the corpus of (source, size) from the cache under ``data_dir``, building it once."""
    if not (isinstance(size_mb, int | float) and size_mb > 0 and math.isfinite(size_mb)):
        raise ValueError(f"dataset.size_mb={size_mb!r} must be a positive number")
    path = resolve_source(source)
    limit = round(size_mb * MEGABYTE)
    identity = {} if path.is_dir() else {"source_sha256": file_sha256(path)}
    cache = Path(data_dir) / "linux" / _cache_name(path, limit, identity)
    if (cache / MANIFEST_FILE).exists():
        return _load_cache(cache)
    text, info = read_source(path, limit)
    manifest = {
        "source": str(path),
        **identity,
        **info,
        "size_mb": size_mb,
        "bytes": len(text),
        "sha256": hashlib.sha256(text).hexdigest(),
    }
    cache.mkdir(parents=True, exist_ok=True)
    # via a temporary file and a rename, so concurrent builders never see half a file; the
    # manifest last: it marks the cache complete
    atomic_write(cache / CORPUS_FILE, lambda f: f.write(text))
    atomic_write(
        cache / MANIFEST_FILE, lambda f: f.write((json.dumps(manifest, indent=2) + "\n").encode())
    )
    return Corpus(text, manifest, cache)


def _cache_name(path: Path, limit: int, identity: dict[str, str]) -> str:
    """Readable source name, cap, and a digest of everything that decides the text."""
    readable = re.sub(r"[^A-Za-z0-9._-]", "_", path.name) or "root"
    key = f"{path}\0{limit}\0{identity.get('source_sha256', '')}\0{SELECTION}"
    return f"{readable}-{limit}B-{hashlib.sha256(key.encode()).hexdigest()[:10]}"


def _load_cache(cache: Path) -> Corpus:
    try:
        manifest = json.loads((cache / MANIFEST_FILE).read_text())
        text = (cache / CORPUS_FILE).read_bytes()
    except (OSError, ValueError) as err:
        raise ValueError(
            f"corpus cache {cache} is unreadable ({err}); delete it to rebuild"
        ) from None
    digest = hashlib.sha256(text).hexdigest()
    if digest != manifest.get("sha256"):
        raise ValueError(
            f"corpus cache {cache} is corrupt: sha256 {digest} but its manifest says "
            f"{manifest.get('sha256')}; delete the directory to rebuild it"
        )
    return Corpus(text, manifest, cache)


class ByteVocab:
    """Sorted training bytes, then one unknown symbol for bytes the training text lacks."""

    def __init__(self, symbols: bytes) -> None:
        self.symbols = bytes(sorted(set(symbols)))
        self.unk = len(self.symbols)
        self.size = self.unk + 1
        table = torch.full((256,), self.unk, dtype=torch.long)
        table[torch.tensor(list(self.symbols), dtype=torch.long)] = torch.arange(self.unk)
        self._table = table

    def encode(self, text: bytes) -> torch.Tensor:
        if not text:
            return torch.empty(0, dtype=torch.long)
        return self._table[torch.frombuffer(bytearray(text), dtype=torch.uint8).long()]

    def decode(self, ids: Iterable[int]) -> str:
        """Text of ``ids`` (UTF-8, invalid sequences and the unknown symbol shown as U+FFFD)."""
        raw = b"".join(self.symbols[i : i + 1] if i < self.unk else "\ufffd".encode() for i in ids)
        return raw.decode("utf-8", errors="replace")


@torch.no_grad()
def sample(
    model: nn.Module,
    vocab: ByteVocab,
    *,
    num_chars: int = 500,
    temperature: float = 0.8,
    prime: str = "\n",
    seed: int = 1,
) -> str:
    """``prime`` followed by ``num_chars`` sampled characters (bytes, shown as UTF-8).

    Each character is drawn from softmax(logits / temperature) with a private generator
    seeded by ``seed``, so the global random state is untouched; the unknown symbol is never
    drawn. ``model`` is a CharGRU (time-major ``model(x, hidden) -> (logits, hidden)``); its
    train/eval mode is restored afterwards.
    """
    if isinstance(num_chars, bool) or not isinstance(num_chars, int) or num_chars < 0:
        raise ValueError(f"num_chars={num_chars!r} must be an integer >= 0")
    if not temperature > 0:
        raise ValueError(f"temperature={temperature!r} must be positive")
    if not prime:
        raise ValueError("prime='' is not allowed: sampling needs at least one character")
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    with in_mode(model, training=False):
        logits, hidden = model(vocab.encode(prime.encode()).to(device).view(-1, 1), None)
        drawn: list[int] = []
        for _ in range(num_chars):
            scores = logits[-1, 0] / temperature
            scores[vocab.unk] = -torch.inf
            nxt = torch.multinomial(torch.softmax(scores, dim=0), 1, generator=generator)
            drawn.append(int(nxt))
            logits, hidden = model(nxt.view(1, 1), hidden)
    return prime + vocab.decode(drawn)


def _streams(ids: torch.Tensor, streams: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and next-character targets as ``streams`` contiguous columns, (L, streams)."""
    length = (ids.numel() - 1) // streams
    inputs = ids[: streams * length].view(streams, length).t().contiguous()
    targets = ids[1 : streams * length + 1].view(streams, length).t().contiguous()
    return inputs, targets


class TextTask:
    """Character language modelling with truncated back-propagation through time.

    Training reads ``batch_size`` contiguous streams of the training split, ``seq_len`` steps
    at a time; batch k of an epoch is rows [k*S, (k+1)*S) of every stream, so a batch is a pure
    function of the step. The model's hidden state is carried (detached) from one batch to the
    next, reset to zero at each epoch start unless ``carry_across_epochs`` (char-rnn's train.lua
    carries ``init_state_global`` across the wrap from the last batch to the first, :265,296),
    and part of ``state_dict`` for exact resumes.
    Evaluation runs ``eval_batch_size`` streams over a whole split from a zero state.
    """

    metric = "bpc"

    def __init__(
        self,
        corpus: Corpus,
        *,
        device: torch.device,
        batch_size: int,
        eval_batch_size: int,
        seq_len: int,
        val_frac: float,
        test_frac: float,
        carry_across_epochs: bool = False,
    ) -> None:
        for key, value in (
            ("batch_size", batch_size),
            ("eval_batch_size", eval_batch_size),
            ("seq_len", seq_len),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"dataset.{key}={value!r} must be a positive integer")
        if not (0 <= val_frac < 1 and 0 <= test_frac < 1 and val_frac + test_frac < 1):
            raise ValueError(
                f"dataset.val_frac={val_frac!r}, test_frac={test_frac!r}: each must lie in "
                "[0, 1) and their sum below 1"
            )
        if not isinstance(carry_across_epochs, bool):
            raise ValueError(
                f"dataset.carry_across_epochs={carry_across_epochs!r} must be true or false"
            )
        self.carry_across_epochs = carry_across_epochs
        self.device = torch.device(device)
        self.seq_len = seq_len
        text = corpus.text
        n_val, n_test = round(len(text) * val_frac), round(len(text) * test_frac)
        n_train = len(text) - n_val - n_test
        split_text = {
            "train": text[:n_train],
            "val": text[n_train : n_train + n_val],
            "test": text[n_train + n_val :],
        }
        self._check_sizes(split_text, batch_size, eval_batch_size, seq_len, corpus)
        self.vocab = ByteVocab(split_text["train"])
        self.num_outputs = self.in_channels = self.vocab.size
        ids = {name: self.vocab.encode(part).to(self.device) for name, part in split_text.items()}
        self._train = _streams(ids["train"], batch_size)
        self.steps_per_epoch = self._train[0].shape[0] // seq_len
        self._eval = {name: _streams(ids[name], eval_batch_size) for name in ("val", "test")}
        self._hidden: torch.Tensor | None = None
        self._hidden_step = -1
        self.meta = {  # the file list stays in the cache's manifest.json
            **{k: v for k, v in corpus.manifest.items() if k != "selected_files"},
            "cache": str(corpus.cache_dir),
            **{f"{name}_chars": len(part) for name, part in split_text.items()},
            "vocab_size": self.vocab.size,
            "vocab_level": "byte (training-split bytes + 1 unknown symbol)",
            **_unigram_entropy(ids["train"], self.vocab.size),
        }

    @staticmethod
    def _check_sizes(
        parts: dict[str, bytes], batch: int, eval_batch: int, seq: int, corpus: Corpus
    ) -> None:
        """One training batch and one evaluation step per split, or a one-line error."""
        needs = {"train": batch * seq + 1, "val": eval_batch + 1, "test": eval_batch + 1}
        for name, need in needs.items():
            if len(parts[name]) < need:
                raise ValueError(
                    f"corpus {corpus.manifest['source']} ({len(corpus.text)} bytes) leaves the "
                    f"{name} split {len(parts[name])} characters, fewer than the {need} one "
                    "batch needs; raise dataset.size_mb or the split fraction, or shrink batches"
                )

    def train_batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(inputs, targets), each (seq_len, batch_size) character indices."""
        start = (step % self.steps_per_epoch) * self.seq_len
        inputs, targets = self._train
        return inputs[start : start + self.seq_len], targets[start : start + self.seq_len]

    def training_loss(
        self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor], step: int
    ) -> torch.Tensor:
        """Mean cross-entropy (nats per character); carries the hidden state to step + 1."""
        if step == 0 or (step % self.steps_per_epoch == 0 and not self.carry_across_epochs):
            hidden = None
        elif self._hidden_step == step - 1:
            hidden = self._hidden
        else:
            raise ValueError(
                f"text task: hidden state is from step {self._hidden_step}, not {step - 1}; "
                "steps must run in order, resuming with the task's saved state_dict"
            )
        inputs, targets = batch
        logits, last = model(inputs, hidden)
        self._hidden, self._hidden_step = last.detach(), step
        return F.cross_entropy(logits.flatten(0, 1), targets.flatten())

    @torch.no_grad()
    def evaluate(self, model: nn.Module, split: str) -> dict[str, float]:
        """Mean nats and bits per character over every stream position of ``split``."""
        if split not in self._eval:
            raise ValueError(f"unknown split {split!r}; choose from: {', '.join(self._eval)}")
        inputs, targets = self._eval[split]
        with in_mode(model, training=False):
            hidden, total = None, 0.0
            for start in range(0, inputs.shape[0], self.seq_len):
                logits, hidden = model(inputs[start : start + self.seq_len], hidden)
                chunk = targets[start : start + self.seq_len]
                total += F.cross_entropy(
                    logits.flatten(0, 1), chunk.flatten(), reduction="sum"
                ).item()
        nats = total / targets.numel()
        return {"loss": nats, "bpc": nats / math.log(2)}

    def probe_batch(self) -> torch.Tensor:
        """The inputs of the first training batch, (seq_len, batch_size)."""
        return self.train_batch(0)[0]

    def sample_text(self, model: nn.Module, seed: int) -> str:
        """What the trained model writes, kept beside the run (500 characters at temperature
        0.8, char-rnn's sampling defaults); the trainer asks every task for this."""
        return sample(model, self.vocab, num_chars=500, temperature=0.8, seed=seed)

    def state_dict(self) -> dict[str, Any]:
        return {"hidden": self._hidden, "hidden_step": self._hidden_step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        hidden = state["hidden"]
        self._hidden = None if hidden is None else hidden.to(self.device)
        self._hidden_step = int(state["hidden_step"])


def _unigram_entropy(ids: torch.Tensor, size: int) -> dict[str, float]:
    """Entropy of the training text's character frequencies: the bpc of a context-free model."""
    counts = torch.bincount(ids.cpu(), minlength=size).double()
    p = counts[counts > 0] / counts.sum()
    nats = float(-(p * p.log()).sum())
    return {"unigram_entropy_nats": nats, "unigram_entropy_bits": nats / math.log(2)}


@register_dataset("linux")
def linux(
    *,
    device: torch.device,
    seed: int,
    data_dir: Path,
    source: str | None = None,
    size_mb: float = 5.0,
    batch_size: int = 50,
    eval_batch_size: int = 50,
    seq_len: int = 50,
    val_frac: float = 0.05,
    test_frac: float = 0.05,
    carry_across_epochs: bool = False,
) -> TextTask:
    """char-rnn's batch 50 x seq 50; a contiguous 90/5/5 split (char-rnn: 95/5, no test).

    ``seed`` is unused: streams are read in order, there is nothing random to seed.
    """
    del seed
    corpus = build_corpus(source, size_mb, data_dir)
    return TextTask(
        corpus,
        device=device,
        batch_size=batch_size,
        eval_batch_size=eval_batch_size,
        seq_len=seq_len,
        val_frac=val_frac,
        test_frac=test_frac,
        carry_across_epochs=carry_across_epochs,
    )
