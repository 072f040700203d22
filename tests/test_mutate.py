"""scripts/mutate.py on a two-file repository: killed, survived and stale mutants, the working
tree untouched, and the shipped mutant list well-formed and current."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SPEC = importlib.util.spec_from_file_location("mutate", ROOT / "scripts" / "mutate.py")
mutate = importlib.util.module_from_spec(SPEC)
sys.modules["mutate"] = mutate  # dataclasses look their module up there
SPEC.loader.exec_module(mutate)

CODE = "def add(a, b):\n    return a + b\n\n\ndef double(a):\n    return add(a, a)\n"
TEST = "from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n"
MUTANTS = {
    "areas": {"calc": ["tests/test_calc.py"]},
    "mutants": [
        {"id": "minus", "area": "calc", "file": "calc.py", "original": "a + b", "mutated": "a - b"},
        {
            "id": "untested",
            "area": "calc",
            "file": "calc.py",
            "original": "add(a, a)",
            "mutated": "add(a, 0)",
        },
        {"id": "gone", "area": "calc", "file": "calc.py", "original": "a * b", "mutated": "a / b"},
    ],
}


def test_mutants_are_killed_survive_or_are_stale_and_the_tree_is_untouched(tmp_path, capsys):
    repo = tmp_path / "repo"
    (repo / "tests").mkdir(parents=True)
    (repo / "calc.py").write_text(CODE)
    (repo / "tests" / "test_calc.py").write_text(TEST)
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    listing = tmp_path / "mutants.yaml"
    listing.write_text(yaml.safe_dump(MUTANTS))
    out = tmp_path / "outcomes.json"
    argv = ["--repo", str(repo), "--mutants", str(listing), "--json", str(out)]
    assert mutate.main(argv) == 0
    outcomes = {o["id"]: o["status"] for o in json.loads(out.read_text())}
    assert outcomes == {"minus": "killed", "untested": "survived", "gone": "stale"}
    assert (repo / "calc.py").read_text() == CODE
    report = capsys.readouterr().out
    assert "| calc | 1 / 2 | 50% | 1 | 1 | 0 |" in report
    assert "survived: untested" in report and "stale: gone" in report


def test_shipped_list_is_well_formed():
    """scripts/mutants.yaml loads, names files and tests that exist, and holds the ten
    survivors of the first mutation run (issue 20). Whether each snippet still matches the
    code is the tool's business (it reports "stale"), so a refactor does not fail this test."""
    mutants = mutate.load_mutants(mutate.DEFAULT_LIST)
    assert len(mutants) >= 60
    for m in mutants:
        assert (ROOT / m.file).is_file(), m.id
        assert all((ROOT / t).exists() for t in m.tests if t.startswith("tests/")), m.id
    assert sum(m.id.startswith("issue-") for m in mutants) == 10


def test_the_private_copy_keeps_a_tracked_directory_link(tmp_path):
    """experiments/configs is a link to ../configs: the copy must keep it, or every test that
    composes a config fails in the copy and each mutant counts as killed by an error."""
    repo, copy = tmp_path / "repo", tmp_path / "copy"
    (repo / "configs").mkdir(parents=True)
    (repo / "configs" / "a.yaml").write_text("x: 1\n")
    (repo / "pkg").mkdir()
    (repo / "pkg" / "configs").symlink_to("../configs")
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    mutate.copy_tree(repo, copy)
    assert (copy / "pkg" / "configs").is_symlink()
    assert (copy / "pkg" / "configs" / "a.yaml").read_text() == "x: 1\n"
