"""Log parsing and grouping on real-world-shaped logs: chained tracebacks, JSON lines,
gzip rotation, thousands of repeats, production paths mapped onto a repository."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from mendflow.core.error_groups import RepoFiles, event_fingerprint, group_events, group_finding
from mendflow.core.tracebacks import parse_text
from mendflow.infra.logfiles import expand_paths, read_all

CHAINED = '''\
2024-05-01 12:00:00,123 INFO gunicorn.error: Booting worker with pid: 4242
2024-05-01 12:00:01,456 ERROR app.views: checkout failed
Traceback (most recent call last):
  File "/srv/app-release-42/shop/cart.py", line 41, in total
    return sum(prices[item] for item in items)
  File "/srv/app-release-42/shop/cart.py", line 41, in <genexpr>
    return sum(prices[item] for item in items)
               ~~~~~~^^^^^^
KeyError: 'sku-991'

During handling of the above exception, another exception occurred:

Traceback (most recent call last):
  File "/usr/lib/python3.11/site-packages/flask/app.py", line 880, in full_dispatch_request
    rv = self.dispatch_request()
  File "/srv/app-release-42/shop/views.py", line 12, in checkout
    amount = cart.total(items)
  File "/srv/app-release-42/shop/cart.py", line 44, in total
    raise PricingError(f"no price for {exc}") from None
shop.errors.PricingError: no price for 'sku-991'
2024-05-01 12:00:02,000 INFO app.views: next request
'''

CAUSE = '''\
[2024-05-02T08:15:00Z] ERROR worker crashed
Traceback (most recent call last):
  File "/opt/venv/lib/python3.12/site-packages/requests/api.py", line 59, in request
    return session.request(method=method, url=url, **kwargs)
ConnectionError: HTTPSConnectionPool(host='api.example.com', port=443)

The above exception was the direct cause of the following exception:

Traceback (most recent call last):
  File "/home/deploy/current/shop/sync.py", line 9, in pull
    raise SyncFailed("upstream down") from err
shop.errors.SyncFailed: upstream down
'''

REPO = RepoFiles(["shop/__init__.py", "shop/cart.py", "shop/views.py", "shop/sync.py",
                  "shop/errors.py", "tests/test_cart.py", "cart.py"])


def repeat(count: int, release: int = 42) -> str:
    """``count`` ZeroDivisionErrors, each with its own time, line number and value."""
    blocks = []
    for i in range(count):
        blocks.append(
            f"2024-06-{1 + i % 28:02d} {i % 24:02d}:{i % 60:02d}:00,000 ERROR stats failed\n"
            "Traceback (most recent call last):\n"
            f'  File "/srv/app-release-{release + i % 3}/shop/stats.py", line {10 + i % 7}, in mean\n'
            "    return total / count\n"
            f"ZeroDivisionError: division by zero (batch {i})\n")
    return "".join(blocks)


def test_a_chained_traceback_is_one_event_grouped_by_its_last_exception():
    events = parse_text(CHAINED)
    assert len(events) == 1
    event = events[0]
    assert [r.type for r in event.chain] == ["KeyError", "shop.errors.PricingError"]
    assert event.last.message == "no price for 'sku-991'"
    assert event.timestamp == "2024-05-01T12:00:01.456000"
    assert "During handling of the above exception" in event.text
    assert "KeyError: 'sku-991'" in event.text  # the chain is kept in the sample
    assert "next request" not in event.text
    assert event.chain[0].frames[1].source == "return sum(prices[item] for item in items)"

    group = group_events(events, REPO)[0]
    assert (group.exception_type, group.path, group.function, group.line) == \
        ("shop.errors.PricingError", "shop/cart.py", "total", 44)


def test_direct_cause_chains_and_library_frames_left_out():
    event = parse_text(CAUSE)[0]
    assert [r.type for r in event.chain] == ["ConnectionError", "shop.errors.SyncFailed"]
    assert event.timestamp == "2024-05-02T08:15:00Z"
    finding = group_finding(group_events([event], REPO)[0], REPO)
    assert finding is not None
    assert (finding.source, finding.rule, finding.path, finding.line, finding.symbol) == \
        ("log", "shop.errors.SyncFailed", "shop/sync.py", 9, "pull")


def test_production_paths_map_by_the_longest_matching_suffix():
    assert REPO.map("/srv/app-release-42/shop/cart.py") == "shop/cart.py"
    assert REPO.map("/srv/app/cart.py") == "cart.py"
    assert REPO.map("C:\\deploy\\shop\\views.py") == "shop/views.py"
    assert REPO.map("/usr/lib/python3.11/json/decoder.py") is None


def test_thousands_of_repeats_across_deploys_are_one_group():
    groups = group_events(parse_text(repeat(3000)), RepoFiles(["shop/stats.py"]))
    assert len(groups) == 1
    group = groups[0]
    assert group.count == 3000
    assert group.first_seen == "2024-06-01T00:00:00.000000"
    assert group.last_seen == max(e.timestamp for e in parse_text(repeat(3000)))
    assert group.last_seen.startswith("2024-06-28T")
    assert (group.path, group.function) == ("shop/stats.py", "mean")


def test_the_fingerprint_ignores_lines_values_and_checkout_paths():
    a = parse_text(repeat(1, release=42))[0]
    b = parse_text(repeat(1, release=77).replace("line 10", "line 99")
                   .replace("batch 0", "batch 12345"))[0]
    assert event_fingerprint(a) == event_fingerprint(b)
    other = parse_text(repeat(1).replace("in mean", "in median"))[0]
    assert event_fingerprint(other) != event_fingerprint(a)
    kind = parse_text(repeat(1).replace("ZeroDivisionError", "OverflowError"))[0]
    assert event_fingerprint(kind) != event_fingerprint(a)


def test_json_lines_logs_with_exc_info_traceback_and_structlog_exception(tmp_path: Path):
    trace = parse_text(CAUSE)[0].text
    lines = [
        {"asctime": "2024-05-03 10:00:00,000", "levelname": "INFO", "message": "ok"},
        {"asctime": "2024-05-03 10:00:01,000", "levelname": "ERROR", "message": "boom",
         "exc_info": trace},                                           # python-json-logger
        {"time": "2024-05-03T10:00:02Z", "level": "error", "traceback": trace.splitlines(True)},
        {"timestamp": "2024-05-03T10:00:03Z", "event": "sync failed", "exception": [  # structlog
            {"exc_type": "SyncFailed", "exc_value": "upstream down",
             "frames": [{"filename": "/home/deploy/current/shop/sync.py", "lineno": 9,
                         "name": "pull", "line": "raise SyncFailed('upstream down')"}]}]},
    ]
    log = tmp_path / "app.jsonl"
    log.write_text("\n".join(json.dumps(x) for x in lines) + "\nnot json at all\n")
    events = list(read_all([log]))
    assert [e.last.type for e in events] == ["shop.errors.SyncFailed"] * 2 + ["SyncFailed"]
    assert [e.timestamp for e in events] == ["2024-05-03T10:00:01.000000",
                                             "2024-05-03T10:00:02Z", "2024-05-03T10:00:03Z"]
    assert events[2].last.frames[0].function == "pull"


def test_rotated_and_gzipped_logs_are_read(tmp_path: Path):
    (tmp_path / "app.log").write_text(repeat(5))
    (tmp_path / "app.log.1").write_text(CHAINED)
    with gzip.open(tmp_path / "app.log.2.gz", "wt") as handle:
        handle.write(repeat(20) + CAUSE)
    files = expand_paths(["app.log*"], tmp_path)
    assert [f.name for f in files] == ["app.log", "app.log.1", "app.log.2.gz"]
    groups = group_events(read_all(files), REPO)
    assert [(g.exception_type, g.count) for g in groups] == [
        ("ZeroDivisionError", 25), ("shop.errors.SyncFailed", 1),  # then the most recent
        ("shop.errors.PricingError", 1)]


def test_a_truncated_traceback_at_the_end_of_a_file_is_kept():
    text = "Traceback (most recent call last):\n  File \"/srv/a/shop/cart.py\", line 3, in f\n"
    events = parse_text(text)
    assert len(events) == 1 and events[0].last.type == "<truncated>"
