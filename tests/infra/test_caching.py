"""Host-neutral cache keys: the same mission step has the same key on two hosts."""

from __future__ import annotations

from pathlib import Path

from mendflow.core.models import Sandbox
from mendflow.infra.caching import MISSION_STEP, HostNeutralInputs, neutral


def _sandbox(home: Path, mission: str = "m-1") -> Sandbox:
    return Sandbox(mission_id=mission, path=home / "worktrees" / mission, branch=f"mendflow/{mission}",
                   base_commit="abc123", repo_root=home / "clones" / "acme-api-1a2b")


def _key(monkeypatch, home: Path, **inputs) -> str | None:
    monkeypatch.setenv("MENDFLOW_HOME", str(home))
    return HostNeutralInputs().compute_key(None, inputs, {})


def test_the_same_step_has_one_key_on_two_hosts(monkeypatch, tmp_path):
    a, b = tmp_path / "host-a" / "mendflow", tmp_path / "host-b" / "state"
    key_a = _key(monkeypatch, a, sandbox=_sandbox(a), tree="t1", state_root=a)
    key_b = _key(monkeypatch, b, sandbox=_sandbox(b), tree="t1", state_root=b)
    assert key_a == key_b is not None
    # what makes a step different still does: the tree, the mission, a path outside the state
    assert _key(monkeypatch, b, sandbox=_sandbox(b), tree="t2", state_root=b) != key_b
    assert _key(monkeypatch, b, sandbox=_sandbox(b, "m-2"), tree="t1", state_root=b) != key_b
    assert _key(monkeypatch, b, sandbox=_sandbox(tmp_path / "elsewhere"), tree="t1",
                state_root=b) != key_b
    # a state_dir given as an argument (not $MENDFLOW_HOME) is a root too
    other = tmp_path / "configured"
    assert _key(monkeypatch, a, sandbox=_sandbox(other), tree="t1", state_root=other) == key_a


def test_neutral_form(tmp_path):
    roots = [str(tmp_path / "home")]
    assert neutral([tmp_path / "home" / "envs" / "x", "/usr/bin/python", {"k": {1, 2}}],
                   roots) == [{"__path__": "<mendflow-state>/envs/x"}, "/usr/bin/python",
                              {"k": [1, 2]}]
    assert str(tmp_path / "homeless") == neutral(str(tmp_path / "homeless"), roots)
    quoted = f"E   {tmp_path}/home/worktrees/m-1/pkg/lib.py:3: AssertionError"
    assert neutral(quoted, roots) == "E   <mendflow-state>/worktrees/m-1/pkg/lib.py:3: AssertionError"
    assert any(isinstance(p, HostNeutralInputs) for p in MISSION_STEP.policies)
