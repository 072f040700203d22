"""YAML read as plain data, for files this process did not write (saved run configs).

A run directory may come from anywhere (copied from a cluster, received from a colleague), so
its ``.hydra/config.yaml`` is untrusted input. ``OmegaConf.load`` would resolve
``${oc.env:...}`` interpolations (copying this machine's environment, secrets included, into a
report) and expand YAML aliases into copies (four lines of nested aliases took 329 s and
15.9 GB). Here the file is read with PyYAML's safe loader, bounded in size, with aliases refused
(OmegaConf never writes them) and ``${...}`` left as the text it is. Scalars follow
OmegaConf's loader (``1e-3`` is a float, no timestamps), so values compare equal to the
config that wrote them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from omegaconf._utils import get_yaml_loader

#: a saved run config is a few kilobytes; anything far larger was not written by a run.
MAX_BYTES = 1 << 20


class YamlDataError(ValueError):
    """A YAML file that is not plain, bounded data; the message is one line naming it."""


class _PlainLoader(get_yaml_loader()):  # type: ignore[misc]
    """OmegaConf's own scalar rules (so values read back as OmegaConf wrote them) on PyYAML's
    safe loader (no ``!!python/...`` objects), refusing aliases too."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            raise yaml.composer.ComposerError(
                None, None, "uses a YAML alias (not written by OmegaConf)", mark
            )
        return super().compose_node(parent, index)


def read_yaml_data(path: Path, max_bytes: int = MAX_BYTES) -> Any:
    """The plain data in ``path``: dicts, lists, strings, numbers, booleans and None."""
    try:
        with open(path, "rb") as f:
            raw = f.read(max_bytes + 1)
    except OSError as err:
        raise YamlDataError(f"{path} cannot be read ({err.strerror})") from None
    return parse_yaml_data(raw, str(path), max_bytes)


def parse_yaml_data(raw: bytes | str, source: str, max_bytes: int = MAX_BYTES) -> Any:
    """``read_yaml_data`` for text held elsewhere (a config copy inside a checkpoint);
    ``source`` names it in errors."""
    if len(raw) > max_bytes:
        raise YamlDataError(f"{source} is larger than {max_bytes} bytes; not a saved run config")
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        return yaml.load(text, Loader=_PlainLoader)  # a SafeLoader: builds no objects
    except UnicodeDecodeError as err:
        reason = f"{err.reason} at byte {err.start}"
        raise YamlDataError(f"{source} is not UTF-8 text ({reason})") from None
    except yaml.YAMLError as err:
        raise YamlDataError(f"{source} is not plain YAML data ({_one_line(err)})") from None


def _one_line(err: yaml.YAMLError) -> str:
    """PyYAML's message (problem and where), without its quoted source excerpt."""
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"{problem}{where}"
