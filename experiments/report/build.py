"""Run directories in, ``<study>/report/`` out: figures, tables, claims and the index page."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from experiments.report import figures, index, published, style, tables, timing
from experiments.report.claims import Claim, judge, parse_claims
from experiments.report.factors import factors, grid_factors, panel_factor
from experiments.report.formatting import unit
from experiments.report.grid import plot_grid
from experiments.report.groups import Group, group_runs, select
from experiments.report.layers import plot_layer_heatmaps
from experiments.report.pointrange import plot_pointrange
from experiments.report.runs import ReportError, Run, find_runs
from experiments.report.settings import report_settings
from experiments.rundir import CPU_S, EPOCH, SPLIT, STEP, TIME_S, TRAIN_LOSS

log = logging.getLogger(__name__)

#: how each x axis reads in a caption.
_X_WORDS = {
    STEP: "steps",
    EPOCH: "epochs",
    TIME_S: "training wall-clock seconds (each step at its mean time over seeds)",
    CPU_S: (
        "training CPU seconds, the time axis contention cannot stretch (each step at its mean "
        "over seeds)"
    ),
}
#: figure file stem per x column.
_STEMS = {STEP: "step", TIME_S: "time", CPU_S: "cpu", EPOCH: "epoch"}


def _expected(
    claims: list[Claim], comparisons: list[tables.Comparison], groups: list[Group]
) -> dict[str, str]:
    """Group label -> the outcome the preset's claims or a paper's table give it."""
    expected: dict[str, str] = {}
    for c in comparisons:
        if c.published.metric == "converges":
            expected[c.group.label] = "converges" if c.published.value else "fails"
    for claim in claims:
        for key in ("diverges", "converges", "fails"):
            for ref in getattr(claim, key):
                expected.update({g.label: key for g in select(ref, groups)})
    return expected


def _figures(
    runs: list[Run],
    groups: list[Group],
    keys: list[str],
    out: Path,
    *,
    x: str,
    smooth: int,
    logy: bool,
    diag_steps: Sequence[int] | None,
    expected: dict[str, str],
    comparisons: list[tables.Comparison],
) -> list[figures.Figure]:
    metric = next((r.metric for r in runs if r.metric), None)
    found = factors(groups, runs, keys)
    panels = panel_factor(found, len(groups))
    smoothed = f", trailing mean over {smooth} logged points" if smooth > 1 else ""
    time_axes = [STEP, TIME_S] + ([CPU_S] if timing.equal_time_axis(runs) == CPU_S else [])
    curves = [
        (
            f"train_loss_{_STEMS[axis]}",
            lambda r: r.metrics,
            axis,
            TRAIN_LOSS,
            "training loss (nats)",
            1.0,
            smooth,
            smoothed,
        )
        for axis in time_axes
    ]
    if metric:
        ylabel = "validation error (%)" if metric == "error" else "validation bits per character"
        scale = 100.0 if metric == "error" else 1.0
        curves.append(
            (
                f"val_{metric}_{x}",
                lambda r: r.evals[r.evals[SPLIT] == "val"],
                figures.X_AXES[x],
                metric,
                ylabel,
                scale,
                1,
                "",
            )
        )
    made = []
    split = f"; one panel per {panels.name}" if panels else ""
    for name, frame_of, axis, y, ylabel, scale, window, note in curves:
        fig = figures.plot_curves(
            groups,
            frame_of,
            x=axis,
            y=y,
            ylabel=ylabel,
            scale=scale,
            smooth=window,
            logy=logy,
            panels=panels,
        )
        style.save(fig, str(out / name))
        caption = (
            f"{ylabel[0].upper()}{ylabel[1:]} against {_X_WORDS[axis]}: mean ± 1 std over "
            f"completed seeds{note}; thin lines are single unfinished runs, x = diverged{split}"
        )
        made.append(figures.Figure(out / name, caption))
    shown = ["final_train_loss"]
    if metric and any(r.evals[SPLIT].eq("test").any() for r in runs):
        shown.append("final_test")
    stem = plot_pointrange(groups, shown, metric, comparisons, out)
    made.append(
        figures.Figure(
            stem,
            "Final value per group: mean (circle) and 95% t-interval over completed seeds, each "
            "seed a dot, a published value an open diamond; groups sorted best first",
        )
    )
    grid = grid_factors(found, groups)
    if grid:
        stem = plot_grid(groups, *grid, expected, out)
        made.append(
            figures.Figure(
                stem,
                f"Outcome per {grid[0].name} x {grid[1].name}: colour = final training loss "
                "relative to chance (1 = chance, grey = no completed run), text = what the seeds "
                "did (converged: ended at least 1% below chance; stalled: completed without "
                "that), and the paper's verdict where the preset gives one",
            )
        )
    logged = figures.diagnostic_steps(groups)
    if logged:
        steps = list(diag_steps) if diag_steps else sorted({logged[0], logged[-1]})
        made += plot_layer_heatmaps(groups, grid, out)
        made += figures.plot_diagnostics(groups, steps, out, panels=panels)
    return made


def _output_directory(target: Path) -> Path:
    """``target``, made if need be; a file (or an unwritable place) there is one line."""
    try:
        target.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise ReportError(
            f"{target}: exists and is not a directory; move it away, or pass --out DIR"
        ) from None
    except OSError as err:
        raise ReportError(f"{target}: cannot make the report directory ({err.strerror})") from None
    return target


def write_report(
    sources: Sequence[str | Path],
    out: str | Path | None = None,
    *,
    x: str = "step",
    smooth: int = 1,
    logy: bool = False,
    diag_steps: Sequence[int] | None = None,
    scope: str | None = None,
) -> Path:
    """Write the report of every run under ``sources`` to ``out`` (default: first/report).

    ``scope`` says on the page which runs these are (default: every run under the sources).
    Returns the index page. Bad inputs raise ReportError with one readable line.
    """
    if x not in figures.X_AXES:
        raise ReportError(f"--x {x!r}; valid: {', '.join(figures.X_AXES)}")
    if smooth < 1:
        raise ReportError(f"--smooth {smooth}; must be a whole number >= 1")
    if not sources:
        raise ReportError("no study directory given")
    runs, skipped = find_runs(sources)
    log.info("read %d run(s):\n%s", len(runs), "\n".join(f"  {r.path} ({r.status})" for r in runs))
    if x == "cpu" and timing.equal_time_axis(runs) != CPU_S:
        lacking = next(r for r in runs if not timing.has_cpu_time(r))
        raise ReportError(f"--x cpu: {lacking.path} logged no CPU time (made before cpu_s was)")
    groups, keys = group_runs(runs)
    metric = next((r.metric for r in runs if r.metric), None)
    settings = report_settings(runs)
    claims = parse_claims(settings.claims)
    values = published.load(settings.published)
    target = _output_directory(Path(out) if out is not None else Path(sources[0]) / "report")

    comparisons = tables.compare(groups, values, metric)
    made = _figures(
        runs,
        groups,
        keys,
        target,
        x=x,
        smooth=smooth,
        logy=logy,
        diag_steps=diag_steps,
        expected=_expected(claims, comparisons, groups),
        comparisons=comparisons,
    )
    shown, raw = tables.results_frames(groups, comparisons, metric)
    caption = (
        f"Final and best validation {unit('final_val', metric)}, final test "
        f"{unit('final_test', metric)}, steps and training seconds: mean ± std (n) over "
        "completed runs; runs = completed/total. Published values carry their evidence tag."
    )
    tables.write(shown, raw, target / "results", caption)
    compared = tables.published_frame(comparisons)
    compared.to_csv(target / "published.csv", index=False)
    per_run_shown, per_run_raw = tables.runs_frames(groups, metric)
    per_run_raw.to_csv(target / "runs.csv", index=False)
    return index.write(
        index.Index(
            sources=[Path(s) for s in sources],
            runs=runs,
            groups=groups,
            keys=keys,
            figures=made,
            results=shown,
            results_caption=caption,
            comparisons=compared,
            published=values,
            verdicts=[judge(c, groups, metric) for c in claims],
            deviations=settings.deviations,
            per_run=per_run_shown,
            skipped=skipped,
            metric=metric,
            scope=scope or f"every run under {', '.join(map(str, sources))} ({len(runs)} runs)",
        ),
        target,
    )
