"""The log source of a mission: located error groups become ranked ``source: log`` findings."""

from __future__ import annotations

import gzip

from mendflow.core.config import ToolsConfig
from mendflow.core.findings import rank_findings
from mendflow.core.models import Sandbox
from mendflow.tasks.detect.log_scan import measure_logs
from tests.helpers.git import git
from tests.helpers.heal import PRODUCTION_LOG, SHOP_FILES


def test_located_groups_become_log_findings(make_repo):
    repo = make_repo(SHOP_FILES, name="shop")
    (repo / "logs").mkdir()
    (repo / "logs" / "app.log").write_text(PRODUCTION_LOG * 2)
    with gzip.open(repo / "logs" / "app.log.1.gz", "wt") as handle:
        handle.write(PRODUCTION_LOG * 3 + "Traceback (most recent call last):\n"
                     '  File "/usr/lib/python3.11/json/decoder.py", line 3, in decode\n'
                     "ValueError: not in the repository\n")
    sandbox = Sandbox(mission_id="m-logs", path=repo, branch="main",
                      base_commit=git(repo, "rev-parse", "HEAD"), repo_root=repo)
    tools = ToolsConfig.model_validate({"logs": {"enabled": True, "paths": ["logs/app.log*"]}})
    result = measure_logs(sandbox, tools)
    assert result.ok and result.tool == "log"
    [finding] = result.findings  # the ValueError has no frame in the repository
    assert (finding.source, finding.rule, finding.path, finding.symbol, finding.line) == \
        ("log", "ZeroDivisionError", "shop/stats.py", "mean", 6)
    assert "logged 5x" in finding.message and "Traceback" in (finding.detail or "")
    assert rank_findings([finding]) == [finding]


def test_disabled_or_unreadable_logs_never_stop_a_mission(make_repo, tmp_path):
    repo = make_repo(SHOP_FILES, name="shop")
    sandbox = Sandbox(mission_id="m-logs", path=repo, branch="main",
                      base_commit=git(repo, "rev-parse", "HEAD"), repo_root=repo)
    assert measure_logs(sandbox, ToolsConfig()).findings == ()
    (tmp_path / "bad.log.gz").write_bytes(b"\x1f\x8b\x08\x00broken")
    tools = ToolsConfig.model_validate({"logs": {"enabled": True,
                                                 "paths": [str(tmp_path / "bad.log.gz")]}})
    result = measure_logs(sandbox, tools)
    assert not result.ok and "corrupt" in (result.error or "")
