"""Benchmark defect grouping: do the failing tests of k injected bugs form k groups?

Usage::

    .venv/bin/python bench/grouping.py [REPO ...] [--package NAME==VERSION ...]
                                       [--bugs 3] [--rounds 4] [--seed 1] [--candidates 60]

A mission with a model fixer spends one model call per group of failing tests
(``Finding.root_cause``, :func:`mendflow.tasks.fix.llm.group_by_root_cause`). This
script measures that grouping on real code with real bugs nobody chose by hand:

1. each ``REPO`` (cloned, HEAD only) or the sdist of a public package (default:
   tabulate 0.10.0, more-itertools 10.5.0 and toolz 1.0.0, whose tests need nothing
   but pytest) runs its suite under coverage.py with mendflow's per-test contexts,
   with this interpreter and the source on ``PYTHONPATH``;
2. mutants are made at random (``--seed``) in lines of the code under test that
   some test executes: one token each (a comparison, ``+``/``-``, ``and``/``or``,
   ``True``/``False``, ``0``/``1``); each is run alone against the tests that
   execute its line, and kept when 1 to 40 tests fail and none fails to collect;
3. each round applies ``--bugs`` kept mutants in different functions at once, runs
   the whole suite under contexts (as a mission's baseline does), and turns the run
   into findings twice: without the per-test coverage (tracebacks and the tests'
   calls only) and with it (fault localization,
   :mod:`mendflow.tasks.detect.fault_localization`).

For each way it prints the model calls of one pass over the groups, as a
mission makes them with a perfect model (a group whose tests an earlier fix
already repaired is skipped; the fix of a group mixing bugs repairs its most
frequent one), the bugs that pass fixed, the groups, the groups mixing tests of
different bugs, the bugs split over several groups, and the share of failing
tests whose root cause names the mutated function.
A test is labelled with the bug whose lone run fails it; a test no lone run
fails (an interaction) or more than one does is left out of purity. It asserts
nothing.
"""

from __future__ import annotations

import argparse
import ast
import io
import os
import random
import subprocess
import sys
import tempfile
import tokenize
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from detect import clone, fetch_sdist  # noqa: E402  (bench/detect.py helpers)

from mendflow.core.config import MendflowConfig  # noqa: E402
from mendflow.core.models import ImpactMap, TestCase, TestRun  # noqa: E402
from mendflow.tasks.detect.common import is_library_path  # noqa: E402
from mendflow.tasks.detect.impact import (  # noqa: E402
    PLUGIN_MODULE,
    impact_map_from_coverage_json,
    write_plugin,
)
from mendflow.tasks.detect.pytest_reports import parse_junit  # noqa: E402
from mendflow.tasks.detect.run_findings import findings_from_test_run  # noqa: E402
from mendflow.tasks.fix import source_nav as nav  # noqa: E402
from mendflow.tasks.fix.llm import group_by_root_cause  # noqa: E402

DEFAULT_PACKAGES = ("tabulate==0.10.0", "more-itertools==10.5.0", "toolz==1.0.0")
SWAPS = {"<": "<=", "<=": "<", ">": ">=", ">=": ">", "==": "!=", "!=": "==", "+": "-",
         "-": "+", "and": "or", "or": "and", "True": "False", "False": "True", "0": "1",
         "1": "0", "+=": "-=", "-=": "+="}
MAX_FAILING = 40
TEST_TIMEOUT_S = 20


@dataclass(frozen=True)
class Mutant:
    """One token replaced: where, what, and the function holding it (``path::name``)."""

    path: str
    line: int
    col: int
    old: str
    new: str
    function: str


class Project:
    """A repository whose suite runs with this interpreter under per-test contexts."""

    def __init__(self, root: Path, work: Path) -> None:
        self.root = root
        self.work = work
        self.source = root / "src" if (root / "src").is_dir() else root
        write_plugin(work)
        self.env = {**os.environ, "PYTHONPATH": f"{work}{os.pathsep}{self.source}",
                    "PYTHONDONTWRITEBYTECODE": "1"}

    def run(self, tests: list[str] | None, contexts: bool) -> tuple[list[TestCase], ImpactMap | None]:
        """Run ``tests`` (None: the whole suite); return the cases and, with contexts, the map."""
        junit, data, report = self.work / "junit.xml", self.work / ".coverage", self.work / "cov.json"
        for stale in (junit, data, report):
            stale.unlink(missing_ok=True)
        pytest = ["-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "junit_family=xunit1",
                  f"--junitxml={junit}", f"--timeout={TEST_TIMEOUT_S}"]  # a mutant may loop
        if contexts:
            command = [sys.executable, "-m", "coverage", "run", f"--data-file={data}",
                       f"--source={self.source}", *pytest, "-p", PLUGIN_MODULE]
        else:
            command = [sys.executable, *pytest]
        subprocess.run([*command, *(tests or [])], cwd=self.root, env=self.env,
                       capture_output=True, timeout=900, check=False)
        cases = list(parse_junit(junit, self.root).cases) if junit.is_file() else []
        if not contexts:
            return cases, None
        subprocess.run([sys.executable, "-m", "coverage", "json", "-q", "-i", "--show-contexts",
                        f"--data-file={data}", "-o", str(report)], cwd=self.root, env=self.env,
                       capture_output=True, timeout=600, check=False)
        return cases, impact_map_from_coverage_json(report, self.root, whole_tree=True)


def failing(cases: list[TestCase]) -> set[str]:
    return {c.nodeid for c in cases if c.outcome in ("failed", "error")}


def candidates(root: Path, impact: ImpactMap) -> list[Mutant]:
    """Every one-token mutant of a library line that some test executes."""
    found: list[Mutant] = []
    for path, data in impact.files.items():
        if not is_library_path(path) or not path.endswith(".py"):
            continue
        text = (root / path).read_text(encoding="utf-8")
        tree = ast.parse(text)
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            line = tok.start[0]
            if tok.string in SWAPS and line in data.lines and tok.type in (
                    tokenize.OP, tokenize.NAME, tokenize.NUMBER):
                node = nav.enclosing(tree, line)
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    found.append(Mutant(path, line, tok.start[1], tok.string,
                                        SWAPS[tok.string], f"{path}::{node.name}"))
    return found


def apply(root: Path, mutants: list[Mutant]) -> dict[str, str]:
    """Write the mutants into the tree; return the original texts to restore."""
    originals: dict[str, str] = {}
    for mutant in sorted(mutants, key=lambda m: (m.path, -m.line, -m.col)):
        file = root / mutant.path
        originals.setdefault(mutant.path, file.read_text(encoding="utf-8"))
        lines = file.read_text(encoding="utf-8").splitlines(keepends=True)
        text = lines[mutant.line - 1]
        assert text[mutant.col:mutant.col + len(mutant.old)] == mutant.old, mutant
        lines[mutant.line - 1] = text[:mutant.col] + mutant.new + text[mutant.col + len(mutant.old):]
        file.write_text("".join(lines), encoding="utf-8")
    return originals


def restore(root: Path, originals: dict[str, str]) -> None:
    for path, text in originals.items():
        (root / path).write_text(text, encoding="utf-8")


def keep_mutants(project: Project, impact: ImpactMap, pool: list[Mutant], want: int,
                 rng: random.Random) -> dict[Mutant, set[str]]:
    """Run mutants alone (only the tests that execute their line) until ``want`` are kept."""
    rng.shuffle(pool)
    kept: dict[Mutant, set[str]] = {}
    for mutant in pool:
        if len(kept) >= want:
            break
        if any(m.function == mutant.function for m in kept):
            continue
        tests = sorted({impact.tests[i] for i in impact.files[mutant.path].lines[mutant.line]})
        originals = apply(project.root, [mutant])
        try:
            cases, _ = project.run(tests, contexts=False)
        finally:
            restore(project.root, originals)
        failed = failing(cases)
        if 1 <= len(failed) <= MAX_FAILING and len(cases) >= len(tests):
            kept[mutant] = failed
    return kept


def score_grouping(findings, labels: dict[str, Mutant | None]) -> dict[str, int]:
    tests = [f for f in findings if f.category == "test-failure" and f.test_id]
    groups = group_by_root_cause(tests)
    mixed = sum(1 for g in groups if len({labels.get(f.test_id) for f in g} - {None}) > 1)
    per_bug: dict[Mutant, int] = {}
    for group in groups:
        for bug in {labels.get(f.test_id) for f in group} - {None}:
            per_bug[bug] = per_bug.get(bug, 0) + 1
    bugs = set(labels.values()) - {None}
    fixed: set[Mutant] = set()
    calls = 0
    for group in groups:  # a group whose tests all pass by now is skipped, as the mission does
        owners = [labels.get(f.test_id) for f in group]
        left = [b for b in owners if b is not None and b not in fixed]
        if not left and not (None in owners and fixed != bugs):
            continue
        calls += 1
        if left:  # the fix of a mixed group repairs its most frequent bug
            fixed.add(max(set(left), key=left.count))
    named = sum(1 for f in tests if labels.get(f.test_id) is not None
                and (f.root_cause or "") == labels[f.test_id].function)
    return {"calls": calls, "fixed": len(fixed), "groups": len(groups), "mixed": mixed,
            "split": sum(1 for n in per_bug.values() if n > 1),
            "named": named, "labelled": sum(1 for f in tests if labels.get(f.test_id))}


def bench_round(project: Project, bugs: list[Mutant], alone: dict[Mutant, set[str]]) -> dict:
    originals = apply(project.root, bugs)
    try:
        cases, impact = project.run(None, contexts=True)
    finally:
        restore(project.root, originals)
    labels: dict[str, Mutant | None] = {}
    for nodeid in failing(cases):
        owners = [m for m in bugs if nodeid in alone[m]]
        labels[nodeid] = owners[0] if len(owners) == 1 else None
    run = TestRun(collected=len(cases), cases=tuple(cases), duration_s=0.0)
    tools = MendflowConfig().tools
    defects = len({m for m in labels.values() if m is not None})
    without = score_grouping(findings_from_test_run(project.root, run, [], tools), labels)
    with_map = score_grouping(findings_from_test_run(project.root, run, [], tools, impact), labels)
    return {"failing": len(labels), "defects": defects, "without": without, "with": with_map}


def bench_project(root: Path, args, totals: dict[str, dict[str, int]]) -> None:
    with tempfile.TemporaryDirectory(prefix="mendflow-grouping-") as work:
        project = Project(root, Path(work))
        cases, impact = project.run(None, contexts=True)
        broken = failing(cases)
        print(f"\n{root.name}: {len(cases)} tests, {len(broken)} failing before any bug")
        if impact is None or not impact.tests:
            print("  no per-test coverage recorded: skipped")
            return
        rng = random.Random(args.seed)
        pool = candidates(root, impact)
        alone = keep_mutants(project, impact, pool, args.candidates, rng)
        alone = {m: tests - broken for m, tests in alone.items() if tests - broken}
        print(f"  {len(pool)} mutants possible, {len(alone)} kept (1-{MAX_FAILING} failing tests)")
        kept = list(alone)
        for number in range(args.rounds):
            if len(kept) < args.bugs:
                break
            bugs = rng.sample(kept, args.bugs)
            result = bench_round(project, bugs, alone)
            print(f"  round {number + 1}: {result['failing']} failing tests, "
                  f"{result['defects']} bugs | " + " | ".join(
                      f"{way}: {r['calls']} calls fix {r['fixed']}, {r['groups']} groups, "
                      f"{r['mixed']} mixed, {r['split']} bugs split, "
                      f"root cause named {r['named']}/{r['labelled']}"
                      for way, r in (("without", result["without"]), ("with", result["with"]))))
            for way in ("without", "with"):
                for key, value in result[way].items():
                    totals[way][key] = totals[way].get(key, 0) + value
            totals["all"]["defects"] = totals["all"].get("defects", 0) + result["defects"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("repos", nargs="*", type=Path)
    parser.add_argument("--package", action="append", default=[])
    parser.add_argument("--bugs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--candidates", type=int, default=30,
                        help="mutants to keep per project (each costs one run of its tests)")
    args = parser.parse_args(argv)
    totals: dict[str, dict[str, int]] = {"without": {}, "with": {}, "all": {}}
    with tempfile.TemporaryDirectory(prefix="mendflow-grouping-repos-") as workdir:
        roots = [clone(r, Path(workdir)) for r in args.repos]
        for i, package in enumerate(args.package or ([] if roots else DEFAULT_PACKAGES)):
            roots.append(fetch_sdist(package, Path(workdir) / f"p{i}"))
        for root in roots:
            bench_project(root, args, totals)
    defects = totals["all"].get("defects", 0)
    print(f"\nall rounds: {defects} bugs")
    for way in ("without", "with"):
        t = totals[way]
        if defects:
            print(f"  {way:7} per-test coverage: {t.get('calls', 0)} model calls fix "
                  f"{t.get('fixed', 0)} bugs in one pass "
                  f"({t.get('calls', 0) / defects:.2f} per bug), {t.get('groups', 0)} groups "
                  f"({t.get('groups', 0) / defects:.2f} per bug), {t.get('mixed', 0)} mixed, "
                  f"{t.get('split', 0)} bugs split, root cause named "
                  f"{t.get('named', 0)}/{t.get('labelled', 0)} failing tests")


if __name__ == "__main__":
    main()
