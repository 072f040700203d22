"""train.log in the run directory: every log line of the run, and the traceback of a crash.

Hydra's own job log is not used: it opens its file before the config is validated, and a
rejected config must leave no run directory behind. This handler is attached to the root logger
while ``experiments.train.run`` holds the directory, and opens its file at the first record, so
a run refused before it logs anything still leaves the directory empty. The file is appended to,
so a resumed run's log follows the earlier attempts'.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from experiments.rundir import RunDir

FORMAT = "[%(asctime)s][%(name)s][%(levelname)s] %(message)s"

log = logging.getLogger("actlab")


@contextlib.contextmanager
def run_log(rundir: RunDir) -> Iterator[None]:
    """Copy every record of this process to ``rundir.log`` (INFO and above) while in the block;
    an exception leaving the block is written there with its traceback once the run has
    started (its summary.json exists)."""
    handler = logging.FileHandler(rundir.log, encoding="utf-8", delay=True)
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.setLevel(logging.INFO)
    root = logging.getLogger()
    root.addHandler(handler)
    level = log.level
    if not log.isEnabledFor(logging.INFO):
        log.setLevel(logging.INFO)
    try:
        yield
    except BaseException as err:
        if rundir.summary.exists():
            record = log.makeRecord(
                log.name,
                logging.ERROR,
                __file__,
                0,
                "run stopped: %s: %s",
                (type(err).__name__, err),
                (type(err), err, err.__traceback__),
            )
            handler.handle(record)
        raise
    finally:
        root.removeHandler(handler)
        handler.close()
        log.setLevel(level)
