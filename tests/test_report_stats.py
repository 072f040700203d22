"""The report's statistics and study-shaped figures on synthetic run directories with known
values: verdicts from Welch + Holm, p-values and intervals equal to scipy's, the power
calculation against simulation, budgets and data sufficiency, CPU time, and which figure each
sweep shape gets."""

from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import scipy.stats
import yaml

from experiments.report import figures, significance
from experiments.report.build import write_report
from experiments.report.claims import judge, parse_claim
from experiments.report.factors import factors, panel_factor
from experiments.report.groups import group_runs
from experiments.report.runs import find_runs
from experiments.report.stats import diagnostic_stats


def write_run(
    root: Path,
    name: str,
    config: dict,
    losses: list[float],
    *,
    status: str = "completed",
    test_error: float | None = None,
    cpu: bool = True,
    overrides: list[str] | None = None,
    summary: dict | None = None,
) -> Path:
    """A run directory in the run-directory contract of docs/architecture.md, every number given."""
    run = root / name
    (run / ".hydra").mkdir(parents=True)
    cfg = {"seed": 0, "run_name": name, "experiment_name": "synthetic", **config}
    (run / ".hydra" / "config.yaml").write_text(yaml.safe_dump(cfg))
    if overrides is not None:
        (run / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    steps = [10 * (i + 1) for i in range(len(losses))]
    metrics = {"step": steps, "epoch": steps, "time_s": steps}
    if cpu:
        metrics["cpu_s"] = steps
    metrics.update(train_loss=losses, lr=0.1)
    pd.DataFrame(metrics).to_csv(run / "metrics.csv", index=False)
    evals = []
    if test_error is not None:
        evals.append(
            {
                "step": steps[-1],
                "epoch": 1,
                "time_s": 1,
                "split": "test",
                "loss": 1.0,
                "error": test_error,
            }
        )
    pd.DataFrame(evals, columns=["step", "epoch", "time_s", "split", "loss", "error"]).to_csv(
        run / "eval.csv", index=False
    )
    info = {
        "status": status,
        "step": steps[-1],
        "total_steps": steps[-1],
        "epoch": 1.0,
        "stop_reason": "max_steps",
        "train_time_s": float(steps[-1]),
        "threads": 1,
        "data": {"num_classes": 10},
        **({"train_cpu_s": float(steps[-1])} if cpu else {}),
        **(summary or {}),
    }
    (run / "summary.json").write_text(json.dumps(info))
    return run


ORDER = {"text": "prelu < elu < relu", "order": ["prelu", "elu", "relu"], "metric": "test_error"}


def three_units(root: Path, errors: dict[str, list[float]], **kw) -> None:
    """prelu, elu, relu runs with the given test errors; the preset claims ORDER."""
    for unit, values in errors.items():
        for seed, e in enumerate(values):
            config = {"activation": {"name": unit}, "seed": seed, "report": {"claims": [ORDER]}}
            write_run(root, f"{unit}-s{seed}", config, [2.0, 1.5, 1.0], test_error=e, **kw)


def _verdict(root: Path, raw: dict = ORDER):
    runs, _ = find_runs([root])
    groups, _ = group_runs(runs)
    return judge(parse_claim(raw), groups, "error")


CLEAR = {
    "prelu": [0.100, 0.102, 0.098, 0.101, 0.099],
    "elu": [0.120, 0.122, 0.118, 0.121, 0.119],
    "relu": [0.140, 0.142, 0.138, 0.141, 0.139],
}


def _spread(values: list[float], factor: float) -> list[float]:
    mean = float(np.mean(values))
    return [mean + factor * (v - mean) for v in values]


def test_a_clear_ordering_with_five_seeds_held(tmp_path):
    three_units(tmp_path, CLEAR)
    verdict = _verdict(tmp_path)
    assert verdict.verdict == "held"
    assert [(t.better, t.worse) for t in verdict.pairs] == [("prelu", "elu"), ("elu", "relu")]
    assert all(t.difference == pytest.approx(0.02) for t in verdict.pairs)


def test_the_same_means_with_a_large_spread_are_not_significant(tmp_path):
    three_units(tmp_path, {unit: _spread(v, 20.0) for unit, v in CLEAR.items()})
    verdict = _verdict(tmp_path)
    assert verdict.verdict == "direction held, not significant (n = 5, 5, 5)"
    assert all(t.difference == pytest.approx(0.02) and not t.significant for t in verdict.pairs)
    # the notes of the old rule stay: spreads overlap
    assert "mean ± std overlap between prelu and elu; elu and relu" in verdict.notes


def test_a_significantly_reversed_pair_contradicts(tmp_path):
    three_units(tmp_path, {"prelu": CLEAR["elu"], "elu": CLEAR["prelu"], "relu": CLEAR["relu"]})
    verdict = _verdict(tmp_path)
    assert verdict.verdict == "contradicted"
    assert verdict.pairs[0].difference == pytest.approx(-0.02) and verdict.pairs[0].significant


def test_a_reversed_pair_within_noise_is_reversed_not_significant(tmp_path):
    noisy = {unit: _spread(v, 20.0) for unit, v in CLEAR.items()}
    three_units(tmp_path, {"prelu": noisy["elu"], "elu": noisy["prelu"], "relu": noisy["relu"]})
    assert _verdict(tmp_path).verdict == "direction reversed, not significant (n = 5, 5, 5)"


def test_p_values_and_intervals_equal_scipys(tmp_path):
    errors = {
        "prelu": [0.101, 0.097, 0.113, 0.092],
        "elu": [0.110, 0.131, 0.104, 0.126, 0.119],
        "relu": [0.150, 0.122, 0.139],
    }
    three_units(tmp_path, errors)
    pairs = _verdict(tmp_path).pairs
    raw = []
    for test, (better, worse) in zip(pairs, [("prelu", "elu"), ("elu", "relu")], strict=True):
        a, b = np.array(errors[better]), np.array(errors[worse])
        result = scipy.stats.ttest_ind(b, a, equal_var=False)
        raw.append(result.pvalue)
        assert test.p == pytest.approx(result.pvalue, rel=1e-12)
        # Welch's interval by its formula: Welch-Satterthwaite df, t quantile, standard error
        va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
        df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
        half = scipy.stats.t.ppf(0.975, df) * math.sqrt(va + vb)
        diff = b.mean() - a.mean()
        assert (test.ci_low, test.ci_high) == pytest.approx((diff - half, diff + half), rel=1e-9)
    # Holm with two pairs: the smaller p doubled, the larger kept (never below the smaller)
    small, large = sorted(raw)
    adjusted = {small: min(1.0, 2 * small), large: max(min(1.0, 2 * small), large)}
    assert [t.p_holm for t in pairs] == pytest.approx([adjusted[p] for p in raw])


def test_holm_adjusts_step_down_and_stays_monotone():
    # sorted 0.01, 0.03, 0.04 -> 3 x 0.01, 2 x 0.03, max(0.06, 1 x 0.04)
    assert significance.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert significance.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])


def test_the_detectable_difference_has_the_stated_power_in_simulation():
    """Simulated Welch tests at the true difference = the detectable one reject ~80% (0.777:
    the non-central t takes Welch's df at the true spreads, while each simulated test estimates
    it, which costs a little power at n = 5)."""
    sd, n = 0.02, 5
    effect = significance.detectable_difference(sd, n, sd, n)
    rng = np.random.default_rng(0)
    a = rng.normal(0.0, sd, size=(20000, n))
    b = rng.normal(effect, sd, size=(20000, n))
    rejected = scipy.stats.ttest_ind(b, a, axis=1, equal_var=False).pvalue < 0.05
    assert rejected.mean() == pytest.approx(0.8, abs=0.03)
    # the normal approximation (z_0.975 + z_0.8) * se is a lower bound at this small n
    assert effect > (1.96 + 0.8416) * math.sqrt(2 * sd**2 / n)


def test_one_run_per_group_is_not_enough_runs(tmp_path):
    three_units(tmp_path, {u: v[:1] for u, v in CLEAR.items()})
    verdict = _verdict(tmp_path)
    assert verdict.verdict == "not enough runs" and verdict.pairs == []


def test_a_budget_cut_to_one_logged_row_is_not_enough_data(tmp_path):
    """trainer.max_steps=30 with log_every=50: one row; the report says what was run."""
    for unit in ("prelu", "elu", "relu"):
        for seed in (0, 1):
            write_run(
                tmp_path,
                f"{unit}-s{seed}",
                {"activation": {"name": unit}, "seed": seed},
                [2.3],
                test_error=0.9,
                overrides=["experiment=x", "trainer.max_steps=30"],
                summary={"step": 30, "total_steps": 30, "epoch": 0.1},
            )
    verdict = _verdict(tmp_path)
    assert verdict.verdict == "not enough data"
    assert verdict.measured.startswith("fewer than 2 logged training rows (prelu-s0: 1 row(s)")
    outcome = _verdict(tmp_path, {"text": "relu converges", "converges": ["relu"]})
    assert outcome.verdict == "not enough data"
    page = write_report([tmp_path]).read_text()
    assert (
        "Budget actually run: 30 of 30 steps (0.1 epochs), stopped by max_steps; set on the "
        "command line: `trainer.max_steps=30`."
    ) in page


def test_outcome_claims_count_k_of_n_seeds(tmp_path):
    for seed, status in enumerate(("diverged", "completed", "diverged")):
        losses = [2.3, math.nan] if status == "diverged" else [2.3, 2.0, 1.0]
        write_run(
            tmp_path,
            f"relu-s{seed}",
            {"activation": {"name": "relu"}, "seed": seed},
            losses,
            status=status,
        )
    verdict = _verdict(tmp_path, {"text": "relu diverges", "diverges": ["relu"]})
    assert (verdict.verdict, verdict.measured) == ("did not hold", "relu: 2 of 3 seeds diverged")


def test_old_run_directories_without_cpu_time_still_report(tmp_path):
    three_units(tmp_path, CLEAR, cpu=False)
    page = write_report([tmp_path], tmp_path / "out").read_text()
    assert "CPU time not recorded (runs made before it was logged)" in page
    assert not (tmp_path / "out" / "train_loss_cpu.png").exists()
    assert (tmp_path / "out" / "train_loss_time.png").is_file()
    assert "**held**" in page and significance.RULE in page


def test_contended_runs_are_warned_about(tmp_path):
    three_units(tmp_path, CLEAR, summary={"train_time_s": 100.0, "train_cpu_s": 30.0})
    page = write_report([tmp_path], tmp_path / "out").read_text()
    assert "**Warning: contended CPU.** 15 of 15 runs were contended" in page
    assert "CPU use (CPU time / (wall time x threads)) 30%" in page
    assert (tmp_path / "out" / "train_loss_cpu.png").is_file()


# -- figures by study shape -------------------------------------------------------------------


def _two_factor(root: Path, units: tuple[str, ...], inits: tuple[str, ...]) -> None:
    for u in units:
        for i in inits:
            for seed in (0, 1):
                diverged = u == "relu" and i == "xavier"
                losses = [2.3, math.nan] if diverged else [2.5, 2.0, 1.0 + 0.1 * seed]
                write_run(
                    root,
                    f"{u}-{i}-s{seed}",
                    {"activation": {"name": u}, "init": {"name": i}, "seed": seed},
                    losses,
                    status="diverged" if diverged else "completed",
                )


def test_a_two_factor_sweep_gets_the_outcome_grid(tmp_path):
    _two_factor(tmp_path, ("elu", "relu"), ("he_fan_in", "xavier"))
    claims = {"claims": [{"text": "relu fails with xavier", "fails": ["relu init=xavier"]}]}
    for cfg in tmp_path.glob("*/.hydra/config.yaml"):
        cfg.write_text(yaml.safe_dump({**yaml.safe_load(cfg.read_text()), "report": claims}))
    page = write_report([tmp_path], tmp_path / "out").read_text()
    assert "![Outcome per activation x init" in page
    assert (tmp_path / "out" / "outcome_grid.png").stat().st_size > 5000
    from experiments.report.grid import cell_text

    runs, _ = find_runs([tmp_path])
    groups, _ = group_runs(runs)
    cell = next(g for g in groups if g.label == "relu init=xavier")
    assert cell_text(cell, "fails") == "diverged 2/2\npaper: fails"


def test_more_than_eight_groups_get_small_multiples(tmp_path):
    _two_factor(tmp_path, ("elu", "relu", "tanh"), ("he_fan_in", "xavier", "lsuv"))
    runs, _ = find_runs([tmp_path])
    groups, keys = group_runs(runs)
    found = factors(groups, runs, keys)
    panels = panel_factor(found, len(groups))
    assert len(groups) == 9 and panels.key == "init.name"
    fig = figures.plot_curves(
        groups, lambda r: r.metrics, x="step", y="train_loss", ylabel="l", panels=panels
    )
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible()]
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    plt.close(fig)
    assert titles == ["init = he_fan_in", "init = lsuv", "init = xavier"]
    assert legend == ["elu", "relu", "tanh", "diverged"]
    assert panel_factor(found[:1], len(groups)) is None  # one factor: nothing to split by


def test_a_one_point_curve_is_a_point_and_a_first_row_divergence_is_marked(tmp_path):
    write_run(tmp_path, "elu", {"activation": {"name": "elu"}}, [2.0])
    write_run(tmp_path, "relu", {"activation": {"name": "relu"}}, [math.nan], status="diverged")
    runs, _ = find_runs([tmp_path])
    groups, _ = group_runs(runs)
    fig = figures.plot_curves(groups, lambda r: r.metrics, x="step", y="train_loss", ylabel="l")
    lines = fig.axes[0].lines
    plt.close(fig)
    elu = [ln for ln in lines if ln.get_color() == groups[0].color]
    relu = [ln for ln in lines if ln.get_color() == groups[1].color]
    assert elu[0].get_marker() == "o" and list(elu[0].get_xdata()) == [10]
    assert [ln.get_marker() for ln in relu] == [".", "x"]
    assert list(relu[-1].get_xdata()) == [10.0]


def test_dead_unit_claims_compare_the_last_diagnostics_step_mean_over_layers(tmp_path):
    """final_dead_units: the mean over layers at the last diagnostics step, not the first."""
    claim = {"text": "elu < relu", "order": ["elu", "relu"], "metric": "final_dead_units"}
    dead = {"elu": [0.00, 0.02, 0.01], "relu": [0.50, 0.60, 0.55]}
    for unit, values in dead.items():
        for seed, value in enumerate(values):
            config = {"activation": {"name": unit}, "seed": seed, "report": {"claims": [claim]}}
            run = write_run(tmp_path, f"{unit}-s{seed}", config, [2.0, 1.5, 1.0])
            rows = [(0, layer, "dead_units", 0.9) for layer in (1, 2)]  # step 0: ignored
            rows += [(30, 1, "dead_units", value - 0.1), (30, 2, "dead_units", value + 0.1)]
            rows += [(30, 1, "zero_fraction", 0.5)]
            pd.DataFrame(rows, columns=["step", "layer", "metric", "value"]).to_csv(
                run / "diagnostics.csv", index=False
            )
    verdict = _verdict(tmp_path, claim)
    assert verdict.verdict == "held"
    assert verdict.pairs[0].difference == pytest.approx(0.54)


def test_init_stats_read_step_zero_and_grad_decades_compare_first_to_last_layer(tmp_path):
    """init_zero_fraction is the step-0 mean over layers; init_grad_decades is
    log10(first layer's gradient norm / last layer's) at step 0; final_abs_mean takes |mean|."""
    write_run(tmp_path, "sigmoid", {"activation": {"name": "sigmoid"}}, [2.0, 1.5, 1.0])
    run_dir = tmp_path / "sigmoid"
    rows = [(0, 1, "zero_fraction", 0.4), (0, 2, "zero_fraction", 0.6)]
    rows += [(0, 1, "grad_norm", 1e-5), (0, 2, "grad_norm", 1e-3), (0, 3, "grad_norm", 1e-1)]
    rows += [(50, 1, "zero_fraction", 0.9), (50, 1, "grad_norm", 1.0), (50, 2, "grad_norm", 1.0)]
    rows += [(50, 1, "mean", -0.3), (50, 2, "mean", 0.1)]
    pd.DataFrame(rows, columns=["step", "layer", "metric", "value"]).to_csv(
        run_dir / "diagnostics.csv", index=False
    )
    runs, _ = find_runs([tmp_path])
    stats = diagnostic_stats(runs[0])
    assert stats["init_zero_fraction"] == pytest.approx(0.5)
    assert stats["final_zero_fraction"] == pytest.approx(0.9)
    assert stats["init_grad_decades"] == pytest.approx(-4.0)
    assert stats["final_abs_mean"] == pytest.approx(0.2)
    assert math.isnan(stats["final_dead_units"])


def test_pointrange_panel_goes_log_when_one_group_blew_up(tmp_path, monkeypatch):
    """A finite loss of 4e5 (no divergence stop) beside losses near 1: the panel is log-scaled
    so the other groups stay apart; ordinary spans keep a linear axis."""
    from experiments.report import pointrange

    drawn = []
    monkeypatch.setattr(pointrange.style, "save", lambda fig, stem: drawn.append(fig))
    for unit, final in {"elu": 0.8, "relu": 1.2, "prelu": 4e5}.items():
        for seed in (0, 1):
            config = {"activation": {"name": unit}, "seed": seed}
            write_run(tmp_path, f"{unit}-s{seed}", config, [2.0, final * (1 + seed / 10)])
    runs, _ = find_runs([tmp_path])
    groups, _ = group_runs(runs)
    pointrange.plot_pointrange(groups, ["final_train_loss"], None, [], tmp_path)
    kept = [g for g in groups if g.label != "prelu"]
    pointrange.plot_pointrange(kept, ["final_train_loss"], None, [], tmp_path)
    blown, ordinary = (fig.axes[0] for fig in drawn)
    assert blown.get_xscale() == "log" and "(log scale)" in blown.get_xlabel()
    assert ordinary.get_xscale() == "linear"
    for fig in drawn:
        plt.close(fig)


def test_curves_go_log_when_one_group_blew_up(tmp_path):
    """A training loss of 1e10 beside losses near 1: the curves' y axis turns logarithmic."""
    write_run(tmp_path, "elu", {"activation": {"name": "elu"}}, [2.0, 1.0, 0.8])
    write_run(tmp_path, "prelu", {"activation": {"name": "prelu"}}, [1e10, 2.0, 1.5])
    runs, _ = find_runs([tmp_path])
    groups, _ = group_runs(runs)
    fig = figures.plot_curves(groups, lambda r: r.metrics, x="step", y="train_loss", ylabel="l")
    assert fig.axes[0].get_yscale() == "log"
    plt.close(fig)
    calm = [g for g in groups if g.label == "elu"]
    fig = figures.plot_curves(calm, lambda r: r.metrics, x="step", y="train_loss", ylabel="l")
    assert fig.axes[0].get_yscale() == "linear"
    plt.close(fig)


def test_pointrange_axis_spans_the_values_and_cuts_two_seed_intervals(tmp_path, monkeypatch):
    """Two seeds 0.5 and 2.5 nats: t's interval runs to about -11 and 14; the axis keeps to
    the drawn values and the whisker ends at its edges in arrowheads."""
    from experiments.report import pointrange

    drawn = []
    monkeypatch.setattr(pointrange.style, "save", lambda fig, stem: drawn.append(fig))
    for unit, finals in {"elu": (0.95, 1.0), "relu": (0.5, 2.5)}.items():
        for seed, final in enumerate(finals):
            config = {"activation": {"name": unit}, "seed": seed}
            write_run(tmp_path, f"{unit}-s{seed}", config, [3.0, final])
    runs, _ = find_runs([tmp_path])
    groups, _ = group_runs(runs)
    _, low, high = pointrange.interval(np.array([0.5, 2.5]))
    assert low < -10 and high > 13
    pointrange.plot_pointrange(groups, ["final_train_loss"], None, [], tmp_path)
    ax = drawn[0].axes[0]
    left, right = ax.get_xlim()
    assert 0.3 < left < 0.5 and 2.5 < right < 2.7
    lines = [line for line in ax.get_lines() if line.get_linestyle() == "-"]
    for line in lines:  # every whisker within the axis
        assert min(line.get_xdata()) >= left and max(line.get_xdata()) <= right
    heads = [line.get_marker() for line in ax.get_lines() if line.get_marker() in ("<", ">")]
    assert sorted(heads) == ["<", ">"]  # relu's interval is cut at both ends, elu's is not
    plt.close(drawn[0])
