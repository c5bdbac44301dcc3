"""``mendflow heal scan|run|list``: the JSON contracts, through the real command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mendflow.cli import app
from mendflow.core.heal import HealRecord
from mendflow.infra.heal_records import write_record
from mendflow.infra.layout import StateLayout
from tests.fakes.fake_messages_api import FakeMessagesAPI
from tests.helpers.git import git
from tests.helpers.heal import (
    FIX,
    GOOD_TEST,
    PRODUCTION_LOG,
    SHOP_FILES,
    heal_config,
    heal_reply,
    production_log,
)

SCAN_FIELDS = {"fingerprint", "exception_type", "message", "count", "first_seen", "last_seen",
               "path", "function", "line"}


def test_scan_prints_the_groups_largest_first(make_repo, tmp_path):
    repo = make_repo(SHOP_FILES, name="shop")
    log = tmp_path / "mixed.log"
    log.write_text(PRODUCTION_LOG.replace("ZeroDivisionError", "OverflowError") + PRODUCTION_LOG * 4)
    done = CliRunner().invoke(app, ["heal", "scan", str(log), "--repo", str(repo), "--json"])
    assert done.exit_code == 0, done.output
    groups = json.loads(done.stdout)["groups"]
    assert [set(g) for g in groups] == [SCAN_FIELDS, SCAN_FIELDS]
    assert [(g["exception_type"], g["count"]) for g in groups] == [("ZeroDivisionError", 4),
                                                                   ("OverflowError", 1)]
    assert (groups[0]["path"], groups[0]["function"], groups[0]["line"]) == \
        ("shop/stats.py", "mean", 6)


def test_scan_of_a_missing_file_is_one_line_error(tmp_path):
    done = CliRunner().invoke(app, ["heal", "scan", str(tmp_path / "nope.log")])
    assert done.exit_code == 1 and "no such log file" in done.output
    assert "Traceback" not in done.output


def test_list_prints_the_recorded_groups(tmp_path):
    record = HealRecord(fingerprint="0123456789abcdef", repository=str(tmp_path),
                        exception_type="KeyError", message="'sku'", count=7,
                        first_seen="2024-01-01T00:00:00", last_seen="2024-01-02T00:00:00",
                        status="refused", reason="external")
    write_record(StateLayout.resolve(), record)
    done = CliRunner().invoke(app, ["heal", "list", "--json"])
    assert done.exit_code == 0, done.output
    [row] = json.loads(done.stdout)
    assert (row["fingerprint"], row["count"], row["status"], row["first_seen"]) == \
        ("0123456789abcdef", 7, "refused", "2024-01-01T00:00:00")


@pytest.mark.slow
@pytest.mark.timeout(1500)  # a whole heal run through the CLI; minutes on a busy CI
def test_run_heals_the_largest_group_and_prints_the_mission_fields(make_repo, tmp_path,
                                                                   prefect_harness):
    from prefect.settings import PREFECT_API_URL

    repo = make_repo(SHOP_FILES, name="shop")
    with FakeMessagesAPI() as fake:
        fake.enqueue(heal_reply([GOOD_TEST, FIX]))
        config = heal_config(tmp_path, fake)
        env = {**os.environ, "ANTHROPIC_API_KEY": "sk-ant-cli-Hk2Lm4Np6Qr8",
               "PREFECT_API_URL": PREFECT_API_URL.value()}  # the session's server
        done = subprocess.run([sys.executable, "-m", "mendflow.cli", "heal", "run", str(repo),
                               "--log", str(production_log(tmp_path)), "--config", str(config),
                               "--json"], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    for field in ("status", "branch", "patches", "base_commit", "fingerprint",
                  "reproduction_test"):
        assert field in result
    assert result["status"] == "completed" and result["heal_status"] == "fixed"
    assert result["reproduction_test"] == "tests/test_heal_mean.py"
    assert result["branch"] == f"mendflow/heal-{result['fingerprint']}"
    assert git(repo, "rev-parse", result["branch"]) == result["commit"]
    assert Path(repo / "tests/test_heal_mean.py").exists() is False  # the checkout untouched
