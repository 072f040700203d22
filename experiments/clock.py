"""The clocks a run keeps: training wall time, training CPU time and total wall time.

Training time leaves out evaluation, checkpoints, diagnostics and the first (compiling) step,
so runs compare by the cost of their training alone; the total wall time leaves nothing out.
All three are carried in checkpoints, so a resumed run keeps counting where it stopped.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any


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


class Clocks:
    """``train`` (wall) and ``cpu`` (process time) run while training; ``wall`` always runs,
    from construction on. ``state`` and ``from_state`` carry them through a checkpoint under
    the checkpoint's key names."""

    def __init__(self, train: float = 0.0, cpu: float = 0.0, wall: float = 0.0) -> None:
        self.train = Stopwatch(train)
        self.cpu = Stopwatch(cpu, clock=time.process_time)
        self.wall = Stopwatch(wall)
        self.wall.start()

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Clocks:
        # checkpoints from before CPU time was recorded count it from here
        return cls(state["train_time_s"], state.get("train_cpu_s", 0.0), state["wall_time_s"])

    def state(self) -> dict[str, float]:
        return {
            "train_time_s": self.train.read(),
            "train_cpu_s": self.cpu.read(),
            "wall_time_s": self.wall.read(),
        }

    def start_training(self) -> None:
        self.train.start()
        self.cpu.start()

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Training clocks stopped (the wall clock runs on)."""
        with self.train.paused(), self.cpu.paused():
            yield
