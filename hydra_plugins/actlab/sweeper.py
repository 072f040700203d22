"""actlab's sweeper: Hydra's basic sweeper (the cartesian product of the swept values), with the
jobs named apart and a dry run (experiments/sweep.py says how). Hydra instantiates sweepers only
from the ``hydra_plugins`` namespace; configs/hydra/sweeper/actlab.yaml selects this one."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobStatus
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from experiments.sweep import name_apart, print_plan, refused_jobs, run_dir


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
        """BasicSweeper's loop, except that every refused job is named in the one error raised
        at the end (Hydra's raises the first job's error alone)."""
        assert self.hydra_context is not None and self.config is not None
        assert self.launcher is not None
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        params = [f"{k}={v}" for k, v in self.params.items()] + list(arguments)
        self.overrides = self.split_arguments(parser.parse_overrides(params), self.max_batch_size)
        if self.dry_run:
            print_plan(
                [self._compose(job) for batch in self.overrides for job in batch], self.config
            )
            return []
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        returns, refused, launched = [], [], 0
        while not self.is_done():
            batch = self.get_job_batch()
            self.validate_batch_is_legal(batch)
            results = self.launcher.launch(batch, initial_job_idx=launched)
            launched += len(batch)
            returns.append(results)
            refused += [r for r in results if r.status == JobStatus.FAILED]
        if refused:
            raise refused_jobs(refused, launched)
        return returns

    def _compose(self, job: Sequence[str]) -> DictConfig:
        """The job's config, made current for Hydra's ``${hydra:...}`` resolver as the launcher
        will make it (a run name such as plain30_init's names the ``experiment/unit`` choice)."""
        assert self.hydra_context is not None and self.config is not None
        cfg = self.hydra_context.config_loader.load_sweep_config(self.config, list(job))
        HydraConfig.instance().set_config(cfg)
        with read_write(cfg), open_dict(cfg):  # resolved now, while this job's config is current
            cfg.run_name = str(cfg.run_name)
        return cfg
