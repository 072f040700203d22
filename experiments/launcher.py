"""``hydra/launcher=joblib``: a sweep's jobs in parallel, each in a process of its own, supervised.

Hydra's joblib launcher runs jobs in a loky pool, which fails as a whole: one worker killed
(the OOM killer's way) ends the sweep with TerminatedWorkerError, kills the other jobs in flight
(left ``running``) and never starts the rest; and a parent killed or stopped by SIGTERM leaves
its workers training as orphans that hold their run directories' locks. This launcher keeps
the joblib launcher's name and ``n_jobs`` (-1: all cores, -2: all but one, ...) and runs every
job in its own process, at most ``n_jobs`` at a time, so that:

- a job whose process dies fails alone: its summary.json is marked ``failed`` with the signal
  that killed it, the other jobs run on, and the sweep ends with one line naming the lost job
  (exit 1); rerunning the command resumes it from its last checkpoint;
- SIGTERM or Ctrl-C to the sweep is passed to every running job, which checkpoints and is
  marked ``interrupted``; no new job starts, and the sweep exits 128 + the signal once they
  have stopped (a second signal stops them at once);
- a job whose sweep process dies (SIGKILL) notices at once and stops the same way, so no
  orphan trains on and a rerun of the command resumes every job.

Jobs run in a new process group, so a terminal's Ctrl-C reaches the sweep only, which stops
its jobs once, in order.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

import cloudpickle
from hydra.core.hydra_config import HydraConfig
from hydra.core.singleton import Singleton
from hydra.core.utils import (
    JobReturn,
    JobStatus,
    configure_log,
    filter_overrides,
    run_job,
    setup_globals,
)
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, open_dict
from tqdm import tqdm

from experiments.cores import parallel_jobs
from experiments.rundir import RunDir, RunDirError

log = logging.getLogger(__name__)

#: how often the sweep looks for a stop request while it waits for its jobs (seconds).
STOP_POLL_S = 0.5


class JobLost(RuntimeError):
    """A job's process ended without a result (killed, or stopped by a signal)."""


class SweepStopped(Exception):
    """The sweep was asked to stop (SIGTERM / SIGINT); its running jobs have checkpointed."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"sweep stopped by {signal.Signals(signum).name}")
        self.signum = signum


@dataclass
class _Job:
    index: int
    overrides: Sequence[str]
    process: Any
    reader: Connection
    result: JobReturn | None = None
    received: bool = field(default=False)


class SupervisedLauncher(Launcher):
    """``hydra/launcher=joblib`` (stored by hydra_plugins/actlab_launcher)."""

    def __init__(self, n_jobs: int = -1) -> None:
        self.n_jobs = n_jobs
        #: per job, the end of a pipe only this process holds: its closing (at exit, however
        #: the process ends) tells the job that its sweep is gone.
        self._lifelines: dict[int, Connection] = {}
        self.config: DictConfig | None = None
        self.task_function: TaskFunction | None = None
        self.hydra_context: HydraContext | None = None

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.config = config
        self.task_function = task_function
        self.hydra_context = hydra_context

    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        assert self.config is not None and self.hydra_context is not None
        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        width = parallel_jobs(self.n_jobs)
        log.info("Launching %d jobs, %d at a time, in %s", len(job_overrides), width, sweep_dir)
        for idx, overrides in enumerate(job_overrides):
            log.info("\t#%d : %s", initial_job_idx + idx, " ".join(filter_overrides(overrides)))
        context = _job_context()
        waiting = list(enumerate(job_overrides, start=initial_job_idx))
        running: list[_Job] = []
        returns: dict[int, JobReturn] = {}
        with _stop_requests() as stop:
            while waiting or running:
                while waiting and len(running) < width and stop.signum is None:
                    index, overrides = waiting.pop(0)
                    running.append(self._start(context, index, overrides))
                if not running:
                    break
                handles = [j.reader for j in running] + [j.process.sentinel for j in running]
                ready = wait(handles, timeout=STOP_POLL_S)  # wakes to pass on a stop request
                for job in list(running):
                    if job.reader in ready and not job.received:
                        job.result = _receive(job.reader)
                        job.received = True
                    if job.process.sentinel in ready or not job.process.is_alive():
                        job.process.join()
                        if not job.received and job.reader.poll():
                            job.result = _receive(job.reader)
                        running.remove(job)
                        job.reader.close()
                        self._lifelines.pop(job.index).close()
                        returns[job.index] = job.result or self._lost(job)
                for job in running:
                    stop.forward(job.process.pid)
        if stop.signum is not None:
            raise SweepStopped(stop.signum)
        return [returns[i] for i in sorted(returns)]

    def _start(self, context: Any, index: int, overrides: Sequence[str]) -> _Job:
        reader, writer = context.Pipe(duplex=False)
        lifeline, self._lifelines[index] = context.Pipe(duplex=False)
        payload = cloudpickle.dumps(
            (
                index,
                list(overrides),
                self.hydra_context,
                self.config,
                self.task_function,
                Singleton.get_state(),
            )
        )
        process = context.Process(
            target=_job_main, args=(payload, writer, lifeline), name=f"actlab-job-{index}"
        )
        process.start()
        writer.close()
        lifeline.close()
        return _Job(index=index, overrides=overrides, process=process, reader=reader)

    def _lost(self, job: _Job) -> JobReturn:
        """The JobReturn of a job whose process ended without one; its run is recorded."""
        assert self.config is not None and self.hydra_context is not None
        code = job.process.exitcode
        if code is not None and code < 0:
            how = f"was killed by {signal.Signals(-code).name}"
            if -code == signal.SIGKILL:
                how += " (out of memory?)"
        elif code is not None and code > 128 and code - 128 in (signal.SIGTERM, signal.SIGINT):
            how = f"was stopped by {signal.Signals(code - 128).name}"
        else:
            how = f"exited with status {code} before returning"
        sweep_config = self.hydra_context.config_loader.load_sweep_config(
            self.config, list(job.overrides)
        )
        run_dir = Path(str(sweep_config.hydra.sweep.dir)) / str(sweep_config.hydra.sweep.subdir)
        recorded = _record_lost(RunDir(run_dir), f"job process {how}")
        message = f"job #{job.index} ({run_dir}) {how}; {recorded}"
        log.warning(message)
        ret = JobReturn(
            overrides=list(job.overrides),
            cfg=sweep_config,
            hydra_cfg=sweep_config,
            working_dir=str(run_dir),
            task_name=str(sweep_config.hydra.job.name),
            status=JobStatus.FAILED,
        )
        ret.return_value = JobLost(message)
        ret.status = JobStatus.FAILED
        return ret


def _receive(reader: Connection) -> JobReturn | None:
    try:
        return cloudpickle.loads(reader.recv_bytes())
    except (EOFError, OSError):
        return None


def _record_lost(rundir: RunDir, error: str) -> str:
    """Mark the run of a lost job ``failed`` (unless it had finished); says what was done."""
    try:
        with rundir.lock():
            summary = rundir.read_summary()
            if summary is None:
                return "it had not started training; rerun the command to run it"
            if summary["status"] in ("completed", "diverged", "interrupted"):
                return f"its run is {summary['status']} (see {rundir.summary})"
            summary.update(status="failed", error=error)
            rundir.write_summary(summary)
    except RunDirError as err:
        return f"not recorded ({err})"
    return f"recorded as failed in {rundir.summary}; rerun the command to resume it"


class _StopRequests:
    """The first SIGTERM/SIGINT the sweep receives, passed on to each running job."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._told: dict[int, int] = {}
        self._count = 0

    def request(self, signum: int) -> None:
        self.signum = self.signum or signum
        self._count += 1

    def forward(self, pid: int) -> None:
        """Send each running job the signal once per signal the sweep received."""
        if self.signum is None or self._told.get(pid, 0) >= self._count:
            return
        self._told[pid] = self._count
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, self.signum)


@contextlib.contextmanager
def _stop_requests() -> Iterator[_StopRequests]:
    stop = _StopRequests()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous:
        signal.signal(sig, lambda signum, frame: stop.request(signum))
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


# -- in the job's process ----------------------------------------------------------------------


def _job_context() -> Any:
    """Jobs fork from a server process that has imported the trainer once (a fresh interpreter
    per job would import torch each time), never from the sweep's own process. ``__main__``
    (experiments.train under ``python -m``) is imported there as it would be in each job."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["__main__", "experiments.trainer"])
    return context


def _job_main(payload: bytes, writer: Connection, lifeline: Connection) -> None:
    """Run one job (Hydra's run_job, as the joblib launcher does) and send back its JobReturn."""
    os.setpgid(0, 0)  # a terminal's Ctrl-C goes to the sweep, which passes it on once
    tqdm.set_lock(threading.RLock())  # one process: no semaphore left behind if it is killed
    threading.Thread(target=_stop_when_orphaned, args=(lifeline,), daemon=True).start()
    index, overrides, hydra_context, config, task_function, singleton = cloudpickle.loads(payload)
    setup_globals()
    Singleton.set_state(singleton)
    sweep_config = hydra_context.config_loader.load_sweep_config(config, overrides)
    with open_dict(sweep_config):
        sweep_config.hydra.job.id = f"{sweep_config.hydra.job.name}_{index}"
        sweep_config.hydra.job.num = index
    HydraConfig.instance().set_config(sweep_config)
    ret = run_job(
        hydra_context=hydra_context,
        config=sweep_config,
        task_function=task_function,
        job_dir_key="hydra.sweep.dir",
        job_subdir_key="hydra.sweep.subdir",
    )
    try:
        data = cloudpickle.dumps(ret)
    except Exception:  # an exception that does not pickle: keep its text
        ret.return_value = JobLost(f"{type(ret._return_value).__name__}: {ret._return_value}")
        ret.status = JobStatus.FAILED
        data = cloudpickle.dumps(ret)
    writer.send_bytes(data)
    writer.close()


def _stop_when_orphaned(lifeline: Connection) -> None:
    """SIGTERM this job (it checkpoints and stops) once its sweep's process is gone: the
    sweep never writes to ``lifeline``, so reading it returns only when its end closes."""
    with contextlib.suppress(EOFError, OSError):
        lifeline.recv_bytes()
    os.kill(os.getpid(), signal.SIGTERM)
