"""The self-analysis section (radon, git churn) and the progress chart (matplotlib)."""

from __future__ import annotations

from mendflow.infra.analysis import analysis_markdown, analyze_path
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
