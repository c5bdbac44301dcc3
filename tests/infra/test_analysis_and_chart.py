"""The self-analysis section (radon, git churn) and the progress chart (matplotlib)."""

from __future__ import annotations

import time

from mendflow.infra.analysis import analysis_markdown, analyze_path, raw_counts
from mendflow.infra.charts import write_progress_chart
from tests.helpers.git import git
from tests.helpers.outcomes import mission


def test_the_self_analysis_names_hotspots_by_complexity_times_churn(make_repo):
    branchy = "def f(x):\n" + "".join(f"    if x == {i}:\n        return {i}\n" for i in range(6)) \
        + "    return -1\n"
    repo = make_repo({"hot.py": branchy, "calm.py": "def g():\n    return 1\n",
                      "broken.py": "def h(:\n", ".venv/lib/skip.py": "x = 1\n"})
    for n in range(3):
        (repo / "hot.py").write_text(branchy + f"# {n}\n")
        git(repo, "commit", "-qam", f"touch {n}")

    analysis = analyze_path(repo)

    assert [m.path for m in analysis.modules] == ["calm.py", "hot.py"]  # broken and .venv left out
    hot = next(m for m in analysis.modules if m.path == "hot.py")
    assert hot.complexity == 7 and hot.functions == 1
    assert [(h.path, h.churn, h.score) for h in analysis.hotspots] == [("hot.py", 4, 28),
                                                                      ("calm.py", 1, 1)]
    text = analysis_markdown(analysis)
    assert text.startswith("## Self-analysis") and "| hot.py | 7 | 4 | 28 |" in text


def test_raw_counts_are_one_pass_over_a_huge_literal():
    """radon.raw.analyze is quadratic in a statement's lines: wcwidth 0.2.13's table
    modules (one literal over 4843 lines) timed the self-analysis out after 600 s."""
    code = ('"""Tables.\n\nGenerated.\n"""\nimport os  # os\n\nTABLE = (\n'
            + "".join(f"    (0x{n:05x}, 0x{n:05x},),  # {n}\n" for n in range(5000))
            + ")\nx = 1; y = 2\n")
    started = time.monotonic()
    counts = raw_counts(code)
    assert time.monotonic() - started < 5
    assert (counts.loc, counts.lloc, counts.comments, counts.multi) == (5009, 5, 5001, 4)
    assert counts.sloc == 5009 - 4 - 1  # less the docstring and the blank line


def test_the_progress_chart_is_a_png(tmp_path):
    missions = [mission(f"m{n}", before=50 + n, after=60 + n, accepted=n, offset_s=n)
                for n in range(4)]
    path = write_progress_chart(missions, tmp_path / "report" / "progress.png", "repo")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_the_progress_chart_is_redrawn_only_when_its_figures_change(tmp_path):
    missions = [mission(f"m{n}", before=50 + n, after=60 + n, accepted=n, offset_s=n)
                for n in range(3)]
    path = write_progress_chart(missions, tmp_path / "progress.png", "repo")
    stamp = path.stat().st_mtime_ns
    path.touch()
    touched = path.stat().st_mtime_ns
    # a resumed mission: the same figures, the chart is kept as it is
    write_progress_chart(list(missions), path, "repo")
    assert path.stat().st_mtime_ns == touched >= stamp
    # one more mission: drawn again
    write_progress_chart([*missions, mission("m9", before=70, after=80, accepted=2, offset_s=9)],
                         path, "repo")
    assert path.stat().st_mtime_ns != touched
