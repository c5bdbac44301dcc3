"""`mendflow evolve history` and `status` read the loop's records (no Prefect needed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from typer.testing import CliRunner

from mendflow.cli import app
from mendflow.core.evolution import CycleRecord, LoopMemory, Regression
from mendflow.infra.evolution_store import append_record, loop_dir, write_memory
from mendflow.infra.layout import StateLayout


def test_history_and_status(make_repo):
    repo = make_repo({"a.py": "x = 1\n"})
    folder = loop_dir(StateLayout.resolve(), str(repo))
    for status in ("completed", "unchanged"):
        append_record(folder, CycleRecord(
            cycle=1, started_at="2026-12-01T12:00:00+00:00", duration_s=1.5, status=status,
            head_before=None, head_after="a" * 40, findings=3, quality_score=91.5,
            regressions=(Regression(test="t.py::t", commit="b" * 40, action="reported"),)))
    write_memory(folder, LoopMemory(last_tip="a" * 40, open_prs=(4,), interval_s=600))
    runner = CliRunner()
    out = runner.invoke(app, ["evolve", "history", str(repo), "--json"])
    assert out.exit_code == 0, out.output
    records = json.loads(out.stdout)
    assert [(r["cycle"], r["status"]) for r in records] == [(1, "completed"), (2, "unchanged")]
    assert records[0]["regressions"] == [{"test": "t.py::t", "commit": "b" * 40,
                                          "action": "reported", "delivered_by_mendflow": False,
                                          "author": "", "detail": ""}]
    text = runner.invoke(app, ["evolve", "history", str(repo)])
    assert "unchanged" in text.stdout and "score 91.5" in text.stdout
    status = runner.invoke(app, ["evolve", "status", str(repo)])
    assert "interval 600 s" in status.stdout and "open PRs [4]" in status.stdout
    bad = runner.invoke(app, ["evolve", "history", str(repo), "--config", str(repo / "nope.yaml")])
    assert bad.exit_code == 1 and "config file not found" in bad.output


def test_run_outside_a_repository_records_a_failed_cycle(tmp_path, prefect_harness):
    """`evolve run` goes through the CLI's flow runner: a bad target is a failed cycle, exit 1."""
    from prefect.settings import PREFECT_API_URL

    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}
    command = [sys.executable, "-m", "mendflow.cli", "evolve", "run", str(tmp_path / "nowhere")]
    done = subprocess.run([*command, "--json"], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 1, done.stderr[-2000:]
    record = json.loads(done.stdout)
    assert record["status"] == "failed" and "not inside a git repository" in record["error"]
    text = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert text.returncode == 1 and "Traceback" not in text.stderr
    assert "error: " in text.stderr and "not inside a git repository" in text.stderr
