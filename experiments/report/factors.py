"""The sweep's structure: which config keys it varies (its factors) and at which levels.

The figures a study gets follow from it, as each paper draws its own study: one factor (the
unit) gives a point-range plot per group; two factors (unit x init, unit x depth) a grid of
outcomes; more than MAX_LINES groups split the line plots into one panel per level of one
factor. Factors are the *defining* keys of ``groups.defining_keys`` (a key implied by the
others, such as ELU's alpha, is not a factor of its own).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from experiments.report.groups import Group, defining_keys, format_value, natural_key
from experiments.report.runs import Run

#: more groups than this in one line plot is a tangle: small multiples instead.
MAX_LINES = 8


@dataclass(frozen=True)
class Factor:
    key: str
    levels: tuple[Any, ...]

    @property
    def name(self) -> str:
        """How the factor reads on an axis: 'activation', 'init', 'depth'."""
        if self.key.endswith(".name"):
            return self.key.rsplit(".", 2)[-2]
        return self.key.rsplit(".", 1)[-1]

    def level_of(self, group: Group) -> Any:
        return group.settings.get(self.key)

    def text(self, level: Any) -> str:
        return format_value(level)


def factors(groups: list[Group], runs: list[Run], keys: list[str]) -> list[Factor]:
    """The sweep's factors, the activation first, levels in natural order."""
    chosen = defining_keys(runs, keys) if keys else []
    out = []
    for key in sorted(chosen, key=lambda k: (k != "activation.name", k)):
        if any(key not in g.settings for g in groups):
            continue  # a unit's own parameter (MPELU's alpha; ReLU has none): not a factor
        levels = {g.settings[key] for g in groups}
        ordered = sorted(levels, key=lambda v: natural_key(format_value(v)))
        if len(ordered) > 1:
            out.append(Factor(key, tuple(ordered)))
    return out


def panel_factor(found: list[Factor], n_groups: int) -> Factor | None:
    """The factor whose levels become panels, when the groups are too many for one plot:
    not the activation (its colours tell the lines apart within a panel) where possible."""
    if n_groups <= MAX_LINES or len(found) < 2:
        return None
    others = [f for f in found if f.key != "activation.name"]
    return min(others or found, key=lambda f: len(f.levels))


def grid_factors(found: list[Factor], groups: list[Group]) -> tuple[Factor, Factor] | None:
    """(rows, columns) of an outcome grid: exactly two factors, the activation as rows, that
    give every group a cell of its own (two MPELUs would share one)."""
    if len(found) != 2:
        return None
    cells = {(found[0].level_of(g), found[1].level_of(g)) for g in groups}
    return (found[0], found[1]) if len(cells) == len(groups) else None
