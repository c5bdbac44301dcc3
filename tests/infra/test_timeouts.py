"""Adaptive timeouts: the duration history in the state dir, percentiles, clamping."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mendflow.core.config import HISTORY_SIZE, TimeoutsConfig, validate_config
from mendflow.core.errors import ConfigError
from mendflow.infra.layout import StateLayout
from mendflow.infra.timeouts import (
    LLM_STEP,
    adaptive_timeout,
    history_path,
    llm_timeout,
    load_history,
    percentile,
    record_duration,
)

home = StateLayout.resolve  # the $MENDFLOW_HOME layout (isolated per test by conftest)


@pytest.fixture
def repo(make_repo) -> Path:
    return make_repo({"pkg/a.py": "x = 1\n"})


def test_percentile_interpolates_between_ranks():
    values = [float(v) for v in range(1, 101)]  # 1..100
    assert percentile(values, 0) == 1
    assert percentile(values, 100) == 100
    assert percentile(values, 50) == pytest.approx(50.5)
    assert percentile(values, 95) == pytest.approx(95.05)
    assert percentile([7.0], 95) == 7.0
    assert percentile([10.0, 20.0], 25) == pytest.approx(12.5)
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_history_lives_in_the_state_dir_not_the_repo(repo):
    record_duration(repo, "pytest", 12.5, layout=home())
    path = history_path(repo, home())
    assert path.is_relative_to(Path(os.environ["MENDFLOW_HOME"]).resolve())
    assert json.loads(path.read_text()) == {"pytest": [12.5]}
    assert subprocess.run(["git", "status", "--porcelain"], cwd=repo, capture_output=True,
                          text=True, check=True).stdout == ""


def test_the_newest_fifty_durations_are_kept_per_step(repo):
    for i in range(HISTORY_SIZE + 10):
        record_duration(repo, "ruff", float(i), layout=home())
    record_duration(repo, "mypy", 3.0, layout=home())
    history = load_history(repo, home())
    assert history["ruff"] == [float(i) for i in range(10, HISTORY_SIZE + 10)]
    assert history["mypy"] == [3.0]


def test_invalid_durations_are_not_recorded(repo, caplog):
    for bad in (-1.0, float("nan"), float("inf")):
        record_duration(repo, "bandit", bad, layout=home())
    assert load_history(repo, home()) == {}
    assert "invalid duration" in caplog.text


def test_default_is_used_and_clamped_below_min_samples(repo):
    config = TimeoutsConfig(min_samples=3, floor_s=30, ceiling_s=600)
    assert adaptive_timeout(repo, "pytest", default_s=1800, config=config, layout=home()) == 600
    record_duration(repo, "pytest", 5.0, layout=home())
    record_duration(repo, "pytest", 5.0, layout=home())
    assert adaptive_timeout(repo, "pytest", default_s=120, config=config, layout=home()) == 120
    assert adaptive_timeout(repo, "pytest", default_s=10, config=config, layout=home()) == 30


def test_percentile_times_factor_once_enough_samples(repo):
    config = TimeoutsConfig(percentile=95, factor=3.0, floor_s=30, ceiling_s=7200, min_samples=3)
    for seconds in (20.0, 22.0, 40.0, 21.0):
        record_duration(repo, "pytest", seconds, layout=home())
    expected = percentile([20.0, 22.0, 40.0, 21.0], 95) * 3.0
    learned = adaptive_timeout(repo, "pytest", default_s=1800, config=config, layout=home())
    assert learned == pytest.approx(expected)
    # other steps and other repositories have their own history
    assert adaptive_timeout(repo, "mypy", default_s=600, config=config, layout=home()) == 600


def test_the_learned_timeout_is_clamped(repo):
    config = TimeoutsConfig(floor_s=30, ceiling_s=100, min_samples=3)
    for _ in range(3):
        record_duration(repo, "ruff", 0.2, layout=home())
        record_duration(repo, "llm", 500.0, layout=home())
    assert adaptive_timeout(repo, "ruff", default_s=600, config=config, layout=home()) == 30
    assert adaptive_timeout(repo, "llm", default_s=120, config=config, layout=home()) == 100


def test_a_model_call_timeout_is_never_below_the_llm_floor(repo):
    config = TimeoutsConfig(floor_s=30, llm_floor_s=60, ceiling_s=7200, min_samples=3)
    assert llm_timeout(repo, default_s=120, config=config, layout=home()) == 120  # no history yet
    assert llm_timeout(repo, default_s=10, config=config, layout=home()) == 60
    for seconds in (4.0, 5.0, 6.0):
        record_duration(repo, LLM_STEP, seconds, layout=home())
    assert adaptive_timeout(repo, LLM_STEP, default_s=120, config=config, layout=home()) == 30
    assert llm_timeout(repo, default_s=120, config=config, layout=home()) == 60
    learned = percentile([4.0, 5.0, 6.0], 95) * 3
    assert llm_timeout(repo, default_s=120, config=config.model_copy(
        update={"llm_floor_s": 1.0, "floor_s": 1.0}), layout=home()) == pytest.approx(learned)
    # adaptive off: the configured timeout, even below the floor
    assert llm_timeout(repo, default_s=10, config=TimeoutsConfig(adaptive=False), layout=home()) == 10


def test_adaptive_off_returns_the_configured_timeout(repo):
    for _ in range(5):
        record_duration(repo, "pytest", 1.0, layout=home())
    config = TimeoutsConfig(adaptive=False)
    assert adaptive_timeout(repo, "pytest", default_s=1800, config=config, layout=home()) == 1800


def test_a_corrupt_history_is_empty_with_a_warning_and_is_rewritten(repo, caplog):
    path = history_path(repo, home())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('{"pytest": [1.0, 2.0')
    assert load_history(repo, home()) == {}
    assert "corrupt duration history" in caplog.text
    assert adaptive_timeout(repo, "pytest", default_s=90, config=TimeoutsConfig(), layout=home()) == 90
    record_duration(repo, "pytest", 4.0, layout=home())
    assert load_history(repo, home()) == {"pytest": [4.0]}
    path.write_text('["not", "a", "mapping"]')
    assert load_history(repo, home()) == {}


WRITER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from mendflow.infra.layout import StateLayout
    from mendflow.infra.timeouts import record_duration
    for i in range(200):
        record_duration(Path(sys.argv[1]), sys.argv[2], float(i), layout=StateLayout.resolve())
""")


def test_two_processes_writing_at_once_never_corrupt_the_file(repo, caplog):
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(repo), step])
               for step in ("pytest", "ruff")]
    assert [w.wait(timeout=120) for w in writers] == [0, 0]
    data = json.loads(history_path(repo, home()).read_text())  # valid JSON: never half-written
    assert set(data) <= {"pytest", "ruff"} and data  # last writer wins: a step may be lost
    for values in data.values():
        assert values == sorted(values) and len(values) <= HISTORY_SIZE
    assert list(history_path(repo, home()).parent.glob("*.tmp")) == []


@pytest.mark.parametrize("field", [
    {"percentile": 0}, {"percentile": 101}, {"factor": 0.5}, {"floor_s": 0},
    {"floor_s": 100, "ceiling_s": 50}, {"min_samples": 0}, {"min_samples": HISTORY_SIZE + 1},
    {"llm_floor_s": 0}, {"llm_floor_s": 100, "ceiling_s": 50},
])
def test_timeouts_config_validates_ranges(field):
    with pytest.raises(ConfigError, match="timeouts"):
        validate_config({"timeouts": field})


def test_timeouts_and_health_sections_have_documented_defaults():
    config = validate_config({})
    assert config.timeouts == TimeoutsConfig()
    assert (config.timeouts.percentile, config.timeouts.factor, config.timeouts.floor_s,
            config.timeouts.ceiling_s, config.timeouts.min_samples) == (95, 3.0, 30, 7200, 3)
    assert config.timeouts.llm_floor_s == 60
    assert (config.health.min_free_disk_mb, config.health.warn_free_disk_mb,
            config.health.min_free_memory_mb) == (1024, 5120, 512)
    for section in (type(config.timeouts), type(config.health)):
        assert all(field.description for field in section.model_fields.values())
    with pytest.raises(ConfigError, match="warn_free_disk_mb"):
        validate_config({"health": {"min_free_disk_mb": 100, "warn_free_disk_mb": 50}})
