"""Hands Hydra actlab's config schemas and resolvers when, and only when, Hydra composes.

Each group YAML includes a typed schema (``/schema/<group>@_here_``) and hydra.run.dir uses the
``actlab.run_dir`` resolver, so both must be known before composing; registering them when
experiments.config is imported made composing in a notebook depend on that import. Hydra calls
every search-path plugin's hook before it composes (from ``@hydra.main`` and from
``hydra.compose`` alike), so the registration happens there, on demand, and importing any actlab
module changes nothing global.
"""

from __future__ import annotations

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin

from experiments.config import register_resolvers, register_schemas


class ActlabSchemas(SearchPathPlugin):
    """Registers experiments.config's schemas and resolvers before Hydra composes."""

    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        register_schemas()
        register_resolvers()
