"""Shared fixtures: real git repositories in tmp_path, and an isolated state dir."""

from __future__ import annotations

import os
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

# Every Prefect state of the test session (database, persisted results and cache
# records) lives in a throw-away PREFECT_HOME, never in the developer's ~/.prefect.
os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="mendflow-tests-prefect-")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")

# The API servers that inherit this environment run without the services no test on them
# needs (tests/helpers/prefect_env.py).
from tests.helpers.prefect_env import QUIET_SERVICES  # noqa: E402

for _name, _value in QUIET_SERVICES.items():
    os.environ.setdefault(_name, _value)

# Child processes (a target's own pytest run, servers, the CLI) get a temp dir of their
# own. A pytest run keeps only the 3 newest ``<tmp>/pytest-of-<user>/pytest-N`` folders,
# so a target's pytest run in a test, sharing this session's temp dir, would delete the
# session's own tmp_path folders (and the hold files and databases in them) mid-run.
# Made once, by the xdist controller (or a plain run); its workers inherit it. The name is
# short: Chromium's socket path under it must stay below 108 bytes.
if "MENDFLOW_TESTS_TMPDIR" not in os.environ:
    tempfile.tempdir = tempfile.gettempdir()  # this process keeps the system's temp dir
    _children = tempfile.mkdtemp(prefix="mf-")
    os.chmod(_children, 0o1777)  # like /tmp: PostgreSQL's own user writes there too
    os.environ["MENDFLOW_TESTS_TMPDIR"] = os.environ["TMPDIR"] = _children
    # Prefect's API clients load this CA file each: one certificate, not certifi's bundle
    # (every Prefect API here is plain HTTP on loopback; tests/helpers/prefect_env.py)
    from tests.helpers.prefect_env import CERT_FILE, one_certificate_pem  # noqa: E402

    os.environ.setdefault(CERT_FILE, str(one_certificate_pem(Path(_children))))

import pytest  # noqa: E402  (after the environment above)

from mendflow.core.config import Interpreter, MendflowConfig, validate_config  # noqa: E402
from tests.helpers.git import GIT_ENV, git, write_files  # noqa: E402, F401  (fixtures)
from tests.helpers.schedule import DurationRecorder, longest_first, make_scheduler  # noqa: E402


def pytest_configure(config: pytest.Config) -> None:
    """Record each test file's seconds when asked to (in the controller of an xdist run)."""
    record = os.environ.get("MENDFLOW_RECORD_DURATIONS")
    if record and not hasattr(config, "workerinput"):
        config.pluginmanager.register(DurationRecorder(Path(record)),
                                      "mendflow-durations")


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist (absent with -p no:xdist)
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """``--dist loadfile``: whole files (tests/e2e/ in two groups), the longest first
    (tests/helpers/schedule.py); any other --dist mode is xdist's own."""
    if config.getvalue("dist") == "loadfile":
        return make_scheduler(config, log)
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """In an xdist worker: whole units, the longest expected first (an LPT schedule)."""
    if hasattr(config, "workerinput"):
        longest_first(items)


@pytest.fixture
def make_repo(tmp_path: Path):
    """Factory: ``make_repo({"pkg/a.py": "..."}, name="repo")`` -> a committed git repo."""

    def _make(files: dict[str, str], name: str = "repo", branch: str = "main") -> Path:
        root = tmp_path / name
        root.mkdir()
        git(root, "init", "-q", "-b", branch)
        git(root, "config", "user.email", "author@example.com")
        git(root, "config", "user.name", "Test Author")
        write_files(root, files)
        git(root, "add", "-A")
        git(root, "commit", "-q", "-m", "initial")
        return root

    return _make


@pytest.fixture(autouse=True)
def _isolated_state(tmp_path_factory, monkeypatch):
    """Every test gets its own MENDFLOW_HOME: nothing leaks into ~/.mendflow."""
    monkeypatch.setenv("MENDFLOW_HOME", str(tmp_path_factory.mktemp("mendflow-home")))


@pytest.fixture
def fast_config() -> MendflowConfig:
    """A config that tests the target with this interpreter (no venv install)."""
    return MendflowConfig(environment=Interpreter(python=sys.executable))


@pytest.fixture
def config_from():
    return validate_config


@pytest.fixture(scope="session")
def prefect_harness():
    """A real, temporary Prefect API (prefect_test_harness) for the whole session.

    The flows run in this process do not ship their log records to it
    (``PREFECT_LOGGING_TO_API_ENABLED``): no test here reads logs back from the API (the
    e2e tests, which do, run their own servers and processes), and each record was a
    batched POST and a row inserted by the server (~10 % of a mission's CPU here).

    Its server runs without the services of :data:`tests.helpers.prefect_env.QUIET_SERVICES`
    (the environment).
    """
    from prefect.settings import PREFECT_LOGGING_TO_API_ENABLED, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120), \
            temporary_settings({PREFECT_LOGGING_TO_API_ENABLED: False}):
        yield


@contextmanager
def _full_services_api():
    """A temporary Prefect API of its own (prefect_test_harness) with the services of
    ``QUIET_SERVICES`` on (tests/helpers/prefect_env.py): the task-run recorder, the event
    persister, the triggers; the session's harness is the API again after it.

    This process's events worker (one for the process, bound to the API it first sent to)
    is drained first, so the events of the flow runs here go to this API; prefect_test_harness
    drains it again at its end, so the session's harness gets the events after it.
    """
    from prefect.events.worker import EventsWorker
    from prefect.settings import (
        PREFECT_SERVER_SERVICES_EVENT_PERSISTER_ENABLED,
        PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_ENABLED,
        PREFECT_SERVER_SERVICES_TRIGGERS_ENABLED,
        temporary_settings,
    )
    from prefect.testing.utilities import prefect_test_harness

    EventsWorker.drain_all(timeout=60)
    # SubprocessASGIServer gives its server this process's settings, over the environment
    with temporary_settings({PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_ENABLED: True,
                             PREFECT_SERVER_SERVICES_EVENT_PERSISTER_ENABLED: True,
                             PREFECT_SERVER_SERVICES_TRIGGERS_ENABLED: True}), \
            prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def events_api(prefect_harness):
    """For a test that reads events back (``POST /events/filter``): :func:`_full_services_api`."""
    with _full_services_api():
        yield


@pytest.fixture(scope="module")
def recording_api(prefect_harness):
    """For a module whose tests read task runs back: :func:`_full_services_api`, one for the
    module (a module-scoped fixture of the module that uses the API must depend on it)."""
    with _full_services_api():
        yield
