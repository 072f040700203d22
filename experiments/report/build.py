"""Run directories in, ``<study>/report/`` out: figures, tables, claims and the index page."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from experiments.report import figures, index, published, style, tables
from experiments.report.claims import judge, parse_claims
from experiments.report.formatting import unit
from experiments.report.groups import Group, group_runs
from experiments.report.runs import ReportError, Run, find_runs
from experiments.report.settings import report_settings

#: how each x axis reads in a caption.
_X_WORDS = {
    "step": "steps",
    "epoch": "epochs",
    "time_s": "training wall-clock seconds (each step at its mean time over seeds)",
}


def _figures(
    runs: list[Run],
    groups: list[Group],
    out: Path,
    *,
    x: str,
    smooth: int,
    logy: bool,
    diag_steps: Sequence[int] | None,
) -> list[figures.Figure]:
    metric = next((r.metric for r in runs if r.metric), None)
    smoothed = f", trailing mean over {smooth} logged points" if smooth > 1 else ""
    curves = [
        (
            f"train_loss_{axis.removesuffix('_s')}",
            lambda r: r.metrics,
            axis,
            "train_loss",
            "training loss (nats)",
            1.0,
            smooth,
            smoothed,
        )
        for axis in ("step", "time_s")
    ]
    if metric:
        ylabel = "validation error (%)" if metric == "error" else "validation bits per character"
        scale = 100.0 if metric == "error" else 1.0
        curves.append(
            (
                f"val_{metric}_{x}",
                lambda r: r.evals[r.evals["split"] == "val"],
                figures.X_AXES[x],
                metric,
                ylabel,
                scale,
                1,
                "",
            )
        )
    made = []
    for name, frame_of, axis, y, ylabel, scale, window, note in curves:
        fig = figures.plot_curves(
            groups, frame_of, x=axis, y=y, ylabel=ylabel, scale=scale, smooth=window, logy=logy
        )
        style.save(fig, str(out / name))
        caption = (
            f"{ylabel[0].upper()}{ylabel[1:]} against {_X_WORDS[axis]}: mean ± 1 std over "
            f"completed seeds{note}; thin lines are single unfinished runs, x = diverged"
        )
        made.append(figures.Figure(out / name, caption))
    logged = figures.diagnostic_steps(groups)
    if logged:
        steps = list(diag_steps) if diag_steps else sorted({logged[0], logged[-1]})
        made += figures.plot_diagnostics(groups, steps, out)
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
) -> Path:
    """Write the report of every run under ``sources`` to ``out`` (default: first/report).

    Returns the index page. Bad inputs raise ReportError with one readable line.
    """
    if x not in figures.X_AXES:
        raise ReportError(f"--x {x!r}; valid: {', '.join(figures.X_AXES)}")
    if smooth < 1:
        raise ReportError(f"--smooth {smooth}; must be a whole number >= 1")
    if not sources:
        raise ReportError("no study directory given")
    runs, skipped = find_runs(sources)
    groups, keys = group_runs(runs)
    metric = next((r.metric for r in runs if r.metric), None)
    settings = report_settings(runs)
    claims = parse_claims(settings.claims)
    values = published.load(settings.published)
    target = _output_directory(Path(out) if out is not None else Path(sources[0]) / "report")

    made = _figures(runs, groups, target, x=x, smooth=smooth, logy=logy, diag_steps=diag_steps)
    comparisons = tables.compare(groups, values, metric)
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
        ),
        target,
    )
