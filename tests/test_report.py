"""The report: real tiny runs from the trainer in, tables/figures/claims out, checked against
pandas computations straight from the run CSVs (the contract in docs/architecture.md)."""

from __future__ import annotations

import json
import math
import re
import runpy
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import pytest
import scipy.stats
import yaml
from omegaconf import OmegaConf

from experiments.report import figures, style
from experiments.report.build import write_report
from experiments.report.callback import ReportCallback
from experiments.report.claims import judge, parse_claim
from experiments.report.groups import group_runs, select
from experiments.report.published import PUBLISHED_DIR, TAGS, available, load, parse
from experiments.report.runs import ReportError, Run, find_runs
from experiments.report.settings import from_config
from experiments.report.stats import converged, group_frame, run_stats
from experiments.report.tables import compare

ROOT = Path(__file__).resolve().parents[1]
#: scripts/report.py's namespace (scripts/ is not a package), to call its main() in-process.
REPORT_CLI = runpy.run_path(str(ROOT / "scripts" / "report.py"), run_name="report_cli")
STATS = ("final_val", "best_val", "final_test", "final_train_loss", "steps", "time_s")

# ---------------------------------------------------------------------------------------------
# Real tiny runs: two sweeps of the trainer into one study directory


@dataclass
class Study:
    root: Path  # the study directory (results/<experiment>)
    report: Path  # both sweeps' runs, combined on purpose by write_report
    sweep_report: Path  # written by the second sweep's end-of-sweep callback
    report_after_first_sweep: bool


def _sweep(results: Path, *overrides: str) -> None:
    tiny = [
        f"paths.results_dir={results}",
        "experiment_name=tiny",
        "dataset=shapes",
        "dataset.train_size=64",
        "dataset.val_size=32",
        "dataset.test_size=32",
        "dataset.batch_size=16",
        "dataset.eval_batch_size=64",
        "model=nin",
        "model.widths=[4,4,4,4,4,4,4,4]",
        "optimizer=sgd",  # the labels below carry its lr, 0.1
        "trainer.max_steps=4",
        "trainer.log_every=1",
        "trainer.eval_every=2",
        "trainer.checkpoint_every=null",
        "trainer.device=cpu",
    ]
    done = subprocess.run(
        [sys.executable, "-m", "experiments.train", "-m", *tiny, *overrides],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]


#: claims as a preset states them; judged from the runs (the test knows the truth from pandas).
CLAIMS = (
    "report={claims:["
    "{text:'relu < elu in train loss',order:['relu lr=0.1','elu lr=0.1'],metric:final_train_loss},"
    "{text:'elu < relu in train loss',order:['elu lr=0.1','relu lr=0.1'],metric:final_train_loss},"
    "{text:'relu names two groups',order:[relu,elu],metric:final_train_loss},"
    "{text:'lr 1e6 diverges',diverges:['lr=1e+06']},"
    "{text:'lr 1e6 converges',converges:['lr=1e+06']}],"
    "deviations:['tiny runs on procedural shapes']}"
)


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Study:
    """3 activations x 2 seeds (report=false), then one forced divergence (lr 1e6) whose
    sweep's callback reports that sweep alone; the whole directory is reported on purpose."""
    results = tmp_path_factory.mktemp("results")
    root = results / "tiny"
    _sweep(results, "activation=relu,elu,prelu", "seed=0,1", "report=false")
    first = (root / "report").exists()
    _sweep(results, "activation=relu", "seed=0", "optimizer.lr=1e6", "run_name=relu-lr1e6", CLAIMS)
    combined = write_report([root], results / "combined")
    return Study(
        root=root,
        report=combined.parent,
        sweep_report=root / "report",
        report_after_first_sweep=first,
    )


def _expected(root: Path) -> pd.DataFrame:
    """Per run, the statistics computed directly from its CSVs with pandas."""
    rows = []
    for summary in sorted(root.rglob("summary.json")):
        run = summary.parent
        cfg = yaml.safe_load((run / ".hydra" / "config.yaml").read_text())
        metrics = pd.read_csv(run / "metrics.csv").sort_values("step")
        evals = pd.read_csv(run / "eval.csv").sort_values("step", kind="stable")
        val, test = evals[evals["split"] == "val"], evals[evals["split"] == "test"]
        rows.append(
            {
                "group": f"{cfg['activation']['name']} lr={cfg['optimizer']['lr']:.4g}",
                "status": json.loads(summary.read_text())["status"],
                "final_val": val["error"].iloc[-1] if len(val) else math.nan,
                "best_val": val["error"].min(),
                "final_test": test["error"].iloc[-1] if len(test) else math.nan,
                "final_train_loss": metrics["train_loss"].iloc[-1],
                "steps": metrics["step"].iloc[-1],
                "time_s": metrics["time_s"].iloc[-1],
            }
        )
    return pd.DataFrame(rows)


def test_sweeps_made_the_runs_and_the_callback_reported(study):
    runs = _expected(study.root)
    assert sorted(runs["group"].unique()) == [
        "elu lr=0.1",
        "prelu lr=0.1",
        "relu lr=0.1",
        "relu lr=1e+06",
    ]
    assert (runs["status"] == "diverged").sum() == 1
    assert (runs.loc[runs["group"] == "relu lr=1e+06", "status"] == "diverged").all()
    assert not study.report_after_first_sweep  # report=false
    assert (study.sweep_report / "README.md").is_file()  # on by default


def test_a_sweeps_report_holds_only_its_own_runs(study):
    """The older sweep's six runs share the experiment folder but not the second sweep."""
    per_run = pd.read_csv(study.sweep_report / "runs.csv")
    assert per_run["run"].tolist() == ["relu-lr1e6"]
    page = (study.sweep_report / "README.md").read_text()
    assert re.search(r"Scope: the 1 run\(s\) of sweep \d{8}T\d{6}-\d+ \(job list: ", page)
    first, second = sorted((study.root / ".sweeps").iterdir())  # ids start with the UTC time
    assert len(list(first.iterdir())) == 6  # report=false still lists its jobs
    assert [p.read_text() for p in second.iterdir()] == ["relu-lr1e6\n"]
    assert second.name in page
    combined = (study.report / "README.md").read_text()
    assert f"Scope: every run under {study.root} (7 runs)" in combined


def test_every_table_value_equals_pandas_from_the_csvs(study):
    expected = _expected(study.root)
    done = expected[expected["status"] == "completed"]
    table = pd.read_csv(study.report / "results.csv").set_index("group")
    assert sorted(table.index) == sorted(expected["group"].unique())
    for group, rows in expected.groupby("group"):
        assert table.loc[group, "runs"] == len(rows)
        for status in ("completed", "diverged", "failed"):
            assert table.loc[group, status] == (rows["status"] == status).sum()
        mine = done[done["group"] == group]
        for stat in STATS:
            assert table.loc[group, f"{stat}_n"] == mine[stat].count()
            for part, value in (("mean", mine[stat].mean()), ("std", mine[stat].std())):
                assert table.loc[group, f"{stat}_{part}"] == pytest.approx(value, nan_ok=True)
    # Markdown and LaTeX show the same numbers, errors in percent
    rows = done[done["group"] == "elu lr=0.1"]
    test_cell = f"{100 * rows['final_test'].mean():.2f} ± {100 * rows['final_test'].std():.2f} (2)"
    md_row = next(
        line
        for line in (study.report / "results.md").read_text().splitlines()
        if line.startswith("| elu lr=0.1 |")
    )
    assert test_cell in md_row.split(" | ")
    assert test_cell.replace("±", r"$\pm$") in (study.report / "results.tex").read_text()
    per_run = pd.read_csv(study.report / "runs.csv")
    assert sorted(per_run["final_train_loss"].dropna()) == pytest.approx(
        sorted(expected["final_train_loss"].dropna())
    )


def test_every_figure_exists_and_is_not_empty(study):
    page = (study.report / "README.md").read_text()
    stems = re.findall(r"!\[[^\]]*\]\(([^)]+)\.png\)", page)
    assert {"train_loss_step", "train_loss_time", "val_error_step"} <= set(stems)
    for stem in stems:
        for suffix in (".png", ".pdf"):
            assert (study.report / f"{stem}{suffix}").stat().st_size > 1000


def test_the_diverged_run_is_marked(study):
    runs, _ = find_runs([study.root])
    groups, _ = group_runs(runs)
    diverged = next(g for g in groups if g.label == "relu lr=1e+06")
    metrics = pd.read_csv(diverged.runs[0].path / "metrics.csv")
    last = metrics["train_loss"].iloc[-1]
    # it blew up: NaN/inf, or finite but far above the completed runs' range; either way its
    # end is drawn on the top edge (which of the two depends on the run's random draws)
    assert not math.isfinite(last) or last > 1e6
    fig = figures.plot_curves(groups, lambda r: r.metrics, x="step", y="train_loss", ylabel="l")
    marks = [
        line
        for line in fig.axes[0].lines
        if line.get_marker() == "x" and line.get_color() == diverged.color
    ]
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    top = fig.axes[0].get_ylim()[1]
    plt.close(fig)
    assert [list(m.get_xdata()) for m in marks] == [[metrics["step"].iloc[-1]]]
    assert marks[0].get_ydata()[0] == pytest.approx(top)
    assert legend[-2:] == ["relu lr=1e+06 (n=0, 1 diverged)", "diverged"]
    expected = _expected(study.root)
    finals = expected[expected["status"] == "completed"].groupby("group")["final_train_loss"]
    best_first = [f"{g} (n=2)" for g in finals.mean().sort_values().index]
    assert legend[:-2] == best_first  # legend ordered by final value
    results = (study.report / "results.md").read_text()
    assert "| relu lr=1e+06 | 0/1, 1 diverged |" in results
    assert (
        "| relu-lr1e6 | relu lr=1e+06 | 0 | diverged |" in (study.report / "README.md").read_text()
    )


def _verdicts(page: str) -> dict[str, str]:
    rows = [line.split(" | ") for line in page.splitlines() if "| **" in line]
    return {row[1]: row[2].strip("*") for row in rows}


def test_claims_from_the_preset_are_judged_both_ways(study):
    expected = _expected(study.root)
    done = expected[expected["status"] == "completed"].groupby("group")["final_train_loss"]
    relu, elu = done.get_group("relu lr=0.1"), done.get_group("elu lr=0.1")
    relu_first = relu.mean() < elu.mean()
    significant = scipy.stats.ttest_ind(relu, elu, equal_var=False).pvalue < 0.05
    won = "held" if significant else "direction held, not significant (n = 2, 2)"
    lost = "contradicted" if significant else "direction reversed, not significant (n = 2, 2)"
    verdicts = _verdicts((study.report / "README.md").read_text())
    assert verdicts["relu < elu in train loss"] == (won if relu_first else lost)
    assert verdicts["elu < relu in train loss"] == (lost if relu_first else won)
    assert verdicts["relu names two groups"] == "ambiguous"
    assert verdicts["lr 1e6 diverges"] == "held"
    assert verdicts["lr 1e6 converges"] == "did not hold"
    assert "- tiny runs on procedural shapes" in (study.report / "README.md").read_text()


def test_cli_options_give_time_axes_smoothing_and_log_scale(study, tmp_path, capsys):
    argv = [str(study.root), "--x", "time", "--smooth", "2", "--logy", "--out", str(tmp_path)]
    assert REPORT_CLI["main"](argv) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "README.md")
    assert (tmp_path / "val_error_time.png").stat().st_size > 1000
    assert "trailing mean over 2 logged points" in (tmp_path / "README.md").read_text()


# ---------------------------------------------------------------------------------------------
# Unit checks on in-memory runs (no files needed)


def _run(
    config: dict,
    status: str = "completed",
    losses: list[float] | None = None,
    times: list[float] | None = None,
) -> Run:
    losses = losses or [2.0, 1.0]
    steps = list(range(len(losses)))
    return Run(
        path=Path(f"/nowhere/{config.get('run_name', 'r')}"),
        config={"seed": 0, "run_name": "r", "paths.results_dir": "x", **config},
        summary={"status": status},
        metrics=pd.DataFrame(
            {
                "step": steps,
                "epoch": steps,
                "time_s": times or steps,
                "train_loss": losses,
                "lr": 0.1,
            }
        ),
        evals=pd.DataFrame(columns=["step", "epoch", "time_s", "split", "loss", "error"]),
    )


def test_labels_show_only_what_differs_and_ignore_per_run_keys():
    runs = [
        _run({"activation.name": "relu", "seed": 0, "run_name": "a", "dataset.seed": 0}),
        _run({"activation.name": "relu", "seed": 1, "run_name": "b", "dataset.seed": 1}),
        # redone with trainer.resume=false and another live-curve logger: still a replicate
        _run({"activation.name": "relu", "seed": 2, "trainer.resume": False, "logger.name": "tb"}),
        _run({"activation.name": "lrelu", "activation.slope": 0.01}),
        _run({"activation.name": "lrelu", "activation.slope": 0.2}),
        _run({"activation.name": "elu", "activation.alpha": 1.0}),
    ]
    groups, keys = group_runs(runs)
    assert keys == ["activation.alpha", "activation.name", "activation.slope"]
    assert [g.label for g in groups] == ["elu", "lrelu(slope=0.01)", "lrelu(slope=0.2)", "relu"]
    assert len(groups[-1].runs) == 3  # the three relu seeds are replicates
    assert [g.label for g in select("lrelu", groups)] == ["lrelu(slope=0.01)", "lrelu(slope=0.2)"]
    assert groups[0].color == style.color_for("elu")
    assert groups[1].color == groups[2].color and groups[1].linestyle != groups[2].linestyle


def test_other_keys_become_tokens_and_references_select_by_tokens():
    runs = [
        _run({"activation.name": a, "init.name": i, "model.depth": 30})
        for a in ("relu", "elu")
        for i in ("xavier", "he_fan_in")
    ]
    groups, _ = group_runs(runs)
    assert sorted(g.label for g in groups) == [
        "elu init=he_fan_in",
        "elu init=xavier",
        "relu init=he_fan_in",
        "relu init=xavier",
    ]
    assert [g.label for g in select("relu init=xavier", groups)] == ["relu init=xavier"]
    assert {g.label for g in select("init=xavier", groups)} == {
        "elu init=xavier",
        "relu init=xavier",
    }
    assert len(select("relu", groups)) == 2 and select("tanh", groups) == []


def test_a_units_own_parameter_names_it_before_the_optimizer_settings_its_file_sets():
    """nin_units: two MPELU files differ in alpha and in the decay on alpha/beta, two PReLU
    files in the clip and the decay; the unit's own parameter names each pair."""
    decay = "optimizer.act_weight_decay_mult"
    units = [
        {"activation.name": "relu", decay: 1},
        {"activation.name": "mpelu", "activation.alpha": 0.25, decay: 5},
        {"activation.name": "mpelu", "activation.alpha": 1.0, decay: 0},
        {"activation.name": "prelu", "activation.clip": False, decay: 1},
        {"activation.name": "prelu", "activation.clip": True, decay: 0},
    ]
    groups, _ = group_runs([_run(u) for u in units])
    assert [g.label for g in groups] == [
        "mpelu(alpha=0.25)",
        "mpelu(alpha=1)",
        "prelu(clip=false)",
        "prelu(clip=true)",
        "relu",
    ]


def test_a_units_own_parameter_is_no_factor_and_shares_no_grid_cell():
    """nin_units: 9 units (two MPELUs by alpha) x final_activation. The panels split on
    final_activation, not on alpha (which ReLU lacks, so its runs would be in no panel), and
    no outcome grid is drawn, since the two MPELUs would share each cell."""
    from experiments.report.factors import factors, grid_factors, panel_factor

    units = [{"activation.name": n} for n in ("relu", "elu", "tanh", "sigmoid")]
    units += [{"activation.name": "mpelu", "activation.alpha": a} for a in (0.25, 1.0)]
    runs = [_run({**u, "model.final_activation": f}) for u in units for f in (True, False)]
    groups, keys = group_runs(runs)
    found = factors(groups, runs, keys)
    assert [f.key for f in found] == ["activation.name", "model.final_activation"]
    assert panel_factor(found, len(groups)).key == "model.final_activation"
    assert grid_factors(found, groups) is None
    alone = [g for g in groups if g.label != "mpelu(alpha=0.25) final_activation=true"]
    alone = [g for g in alone if g.label != "mpelu(alpha=0.25) final_activation=false"]
    assert grid_factors(found, alone) is not None


def test_labels_leave_out_keys_implied_by_the_others():
    """plain30_init's sweep: LSUV's tol and Taylor's mode come with the init, ELU's alpha and
    MPELU's weight-decay multiplier with the unit; only a key that splits a group is named."""
    extra = {"lsuv": {"init.tol": 0.1}, "taylor": {"init.mode": "fan_in"}, "he_fan_in": {}}
    unit = {
        "relu": {"optimizer.act_weight_decay_mult": 1},
        "elu": {"activation.alpha": 1.0, "optimizer.act_weight_decay_mult": 1},
        "mpelu": {"activation.alpha": 1.0, "optimizer.act_weight_decay_mult": 0},
    }
    runs = [
        _run({"activation.name": a, "init.name": i, **unit[a], **extra[i]})
        for a in unit
        for i in extra
    ]
    runs += [
        _run(
            {
                "activation.name": "lrelu",
                "activation.slope": s,
                "init.name": "lsuv",
                "init.tol": 0.1,
                "optimizer.act_weight_decay_mult": 1,
            }
        )
        for s in (0.01, 0.2)
    ]
    groups, keys = group_runs(runs)
    assert "init.tol" in keys and "optimizer.act_weight_decay_mult" in keys
    assert [g.label for g in groups] == [
        "elu init=he_fan_in",
        "elu init=lsuv",
        "elu init=taylor",
        "lrelu(slope=0.01) init=lsuv",
        "lrelu(slope=0.2) init=lsuv",
        "mpelu init=he_fan_in",
        "mpelu init=lsuv",
        "mpelu init=taylor",
        "relu init=he_fan_in",
        "relu init=lsuv",
        "relu init=taylor",
    ]
    # a key that splits runs sharing every name stays, even when others are implied
    runs.append(
        _run(
            {
                "activation.name": "relu",
                "init.name": "lsuv",
                "init.tol": 0.01,
                "optimizer.act_weight_decay_mult": 1,
            }
        )
    )
    labels = [g.label for g in group_runs(runs)[0]]
    assert "relu init=lsuv tol=0.01" in labels and "relu init=lsuv tol=0.1" in labels


def test_groups_sort_numbers_by_value():
    runs = [_run({"activation.name": "relu", "model.depth": d}) for d in (30, 5, 10)]
    assert [g.label for g in group_runs(runs)[0]] == ["depth=5", "depth=10", "depth=30"]


def test_train_loss_at_equal_time_interpolates_at_the_shortest_run():
    """Old runs (no cpu_s): wall time; n = 1 per group is too few for a test."""
    fast = _run({"activation.name": "tlu"}, losses=[2.0, 1.0, 0.5], times=[0, 10, 20])
    slow = _run({"activation.name": "tanh"}, losses=[2.0, 1.6], times=[0, 16])
    groups, _ = group_runs([fast, slow])
    claim = parse_claim({"text": "t", "order": ["tlu", "tanh"], "metric": "train_loss_at_time"})
    verdict = judge(claim, groups, "bpc")
    assert verdict.verdict == "not enough runs"
    # tlu at 16 s: 1.0 + 0.6 * (0.5 - 1.0) = 0.7; tanh ends there at 1.6
    assert verdict.measured == "tlu 0.7000 (1) < tanh 1.6000 (1) at wall time 16 s"
    assert verdict.notes == [
        "wall time: some runs logged no CPU time (made before it was)",
        "one run only (tlu, tanh): no spread to compare",
        "fewer than 2 completed runs with a value: tlu, tanh",
    ]


def test_equal_time_claims_read_cpu_time_and_name_contended_runs():
    """One tlu seed waited for the CPU (wall 100 s for 20 CPU s): compared on CPU time."""
    runs = []
    for seed, losses, wall in (
        (0, [2.0, 1.0, 0.5], [0, 10, 20]),
        (1, [2.0, 1.1, 0.6], [0, 50, 100]),
    ):
        run = _run({"activation.name": "tlu", "seed": seed}, losses=losses, times=wall)
        run.metrics["cpu_s"] = [0.0, 10.0, 20.0]
        run.summary.update(train_time_s=wall[-1], train_cpu_s=20.0, threads=1)
        runs.append(run)
    for seed, last in ((0, 1.6), (1, 1.7)):
        run = _run({"activation.name": "tanh", "seed": seed}, losses=[2.0, last], times=[0, 16])
        run.metrics["cpu_s"] = [0.0, 16.0]
        run.summary.update(train_time_s=16.0, train_cpu_s=16.0, threads=1)
        runs.append(run)
    groups, _ = group_runs(runs)
    claim = parse_claim({"text": "t", "order": ["tlu", "tanh"], "metric": "train_loss_at_time"})
    verdict = judge(claim, groups, "bpc")
    # at CPU 16 s: tlu 0.7 and 1.1 + 0.6 * (0.6 - 1.1) = 0.8; tanh 1.6 and 1.7
    assert verdict.measured == "tlu 0.7500 ± 0.0707 (2) < tanh 1.6500 ± 0.0707 (2) at CPU time 16 s"
    expected = scipy.stats.ttest_ind([1.6, 1.7], [0.7, 0.8], equal_var=False)
    (pair,) = verdict.pairs
    assert pair.p == pytest.approx(expected.pvalue, rel=1e-9) and pair.p < 0.05
    assert verdict.verdict == "held"
    assert verdict.notes[0].startswith("1 of 4 runs were contended (CPU time below 75% of wall")
    assert "r (20%)" in verdict.notes[0] and verdict.notes[0].endswith("(CPU time used)")
    reverse = parse_claim({"text": "t", "order": ["tanh", "tlu"], "metric": "train_loss_at_time"})
    assert judge(reverse, groups, "bpc").verdict == "contradicted"


def test_outcome_claims_and_missing_groups():
    runs = [
        _run({"activation.name": "relu"}, status="diverged", losses=[2.0, math.nan]),
        _run({"activation.name": "elu"}, losses=[2.0, 1.0]),
        _run({"activation.name": "tanh"}, losses=[2.0, 2.1]),  # completed but stalled
    ]
    groups, _ = group_runs(runs)

    def verdict(raw: dict) -> str:
        return judge(parse_claim({"text": "t", **raw}), groups, "error").verdict

    assert verdict({"diverges": ["relu"], "converges": ["elu"]}) == "held"
    assert verdict({"converges": ["tanh"]}) == "did not hold"
    assert verdict({"diverges": ["elu"]}) == "did not hold"
    assert verdict({"diverges": ["mpelu"]}) == "not enough runs"
    assert verdict({"fails": ["tanh", "relu"]}) == "held"  # stalled and diverged both fail
    assert verdict({"fails": ["elu"]}) == "did not hold"
    assert verdict({"order": ["elu", "relu"], "metric": "final_train_loss"}) == "not enough runs"


def test_a_classifier_that_sank_to_chance_did_not_converge():
    """Its loss fell (from above ln 10 to it) but it learned nothing."""
    runs = [
        _run({"activation.name": "elu"}, losses=[2.6, 2.31]),
        _run({"activation.name": "tanh"}, losses=[2.6, 2.2]),
    ]
    for run in runs:
        run.summary["data"] = {"num_classes": 10}
    groups, _ = group_runs(runs)
    assert judge(parse_claim({"text": "t", "fails": ["elu"]}), groups, "error").verdict == "held"
    assert (
        judge(parse_claim({"text": "t", "converges": ["tanh"]}), groups, "error").verdict == "held"
    )


@pytest.mark.parametrize(("last", "learned"), [(2.31, False), (2.29, False), (2.27, True)])
def test_a_classifier_converged_only_a_margin_below_chance(last, learned):
    """ln 10 = 2.3026; a loss just under it (2.29) is still chance, 1% under (2.2796) is not."""
    run = _run({"activation.name": "elu"}, losses=[2.6, last])
    run.summary["data"] = {"num_classes": 10}
    assert converged(run) == learned


def _with_test_error(run: Run, errors: list[float]) -> Run:
    run.evals = pd.DataFrame(
        {"step": 1, "epoch": 1, "time_s": 1.0, "split": "test", "loss": 1.0, "error": errors}
    )
    return run


def test_run_stats_take_the_last_and_the_lowest_validation_value():
    run = _run({"activation.name": "elu"}, losses=[2.0, 1.5, 1.2], times=[0.0, 4.0, 9.5])
    run.evals = pd.DataFrame(
        {
            "step": [1, 2, 3, 3],
            "epoch": [1, 2, 3, 3],
            "time_s": 1.0,
            "split": ["val", "val", "val", "test"],
            "loss": 1.0,
            "error": [0.5, 0.3, 0.4, 0.35],
        }
    )
    assert run_stats(run) == {
        "final_val": 0.4,
        "best_val": 0.3,
        "final_test": 0.35,
        "final_train_loss": 1.2,
        "steps": 2,
        "time_s": 9.5,
    }


def test_group_aggregates_are_mean_and_sample_std_of_completed_runs():
    """Three skewed seeds (mean and median differ), and a diverged run that must not count."""
    errors, losses = [0.10, 0.12, 0.50], [1.0, 1.1, 1.9]
    runs = [
        _with_test_error(_run({"activation.name": "elu", "seed": s}, losses=[2.0, loss]), [e])
        for s, (e, loss) in enumerate(zip(errors, losses, strict=True))
    ]
    runs.append(
        _with_test_error(
            _run({"activation.name": "elu", "seed": 9}, "diverged", [2.0, math.nan]), [0.9]
        )
    )
    row = group_frame(group_runs(runs)[0]).iloc[0]
    assert (row["runs"], row["completed"], row["diverged"]) == (4, 3, 1)
    for stat, values in (("final_test", errors), ("final_train_loss", losses)):
        assert row[f"{stat}_mean"] == pytest.approx(statistics.mean(values))
        assert row[f"{stat}_std"] == pytest.approx(statistics.stdev(values))
        assert row[f"{stat}_n"] == 3


def test_an_outcome_claim_needs_every_finished_run_of_a_group():
    """Two seeds of relu: one diverged, one converged. Neither outcome holds for the group."""
    runs = [
        _run({"activation.name": "relu", "seed": 0}, status="diverged", losses=[2.0, math.nan]),
        _run({"activation.name": "relu", "seed": 1}, losses=[2.0, 1.0]),
    ]
    groups = group_runs(runs)[0]
    for outcome in ("diverges", "converges"):
        verdict = judge(parse_claim({"text": "t", outcome: ["relu"]}), groups, "error")
        assert verdict.verdict == "did not hold"
        assert "1 of 2 seeds" in verdict.measured


def test_an_order_claim_on_tied_means_did_not_hold():
    """The claim is a strict order: equal means (1.25 each) are not in its direction either way
    (a zero difference counts as reversed, and two seeds cannot make it significant)."""
    runs = [
        _run({"activation.name": name, "seed": s}, losses=[3.0, loss])
        for name, values in (("elu", [1.0, 1.5]), ("relu", [1.5, 1.0]))
        for s, loss in enumerate(values)
    ]
    groups = group_runs(runs)[0]
    for order in (["elu", "relu"], ["relu", "elu"]):
        claim = parse_claim({"text": "t", "order": order, "metric": "final_train_loss"})
        verdict = judge(claim, groups, "error").verdict
        assert verdict == "direction reversed, not significant (n = 2, 2)"


@pytest.mark.parametrize(("worse", "note"), [([1.5, 1.7], "overlap"), ([2.0, 2.2], "separated")])
def test_order_claims_note_whether_mean_plus_minus_std_overlap(worse, note):
    """elu 1.2 ± 0.28 against relu 1.6 ± 0.14 overlap (1.48 >= 1.46); against 2.1 ± 0.14 not."""
    runs = [
        _run({"activation.name": name, "seed": s}, losses=[3.0, loss])
        for name, values in (("elu", [1.0, 1.4]), ("relu", worse))
        for s, loss in enumerate(values)
    ]
    claim = parse_claim({"text": "t", "order": ["elu", "relu"], "metric": "final_train_loss"})
    verdict = judge(claim, group_runs(runs)[0], "error")
    assert verdict.verdict == "direction held, not significant (n = 2, 2)"  # two seeds each
    expected = {
        "overlap": "mean ± std overlap between elu and relu",
        "separated": "neighbouring groups separated by more than their std",
    }[note]
    assert verdict.notes == [expected]


def test_published_values_meet_only_the_same_setup():
    nin10 = {"model.name": "nin", "dataset.name": "cifar10"}
    runs = [
        _with_test_error(_run({"activation.name": "relu", "seed": s, **nin10}), [e])
        for s, e in ((0, 0.13), (1, 0.15))
    ]
    runs.append(_with_test_error(_run({"activation.name": "rrelu", **nin10}), [0.11]))
    groups, _ = group_runs(runs)
    found = compare(groups, load("xu2015_rrelu"), "error")
    assert [(c.group.label, c.published.value) for c in found] == [
        ("relu", 0.1245),
        ("rrelu", 0.1119),
    ]
    assert found[0].difference == pytest.approx((0.13 + 0.15) / 2 - 0.1245)
    assert compare(groups, load("xu2015_rrelu"), "bpc") == []  # a metric we do not measure
    for run in runs:
        run.config["dataset.name"] = "shapes"
    assert compare(group_runs(runs)[0], load("xu2015_rrelu"), "error") == []
    stalled = _run(
        {
            "activation.name": "relu",
            "model.name": "plainnet",
            "model.depth": 30,
            "init.name": "xavier",
        },
        losses=[2.3, 2.3],
    )
    (verdict,) = compare(group_runs([stalled])[0], load("he2015_prelu"), "error")
    assert (verdict.ours, verdict.difference) == ("0/1 converged", "agrees")


def test_unfinished_runs_are_labelled_in_figures():
    runs = [
        _run({"activation.name": "elu"}),
        _run({"activation.name": "relu"}, status="running", losses=[2.0, 1.5, 1.2]),
    ]
    groups, _ = group_runs(runs)
    fig = figures.plot_curves(groups, lambda r: r.metrics, x="step", y="train_loss", ylabel="l")
    texts = [t.get_text() for t in fig.axes[0].texts]
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    plt.close(fig)
    assert texts == ["running"]
    assert legend == ["elu (n=1)", "relu (n=0, 1 running)"]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"order": ["a", "b"], "metric": "final_test"}, "needs a 'text'"),
        ({"text": "t", "order": ["a", "b"], "metric": "speed"}, "'speed'; valid: final_test"),
        ({"text": "t", "order": ["a"], "metric": "final_test"}, "at least two"),
        ({"text": "t", "order": "a<b", "metric": "final_test"}, "must be a list"),
        ({"text": "t", "diverges": ["a"], "order": ["a", "b"]}, "either 'order'"),
        ({"text": "t", "diverge": ["a"]}, "unknown key 'diverge'; valid: text, order"),
        ({"text": "t", "converges": ["a"], "metric": "final_test"}, "only applies to 'order'"),
    ],
)
def test_bad_claims_fail_with_one_clear_line(raw, message):
    with pytest.raises(ReportError, match=message) as err:
        parse_claim(raw)
    assert "\n" not in str(err.value)


def test_shipped_published_values_are_valid_and_honest():
    assert set(available()) >= {"li2018_mpelu", "xu2015_rrelu", "lin2014_nin", "he2015_prelu"}
    for name in available():
        values = load(name)
        assert values and all(v.tag in TAGS for v in values)
    # the MPELU paper's NIN table was not found: only the repo's convergence table is in
    assert {(v.metric, v.tag) for v in load("li2018_mpelu")} == {("converges", "READ")}
    xu = load("xu2015_rrelu")
    assert {v.tag for v in xu} == {"MEM"}
    relu10 = next(v for v in xu if v.label == "relu" and v.where["dataset.name"] == "cifar10")
    assert relu10.value == 0.1245
    nin = load("lin2014_nin")
    assert min(v.value for v in nin) == pytest.approx(0.0881)  # stored in percent


def test_bad_published_values_name_the_problem():
    entry = {"label": "relu", "metric": "test_error", "value": 0.1, "table": "t", "source": "s"}
    with pytest.raises(ReportError, match="tag 'GUESS'; valid: READ, SEC, MEM, DER"):
        parse({"values": [{**entry, "tag": "GUESS"}]}, "x")
    with pytest.raises(ReportError, match="missing tag"):
        parse({"values": [entry]}, "x")
    with pytest.raises(ReportError, match="converges needs true or false"):
        parse({"values": [{**entry, "metric": "converges", "tag": "READ"}]}, "x")
    with pytest.raises(ReportError, match="unknown published values 'nope'; available: "):
        load("nope")
    assert PUBLISHED_DIR.is_dir()


def test_cli_empty_or_missing_directory_is_one_line_exit_1(tmp_path, capsys):
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "report.py"), str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 1
    assert (
        result.stderr == f"report: no readable run directory (with summary.json) under {tmp_path}\n"
    )
    assert REPORT_CLI["main"]([str(tmp_path / "missing")]) == 1
    assert capsys.readouterr().err == f"report: {tmp_path / 'missing'}: not a directory\n"


def test_callback_skips_when_report_is_false(tmp_path):
    config = OmegaConf.create({"report": False, "hydra": {"sweep": {"dir": str(tmp_path)}}})
    ReportCallback().on_multirun_end(config)
    assert not (tmp_path / "report").exists()


def test_report_settings_are_checked_before_a_sweep(caplog):
    assert from_config(None).claims == [] and from_config(False).published == []
    good = {"published": "xu2015_rrelu", "claims": [{"text": "t", "diverges": ["relu"]}]}
    assert from_config(good).published == ["xu2015_rrelu"]
    for bad, message in (
        ({"claim": []}, "unknown setting 'report.claim'; valid: report.published"),
        ({"published": "xu2051"}, "unknown published values 'xu2051'"),
        ({"deviations": "x", "claims": [{"text": "t"}]}, "give either 'order'"),
    ):
        with pytest.raises(ReportError, match=message):
            from_config(bad)
    ReportCallback().on_multirun_start(OmegaConf.create({"report": {"claim": []}}))
    assert "will fail: unknown setting 'report.claim'" in caplog.text


def test_diagnostics_against_depth_average_the_runs(tmp_path):
    def diagnostics(scale: float) -> pd.DataFrame:
        return pd.DataFrame(
            [
                {"step": step, "layer": f"conv{i}", "metric": "zero_fraction", "value": v}
                for step in (0, 10)
                for i, v in enumerate((0.1 * scale, 0.5 * scale, 0.9 * scale))
            ]
        )

    runs = [_run({"activation.name": "relu", "seed": s}) for s in (0, 1)]
    for run, scale in zip(runs, (1.0, 0.5), strict=True):
        run.diagnostics = diagnostics(scale)
    groups, _ = group_runs(runs)
    assert figures.diagnostic_steps(groups) == [0, 10]
    profile = figures.depth_profile(groups[0], "zero_fraction", 10)
    assert profile.tolist() == [[0.1, 0.5, 0.9], [0.05, 0.25, 0.45]]  # runs x layers, in order
    (made,) = figures.plot_diagnostics(groups, [10], tmp_path)
    assert made.stem == tmp_path / "diag_zero_fraction"
    assert (tmp_path / "diag_zero_fraction.pdf").stat().st_size > 1000
    with pytest.raises(ReportError, match="no diagnostics at step 5; logged steps: \\[0, 10\\]"):
        figures.plot_diagnostics(groups, [5], tmp_path)
