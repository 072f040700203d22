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
    """The script as a module, run single-threaded as its main() does (tiny matrices)."""
    spec = importlib.util.spec_from_file_location("relu_approximation", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield module
    torch.set_num_threads(threads)


def _best_line_mse(target) -> float:
    x = torch.linspace(-2, 2, 401, dtype=torch.float64).view(-1, 1)
    design = torch.cat([x, torch.ones_like(x)], dim=1)
    coef = torch.linalg.lstsq(design, target(x)).solution
    return float((design @ coef - target(x)).square().mean())


def test_square_error_falls_with_k_and_abs_is_exact_with_two_relus(script):
    square = [script.fit(torch.square, k, "relu", steps=300, restarts=3)[0] for k in (2, 16)]
    assert square[1] < 0.01 * square[0]
    assert square[0] < _best_line_mse(torch.square)  # two ReLUs already beat any straight line
    assert script.fit(torch.abs, 2, "relu", steps=300, restarts=3)[0] < 1e-12


def test_identity_units_stay_at_the_best_straight_line(script):
    for target in script.TARGETS.values():
        line = _best_line_mse(target)
        for k in (2, 16):
            mse = script.fit(target, k, "identity", steps=300, restarts=1)[0]
            assert mse == pytest.approx(line, rel=1e-6)


def test_script_writes_png_and_pdf(script, tmp_path):
    out = str(tmp_path / "f")
    script.main(["--ks", "2", "4", "--steps", "20", "--restarts", "1", "--out", out])
    assert (tmp_path / "f.png").stat().st_size > 0 and (tmp_path / "f.pdf").exists()
