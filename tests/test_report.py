"""The report: real tiny runs from the trainer in, tables/figures/claims out, checked against
pandas computations straight from the run CSVs (the contract in DESIGN.md)."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from omegaconf import OmegaConf

from experiments.report import style
from experiments.report.callback import ReportCallback
from experiments.report.claims import judge, parse_claim
from experiments.report.groups import group_runs, select
from experiments.report.published import PUBLISHED_DIR, TAGS, available, load, parse
from experiments.report.runs import ReportError, Run

ROOT = Path(__file__).resolve().parents[1]


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
        _run({"activation.name": "lrelu", "activation.slope": 0.01}),
        _run({"activation.name": "lrelu", "activation.slope": 0.2}),
        _run({"activation.name": "elu", "activation.alpha": 1.0}),
    ]
    groups, keys = group_runs(runs)
    assert keys == ["activation.alpha", "activation.name", "activation.slope"]
    assert [g.label for g in groups] == ["elu", "lrelu(slope=0.01)", "lrelu(slope=0.2)", "relu"]
    assert len(groups[-1].runs) == 2  # the two relu seeds are replicates
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


def test_train_loss_at_equal_time_interpolates_at_the_shortest_run():
    fast = _run({"activation.name": "tlu"}, losses=[2.0, 1.0, 0.5], times=[0, 10, 20])
    slow = _run({"activation.name": "tanh"}, losses=[2.0, 1.6], times=[0, 16])
    groups, _ = group_runs([fast, slow])
    claim = parse_claim({"text": "t", "order": ["tlu", "tanh"], "metric": "train_loss_at_time"})
    verdict = judge(claim, groups, "bpc")
    assert verdict.verdict == "held"
    # tlu at 16 s: 1.0 + 0.6 * (0.5 - 1.0) = 0.7; tanh ends there at 1.6
    assert verdict.measured == "tlu 0.7000 (1) < tanh 1.6000 (1) at time 16 s"
    reverse = parse_claim({"text": "t", "order": ["tanh", "tlu"], "metric": "train_loss_at_time"})
    assert judge(reverse, groups, "bpc").verdict == "did not hold"


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
    assert verdict({"order": ["elu", "relu"], "metric": "final_train_loss"}) == "not enough runs"


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


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "report.py"), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )


def test_cli_empty_or_missing_directory_is_one_line_exit_1(tmp_path):
    for target in (tmp_path, tmp_path / "missing"):
        result = _cli(str(target))
        assert result.returncode == 1
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
        assert result.stderr.startswith("report: ")


def test_callback_skips_when_report_is_false(tmp_path):
    config = OmegaConf.create({"report": False, "hydra": {"sweep": {"dir": str(tmp_path)}}})
    ReportCallback().on_multirun_end(config)
    assert not (tmp_path / "report").exists()
