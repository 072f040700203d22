"""The files of one run directory (docs/architecture.md), written so a killed run stays readable.

Whole files (summary.json, the saved config) are replaced atomically: written to a temporary
file in the same directory, fsync'ed, then renamed over the old one. CSV logs are appended a
line at a time and flushed, so a reader never sees half a row from a live run, and resuming
cuts them back to the checkpoint's step so no row is duplicated or lost.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import glob
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

#: The names inside a run directory. Every other module takes them from here (RunDir's paths,
#: or these constants), so the layout is spelled in one place.
SUMMARY = "summary.json"
METRICS = "metrics.csv"
EVAL = "eval.csv"
DIAGNOSTICS = "diagnostics.csv"
SAMPLES = "samples.txt"
LOG = "train.log"
CHECKPOINTS = "checkpoints"
CHECKPOINT = "last.pt"
#: Hydra's folder: the resolved config the run trained, and Hydra's own two files.
HYDRA_DIR = ".hydra"
CONFIG = "config.yaml"
HYDRA_CONFIG = "hydra.yaml"
OVERRIDES = "overrides.yaml"
#: live-curve loggers' own files (experiments.loggers).
TENSORBOARD = "tensorboard"
MLFLOW_RECORD = "mlflow.json"

#: CSV column names. time_s is training wall time (evaluation, checkpoints and the first,
#: compiling step left out), cpu_s the process's CPU time (all threads) over the same stretches.
STEP = "step"
EPOCH = "epoch"
TIME_S = "time_s"
CPU_S = "cpu_s"
TRAIN_LOSS = "train_loss"
LR = "lr"
GRAD_NORM = "grad_norm"
SPLIT = "split"
LOSS = "loss"
LAYER = "layer"
MEASURE = "metric"  # diagnostics.csv: which measure of the layer (experiments.diagnostics)
VALUE = "value"
#: metrics.csv columns; grad_norm is appended when the trainer logs it.
METRICS_COLUMNS = (STEP, EPOCH, TIME_S, CPU_S, TRAIN_LOSS, LR)
#: the metrics.csv columns every version wrote (cpu_s came later), all a reader may require.
METRICS_REQUIRED = (STEP, EPOCH, TIME_S, TRAIN_LOSS, LR)
#: metrics.csv columns that live-curve loggers receive, as ``train/<column>``.
LIVE_METRICS_COLUMNS = (TRAIN_LOSS, LR, GRAD_NORM, EPOCH)
#: eval.csv columns before the task's metric column ("error" or "bpc").
EVAL_COLUMNS = (STEP, EPOCH, TIME_S, SPLIT, LOSS)
#: diagnostics.csv: one row per (step, layer, measure).
DIAGNOSTICS_COLUMNS = (STEP, LAYER, MEASURE, VALUE)
#: what a run directory set aside by trainer.resume=false has in its name (reports skip it).
REPLACED = ".replaced-"
#: statuses after which re-running the same command has nothing left to do.
FINAL_STATUSES = ("completed", "diverged")
#: every status a summary.json may hold.
STATUSES = (*FINAL_STATUSES, "failed", "interrupted", "running")
#: the files atomic_write replaces in a run directory: only their temporaries are cleaned up.
WRITTEN_FILES = (
    SUMMARY,
    METRICS,
    EVAL,
    DIAGNOSTICS,
    SAMPLES,
    CHECKPOINT,
    CONFIG,
    HYDRA_CONFIG,
    OVERRIDES,
)


def metrics_columns(grad_norm: bool) -> tuple[str, ...]:
    """metrics.csv's header for a run that does (or does not) log the gradient norm."""
    return METRICS_COLUMNS + ((GRAD_NORM,) if grad_norm else ())


def eval_columns(metric: str) -> tuple[str, ...]:
    """eval.csv's header for a task whose metric is ``metric``."""
    return (*EVAL_COLUMNS, metric)


class RunDirError(ValueError):
    """A run directory that cannot be used as it is; the message is one line naming the file."""


def atomic_write(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Replace ``path`` with what ``write`` puts into a binary file: temp + fsync + rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes it owner-only; give it open()'s mode
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode()))


def _fsync_dir(directory: Path) -> None:
    """Make a rename durable (the directory entry), as the rename itself is only atomic."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def format_value(value: object) -> str:
    """CSV cell: floats round-trip exactly (repr), so a resumed run's rows compare equal."""
    if isinstance(value, float):
        return repr(value)
    return "" if value is None else str(value)


class CsvLog:
    """Append-only CSV with a fixed header; each row is flushed as it is written.

    Appending to a file written by an older version keeps that file's header (a resumed run
    made before ``cpu_s`` existed goes on without it), so every row matches its header.
    """

    def __init__(self, path: Path, columns: Sequence[str]) -> None:
        self.path = path
        self.columns = tuple(columns)
        new = not path.exists() or path.stat().st_size == 0
        if not new:
            with open(path, newline="", encoding="utf-8") as f:
                self.columns = tuple(next(csv.reader(f), columns))
        self._file = open(path, "a", newline="", encoding="utf-8")  # noqa: SIM115 (closed in close)
        self._writer = csv.writer(self._file, lineterminator="\n")
        if new:
            self._writer.writerow(self.columns)
            self._file.flush()

    def write(self, **row: object) -> None:
        self._writer.writerow(format_value(row.get(c)) for c in self.columns)
        self._file.flush()

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> CsvLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_csv(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def truncate_csv(path: Path, last_step: int, drop: Callable[[str], bool] | None = None) -> None:
    """Drop rows after ``last_step``, rows ``drop`` picks, and a torn last line left by a
    killed writer."""
    if not path.exists():
        return
    text = path.read_text(encoding="utf-8")
    lines = text[: text.rfind("\n") + 1].splitlines()  # whole lines only
    if not lines:
        path.unlink()
        return
    kept = [
        line
        for line in lines[1:]
        if int(line.split(",", 1)[0]) <= last_step and not (drop and drop(line))
    ]
    atomic_write_text(path, "\n".join([lines[0], *kept]) + "\n")


class RunDir:
    """Paths and file operations of one run directory."""

    OUTPUTS = (METRICS, EVAL, DIAGNOSTICS, SUMMARY, CHECKPOINTS)

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.metrics = self.path / METRICS
        self.eval = self.path / EVAL
        self.diagnostics = self.path / DIAGNOSTICS
        self.summary = self.path / SUMMARY
        self.samples = self.path / SAMPLES
        self.checkpoint = self.path / CHECKPOINTS / CHECKPOINT
        self.config = self.path / HYDRA_DIR / CONFIG
        self.overrides = self.path / HYDRA_DIR / OVERRIDES
        self.log = self.path / LOG
        self.tensorboard = self.path / TENSORBOARD
        self.mlflow_record = self.path / MLFLOW_RECORD

    def read_summary(self) -> dict[str, Any] | None:
        """summary.json, or None when absent; a damaged one raises RunDirError naming it."""
        if not self.summary.exists():
            return None
        way_out = "fix or delete it, or pass trainer.resume=false to start the run over"
        try:
            summary = json.loads(self.summary.read_bytes().decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise RunDirError(f"{self.summary} is not valid JSON ({err}); {way_out}") from None
        except OSError as err:
            raise RunDirError(f"{self.summary} cannot be read ({err.strerror})") from None
        if not isinstance(summary, dict):
            raise RunDirError(f"{self.summary} holds no JSON object; {way_out}")
        status, step = summary.get("status"), summary.get("step")
        if status not in STATUSES:
            raise RunDirError(
                f"{self.summary} has status={status!r}, not one of {', '.join(STATUSES)}; {way_out}"
            )
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise RunDirError(f"{self.summary} has step={step!r}, not an integer >= 0; {way_out}")
        return summary

    def validations(self, metric: str) -> list[dict[str, float]]:
        """eval.csv's validation rows as summary records: step, loss and ``metric``."""
        return [
            {STEP: int(row[STEP]), LOSS: float(row[LOSS]), metric: float(row[metric])}
            for row in read_csv(self.eval)
            if row[SPLIT] == "val"
        ]

    def write_summary(self, summary: dict[str, Any]) -> None:
        atomic_write_text(self.summary, json.dumps(summary, indent=2, sort_keys=False) + "\n")

    def clear(self) -> None:
        """Remove an earlier attempt's outputs (the caller rewrites the saved config)."""
        for name in self.OUTPUTS:
            target = self.path / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()

    def set_aside(self) -> Path | None:
        """Move everything in the directory into a new sibling ``<name>.replaced-<UTC time>``
        and return it (None when there was nothing). The directory itself stays, so a lock
        held on it stays held."""
        entries = list(self.path.iterdir()) if self.path.is_dir() else []
        if not entries:
            return None
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
        aside = self.path.with_name(f"{self.path.name}{REPLACED}{stamp}")
        aside.mkdir()
        for entry in entries:
            entry.rename(aside / entry.name)
        _fsync_dir(aside)
        _fsync_dir(self.path)
        return aside

    def remove_temporaries(self) -> None:
        """Delete half-written files a killed run left (see atomic_write); call under lock().

        Only atomic_write's own names (``.<written file>.<random>.tmp``, regular files) go:
        a user's ``.notes.tmp`` or a directory named like a temporary is left alone.
        """
        for folder in (self.path, self.checkpoint.parent, self.config.parent):
            for name in WRITTEN_FILES:
                for stale in folder.glob(f".{glob.escape(name)}.*.tmp"):
                    if stale.is_file() and not stale.is_symlink():
                        stale.unlink()

    def truncate_logs(self, last_step: int) -> None:
        """Cut every CSV back to ``last_step``, the step the run resumes from.

        Test rows go too: the test split is evaluated only after training, just before the
        final checkpoint, so a run killed between the two resumes at its last step and
        evaluates it again; keeping the old row would duplicate it.
        """
        split = EVAL_COLUMNS.index(SPLIT)
        truncate_csv(
            self.eval, last_step, drop=lambda line: line.split(",")[split : split + 1] == ["test"]
        )
        for path in (self.metrics, self.diagnostics):
            truncate_csv(path, last_step)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold an exclusive lock on the directory, so two processes never share one run."""
        fd = _lock_directory(self.path, create=True)
        if fd is None:
            raise RunDirError(
                f"{self.path} is in use by another process (a sweep with duplicate run names, "
                "or the same command started twice?); wait for it to end, or stop it"
            )
        try:
            yield
        finally:
            os.close(fd)

    def remove_if_empty(self, up_to: Path) -> None:
        """Remove this directory and its empty parents up to ``up_to`` (inclusive) if empty:
        a run refused before it wrote anything leaves nothing behind.

        The run directory goes only while this process holds its lock: an empty directory
        can belong to a live run still building its data, which a refused second process
        must not pull out from under it.
        """
        stop = up_to.resolve()
        current = self.path.resolve()
        fd = _lock_directory(current) if current.is_dir() else None
        if fd is None:
            return
        try:
            current.rmdir()
        except OSError:  # not empty, or gone
            return
        finally:
            os.close(fd)
        while current != stop and stop in current.parents:
            current = current.parent
            try:
                current.rmdir()
            except OSError:
                return


def _lock_directory(path: Path, create: bool = False) -> int | None:
    """An open descriptor holding the exclusive lock of directory ``path``, or None when
    another process holds it (or, unless ``create``, the directory is gone). The lock is kept
    only on the inode the path still names once locked, so a directory removed (and made
    again) meanwhile is never used through a stale descriptor."""
    while True:
        if create:
            path.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            if create:
                continue
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)
