"""The approval policy per autonomy level, and the decision an answer makes (pure)."""

from __future__ import annotations

import pytest

from mendflow.core.config import GatesConfig
from mendflow.core.errors import ConfigError
from mendflow.core.models import Finding, PatchOutcome
from mendflow.tasks.approve.policy import LEVELS, check_autonomy, needs_approval, sensitive_kinds

TEST_GLOBS = GatesConfig().test_globs
BANDIT = Finding(id="b1", source="bandit", rule="B105", severity="medium", category="security",
                 path="pkg/a.py", message="hardcoded password")
RUFF = Finding(id="r1", source="ruff", rule="F401", severity="low", category="lint",
               path="pkg/a.py", message="unused import")
FINDINGS = {f.id: f for f in (BANDIT, RUFF)}


def patch(fixer="ruff", files=("pkg/a.py",), findings=("r1",), confidence=None) -> PatchOutcome:
    return PatchOutcome(id="p", finding_ids=findings, fixer=fixer, status="accepted",
                        commit="c" * 40, files=files, confidence=confidence)


def asks(level, outcome, lines=3, max_lines=40) -> bool:
    need = needs_approval(level, outcome, changed_lines=lines, findings=FINDINGS,
                          test_globs=TEST_GLOBS, max_changed_lines=max_lines)
    assert need.patch_id == "p" and need.changed_lines == lines
    return bool(need.reasons)


# (case, patch, changed lines): whether interactive, semi, autonomous, full ask for approval
CASES = [
    ("ruff fix of a source file", patch(), 3, (True, False, False, False)),
    ("LLM patch", patch(fixer="anthropic", confidence="high"), 3, (True, True, False, False)),
    ("unknown confidence from a model", patch(fixer="openai-compatible"), 3,
     (True, True, False, False)),
    ("medium confidence", patch(confidence="medium"), 3, (True, True, False, False)),
    ("big ruff patch", patch(), 41, (True, True, False, False)),
    ("exactly the limit", patch(), 40, (True, False, False, False)),
    ("test file", patch(files=("tests/test_a.py",)), 3, (True, True, True, False)),
    ("conftest", patch(files=("pkg/conftest.py",)), 3, (True, True, True, False)),
    ("pyproject", patch(files=("pyproject.toml",)), 3, (True, True, True, False)),
    ("setup.py", patch(files=("setup.py",)), 3, (True, True, True, False)),
    ("setup.cfg", patch(files=("setup.cfg",)), 3, (True, True, True, False)),
    ("requirements", patch(files=("requirements-dev.txt",)), 3, (True, True, True, False)),
    ("nested requirements", patch(files=("requirements/base.txt",)), 3,
     (True, True, True, False)),
    ("tool config", patch(files=("mypy.ini",)), 3, (True, True, True, False)),
    ("CI workflow", patch(files=(".github/workflows/ci.yml",)), 3, (True, True, True, False)),
    ("security finding", patch(findings=("b1",)), 3, (True, True, True, False)),
]


@pytest.mark.parametrize(("case", "outcome", "lines", "expected"), CASES,
                         ids=[c[0] for c in CASES])
def test_policy_table(case, outcome, lines, expected):
    assert tuple(asks(level, outcome, lines) for level in LEVELS) == expected


def test_reasons_name_the_cause():
    need = needs_approval("semi_autonomous", patch(fixer="anthropic", confidence="low",
                                                   files=("pyproject.toml",)),
                          changed_lines=50, findings=FINDINGS, test_globs=TEST_GLOBS,
                          max_changed_lines=10)
    text = "; ".join(need.reasons)
    assert "anthropic fixer" in text and "confidence low" in text and "50 changed lines > 10" in text
    assert "sensitive: configuration" in text and "sensitive: dependencies" in text
    assert need.sensitive == ("configuration", "dependencies")


def test_sensitive_kinds():
    assert sensitive_kinds(["pkg/a.py"], [RUFF], TEST_GLOBS) == ()
    assert sensitive_kinds(["tests/test_a.py", "setup.py"], [BANDIT], TEST_GLOBS) == \
        ("tests", "configuration", "dependencies", "security")
    assert sensitive_kinds(["poetry.lock"], [], TEST_GLOBS) == ("dependencies",)
    assert sensitive_kinds(["docs/conf.yaml"], [], ["spec/**"]) == ("configuration",)


def test_check_autonomy():
    assert check_autonomy(None) is None
    assert check_autonomy("autonomous") == "autonomous"
    with pytest.raises(ConfigError, match="unknown autonomy level 'yolo'") as caught:
        check_autonomy("yolo")
    assert "interactive" in (caught.value.hint or "")
