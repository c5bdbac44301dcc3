"""The same defect flagged by two tools becomes one finding with both sources."""

from __future__ import annotations

from mendflow.core.findings import innermost_frame, make_finding, merge_cross_tool
from mendflow.tasks.detect import measure_bandit, measure_mypy, measure_ruff, merge_findings
from tests.helpers.detect import FULL_ENV, sandbox_for, tools_config


def test_ruff_f821_and_mypy_name_defined_on_one_line_merge_with_the_real_tools(make_repo):
    repo = make_repo({"pkg/__init__.py": "", "pkg/mod.py": (
        "import subprocess\n\n\ndef compare(x: int) -> int:\n    if x:\n        return undefined_name\n"
        "    subprocess.call('ls', shell=True)\n    return x\n")})
    sandbox, tools = sandbox_for(repo), tools_config(ruff={"args": ["--extend-select", "S"]})
    results = [measure_ruff(sandbox, tools), measure_mypy(sandbox, FULL_ENV, tools),
               measure_bandit(sandbox, tools)]
    raw = [(f.source, f.rule, f.line) for r in results for f in r.findings]
    assert ("ruff", "F821", 6) in raw and ("mypy", "name-defined", 6) in raw
    assert ("ruff", "S602", 7) in raw and ("bandit", "B602", 7) in raw

    merged = merge_findings.fn(results)

    on_line = {line: [f for f in merged if f.line == line and f.path == "pkg/mod.py"]
               for line in (6, 7)}
    [undefined] = on_line[6]
    assert set(undefined.sources) == {"ruff:F821", "mypy:name-defined"}
    shell = [f for f in on_line[7] if f.rule in ("S602", "B602")]
    assert len(shell) == 1 and set(shell[0].sources) == {"ruff:S602", "bandit:B602"}
    pairs = {("ruff", "F821")} | {("ruff", f"S{r[1:]}") for s, r, _ in raw if s == "bandit"}
    assert len(merged) == len(raw) - len({(s, r) for s, r, _ in raw} & pairs)


def test_a_failing_test_and_a_log_traceback_with_the_same_innermost_frame_merge():
    traceback = ('Traceback (most recent call last):\n  File "app/main.py", line 10, in run\n'
                 '    total(items)\n  File "app/calc.py", line 4, in total\n'
                 "    return sum(i.price for i in items)\nAttributeError: 'dict' object has no "
                 "attribute 'price'\n")
    test = make_finding(None, source="pytest", rule="test-failure", path="tests/test_calc.py",
                        line=3, key="tests/test_calc.py::test_total", severity="high",
                        category="test-failure", message="fails",
                        detail="def test_total():\n>       total([{}])\n\napp/calc.py:4: "
                               "AttributeError")
    log = make_finding(None, source="log", rule="AttributeError", path="app/calc.py", line=4,
                       severity="high", category="runtime", message="AttributeError",
                       detail=traceback)
    elsewhere = log.model_copy(update={"id": "other", "line": 9, "detail": None})
    assert innermost_frame(traceback) == ("app/calc.py", 4)

    merged = merge_cross_tool([test, log, elsewhere])

    assert [f.id for f in merged] == [test.id, "other"]
    assert merged[0].sources == ("pytest:test-failure", "log:AttributeError")


def test_findings_of_one_tool_never_merge():
    a = make_finding(None, source="ruff", rule="F821", path="m.py", line=2, key="a",
                     severity="high", category="lint", message="x")
    b = make_finding(None, source="ruff", rule="F821", path="m.py", line=2, key="b",
                     severity="high", category="lint", message="y")
    assert merge_cross_tool([a, b]) == [a, b]
