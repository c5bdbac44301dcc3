"""The mission on a git URL (a fleet mission): its own clone, the engine's concurrency slots,
the mission branch pushed back, the flow run labelled; an unclonable URL is a typed error."""

from __future__ import annotations

from pathlib import Path

import pytest

from mendflow.core.errors import CloneError
from mendflow.core.fleet import repository_key
from mendflow.flows.mission import maintenance_mission
from mendflow.infra.engine_limits import repository_limit
from tests.helpers.git import git, write_files
from tests.helpers.target import target_python

pytestmark = pytest.mark.usefixtures("prefect_harness")

LIB = "import os\n\n\ndef add(a, b):\n    return a + b\n"
TESTS = "from pkg.lib import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n"
OVERRIDES = {"environment": {"type": "interpreter", "python": target_python()},
             "tools": {"mypy": {"enabled": False}, "bandit": {"enabled": False}},
             "mission": {"target_score": 100, "max_iterations": 1}}


@pytest.fixture
def bare(tmp_path) -> Path:
    work = tmp_path / "author"
    work.mkdir()
    git(work, "init", "-q", "-b", "main")
    write_files(work, {"pkg/__init__.py": "", "pkg/lib.py": LIB, "tests/test_lib.py": TESTS})
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "initial")
    bare = tmp_path / "remote.git"
    git(tmp_path, "clone", "-q", "--bare", str(work), str(bare))
    return bare


def test_mission_on_a_url_clones_holds_the_slot_and_pushes_back(bare, tmp_path):
    from prefect.client.orchestration import get_client

    home = tmp_path / "worker-home"
    overrides = {**OVERRIDES, "mission": {**OVERRIDES["mission"], "state_dir": str(home)}}
    result = maintenance_mission(url=bare.as_uri(), branch="main", fleet="t",
                                 config_overrides=overrides, mission_id="t-url")

    assert result.status == "completed"
    assert Path(result.repository).is_relative_to(home / "clones")
    accepted = [p for p in result.patches if p.status == "accepted"]
    assert accepted
    assert "import os" not in git(bare, "show", "mendflow/t-url:pkg/lib.py")  # pushed back
    assert git(bare, "rev-parse", "main") == git(bare, "rev-parse", f"mendflow/t-url~{len(accepted)}")
    with get_client(sync_client=True) as client:
        limit = client.read_global_concurrency_limit_by_name(
            repository_limit(repository_key(bare.as_uri())))
        run = client.read_flow_run(result.flow_run_id)
    assert (limit.limit, limit.active_slots) == (1, 0)  # created on demand, released at the end
    assert run.labels["mendflow.mission_id"] == "t-url"
    assert run.labels["mendflow.repository"] == bare.as_uri()
    assert int(run.labels["mendflow.patches_accepted"]) == len(accepted)
    assert run.labels["mendflow.slot_acquired_at"] < run.labels["mendflow.slot_released_at"]


def test_unclonable_url_fails_with_a_clone_error(tmp_path):
    with pytest.raises(CloneError) as caught:
        maintenance_mission(url=(tmp_path / "missing.git").as_uri(), branch="main",
                            config_overrides=OVERRIDES, mission_id="t-noclone")
    assert "missing.git" in str(caught.value)
