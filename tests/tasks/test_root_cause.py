"""Failing tests grouped by root cause: real pytest failures, one group per defect."""

from __future__ import annotations

import pytest

from mendflow.core.config import LLMBudget, LLMPolicy
from mendflow.core.models import Finding
from mendflow.tasks.detect import measure_tests
from mendflow.tasks.fix.llm import LLMFixer, group_by_root_cause
from tests.helpers.detect import TARGET_ENV, new_repo, only, sandbox_for

# Four defects: add (found through the assertion's call), first (raises inside
# the library: the innermost repository frame), mul (through a helper the test
# calls: the one definition the test exercises) and fmt in another module.
FILES = {
    "shop/__init__.py": "",
    "shop/calc.py": """
        def add(a, b):
            return a - b


        def mul(a, b):
            return a * b + 1


        def first(items):
            return items[len(items)]


        def _index(items, i):
            return items[i + 5]


        def pick(items, i):
            return _index(items, i)
        """,
    "shop/text.py": """
        def fmt(value):
            return "<" + str(value)
        """,
    "tests/__init__.py": "",
    "tests/test_calc.py": """
        from shop import calc
        from shop.calc import add, first, mul, pick


        def test_add_small():
            assert add(1, 2) == 3


        def test_add_negative():
            total = 0
            assert add(-1, total - 1) == -2


        def test_mul():
            got = [mul(x, 2) for x in (1, 2)]
            assert got == [2, 4]


        def test_first_one():
            assert first([1]) == 1


        def test_first_two():
            assert calc.first([1, 2]) == 1


        def test_pick():
            assert pick([5, 6], 0) == 5


        def test_ok():
            assert add(0, 0) == 0
        """,
    "tests/test_text.py": """
        from shop.text import fmt


        def test_fmt():
            assert fmt(1) == "<1>"


        def test_fmt_zero():
            assert fmt(0) == "<0>"
        """,
}


@pytest.fixture(scope="module")
def findings(tmp_path_factory):
    repo = new_repo(tmp_path_factory.mktemp("roots") / "repo", FILES)
    result = measure_tests(sandbox_for(repo), TARGET_ENV, only(pytest={}))
    return [f for f in result.findings if f.rule == "test-failure"]


def test_each_failing_test_names_its_defect(findings):
    causes = {f.test_id.split("::")[-1]: f.root_cause for f in findings}
    assert causes == {
        "test_add_small": "shop/calc.py::add",
        "test_add_negative": "shop/calc.py::add",
        "test_mul": "shop/calc.py::mul",
        "test_first_one": "shop/calc.py::first",
        "test_first_two": "shop/calc.py::first",
        "test_pick": "shop/calc.py::_index",
        "test_fmt": "shop/text.py::fmt",
        "test_fmt_zero": "shop/text.py::fmt",
    }


def test_the_model_fixer_plans_one_group_per_defect(findings):
    fixer = LLMFixer(LLMPolicy(), LLMBudget())
    groups = fixer.plan(findings)
    names = sorted(sorted(f.test_id.split("::")[-1] for f in g) for g in groups)
    assert names == [["test_add_negative", "test_add_small"], ["test_first_one", "test_first_two"],
                     ["test_fmt", "test_fmt_zero"], ["test_mul"], ["test_pick"]]


def test_a_large_defect_is_split_in_order_and_unknown_causes_stay_single(findings):
    unknown = findings[0].model_copy(update={"id": "x1", "root_cause": None})
    same = [f for f in findings if f.root_cause == "shop/calc.py::add"]
    groups = group_by_root_cause([*same, unknown, unknown.model_copy(update={"id": "x2"})],
                                 max_group=1)
    assert [[f.id for f in g] for g in groups] == [[same[0].id], [same[1].id], ["x1"], ["x2"]]


# Two defects behind one API function the tests call and assert on (no traceback frame
# in the library): right alignment pads one too many, the "=" rule joins with "=".
# The tests' calls all lead to render(); the per-test coverage tells them apart.
TABLE_FILES = {
    "fmt/__init__.py": "",
    "fmt/table.py": """
        def _pad(cell, width, align):
            if align == "right":
                return cell.rjust(width + 1)
            return cell.ljust(width)


        def _rule(widths, char):
            if char == "=":
                return "=".join(char * w for w in widths)
            return "+".join(char * w for w in widths)


        def render(rows, align="left", rule="-"):
            widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
            lines = ["|".join(_pad(c, w, align) for c, w in zip(row, widths)) for row in rows]
            return "\\n".join([lines[0], _rule(widths, rule), *lines[1:]])
        """,
    "tests/__init__.py": "",
    "tests/test_table.py": """
        from fmt.table import render

        ROWS = [["a", "bb"], ["ccc", "d"]]


        def test_left():
            assert render(ROWS) == "a  |bb\\n---+--\\nccc|d "


        def test_left_one_column():
            assert render([["x"], ["yy"]]) == "x \\n--\\nyy"


        def test_right():
            assert render(ROWS, align="right") == "  a|bb\\n---+--\\nccc| d"


        def test_right_one_column():
            assert render([["x"], ["yy"]], align="right") == " x\\n--\\nyy"


        def test_double_rule():
            assert render(ROWS, rule="=") == "a  |bb\\n===+==\\nccc|d "


        def test_double_rule_one_column():
            assert render([["x"], ["yy"]], rule="=") == "x \\n==\\nyy"


        def test_double_rule_narrow():
            assert render([["x", "y"], ["zz", "w"]], rule="=") == "x |y\\n==+=\\nzz|w"
        """,
}


def test_the_baseline_coverage_names_each_defect_behind_one_api_function(tmp_path):
    repo = new_repo(tmp_path / "repo", TABLE_FILES)
    sandbox = sandbox_for(repo)
    tools = only(pytest={}, coverage={})
    plain = measure_tests(sandbox, TARGET_ENV, tools)
    mapped = measure_tests(sandbox, TARGET_ENV, tools, impact_file=tmp_path / "impact.json")

    def causes(result):
        return {f.test_id.split("::")[-1]: f.root_cause
                for f in result.findings if f.rule == "test-failure"}

    # without per-test coverage, both defects are the function the assertions call
    assert set(causes(plain).values()) == {"fmt/table.py::render"}
    assert causes(mapped) == {
        "test_right": "fmt/table.py::_pad", "test_right_one_column": "fmt/table.py::_pad",
        "test_double_rule": "fmt/table.py::_rule",
        "test_double_rule_narrow": "fmt/table.py::_rule"}


def test_a_model_gets_one_ruff_or_bandit_rule_of_one_file_per_call_and_mypy_errors_alone():
    def finding(i: int, rule: str, source: str = "ruff", path: str = "pkg/a.py") -> Finding:
        return Finding(id=f"f{i}", source=source, rule=rule, severity="medium", category="lint",
                       path=path, line=i, message="m")

    queue = [finding(1, "UP031"), finding(2, "arg-type", "mypy"), finding(3, "UP031"),
             finding(4, "UP031", path="pkg/b.py"), finding(5, "B101", "bandit"),
             finding(6, "arg-type", "mypy"), finding(7, "B101", "bandit"), finding(8, "UP031")]
    groups = LLMFixer(LLMPolicy(), LLMBudget()).plan(queue)
    assert [[f.id for f in g] for g in groups] == [
        ["f1", "f3", "f8"], ["f2"], ["f4"], ["f5", "f7"], ["f6"]]
