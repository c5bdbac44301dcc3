"""A PNG chart of score and accepted fixes over missions (matplotlib, Agg backend)."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Sequence
from pathlib import Path

from mendflow.core.learning import MissionRecord


def preload_chart_library() -> None:
    """Import matplotlib in a daemon thread now, so the end-of-mission chart does not wait
    for it (about 1.5 s of CPU). Meant for the start of a mission: the import then runs
    while the mission's own thread waits on the baseline's tool subprocesses."""
    def load() -> None:
        try:
            import matplotlib

            matplotlib.use("Agg", force=True)
            import matplotlib.figure  # noqa: F401
        except Exception:  # noqa: BLE001  (the chart itself reports a failed import)
            pass

    threading.Thread(target=load, name="mendflow-preload-matplotlib", daemon=True).start()


def write_progress_chart(missions: Sequence[MissionRecord], path: Path, title: str) -> Path:
    """Plot the quality score after each mission (line) and its accepted fixes (bars).

    Args:
        missions: one repository's missions, oldest first (``OutcomeStore.missions``).
        path: the PNG file to write (its folder is created).
        title: the chart's title (the repository's name).

    A chart already at ``path`` drawn from the same figures (its PNG ``tEXt``
    chunk ``mendflow-digest``) is kept as it is: a resumed mission does not pay
    matplotlib's import and drawing again.

    Returns:
        ``path``.

    Raises:
        OSError: the file cannot be written.
    """
    digest = chart_digest(missions, title)
    if _digest_of(path) == digest:
        return path
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI

    figure = Figure(figsize=(7, 3.5), dpi=100)
    axis = figure.add_subplot()
    numbers = list(range(1, len(missions) + 1))
    bars = axis.twinx()
    bars.bar(numbers, [m.accepted for m in missions], color="#9ecae1", alpha=0.7,
             label="accepted fixes")
    bars.set_ylabel("accepted fixes")
    axis.plot(numbers, [m.score_after for m in missions], marker="o", color="#08519c",
              label="score after")
    axis.plot(numbers, [m.score_before for m in missions], linestyle="--", color="#6baed6",
              label="score before")
    axis.set_zorder(bars.get_zorder() + 1)
    axis.patch.set_visible(False)
    axis.set_xlabel("mission")
    axis.set_ylabel("quality score (0-100)")
    axis.set_ylim(0, 100)
    axis.set_xticks(numbers)
    axis.set_title(title)
    axis.legend(loc="lower right", fontsize="small")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png", metadata={DIGEST_KEY: digest})
    return path


DIGEST_KEY = "mendflow-digest"


def chart_digest(missions: Sequence[MissionRecord], title: str) -> str:
    """sha256 of what the chart shows: the title and each mission's scores and accepted fixes."""
    shown = [title, *([m.score_before, m.score_after, m.accepted] for m in missions)]
    return hashlib.sha256(json.dumps(shown).encode()).hexdigest()


def _digest_of(path: Path) -> str | None:
    """The ``mendflow-digest`` of an existing chart (None: no file, or not one of ours)."""
    if not path.is_file():
        return None
    from PIL import Image, UnidentifiedImageError  # Pillow ships with matplotlib

    try:
        with Image.open(path) as image:
            return getattr(image, "text", {}).get(DIGEST_KEY)
    except (OSError, UnidentifiedImageError):
        return None
