"""scripts/relu_approximation.py: ReLU sums fit |x| and x^2 better with more units; identity units
stay at the best straight line whatever their number (article 004's argument, computed)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "relu_approximation.py"


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("relu_approximation", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _best_line_mse(target) -> float:
    x = torch.linspace(-2, 2, 401, dtype=torch.float64).view(-1, 1)
    design = torch.cat([x, torch.ones_like(x)], dim=1)
    coef = torch.linalg.lstsq(design, target(x)).solution
    return float((design @ coef - target(x)).square().mean())


def test_relu_error_falls_with_k_and_identity_stays_at_the_best_line(script):
    for target in script.TARGETS.values():
        relu = [script.fit(target, k, "relu", steps=600, restarts=1)[0] for k in (2, 16)]
        assert relu[1] < 0.5 * relu[0]
        line = _best_line_mse(target)
        for k in (2, 16):
            mse = script.fit(target, k, "identity", steps=600, restarts=1)[0]
            assert mse == pytest.approx(line, rel=0.02)
    assert relu[0] < line  # even two ReLUs beat any straight line on x^2


def test_abs_is_exact_with_two_relus(script):
    mse = script.fit(torch.abs, 2, "relu", steps=1500, restarts=3)[0]
    assert mse < 1e-4


def test_script_writes_png_and_pdf(script, tmp_path):
    script.main(
        ["--ks", "2", "4", "--steps", "50", "--restarts", "1", "--out", str(tmp_path / "f")]
    )
    assert (tmp_path / "f.png").stat().st_size > 0 and (tmp_path / "f.pdf").exists()
