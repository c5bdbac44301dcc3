"""Stage progress events, decoupled from how they are shown.

Tasks and flows call :func:`report_progress`; the CLI attaches a handler to
the ``mendflow.infra.progress`` logger and renders the events live with rich (on
stderr). Without a handler the events go nowhere, so flows run silently under
a deployment.
"""

from __future__ import annotations

import logging

PROGRESS_LOGGER = "mendflow.infra.progress"
_logger = logging.getLogger(PROGRESS_LOGGER)
_logger.propagate = False
_logger.addHandler(logging.NullHandler())
_logger.setLevel(logging.INFO)


def report_progress(stage: str, message: str, *, mission_id: str | None = None) -> None:
    """Emit one progress event.

    Args:
        stage: the pipeline stage (setup, detect, fix, validate, commit, report).
        message: one human-readable line.
        mission_id: the mission the event belongs to (the CLI uses it to say
            which mission to resume after an interruption).
    """
    _logger.info(message, extra={"stage": stage, "mission_id": mission_id})
