"""deliver_pulls against a bare remote and the fake GitLab (real python-gitlab): one MR per
patch, a limit that holds the rest back and says so, a stale MR closed with a comment."""

from __future__ import annotations

from pathlib import Path

import pytest

from mendflow.core.config import DeliveryConfig
from mendflow.core.models import Finding, MissionResult, PatchOutcome, QualityScore
from mendflow.tasks.deliver import deliver_pulls
from tests.fakes.fake_forges import FakeGitLab
from tests.helpers.git import git, write_files

pytestmark = pytest.mark.usefixtures("prefect_harness")


def _mission(tmp_path: Path, make_repo) -> MissionResult:
    seed = make_repo({"a.py": "import os\nx = 1\n", "b.py": "import sys\ny = 1\n"}, name="seed")
    bare = tmp_path / "remote.git"
    git(tmp_path, "clone", "-q", "--bare", str(seed), str(bare))
    work = tmp_path / "work"
    git(tmp_path, "clone", "-q", str(bare), str(work))
    base = git(work, "rev-parse", "HEAD")
    git(work, "checkout", "-q", "-b", "mendflow/m-1")
    commits = []
    for name, text in (("a.py", "x = 1\n"), ("b.py", "y = 1\n")):
        write_files(work, {name: text})
        git(work, "commit", "-q", "-am", f"fix {name}\n\nMendflow-Patch: p-{name}")
        commits.append(git(work, "rev-parse", "HEAD"))
    git(work, "checkout", "-q", "main")
    findings = tuple(Finding(id=f"f-{n}", source="ruff", rule="F401", severity="low",
                             category="lint", path=n, message="unused") for n in ("a.py", "b.py"))
    patches = tuple(PatchOutcome(id=f"p-{n}", finding_ids=(f"f-{n}",), fixer="ruff",
                                 status="accepted", commit=c, title=f"fix {n}")
                    for n, c in zip(("a.py", "b.py"), commits, strict=True))
    return MissionResult(mission_id="m-1", flow_run_id=None, status="completed",
                         repository=str(work), base_commit=base, branch="mendflow/m-1",
                         findings=findings, patches=patches,
                         quality_score=QualityScore(before=90, after=100), report_dir="/x")


def test_merge_requests_within_limits_and_stale_ones_closed(tmp_path, make_repo, monkeypatch):
    monkeypatch.setenv("GITLAB_TOKEN", "glpat-secret")
    result = _mission(tmp_path, make_repo)
    with FakeGitLab("acme/widgets") as gitlab:
        config = DeliveryConfig(forge="gitlab", forge_url=gitlab.root_url,
                                repository="acme/widgets", group="patch", max_open_prs=1)
        first = deliver_pulls(result, ["p-a.py", "p-b.py"], (), "mendflow (autonomous)",
                              config, "main", (), tmp_path / "work-area")
        assert first.error is None and len(first.opened) == 1
        assert first.held == ("p-b.py",) and "max_open_prs (1)" in (first.limit or "")
        [mr] = gitlab.pulls()
        assert mr["source_branch"] == "mendflow/evolve-m-1-1" and mr["labels"] == ["mendflow"]
        remote = tmp_path / "remote.git"
        assert git(remote, "show", "mendflow/evolve-m-1-1:a.py") == "x = 1"
        assert git(remote, "show", "mendflow/evolve-m-1-1:b.py") == "import sys\ny = 1"

        again = deliver_pulls(result, ["p-a.py", "p-b.py"], (), "mendflow (autonomous)",
                              config, "main", (), tmp_path / "work-area")
        assert again.opened == () and again.duplicates == ("p-a.py",)
        assert len(gitlab.pulls()) == 1

        gone = result.model_copy(update={"findings": result.findings[1:], "patches": ()})
        tidy = deliver_pulls(gone, [], (), "x", config, "main", (), tmp_path / "work-area")
        assert [p.number for p in tidy.closed] == [mr["iid"]]
        assert gitlab.items[mr["iid"]]["state"] == "closed"
        assert "no longer present" in gitlab.comments[mr["iid"]][0]
        assert git(remote, "branch", "--list", "mendflow/evolve-m-1-1") == ""
