"""Which runs are replicates of each other, what to call each group, and how to draw it.

Runs are grouped by every config key whose value differs between runs, except keys that
differ per run by construction (the seed and anything derived from it, the run name, paths,
Hydra's own settings, the report settings) and the settings that change how a run is kept, not
what it computes (``trainer.resume``, the live-curve logger). What remains is the experimental
variable: the activation, its parameters, the init, the depth, ...

Labels name only the *defining* keys: a key whose value follows from the others (LSUV's
``init.tol`` from ``init.name=lsuv``, ELU's ``activation.alpha`` from ``activation.name``, a
unit's weight-decay multiplier) splits no group further and is left out, so a label reads
``elu init=lsuv`` rather than listing every setting that comes with the choices.

Group labels are readable and stable, and claims and published values refer to them:

- ``<activation>`` or ``<activation>(<param>=<value>,...)`` when an activation key differs;
  a parameter is shown only when it differs between runs of that same activation
  (``lrelu(slope=0.01)`` next to ``lrelu(slope=0.2)``, but plain ``relu``);
- then ``<key>=<value>`` for every other differing key, space-separated, where ``<key>`` is
  the group name for ``<group>.name`` keys (``init=xavier``) and otherwise the last part of
  the dotted key (``depth=30``), the full key where two would collide.

Numbers are written with 4 significant digits. A reference (claim or published value)
selects the group whose label equals it, else every group whose label contains all of its
space-separated tokens, where a bare activation name also matches its parameterised form:
``relu`` selects ``relu init=xavier`` and ``relu init=he_fan_in``; ``lrelu`` selects
``lrelu(slope=0.01)``.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from experiments.report import style
from experiments.report.runs import Run

#: top-level keys that differ per run by construction (or configure the report itself).
IGNORED_TOP_KEYS = ("seed", "run_name", "paths", "hydra", "report", "logger")
#: keys that only say how a run is kept: a run redone with trainer.resume=false is a replicate.
IGNORED_KEYS = ("trainer.resume",)
_SEED_REF = re.compile(r"\$\{\s*seed\s*\}")
_LINESTYLES = ("-", "--", ":", "-.", (0, (5, 1)), (0, (3, 1, 1, 1, 1, 1)))
_PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2")


class _Absent:
    """A key some runs lack (e.g. ``activation.slope`` for relu); sorts before values."""

    def __repr__(self) -> str:
        return "<absent>"


ABSENT = _Absent()


def canonical(value: Any) -> Any:
    """A hashable, comparable stand-in for a config value (lists and dicts as JSON)."""
    if isinstance(value, list | dict):
        return json.dumps(value, sort_keys=True, default=str)
    return value


def format_value(value: Any) -> str:
    """How a config value appears in a label: short, and without spaces."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.4g}"
    if value is None:
        return "null"
    if isinstance(value, list | dict):
        return json.dumps(value, separators=(",", ":"), default=str)
    return str(value).replace(" ", "_")


def ignored(key: str, run: Run) -> bool:
    """Keys that differ per run by construction: never a grouping variable."""
    top, last = key.split(".")[0], key.rsplit(".", 1)[-1]
    if key in IGNORED_KEYS or top in IGNORED_TOP_KEYS or last == "seed":
        return True
    return bool(_SEED_REF.search(str(run.raw.get(key, ""))))


def signature(run: Run, keys: list[str]) -> tuple[str, ...]:
    """The run's values of ``keys`` in one hashable tuple: runs with equal ones are replicates."""
    return tuple(repr(canonical(run.config.get(k, ABSENT))) for k in keys)


def differing_keys(runs: list[Run]) -> list[str]:
    """Config keys (dotted) whose values are not the same in every run, sorted."""
    keys = sorted({k for run in runs for k in run.config if not ignored(k, run)})
    return [k for k in keys if len({signature(run, [k]) for run in runs}) > 1]


@dataclass(eq=False)
class Group:
    """Replicate runs (seeds) of one configuration, with the style used in every figure."""

    label: str
    activation: str
    runs: list[Run]
    color: Any = "#000000"
    linestyle: Any = "-"
    #: the differing keys' values of this group (absent keys left out).
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def tokens(self) -> list[str]:
        return self.label.split()

    @property
    def completed(self) -> list[Run]:
        return [r for r in self.runs if r.status == "completed"]

    @property
    def status_counts(self) -> Counter[str]:
        return Counter(r.status for r in self.runs)

    @property
    def seeds(self) -> list[Any]:
        return sorted({r.config.get("seed") for r in self.runs}, key=str)

    def common(self) -> dict[str, Any]:
        """Config values every run of the group shares (for matching published values)."""
        first = self.runs[0].config
        return {
            k: v
            for k, v in first.items()
            if all(canonical(r.config.get(k, ABSENT)) == canonical(v) for r in self.runs[1:])
        }


def _short_names(keys: list[str]) -> dict[str, str]:
    short = {k: k.rsplit(".", 1)[0] if k.endswith(".name") else k.rsplit(".", 1)[-1] for k in keys}
    counts = Counter(short.values())
    return {k: s if counts[s] == 1 else k for k, s in short.items()}


def _n_buckets(runs: list[Run], keys: list[str]) -> int:
    return len({signature(r, keys) for r in runs})


def defining_keys(runs: list[Run], keys: list[str]) -> list[str]:
    """The differing keys left once every key implied by the rest is dropped (see above).

    Names (``activation.name``, ``init.name``, ...) are never dropped. Other keys are tried
    least telling first: settings outside the unit before the unit's own parameters (two
    MPELUs read ``mpelu(alpha=1)``, not by the weight decay their files also set), then keys
    some runs lack, then list or dict values, then scalars, so that of two keys that move
    together the scalar one names the groups.
    """
    total = _n_buckets(runs, keys)

    def telling(key: str) -> tuple[bool, bool, bool, str]:
        values = [r.config.get(key, ABSENT) for r in runs]
        return (
            key.startswith("activation."),
            all(v is not ABSENT for v in values),
            not any(isinstance(v, list | dict) for v in values),
            key,
        )

    kept = list(keys)
    for key in sorted((k for k in keys if not k.endswith(".name")), key=telling):
        rest = [k for k in kept if k != key]
        if _n_buckets(runs, rest) == total:
            kept = rest
    return kept


def _labels(runs_by_key: dict[tuple, list[Run]], keys: list[str], verbose: bool) -> list[str]:
    """One label per bucket; ``verbose`` shows every differing key (used on a clash)."""
    all_runs = [r for rs in runs_by_key.values() for r in rs]
    act_keys = [k for k in keys if k.startswith("activation.") and k != "activation.name"]
    other = _short_names([k for k in keys if not k.startswith("activation.")])
    show_activation = verbose or len(other) < len(keys) or not other

    def varies_within(name: Any, key: str) -> bool:
        same = [r for r in all_runs if r.config.get("activation.name") == name]
        return len({signature(r, [key]) for r in same}) > 1

    labels = []
    for runs in runs_by_key.values():
        cfg = runs[0].config
        parts = []
        if show_activation:
            name = cfg.get("activation.name", "?")
            params = [
                f"{k.split('.', 1)[1]}={format_value(cfg[k])}"
                for k in act_keys
                if k in cfg and (verbose or varies_within(name, k))
            ]
            parts.append(f"{name}({','.join(params)})" if params else str(name))
        parts += [f"{other[k]}={format_value(cfg[k])}" for k in other if k in cfg]
        labels.append(" ".join(parts))
    return labels


def group_runs(runs: list[Run]) -> tuple[list[Group], list[str]]:
    """Replicate groups sorted by label, styled, and the differing keys that define them."""
    keys = differing_keys(runs)
    buckets: dict[tuple, list[Run]] = {}
    for run in runs:
        buckets.setdefault(signature(run, keys), []).append(run)
    labels = _labels(buckets, defining_keys(runs, keys), verbose=False)
    if len(set(labels)) < len(labels):
        labels = _labels(buckets, keys, verbose=True)
    groups = [
        Group(
            label=label,
            activation=str(runs_[0].config.get("activation.name", "?")),
            runs=sorted(runs_, key=lambda r: str(r.config.get("seed"))),
            settings={k: runs_[0].config[k] for k in keys if k in runs_[0].config},
        )
        for label, runs_ in zip(labels, buckets.values(), strict=True)
    ]
    groups.sort(key=lambda g: (g.activation, natural_key(g.label)))
    _style(groups, keys)
    return groups, keys


def natural_key(label: str) -> list[str | float]:
    """Sort key that orders numbers by value: depth=5 before depth=10."""
    parts: list[str | float] = re.split(r"(\d+(?:\.\d+)?(?:e[-+]?\d+)?)", label)
    parts[1::2] = [float(n) for n in parts[1::2]]
    return parts


def _style(groups: list[Group], keys: list[str]) -> None:
    """Colour by activation (style.color_for) when it varies, line style by the rest."""
    activation_varies = any(k.startswith("activation.") for k in keys)
    if not activation_varies:
        for i, g in enumerate(groups):
            g.color = (
                _PALETTE[i % len(_PALETTE)] if len(groups) > 1 else style.color_for(g.activation)
            )
        return
    variants = sorted({_variant(g) for g in groups}, key=natural_key)
    for g in groups:
        g.color = style.color_for(g.activation)
        g.linestyle = _LINESTYLES[variants.index(_variant(g)) % len(_LINESTYLES)]


def _variant(group: Group) -> str:
    """The label without the activation name: what the line style encodes."""
    head, *rest = group.label.split()
    params = head[len(group.activation) :] if head.startswith(group.activation) else head
    return " ".join([params, *rest]).strip()


def _token_matches(token: str, group: Group) -> bool:
    return token in group.tokens or token == group.activation


def select(reference: str, groups: list[Group]) -> list[Group]:
    """The groups a claim or published value names (see the module docstring)."""
    exact = [g for g in groups if g.label == reference]
    if exact:
        return exact
    wanted = reference.split()
    return [g for g in groups if wanted and all(_token_matches(t, g) for t in wanted)]


def values_equal(a: Any, b: Any) -> bool:
    """Config equality that forgives float noise (0.18181818 == 0.1818 at 4 digits)."""
    numbers = [isinstance(v, int | float) and not isinstance(v, bool) for v in (a, b)]
    if all(numbers):
        return math.isclose(float(a), float(b), rel_tol=1e-3)
    return canonical(a) == canonical(b)
