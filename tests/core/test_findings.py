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


def test_a_comment_after_a_functions_last_line_stays_the_functions(tmp_path):
    """boltons 26.2.0: removing a useless `return` under a `# TODO` moved the TODO from
    `URL.__init__` to `URL` (a new finding), and the correct PLR1711 fix was refused."""
    def todo(text: str, name: str):  # one file per text: the index caches by mtime
        (tmp_path / name).write_text(text)
        return make_finding(SourceIndex(tmp_path), source="todo", rule="TODO", path=name,
                            line=text.splitlines().index("        # TODO: later") + 1,
                            severity="info", category="todo", message="TODO: later")

    body = "class URL:\n    def __init__(self):\n        self.x = 1\n        # TODO: later\n"
    before = todo(body + "        return\n\n    def other(self):\n        pass\n", "u1.py")
    after = todo(body + "\n    # the class's own comment\n    def other(self):\n        pass\n",
                 "u2.py")
    assert before.symbol == after.symbol == "URL.__init__"  # the id's key: the same finding
    assert SourceIndex(tmp_path).symbol_at("u2.py", 6) == "URL"  # the class level: the class


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
