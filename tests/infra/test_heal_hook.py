"""The live hook in a real application (a subprocess): events for an ImportError, an
AttributeError, a ZeroDivisionError and a KeyError in a worker thread; the application
unaffected when the Prefect API is down, the events delivered later from the spool."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from mendflow.heal import scrub
from tests.fakes.server import FakeServer, ScriptedReply
from tests.helpers.e2e import free_port
from tests.helpers.git import write_files
from tests.helpers.heal import APP_FILES, APP_MAIN

EXPECTED = {("AttributeError", "logging", "title"),
            ("ModuleNotFoundError", "asyncio", "load_plugin"),
            ("KeyError", "thread", "price"), ("ZeroDivisionError", "excepthook", "mean")}


def run_app(app: Path, api: str | None, spool: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "APP_REPO": str(app), "APP_API": api or "", "APP_SPOOL": str(spool),
           "PYTHONPATH": str(app)}
    return subprocess.run([sys.executable, str(app / "main.py")], cwd=app, env=env,
                          capture_output=True, text=True, timeout=120)


def make_app(tmp_path: Path) -> Path:
    app = tmp_path / "app"
    write_files(app, APP_FILES)
    (app / "main.py").write_text(APP_MAIN)
    return app


def summary(events: list[dict]) -> set[tuple[str, str, str]]:
    return {(e["payload"]["type"], e["payload"]["source"], e["payload"]["frames"][-1]["function"])
            for e in events}


def test_every_exception_becomes_one_event_and_the_app_behaves_as_before(tmp_path):
    app = make_app(tmp_path)
    with FakeServer("/api/events") as api:
        api.respond_with(lambda request: ScriptedReply(status=204, body=b""))
        done = run_app(app, f"{api.root_url}/api", tmp_path / "spool")
        events = [e for r in api.requests for e in r.json]
    # the application itself is unchanged: its output, its traceback and its exit code
    assert done.returncode == 1 and "ZeroDivisionError: division by zero" in done.stderr
    assert "KeyError: 'sku-1'" in done.stderr  # the default thread hook still printed it
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["results"] == ["?", "?", "?"]
    assert out["stats"]["rate_limited"] == 2 and out["stats"]["dropped"] == 0
    assert summary(events) == EXPECTED and len(events) == 4
    for event in events:
        assert event["event"] == "mendflow.exception.raised"
        assert event["resource"]["mendflow.repository"] == str(app)
        fp = event["payload"]["fingerprint"]
        assert event["resource"]["prefect.resource.id"] == f"mendflow.error.{fp}"
        frame = event["payload"]["frames"][-1]
        assert frame["file"].endswith("shop/catalog.py") and frame["source"]
        assert "locals" not in json.dumps(event)
    assert not list((tmp_path / "spool").glob("*.json"))


def test_with_the_api_down_the_app_is_unaffected_and_events_are_delivered_later(tmp_path):
    app = make_app(tmp_path)
    spool = tmp_path / "spool"
    down = f"http://127.0.0.1:{free_port()}/api"
    done = run_app(app, down, spool)
    assert done.returncode == 1 and "ZeroDivisionError" in done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["results"] == ["?", "?", "?"] and out["stats"]["sent"] == 0
    assert len(list(spool.glob("*.json"))) == 4

    # the next start of the application delivers the spool
    with FakeServer("/api/events") as api:
        api.respond_with(lambda request: ScriptedReply(status=204, body=b""))
        again = run_app(app, f"{api.root_url}/api", spool)
        events = [e for r in api.requests for e in r.json]
    assert again.returncode == 1
    assert len(events) == 8 and summary(events) == EXPECTED
    assert not list(spool.glob("*.json"))


def test_messages_are_truncated_and_scrubbed_of_secrets():
    text = scrub("connect failed: password=hunter2 token: abc123 "
                 "url=https://bob:pw@db.example.com key sk-ant-abcdefghijklmnop " + "word " * 150)
    assert "hunter2" not in text and "abc123" not in text and "bob:pw" not in text
    assert "sk-ant-abcdefghijklmnop" not in text and len(text) == 500


def test_importing_the_hook_imports_neither_prefect_nor_pydantic():
    code = ("import sys, mendflow.heal; "
            "print(sorted(m for m in ('prefect', 'pydantic', 'httpx') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True)
    assert done.stdout.strip() == "[]"
