"""The shared trainer: one loop for every Task, image classifier or character language model.

Everything task-specific (batches, loss, evaluation, carried hidden state, text samples) sits
behind experiments.task.Task, so this loop never branches on the kind of data. The loop owns
only the order of events; what it writes is spelled by experiments.rundir and
experiments.summary, what it trains is built by experiments.components. It stays cheap: the
loss is read back from the device only at logging points (every ``trainer.log_every`` steps,
where metrics.csv gets the mean over the window, experiments.losswindow), the learning rate is
set only when the schedule changes it, and evaluation and checkpoint writes are kept out of
``time_s`` (experiments.clock).

Speed options (``trainer.*``): ``channels_last`` weights, ``compile`` (torch.compile of the model
for training steps), ``precision`` (bf16 autocast), ``activation_backend`` (the fused units'
kernels, see activations.backend), ``flush_denormal`` (subnormal floats read and written as
zero on the CPU, on every OpenMP thread (experiments.denormals): tiny gradients and GRU states
underflow into subnormals, whose arithmetic is many times slower; NIN with ELU trained 1.7x
faster without them, a ReLU GRU 2.2x (scripts/bench_train.py); off by default because it
changes values below 1.2e-38), ``reuse_freed_memory`` (on by default: glibc's malloc keeps freed
blocks for the next step instead of unmapping them, so large tensors stop page-faulting on
every step; experiments.heap).

The first step of every process runs with the clock paused, because it is where torch.compile
and the activation kernels compile (tens of seconds on a CPU); its wall time is ``compile_s`` in
summary.json. On CUDA, cuDNN picks its fastest kernels
(``cudnn.benchmark``) unless ``trainer.deterministic``. Per-layer diagnostics
(``trainer.diagnostics.every``) run outside the clock too; see experiments.diagnostics.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

import activations
from experiments import checkpoint, diagnostics
from experiments.clock import Clocks
from experiments.components import Components, sync
from experiments.losswindow import LossWindow
from experiments.optim import clip_gradients, set_lr
from experiments.recorder import Recorder
from experiments.rundir import RunDir
from experiments.stopping import Interrupted, StopRequest, stop_on_signals
from experiments.summary import new_summary, note_resume, note_validation, now

log = logging.getLogger("actlab")


class Trainer:
    """Runs ``Components`` to the end of their budget, writing the run directory as it goes."""

    def __init__(self, parts: Components, cfg: DictConfig, run: RunDir) -> None:
        self.parts, self.cfg, self.config, self.run = parts, cfg.trainer, cfg, run
        self.label, self.seed, self.metric = cfg.run_name, cfg.seed, parts.task.metric
        #: kept in every checkpoint: what trained, checked on resume (experiments.resume).
        self.config_yaml = OmegaConf.to_yaml(cfg, resolve=True)
        self.params = [p for p in parts.model.parameters() if p.requires_grad]
        #: what training steps call; evaluation, diagnostics and checkpoints use the plain model
        #: (its state_dict keys, and no second compile for eval mode).
        self.step_model: nn.Module = parts.model
        if self.cfg.compile:
            activations.fused.keep_draws_out_of_compiled_graphs()
            self.step_model = torch.compile(parts.model)  # type: ignore[assignment]
        self._warm = False
        self.diagnostics_every = self.cfg.diagnostics.every or 0
        self.autocast = parts.autocast
        self.step = 0
        self.clocks = Clocks()
        self.window = LossWindow(parts.device, self.cfg.divergence_factor)
        self.stop = StopRequest()
        self.summary: dict[str, Any] = new_summary(cfg, parts)

    def write_summary(self, **changes: Any) -> None:
        """Update and atomically rewrite summary.json; step, epoch and times are current."""
        times = {k: round(v, 3) for k, v in self.clocks.state().items()}
        self.summary.update(changes, step=self.step, epoch=self._epoch(), **times)
        self.summary.update(updated_at=now())
        self.run.write_summary(self.summary)

    def fail(self, err: BaseException) -> None:
        """Record a crash: status ``failed`` with the error, at the step reached."""
        self.write_summary(status="failed", error=f"{type(err).__name__}: {err}")

    def fit(self, state: dict[str, Any] | None = None) -> str:
        """Train from scratch or from a checkpoint ``state``; returns the final status,
        ``completed`` or ``diverged``. Raises Interrupted (after saving a checkpoint) when
        SIGINT or SIGTERM arrives."""
        if state is not None:
            self._restore(state)
        with contextlib.ExitStack() as stack:
            total = self.parts.total_steps
            self.record = Recorder(self.config, self.run, self.metric, self.step, total, stack)
            self.stop = stack.enter_context(stop_on_signals())
            if self.diagnostics_every:
                self.probe = diagnostics.task_loss(self.parts.task)
            self.write_summary()
            self.clocks.start_training()
            if self.diagnostics_every and self.step == 0:
                self._diagnose()
            if self._train() == "diverged":
                self.write_summary(status="diverged", diverged_step=self.step)
                return "diverged"
            if (self.summary["final"] or {}).get("step") != self.step:
                self._evaluate("val")
            self._evaluate("test")
            self._save()
            self.record.samples(self.parts.task.sample_text, self.parts.model, self.seed)
            self.write_summary(status="completed")
        return "completed"

    def train_step(self, step: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One optimisation step on batch ``step``: (loss, grad norm or None), both left on the
        device, so nothing here waits for it."""
        parts, cfg = self.parts, self.cfg
        batch = parts.task.train_batch(step)
        with self.autocast():
            loss = parts.task.training_loss(self.step_model, batch, step)
        parts.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = clip_gradients(
            self.params, cfg.grad_clip_value, cfg.grad_clip_norm, cfg.log_grad_norm
        )
        parts.optimizer.step()
        return loss.detach(), grad_norm

    def _warm_step(self, step: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The process's first step, off the clock: compiles happen here (``compile_s``)."""
        with self._pause():
            start = time.perf_counter()
            out = self.train_step(step)
            sync(self.parts.device)
            self.summary["compile_s"] = round(time.perf_counter() - start, 3)
        self._warm = True
        return out

    def _train(self) -> str | None:
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
            self.window.add(loss, grad_norm)
            self.record.progress.advance()
            at_end = step == parts.total_steps
            per_step = cfg.divergence_check == "step"
            if per_step and self.window.diverged(loss.item()):  # a sync per step, as char-rnn
                self._log_window()
                log.warning("[%s] diverged at step %d (train loss %s)", self.label, step, loss)
                return "diverged"
            if step % cfg.log_every == 0 or at_end:
                mean = self._log_window()
                if not per_step and self.window.diverged(mean):
                    log.warning("[%s] diverged at step %d (train loss %s)", self.label, step, mean)
                    return "diverged"
            if self.diagnostics_every and (step % self.diagnostics_every == 0 or at_end):
                self._diagnose()
            if cfg.eval_every and step % cfg.eval_every == 0 and not at_end:
                self._evaluate("val")
            if cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and not at_end:
                self._save()
            if self.stop.signum is not None:
                self._save()
                self.write_summary(status="interrupted")
                stop = Interrupted(self.stop.signum)
                log.warning(
                    "[%s] %s at step %d; checkpoint saved, rerun to resume", self.label, stop, step
                )
                raise stop
            if cfg.max_time_s is not None and self.clocks.train.read() >= cfg.max_time_s:
                self.summary["stop_reason"] = "max_time_s"
                if self.window.count:
                    self._log_window()
                return None
        self.summary["stop_reason"] = (
            "max_steps" if parts.total_steps == cfg.max_steps else "max_epochs"
        )
        return None

    def _epoch(self) -> float:
        return self.step / self.parts.task.steps_per_epoch

    def _log_window(self) -> float:
        """Write one metrics.csv row (the window's mean loss): the loop's only sync point."""
        mean, grad_norm = self.window.take(grad_norm=self.cfg.log_grad_norm)
        self.record.training(
            self.step,
            epoch=self._epoch(),
            time_s=round(self.clocks.train.read(), 3),
            cpu_s=round(self.clocks.cpu.read(), 3),
            train_loss=mean,
            lr=self.parts.optimizer.param_groups[0]["lr"],
            grad_norm=grad_norm,
        )
        return mean

    @contextlib.contextmanager
    def _pause(self) -> Iterator[None]:
        """Stop the training clocks once the device has finished the queued training work."""
        sync(self.parts.device)
        with self.clocks.paused():
            yield
            sync(self.parts.device)

    def _diagnose(self) -> None:
        """diagnostics.csv rows for the current weights (off the clock; see diagnostics)."""
        with self._pause():

            def loss_of(model: nn.Module) -> torch.Tensor:
                with self.autocast():
                    return self.probe(model)

            self.record.diagnosis(self.step, diagnostics.measure(self.parts.model, loss_of))

    def _evaluate(self, split: str) -> None:
        with self._pause(), self.autocast():
            result = self.parts.task.evaluate(self.parts.model, split)
        loss, score = result["loss"], result[self.metric]
        time_s = round(self.clocks.train.read(), 3)
        self.record.evaluation(split, self.step, loss, score, self._epoch(), time_s)
        record = dict(step=self.step, loss=loss, **{self.metric: score})
        if split == "test":
            self.summary["test"] = record
        else:
            note_validation(self.summary, record, self.metric)
            self.write_summary()

    def _save(self) -> None:
        with self._pause():
            extra = {**self.clocks.state(), **self.window.state(), "config": self.config_yaml}
            checkpoint.save(self.run.checkpoint, checkpoint.capture(self.parts, self.step, **extra))

    def _restore(self, state: dict[str, Any]) -> None:
        """Continue from a checkpoint; the CSVs were already cut back to its step."""
        checkpoint.restore(self.parts, state)
        self.step = state["step"]
        self.window.load(state)
        self.clocks = Clocks.from_state(state)
        for record in self.run.validations(self.metric):
            note_validation(self.summary, record, self.metric)
        note_resume(self.summary, self.run.read_summary() or {}, self.step)
        log.info("[%s] resuming at step %d", self.label, self.step)
