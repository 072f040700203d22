"""actlab's sweeper: Hydra's basic sweeper (the cartesian product of the swept values), with the
jobs named apart and a dry run (experiments/sweep.py says how). Hydra instantiates sweepers only
from the ``hydra_plugins`` namespace; configs/hydra/sweeper/actlab.yaml selects this one."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig

from experiments.sweep import name_apart, print_plan, run_dir


class Sweeper(BasicSweeper):
    """``hydra/sweeper=actlab`` (the default here): BasicSweeper's job list, named apart."""

    def __init__(
        self,
        max_batch_size: int | None = None,
        params: dict[str, str] | None = None,
        dry_run: bool = False,
    ) -> None:
        super().__init__(max_batch_size=max_batch_size, params=params)
        self.dry_run = dry_run

    def split_arguments(  # type: ignore[override]  (an instance method: it composes jobs)
        self, overrides: list[Any], max_batch_size: int | None
    ) -> list[list[list[str]]]:
        jobs = [job for batch in BasicSweeper.split_arguments(overrides, None) for job in batch]
        configs = [self._compose(job) for job in jobs]
        jobs = name_apart(jobs, [run_dir(c) for c in configs], [str(c.run_name) for c in configs])
        if max_batch_size is None:
            return [jobs]
        return list(BasicSweeper.split_overrides_to_chunks(jobs, max_batch_size))

    def sweep(self, arguments: list[str]) -> Any:
        if not self.dry_run:
            return super().sweep(arguments)
        assert self.hydra_context is not None
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        params = [f"{k}={v}" for k, v in self.params.items()] + list(arguments)
        jobs = [j for b in self.split_arguments(parser.parse_overrides(params), None) for j in b]
        print_plan([self._compose(job) for job in jobs], self.config)
        return []

    def _compose(self, job: Sequence[str]) -> DictConfig:
        assert self.hydra_context is not None and self.config is not None
        return self.hydra_context.config_loader.load_sweep_config(self.config, list(job))
