"""Mutation testing: do the tests notice a plausible one-line bug in the code that decides results?

Each mutant in the list (``scripts/mutants.yaml``) replaces one snippet of one file with a
slightly wrong version (``>`` for ``>=``, a dropped factor, a dropped layer). For every mutant
the script writes the changed file into a private copy of the repository, runs that area's test
files there (``pytest -x -q``, one process per mutant, with a timeout), and restores the file.
A mutant is *killed* when the tests fail (or hang past the timeout), *survived* when they pass,
and *stale* when its original snippet is no longer in the file exactly once (the code moved on:
update the list). The working tree is never written to, so others may run from it meanwhile.

Not part of CI: a full run takes tens of minutes on two cores. Typical use::

    nice -n 5 python scripts/mutate.py                      # every mutant
    python scripts/mutate.py --area formulas --area models  # some areas
    python scripts/mutate.py --list                         # what would run, and staleness
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_LIST = ROOT / "scripts" / "mutants.yaml"
PYTEST = ("-x", "-q", "-p", "no:cacheprovider")


@dataclass
class Mutant:
    id: str
    area: str
    file: str
    original: str
    mutated: str
    why: str
    tests: list[str]


@dataclass
class Outcome:
    id: str
    area: str
    status: str  # killed | survived | timeout | stale | error
    seconds: float
    detail: str = ""
    why: str = ""
    file: str = ""


@dataclass
class Tally:
    killed: int = 0
    survived: int = 0
    stale: int = 0
    error: int = 0
    seconds: float = 0.0
    survivors: list[str] = field(default_factory=list)

    @property
    def judged(self) -> int:
        return self.killed + self.survived


def load_mutants(path: Path) -> list[Mutant]:
    """The list's areas (default test arguments) and mutants, checked for shape."""
    raw = yaml.safe_load(path.read_text())
    if not isinstance(raw, dict) or not {"areas", "mutants"} <= raw.keys():
        raise SystemExit(f"error: {path} needs top-level keys 'areas' and 'mutants'")
    areas: dict[str, list[str]] = raw["areas"]
    mutants, seen = [], set()
    for i, item in enumerate(raw["mutants"]):
        missing = [k for k in ("id", "area", "file", "original", "mutated") if k not in item]
        if missing:
            raise SystemExit(f"error: {path}: mutant {i} lacks {', '.join(missing)}")
        if item["area"] not in areas:
            raise SystemExit(
                f"error: {path}: mutant {item['id']} has area {item['area']!r}; "
                f"choose from: {', '.join(areas)}"
            )
        if item["id"] in seen:
            raise SystemExit(f"error: {path}: mutant id {item['id']!r} is used twice")
        if item["original"] == item["mutated"]:
            raise SystemExit(f"error: {path}: mutant {item['id']} changes nothing")
        seen.add(item["id"])
        tests = item.get("tests") or areas[item["area"]]
        mutants.append(
            Mutant(
                id=item["id"],
                area=item["area"],
                file=item["file"],
                original=item["original"],
                mutated=item["mutated"],
                why=item.get("why", ""),
                tests=[str(t) for t in tests],
            )
        )
    return mutants


def copy_tree(source: Path, target: Path) -> None:
    """The files git would commit (tracked, and untracked but not ignored), as they are now."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=source,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        src = source / name
        dst = target / name
        if src.is_symlink():  # experiments/configs -> ../configs: a link git tracks as one
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.symlink_to(os.readlink(src))
        elif src.is_file():
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)


def run_tests(copy: Path, tests: Sequence[str], timeout: float) -> tuple[str, str]:
    """("passed" | "failed" | "timeout" | "error", last output line) of pytest in ``copy``."""
    env = {
        **os.environ,
        "PYTHONPATH": str(copy),
        "PYTHONDONTWRITEBYTECODE": "1",  # a cached .pyc of the same size and second would win
    }
    with subprocess.Popen(
        [sys.executable, "-m", "pytest", *PYTEST, *tests],
        cwd=copy,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # so a timeout can end the whole group (CLI subprocesses too)
    ) as proc:
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            return "timeout", f"no result after {timeout:.0f} s"
    last = (out.strip().splitlines() or [""])[-1]
    if proc.returncode == 0:
        return "passed", last
    if proc.returncode == 1:
        return "failed", last
    return "error", f"pytest exit {proc.returncode}: {last}"  # usage error, nothing collected


def apply(copy: Path, mutant: Mutant) -> str | None:
    """Write the mutant into ``copy``; the pristine text to restore, or None when stale."""
    path = copy / mutant.file
    if not path.is_file():
        return None
    text = path.read_text()
    if text.count(mutant.original) != 1:
        return None
    path.write_text(text.replace(mutant.original, mutant.mutated))
    return text


def staleness(copy: Path, mutant: Mutant) -> str:
    path = copy / mutant.file
    if not path.is_file():
        return f"{mutant.file} does not exist"
    count = path.read_text().count(mutant.original)
    return f"original snippet found {count} times in {mutant.file} (needs exactly 1)"


def run_mutant(copy: Path, mutant: Mutant, timeout: float) -> Outcome:
    start = time.monotonic()
    pristine = apply(copy, mutant)
    if pristine is None:
        return Outcome(mutant.id, mutant.area, "stale", 0.0, staleness(copy, mutant), mutant.why)
    try:
        result, last = run_tests(copy, mutant.tests, timeout)
    finally:
        (copy / mutant.file).write_text(pristine)
    status = {"failed": "killed", "passed": "survived"}.get(result, result)
    return Outcome(
        mutant.id, mutant.area, status, time.monotonic() - start, last, mutant.why, mutant.file
    )


def baseline(copy: Path, mutants: list[Mutant], timeout: float) -> list[str]:
    """Every distinct test selection must pass unmutated, or its mutants prove nothing."""
    problems = []
    for tests in dict.fromkeys(tuple(m.tests) for m in mutants):
        start = time.monotonic()
        result, last = run_tests(copy, tests, timeout)
        print(
            f"baseline {' '.join(tests)}: {result} in {time.monotonic() - start:.0f} s", flush=True
        )
        if result != "passed":
            problems.append(f"{' '.join(tests)}: {result} ({last})")
    return problems


def tally(outcomes: list[Outcome]) -> dict[str, Tally]:
    areas: dict[str, Tally] = {}
    for o in outcomes:
        t = areas.setdefault(o.area, Tally())
        t.seconds += o.seconds
        if o.status in ("killed", "timeout"):
            t.killed += 1
        elif o.status == "survived":
            t.survived += 1
            t.survivors.append(o.id)
        elif o.status == "stale":
            t.stale += 1
        else:
            t.error += 1
    return areas


def table(areas: dict[str, Tally]) -> str:
    """Markdown: per area killed / judged, score, stale, errors, minutes; then the total."""
    total = Tally()
    for t in areas.values():
        for key in ("killed", "survived", "stale", "error", "seconds"):
            setattr(total, key, getattr(total, key) + getattr(t, key))
    lines = [
        "| area | killed / total | score | survived | stale | error | minutes |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, t in [*areas.items(), ("**all**", total)]:
        score = f"{100 * t.killed / t.judged:.0f}%" if t.judged else "-"
        lines.append(
            f"| {name} | {t.killed} / {t.judged} | {score} | {t.survived} | {t.stale} | "
            f"{t.error} | {t.seconds / 60:.1f} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mutants", type=Path, default=DEFAULT_LIST, help="the mutant list")
    parser.add_argument("--area", action="append", help="only this area (repeatable)")
    parser.add_argument("--id", action="append", help="only this mutant id (repeatable)")
    parser.add_argument("--timeout", type=float, default=300, help="seconds per test run")
    parser.add_argument("--list", action="store_true", help="list the mutants and which are stale")
    parser.add_argument(
        "--no-baseline", action="store_true", help="skip checking that the tests pass unmutated"
    )
    parser.add_argument("--json", type=Path, help="also write every outcome to this file")
    parser.add_argument("--repo", type=Path, default=ROOT, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    mutants = load_mutants(args.mutants)
    if args.area:
        mutants = [m for m in mutants if m.area in args.area]
    if args.id:
        mutants = [m for m in mutants if m.id in args.id]
    if not mutants:
        print("error: no mutant matches the --area/--id filters", file=sys.stderr)
        return 1

    with tempfile.TemporaryDirectory(prefix="actlab-mutate-") as tmp:
        copy = Path(tmp)
        copy_tree(args.repo, copy)
        if args.list:
            for m in mutants:
                path = copy / m.file
                ok = path.is_file() and path.read_text().count(m.original) == 1
                state = "ok" if ok else f"STALE ({staleness(copy, m)})"
                print(f"{m.id:<28} {m.area:<14} {m.file:<36} {state}")
            return 0
        if not args.no_baseline:
            problems = baseline(copy, mutants, args.timeout)
            if problems:
                print("error: tests fail without any mutant:\n  " + "\n  ".join(problems))
                return 1
        outcomes: list[Outcome] = []
        started = time.monotonic()
        for i, mutant in enumerate(mutants, 1):
            o = run_mutant(copy, mutant, args.timeout)
            outcomes.append(o)
            print(
                f"[{i:>3}/{len(mutants)}] {o.status:<8} {o.seconds:6.1f} s  {o.id}: {o.detail}",
                flush=True,
            )
    areas = tally(outcomes)
    print(f"\n{table(areas)}\n\nwall time {(time.monotonic() - started) / 60:.1f} min")
    for o in outcomes:
        if o.status not in ("killed", "timeout"):
            print(f"{o.status}: {o.id} ({o.file}): {o.why} [{o.detail}]")
    if args.json:
        args.json.write_text(json.dumps([asdict(o) for o in outcomes], indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
