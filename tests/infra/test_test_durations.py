"""The per-test durations a repository's next baseline learns its timeouts from."""

from __future__ import annotations

from mendflow.core.config import PytestConfig
from mendflow.core.hangs import plan_from_durations
from mendflow.core.models import TestCase, TestRun
from mendflow.infra.layout import StateLayout
from mendflow.infra.test_durations import (
    durations_path,
    load_test_durations,
    record_test_durations,
)


def run_of(*cases: tuple[str, str, float, bool]) -> TestRun:
    return TestRun(collected=len(cases), cases=tuple(
        TestCase(nodeid=n, outcome=o, duration_s=d, timed_out=t) for n, o, d, t in cases))


def test_a_run_merges_into_the_durations_and_a_corrupt_file_starts_again(tmp_path):
    layout, repo = StateLayout.resolve(tmp_path / "state"), tmp_path / "repo"
    assert load_test_durations(repo, layout) == {}

    record_test_durations(repo, run_of(("t::slow", "passed", 4.0, False),
                                       ("t::flaky", "passed", 0.2, False),
                                       ("t::skip", "passed", 3.0, False)), layout)
    # a selective run: one test failed now, one was skipped, one hung; the rest did not run
    record_test_durations(repo, run_of(("t::flaky", "failed", 0.1, False),
                                       ("t::skip", "skipped", 0.0, False),
                                       ("t::new", "failed", 9.0, True)), layout)
    assert load_test_durations(repo, layout) == {"t::slow": 4.0, "t::skip": 3.0}

    durations_path(repo, layout).write_text('{"t::slow": -1}')
    assert load_test_durations(repo, layout) == {}  # negative: corrupt, learned again
    durations_path(repo, layout).write_text("not json")
    assert load_test_durations(repo, layout) == {}


def test_only_tests_slower_than_the_first_timeout_get_a_learned_one():
    config = PytestConfig(first_timeout_s=2.0, per_test_timeout_s=60.0)
    plan = plan_from_durations({"t::fast": 0.5, "t::slow": 4.0, "t::huge": 500.0}, config)
    assert plan is not None
    assert plan.timeouts == {"t::slow": 12.0, "t::huge": 60.0}  # 3 x d, at most 60 s
    assert plan.default_s == 2.0 and plan.hung == ()
    assert plan_from_durations({"t::fast": 0.5}, config) is None
