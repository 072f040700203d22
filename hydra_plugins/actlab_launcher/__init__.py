"""Hydra plugin package for experiments.launcher (Hydra instantiates launchers from
hydra_plugins only).

``hydra/launcher=joblib`` is stored as the supervised launcher, in place of
hydra-joblib-launcher's entry of the same name. Hydra executes every plugin module while it
scans for plugins, in an order that depends on sys.path, so a store at import time could be
overwritten by that plugin's own; a search-path plugin's hook runs after the scan and before
any config is composed, so the entry is stored there.
"""

from dataclasses import dataclass

from hydra.core.config_search_path import ConfigSearchPath
from hydra.core.config_store import ConfigStore
from hydra.plugins.search_path_plugin import SearchPathPlugin

from experiments import launcher

__all__ = ["ActlabLauncherRegistration", "SupervisedLauncher", "SupervisedLauncherConf"]


class SupervisedLauncher(launcher.SupervisedLauncher):
    """experiments.launcher.SupervisedLauncher, where Hydra looks for launcher classes."""


@dataclass
class SupervisedLauncherConf:
    """``hydra/launcher=joblib``: jobs at a time, with joblib's meaning (-1: every core)."""

    _target_: str = "hydra_plugins.actlab_launcher.SupervisedLauncher"
    n_jobs: int = -1


class ActlabLauncherRegistration(SearchPathPlugin):
    """Stores SupervisedLauncherConf as ``hydra/launcher=joblib`` once every plugin is loaded."""

    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        ConfigStore.instance().store(
            group="hydra/launcher", name="joblib", node=SupervisedLauncherConf, provider="actlab"
        )
