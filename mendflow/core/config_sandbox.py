"""Config section of the isolation of the target's code (``sandbox``).

Every run of the target's code (pytest and coverage, and whatever its conftest
starts) runs under bubblewrap with no network, a read-only filesystem except
the worktree, a private /tmp and the sandbox's tool home, no view of the
user's home or of mendflow's state, and resource limits. Part of the one
validated config; import it from :mod:`mendflow.core.config`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from mendflow.core.config_base import Section

Isolation = Literal["auto", "bwrap", "none"]


class SandboxLimits(Section):
    """Resource limits of every process of the target's code (``setrlimit``, per process).

    ``max_processes`` is enforced by ``RLIMIT_NPROC`` inside bubblewrap's user
    namespace and, when mendflow runs as root (which that limit does not bind), by
    a ``pids`` cgroup when one can be created. ``None`` leaves a limit unset.
    """

    address_space_mb: int | None = Field(
        8192, ge=64, description="virtual memory of one process, MiB (RLIMIT_AS)")
    max_processes: int | None = Field(
        1024, ge=8, description="processes and threads of the sandboxed run (RLIMIT_NPROC / pids)")
    file_size_mb: int | None = Field(
        1024, ge=1, description="largest file one process may write, MiB (RLIMIT_FSIZE)")
    cpu_time_s: int | None = Field(
        3600, ge=1, description="CPU seconds of one process (RLIMIT_CPU); then SIGXCPU/SIGKILL")


class SandboxConfig(Section):
    """How the target's code is isolated from the machine.

    ``auto`` uses bubblewrap when a probe shows it works here and otherwise runs
    unisolated, saying so loudly; with a model fixer (anthropic, openai-compatible,
    or a chain holding one) a mission then refuses to start unless ``isolation``
    is ``none`` explicitly. ``bwrap`` requires bubblewrap; ``none`` never isolates.
    """

    isolation: Isolation = Field(
        "auto", description="auto | bwrap | none: run the target's code under bubblewrap?")
    limits: SandboxLimits = SandboxLimits()
    hide: list[Path] = Field(
        default_factory=list,
        description="more directories the target's code must not see (the user's home, "
        "mendflow's state dir and the repository checkout are always hidden)")
