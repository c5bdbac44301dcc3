"""Fingerprints survive line shifts; the queue is de-duplicated and ranked."""

from __future__ import annotations

from pathlib import Path

from mendflow.core.findings import SourceIndex, disambiguate, make_finding, path_in_scope, rank_findings
from mendflow.core.models import RepoTarget

CODE = "import os\n\n\nclass A:\n    def m(self):\n        return eval('1')\n"


def _finding(root: Path, line: int):
    return make_finding(SourceIndex(root), source="bandit", rule="B307", path="m.py", line=line,
                        severity="medium", category="security", message="eval")


def test_fingerprint_survives_line_shift(tmp_path):
    (tmp_path / "m.py").write_text(CODE)
    before = _finding(tmp_path, 6)
    (tmp_path / "m.py").write_text("# a new header line\n# another\n" + CODE)
    after = _finding(tmp_path, 8)
    assert before.id == after.id
    assert before.symbol == after.symbol == "A.m"


def test_fingerprint_changes_with_the_code(tmp_path):
    (tmp_path / "m.py").write_text(CODE)
    before = _finding(tmp_path, 6)
    (tmp_path / "m.py").write_text(CODE.replace("eval('1')", "eval('2')"))
    assert _finding(tmp_path, 6).id != before.id


def test_identical_lines_get_distinct_ids(tmp_path):
    (tmp_path / "m.py").write_text("def f():\n    x = eval('1')\n    x = eval('1')\n")
    found = [make_finding(SourceIndex(tmp_path), source="bandit", rule="B307", path="m.py",
                          line=n, severity="medium", category="security", message="eval")
             for n in (2, 3)]
    assert found[0].id == found[1].id
    ids = [f.id for f in disambiguate(found)]
    assert len(set(ids)) == 2 and ids[1] == ids[0] + "-2"


def test_rank_puts_severe_first_and_dedupes(tmp_path):
    (tmp_path / "m.py").write_text(CODE)
    low = make_finding(None, source="ruff", rule="F401", path="m.py", line=1, severity="low",
                       category="lint", message="unused")
    high = make_finding(None, source="pytest", rule="test-failure", path="t.py", line=3,
                        key="t.py::test_x", severity="high", category="test-failure",
                        message="boom")
    queue = rank_findings([low, high, low])
    assert [f.rule for f in queue] == ["test-failure", "F401"]


def test_scope_filters_paths(tmp_path):
    target = RepoTarget(root=tmp_path, head_commit="0" * 40, head_branch="main",
                        scope="directory", scope_path="pkg")
    assert path_in_scope("pkg/a.py", target)
    assert not path_in_scope("pkgx/a.py", target)
    assert not path_in_scope("other/a.py", target)
