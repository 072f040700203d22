"""The shared trainer: one loop for every Task, image classifier or character language model.

Everything task-specific (batches, loss, evaluation, carried hidden state) sits behind
experiments.task.Task, so this loop never branches on the kind of data. It stays cheap: the
loss is read back from the device only at logging points (every ``trainer.log_every`` steps,
where metrics.csv gets the mean over the window), the learning rate is set only when the
schedule changes it, and evaluation and checkpoint writes are kept out of ``time_s``.

Speed options (``trainer.*``): ``channels_last`` weights, ``compile`` (torch.compile of the model
for training steps), ``precision`` (bf16 autocast), ``activation_backend`` (the fused units'
kernels, see activations.backend), ``flush_denormal`` (subnormal floats read and written as
zero on the CPU, on every OpenMP thread (experiments.denormals): tiny gradients and GRU states
underflow into subnormals, whose arithmetic is many times slower; NIN with ELU trained 1.7x
faster without them, a ReLU GRU 2.2x (scripts/bench_train.py); off by default because it
changes values below 1.2e-38).

The first step of every process runs with the clock paused, because it is where torch.compile
and the activation kernels compile (tens of seconds on a CPU); its wall time is ``compile_s`` in
summary.json. On CUDA, cuDNN picks its fastest kernels
(``cudnn.benchmark``) unless ``trainer.deterministic``. Per-layer diagnostics
(``trainer.diagnostics.every``) run outside the clock too; see experiments.diagnostics.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import logging
import math
import os
import platform
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

import activations
from experiments import checkpoint, diagnostics, loggers
from experiments.data import build_task
from experiments.denormals import flush_denormals
from experiments.inits import initialize
from experiments.models import build_model
from experiments.optim import (
    Schedule,
    build_optimizer,
    build_schedule,
    describe_groups,
    set_lr,
)
from experiments.precision import precision_warning, resolve_precision
from experiments.rundir import (
    EVAL_COLUMNS,
    METRICS_COLUMNS,
    CsvLog,
    RunDir,
    atomic_write_text,
    read_csv,
)
from experiments.sample import sample
from experiments.task import Task

log = logging.getLogger("actlab")


class Interrupted(Exception):
    """SIGINT/SIGTERM arrived; the run saved a checkpoint and was marked ``interrupted``."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum


@dataclass
class Components:
    """What one run trains: built from the config by ``build``."""

    task: Task
    model: nn.Module
    optimizer: torch.optim.Optimizer
    schedule: Schedule
    device: torch.device
    total_steps: int
    precision: str  # trainer.precision with ``auto`` resolved (experiments.precision)


def options(node: DictConfig) -> dict[str, Any]:
    """A config group as plain keyword arguments (lists, not ListConfig)."""
    out = OmegaConf.to_container(node, resolve=True)
    assert isinstance(out, dict)
    return out


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def seed_everything(seed: int, deterministic: bool) -> None:
    """Seed every global generator; deterministic mode also refuses nondeterministic kernels."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(deterministic)
    # cuDNN autotuning: only CUDA convs read it; it picks kernels by timing, so not when
    # results must repeat exactly.
    torch.backends.cudnn.benchmark = not deterministic


def planned_steps(max_steps: int | None, max_epochs: float | None, steps_per_epoch: int) -> int:
    """The step budget: the smaller of max_steps and max_epochs (whichever are set)."""
    budgets = [] if max_steps is None else [max_steps]
    if max_epochs is not None:
        budgets.append(max(1, math.ceil(max_epochs * steps_per_epoch)))
    return min(budgets)


def build(cfg: DictConfig) -> Components:
    """Task, model (initialised), optimizer and schedule for ``cfg``, seeded by ``cfg.seed``."""
    device = resolve_device(cfg.trainer.device)
    precision = resolve_precision(cfg.trainer.precision, device)
    warning = precision_warning(precision, device)
    if warning:
        log.warning(warning)
    activations.set_backend(cfg.trainer.activation_backend)  # null: env var or library default
    if not flush_denormals(cfg.trainer.flush_denormal) and cfg.trainer.flush_denormal:
        log.warning("trainer.flush_denormal=true: this CPU cannot flush denormals; ignored")
    seed_everything(cfg.seed, cfg.trainer.deterministic)
    dataset = options(cfg.dataset)
    task = build_task(
        dataset.pop("name"), device=device, seed=cfg.seed, data_dir=cfg.paths.data_dir, **dataset
    )
    unit = options(cfg.activation)
    act = functools.partial(activations.build, unit.pop("name"), **unit)
    arch = options(cfg.model)
    model = build_model(
        arch.pop("name"),
        act,
        num_outputs=task.num_outputs,
        in_channels=task.in_channels,
        **arch,
    ).to(device)
    init = options(cfg.init)
    initialize(model, init.pop("name"), batches=lambda i: task.train_batch(i)[0], **init)
    if cfg.trainer.channels_last:
        model = model.to(memory_format=torch.channels_last)
    total = planned_steps(cfg.trainer.max_steps, cfg.trainer.max_epochs, task.steps_per_epoch)
    return Components(
        task=task,
        model=model,
        optimizer=build_optimizer(model, options(cfg.optimizer)),
        schedule=build_schedule(
            options(cfg.schedule), steps_per_epoch=task.steps_per_epoch, total_steps=total
        ),
        device=device,
        total_steps=total,
        precision=precision,
    )


class Stopwatch:
    """Training time: started with the loop, paused around evaluation and checkpoints.

    ``clock`` is wall time by default; ``time.process_time`` gives the process's CPU time (all
    threads), which another process on the same cores cannot inflate: a contended run waits
    longer, but the CPU seconds its work costs barely change (README, "Time on a shared CPU").
    """

    def __init__(
        self, elapsed: float = 0.0, clock: Callable[[], float] = time.perf_counter
    ) -> None:
        self._elapsed = elapsed
        self._clock = clock
        self._since: float | None = None

    def start(self) -> None:
        self._since = self._clock()

    def read(self) -> float:
        running = 0.0 if self._since is None else self._clock() - self._since
        return self._elapsed + running

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        self._elapsed, since = self.read(), self._since
        self._since = None
        try:
            yield
        finally:
            if since is not None:
                self._since = self._clock()


def environment() -> dict[str, Any]:
    """Versions and code identity for summary.json."""
    root = Path(__file__).resolve().parents[1]

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(
                ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {
        "versions": {
            "actlab": importlib.metadata.version("actlab"),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "numpy": np.__version__,
            "platform": platform.platform(),
        },
        "git_commit": commit,
        "git_dirty": bool(status) if status is not None else None,
    }


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class Trainer:
    """Runs ``Components`` to the end of their budget, writing the run directory as it goes."""

    def __init__(self, parts: Components, cfg: DictConfig, run: RunDir) -> None:
        self.parts = parts
        self.cfg = cfg.trainer
        self.config = cfg
        self.run = run
        self.sink: loggers.Sink | None = None
        self.label = cfg.run_name
        self.seed = cfg.seed
        #: kept in every checkpoint: what trained, checked on resume (experiments.resume).
        self.config_yaml = OmegaConf.to_yaml(cfg, resolve=True)
        self.metric = parts.task.metric
        self.params = [p for p in parts.model.parameters() if p.requires_grad]
        #: what training steps call; evaluation, diagnostics and checkpoints use the plain model
        #: (its state_dict keys, and no second compile for eval mode).
        self.step_model: nn.Module = parts.model
        if self.cfg.compile:
            activations.fused.keep_draws_out_of_compiled_graphs()
            self.step_model = torch.compile(parts.model)  # type: ignore[assignment]
        self._warm = False
        self.diagnostics_every = self.cfg.diagnostics.every or 0
        self.autocast = functools.partial(
            torch.autocast,
            device_type=parts.device.type,
            dtype=torch.bfloat16,
            enabled=parts.precision == "bf16",
        )
        self.step = 0
        self.watch = Stopwatch()
        self.cpu_watch = Stopwatch(clock=time.process_time)
        self._wall = Stopwatch()
        self._wall.start()
        zero = functools.partial(torch.zeros, (), dtype=torch.float64, device=parts.device)
        #: device-side sums since the last metrics.csv row (read back only when logging).
        self.window: dict[str, Any] = {"loss": zero(), "grad_norm": zero(), "count": 0}
        self.first_loss: torch.Tensor | float | None = None
        self._signal: int | None = None
        model = parts.model
        self.summary: dict[str, Any] = {
            "status": "running",
            "experiment": cfg.experiment_name,
            "run_name": cfg.run_name,
            **{g: cfg[g].name for g in ("activation", "model", "dataset", "init", "optimizer")},
            "seed": cfg.seed,
            "metric": self.metric,
            "step": 0,
            "total_steps": parts.total_steps,
            "steps_per_epoch": parts.task.steps_per_epoch,
            "epoch": 0.0,
            "stop_reason": None,
            "diverged_step": None,
            "error": None,
            "final": None,
            "best": None,
            "test": None,
            "train_time_s": 0.0,
            "train_cpu_s": 0.0,
            "wall_time_s": 0.0,
            "num_params": sum(p.numel() for p in model.parameters()),
            "num_activation_params": sum(
                p.numel() for p in activations.activation_parameters(model)
            ),
            "param_groups": describe_groups(parts.optimizer),
            "device": str(parts.device),
            "device_name": (
                torch.cuda.get_device_name(parts.device)
                if parts.device.type == "cuda"
                else platform.processor() or platform.machine()
            ),
            "threads": torch.get_num_threads(),
            "precision": parts.precision,
            "channels_last": self.cfg.channels_last,
            "compile": self.cfg.compile,
            "flush_denormal": self.cfg.flush_denormal,
            "compile_s": None,
            "activation_backend": activations.get_backend(),
            **environment(),
            "data": parts.task.meta,
            "started_at": _now(),
            "updated_at": None,
            "resumed_at_steps": [],
        }

    # -- summary ------------------------------------------------------------------------------

    def write_summary(self, **changes: Any) -> None:
        """Update and atomically rewrite summary.json; step, epoch and times are current."""
        self.summary.update(
            changes,
            step=self.step,
            epoch=self._epoch(),
            train_time_s=round(self.watch.read(), 3),
            train_cpu_s=round(self.cpu_watch.read(), 3),
            wall_time_s=round(self._wall.read(), 3),
            updated_at=_now(),
        )
        self.run.write_summary(self.summary)

    def fail(self, err: BaseException) -> None:
        """Record a crash: status ``failed`` with the error, at the step reached."""
        self.write_summary(status="failed", error=f"{type(err).__name__}: {err}")

    # -- the loop -----------------------------------------------------------------------------

    def fit(self, state: dict[str, Any] | None = None) -> str:
        """Train from scratch or from a checkpoint ``state``; returns the final status,
        ``completed`` or ``diverged``. Raises Interrupted (after saving a checkpoint) when
        SIGINT or SIGTERM arrives."""
        if state is not None:
            self._restore(state)
        tty = sys.stderr.isatty()
        with contextlib.ExitStack() as stack:
            metric_columns = METRICS_COLUMNS + (("grad_norm",) if self.cfg.log_grad_norm else ())
            self.metrics_log = stack.enter_context(CsvLog(self.run.metrics, metric_columns))
            self.eval_log = stack.enter_context(CsvLog(self.run.eval, (*EVAL_COLUMNS, self.metric)))
            self.sink = loggers.open_sink(self.config, self.run, first_step=self.step)
            if self.sink is not None:
                stack.callback(self.sink.close)
            bar = stack.enter_context(
                tqdm(
                    total=self.parts.total_steps,
                    initial=self.step,
                    desc=self.label,
                    unit="step",
                    dynamic_ncols=True,
                    disable=not tty,
                )
            )
            if tty:
                stack.enter_context(logging_redirect_tqdm())
            stack.enter_context(self._stop_on_signals())
            if self.diagnostics_every:
                self.probe = diagnostics.task_loss(self.parts.task)
                self.diag_log = stack.enter_context(
                    CsvLog(self.run.diagnostics, diagnostics.COLUMNS)
                )
            self.write_summary()
            self.watch.start()
            self.cpu_watch.start()
            if self.diagnostics_every and self.step == 0:
                self._diagnose()
            if self._train(bar) == "diverged":
                self.write_summary(status="diverged", diverged_step=self.step)
                return "diverged"
            if (self.summary["final"] or {}).get("step") != self.step:
                self._evaluate("val")
            self._evaluate("test")
            self._save()
            self._write_samples()
            self.write_summary(status="completed")
        return "completed"

    def train_step(self, step: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One optimisation step on batch ``step``: (loss, grad norm or None), both left on the
        device, so nothing here waits for it."""
        parts = self.parts
        batch = parts.task.train_batch(step)
        with self.autocast():
            loss = parts.task.training_loss(self.step_model, batch, step)
        parts.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = self._clip_and_measure()
        parts.optimizer.step()
        return loss.detach(), grad_norm

    def _warm_step(self, step: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The process's first step, off the clock: compiles happen here (``compile_s``)."""
        with self._pause():
            start = time.perf_counter()
            out = self.train_step(step)
            self._sync()
            self.summary["compile_s"] = round(time.perf_counter() - start, 3)
        self._warm = True
        return out

    def _train(self, bar: tqdm) -> str | None:
        """Step until the budget is spent (None) or the loss diverges ("diverged")."""
        parts, cfg = self.parts, self.cfg
        parts.model.train()
        multiplier = None
        while self.step < parts.total_steps:
            step = self.step
            if parts.schedule(step) != multiplier:
                multiplier = parts.schedule(step)
                set_lr(parts.optimizer, multiplier)
            loss, grad_norm = self.train_step(step) if self._warm else self._warm_step(step)
            self.step = step = step + 1
            self._accumulate(loss, grad_norm)
            bar.update(1)
            at_end = step == parts.total_steps
            per_step = cfg.divergence_check == "step"
            if per_step and self._diverged(loss.item()):  # a sync per step, as char-rnn checks
                self._log_window(bar)
                log.warning("[%s] diverged at step %d (train loss %s)", self.label, step, loss)
                return "diverged"
            if step % cfg.log_every == 0 or at_end:
                mean = self._log_window(bar)
                if not per_step and self._diverged(mean):
                    log.warning("[%s] diverged at step %d (train loss %s)", self.label, step, mean)
                    return "diverged"
            if self.diagnostics_every and (step % self.diagnostics_every == 0 or at_end):
                self._diagnose()
            if cfg.eval_every and step % cfg.eval_every == 0 and not at_end:
                self._evaluate("val")
            if cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and not at_end:
                self._save()
            if self._signal is not None:
                self._save()
                self.write_summary(status="interrupted")
                stop = Interrupted(self._signal)
                log.warning(
                    "[%s] %s at step %d; checkpoint saved, rerun to resume", self.label, stop, step
                )
                raise stop
            if cfg.max_time_s is not None and self.watch.read() >= cfg.max_time_s:
                self.summary["stop_reason"] = "max_time_s"
                if self.window["count"]:
                    self._log_window(bar)
                return None
        self.summary["stop_reason"] = (
            "max_steps" if parts.total_steps == cfg.max_steps else "max_epochs"
        )
        return None

    def _clip_and_measure(self) -> torch.Tensor | None:
        """Clip gradients as configured; return their total norm (before norm clipping) when
        it is logged or clipped, as a device tensor (no sync)."""
        cfg = self.cfg
        if cfg.grad_clip_value is not None:
            torch.nn.utils.clip_grad_value_(self.params, cfg.grad_clip_value)
        if cfg.grad_clip_norm is not None:
            return torch.nn.utils.clip_grad_norm_(self.params, cfg.grad_clip_norm)
        if cfg.log_grad_norm:
            grads = [p.grad for p in self.params if p.grad is not None]
            return torch.nn.utils.get_total_norm(grads)
        return None

    def _accumulate(self, loss: torch.Tensor, grad_norm: torch.Tensor | None) -> None:
        if self.first_loss is None:
            self.first_loss = loss.clone()
        self.window["loss"] += loss
        if grad_norm is not None:
            self.window["grad_norm"] += grad_norm
        self.window["count"] += 1

    def _epoch(self) -> float:
        return self.step / self.parts.task.steps_per_epoch

    def _log_window(self, bar: tqdm) -> float:
        """Write one metrics.csv row (the window's mean loss): the loop's only sync point."""
        count = self.window["count"]
        mean = self.window["loss"].item() / count
        row = {
            "step": self.step,
            "epoch": self._epoch(),
            "time_s": round(self.watch.read(), 3),
            "cpu_s": round(self.cpu_watch.read(), 3),
            "train_loss": mean,
            "lr": self.parts.optimizer.param_groups[0]["lr"],
        }
        if self.cfg.log_grad_norm:
            row["grad_norm"] = self.window["grad_norm"].item() / count
        self.metrics_log.write(**row)
        if self.sink is not None:
            self.sink.log(loggers.train_values(row), self.step)
        self.window["loss"].zero_()
        self.window["grad_norm"].zero_()
        self.window["count"] = 0
        if bar.disable:
            log.info(
                "[%s] step %d/%d epoch %.2f loss %.4f lr %.3g",
                self.label,
                self.step,
                self.parts.total_steps,
                row["epoch"],
                mean,
                row["lr"],
            )
        else:
            bar.set_postfix(loss=f"{mean:.4f}", lr=f"{row['lr']:.3g}", refresh=False)
        return mean

    def _diverged(self, mean: float) -> bool:
        """NaN/inf, or above ``divergence_factor`` times the first step's loss (``mean`` is a
        log window's mean loss, or one step's loss with ``divergence_check: step``)."""
        if not math.isfinite(mean):
            return True
        if isinstance(self.first_loss, torch.Tensor):
            self.first_loss = self.first_loss.item()
        factor = self.cfg.divergence_factor
        return factor is not None and mean > factor * self.first_loss

    def _sync(self) -> None:
        if self.parts.device.type == "cuda":
            torch.cuda.synchronize(self.parts.device)

    @contextlib.contextmanager
    def _pause(self) -> Iterator[None]:
        """Stop the training clock once the device has finished the queued training work."""
        self._sync()
        with self.watch.paused(), self.cpu_watch.paused():
            yield
            self._sync()

    def _diagnose(self) -> None:
        """diagnostics.csv rows for the current weights (off the clock; see diagnostics)."""
        with self._pause():

            def loss_of(model: nn.Module) -> torch.Tensor:
                with self.autocast():
                    return self.probe(model)

            for layer, metric, value in diagnostics.measure(self.parts.model, loss_of):
                self.diag_log.write(step=self.step, layer=layer, metric=metric, value=value)

    def _write_samples(self) -> None:
        """samples.txt for language models (tasks with a ``vocab``); a failure only warns."""
        vocab = getattr(self.parts.task, "vocab", None)
        if vocab is None:
            return
        try:
            text = sample(self.parts.model, vocab, num_chars=500, temperature=0.8, seed=self.seed)
            atomic_write_text(self.run.path / "samples.txt", text)
        except Exception as err:  # a sampling bug must not fail a finished run
            log.warning(
                "[%s] could not write samples.txt: %s: %s", self.label, type(err).__name__, err
            )

    def _evaluate(self, split: str) -> None:
        with self._pause(), self.autocast():
            result = self.parts.task.evaluate(self.parts.model, split)
        record = {"step": self.step, "loss": result["loss"], self.metric: result[self.metric]}
        self.eval_log.write(
            epoch=self._epoch(), time_s=round(self.watch.read(), 3), split=split, **record
        )
        if self.sink is not None:
            values = {"loss": record["loss"], self.metric: record[self.metric]}
            self.sink.log({f"{split}/{k}": float(v) for k, v in values.items()}, self.step)
        log.info(
            "[%s] %s at step %d: loss %.4f %s %.4f",
            self.label,
            split,
            self.step,
            record["loss"],
            self.metric,
            record[self.metric],
        )
        if split == "test":
            self.summary["test"] = record
        else:
            self._note_val(record)
            self.write_summary()

    def _note_val(self, record: dict[str, float]) -> None:
        """``final`` is the latest validation result, ``best`` the lowest metric so far."""
        self.summary["final"] = record
        best = self.summary["best"]
        if best is None or record[self.metric] < best[self.metric]:
            self.summary["best"] = record

    # -- checkpoints --------------------------------------------------------------------------

    def _save(self) -> None:
        with self._pause():
            first = self.first_loss
            checkpoint.save(
                self.run.checkpoint,
                {
                    "step": self.step,
                    "model": self.parts.model.state_dict(),
                    "optimizer": self.parts.optimizer.state_dict(),
                    "task": self.parts.task.state_dict(),
                    "rng": checkpoint.rng_state(),
                    "train_time_s": self.watch.read(),
                    "train_cpu_s": self.cpu_watch.read(),
                    "wall_time_s": self._wall.read(),
                    "first_loss": first.item() if isinstance(first, torch.Tensor) else first,
                    "window": self.window,
                    "config": self.config_yaml,
                },
            )

    def _restore(self, state: dict[str, Any]) -> None:
        """Continue from a checkpoint; the CSVs were already cut back to its step."""
        self.parts.model.load_state_dict(state["model"])
        self.parts.optimizer.load_state_dict(state["optimizer"])
        self.parts.task.load_state_dict(state["task"])
        checkpoint.set_rng_state(state["rng"])
        self.step = state["step"]
        self.first_loss = state["first_loss"]
        self.window = state["window"]
        self.watch = Stopwatch(state["train_time_s"])
        # checkpoints from before CPU time was recorded count it from here
        self.cpu_watch = Stopwatch(state.get("train_cpu_s", 0.0), clock=time.process_time)
        self._wall = Stopwatch(state["wall_time_s"])
        self._wall.start()
        for row in read_csv(self.run.eval):
            if row["split"] == "val":
                record = {"step": int(row["step"]), "loss": float(row["loss"])}
                self._note_val({**record, self.metric: float(row[self.metric])})
        before = self.run.read_summary() or {}
        self.summary["started_at"] = before.get("started_at", self.summary["started_at"])
        self.summary["resumed_at_steps"] = [*before.get("resumed_at_steps", []), self.step]
        log.info("[%s] resuming at step %d", self.label, self.step)

    # -- signals ------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _stop_on_signals(self) -> Iterator[None]:
        """SIGINT/SIGTERM ask the loop to checkpoint and stop after the current step; the
        old handlers come back at once, so a second signal acts immediately."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

        def request_stop(signum: int, frame: object) -> None:
            self._signal = signum
            for sig, handler in previous.items():
                signal.signal(sig, handler)

        for sig in previous:
            signal.signal(sig, request_stop)
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
