"""A mission on a real public package: its sdist from PyPI, with its own tests and configs."""

from __future__ import annotations

import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

from mendflow.flows.mission import maintenance_mission
from mendflow.tasks.vcs import snapshot_checkout
from tests.helpers.git import git
from tests.helpers.target import target_python

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]

PACKAGE = "toolz==1.2.0"  # pure Python; its sdist ships its tests, which need nothing else


@pytest.fixture(scope="module")
def sdist_repo(tmp_path_factory) -> Path:
    """``pip download --no-binary :all: --no-deps``, unpack, git init, commit."""
    work = tmp_path_factory.mktemp("sdist")
    proc = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-binary", ":all:",
                           "--no-deps", "-d", str(work), PACKAGE], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"the package registry is not reachable: {proc.stderr[-300:]}")
    archive = next(work.glob("*.tar.gz"))
    with tarfile.open(archive) as tar:
        tar.extractall(work, filter="data")
    root = next(p for p in work.iterdir() if p.is_dir())
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", f"import {PACKAGE}")
    return root


def test_mission_on_a_real_public_package(sdist_repo, tmp_path):
    before = snapshot_checkout(sdist_repo)
    config = tmp_path / "cfg.yaml"
    config.write_text(yaml.safe_dump({
        "environment": {"type": "interpreter", "python": target_python()},
        "mission": {"max_iterations": 1, "target_score": 100, "max_patches_per_iteration": 3},
    }))

    result = maintenance_mission(path=str(sdist_repo), config_file=str(config),
                                 mission_id="toolz-real")

    baseline = {f.source for f in result.findings}
    assert "ruff" in baseline  # toolz has real lint findings under ruff's defaults
    assert result.quality_score.before > 40  # its tests ran and pass: the tests part counts
    assert result.patches, "the offline fixer proposed at least one candidate"
    for patch in result.patches:
        assert patch.status in ("accepted", "rejected", "declined")
        if patch.status == "accepted":
            assert git(sdist_repo, "cat-file", "-t", patch.commit) == "commit"
            gates = {g.gate: g for g in patch.validation.gates}
            assert gates["tests-not-weakened"].passed and "collected" in \
                gates["tests-not-weakened"].detail
        if patch.status == "rejected":
            assert patch.reason
    accepted = [p for p in result.patches if p.status == "accepted"]
    assert result.quality_score.after >= result.quality_score.before or not accepted
    assert snapshot_checkout(sdist_repo) == before
    report = Path(result.report_dir) / "final_maintenance_report.md"
    assert "toolz-real" in report.read_text()
