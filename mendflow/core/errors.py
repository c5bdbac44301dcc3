"""mendflow's error hierarchy.

Every error mendflow raises on purpose is a :class:`MendflowError`. Each one
names the thing that is wrong (``subject``) and says what to do next
(``hint``), and maps to a process exit code, so that the CLI can print one
clear line instead of a traceback::

    MendflowError                 exit 1
    ├── ConfigError               exit 1   bad YAML, unknown field, wrong value
    ├── RepositoryError           exit 1   not a git repo, bare, empty, no Python
    ├── ToolError                 exit 3   a tool is missing or its output is unreadable
    ├── EnvironmentSetupError     exit 3   the target's environment failed to install
    ├── SandboxError              exit 3   worktree creation or reset failed
    ├── ValidationUnavailable     exit 3   validation could not run at all
    ├── PatchRejected             exit 2   a candidate patch failed a guard or a gate
    ├── LLMError                  exit 1   a model call failed (``retryable`` says if it may pass later)
    ├── ApprovalRejected          exit 2   a human rejected the mission's patches
    ├── DeliveryError             exit 1   approved commits could not reach the target branch
    │   └── ForgeError            exit 1   a forge (GitHub, GitLab) refused or failed a request
    ├── ApprovalError             exit 1   an approve/reject command cannot act on the run
    ├── NotificationFailed        exit 1   a notification block could not send a message
    ├── CheckoutChanged           exit 1   the user's checkout moved during the mission
    ├── MissionInterrupted        exit 130 SIGINT/SIGTERM; the sandbox is consistent
    ├── CrashLoop                 exit 1   a served run kept dying: auto-resume stopped
    ├── MissionLocked             exit 1   another live mission holds the repository's lock
    ├── FleetError                exit 1   fleet.yaml is invalid, or a fleet cannot be submitted
    ├── CloneError                exit 1   a fleet repository's URL cannot be cloned or fetched
    └── EngineUnavailable         exit 1   the Prefect server (or its database) cannot be reached
"""

from __future__ import annotations


class MendflowError(Exception):
    """Base class of every error mendflow raises on purpose.

    Args:
        message: what went wrong, in one sentence.
        subject: the thing at fault (a path, a field, a tool, a patch id).
        hint: what the user should do next.
    """

    exit_code: int = 1

    def __init__(self, message: str, *, subject: str | None = None, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.subject = subject
        self.hint = hint

    def __str__(self) -> str:
        text = self.message
        if self.subject and self.subject not in text:
            text = f"{self.subject}: {text}"
        if self.hint:
            text = f"{text}\n  hint: {self.hint}"
        return text

    def __reduce__(self):  # keep subject/hint across pickling (Prefect persists exceptions)
        return (_rebuild, (type(self), self.message, self.subject, self.hint, self.__dict__))


def _rebuild(cls, message, subject, hint, state):
    obj = cls.__new__(cls)
    Exception.__init__(obj, message)
    obj.__dict__.update(state)
    obj.message, obj.subject, obj.hint = message, subject, hint
    return obj


class ConfigError(MendflowError):
    """The configuration file or a command-line option is invalid."""


class RepositoryError(MendflowError):
    """The target is not a usable git repository of Python code."""


class ToolError(MendflowError):
    """An analysis tool (pytest, coverage, ruff, mypy, bandit, git) is missing,
    crashed, or produced output that cannot be parsed."""

    exit_code = 3


class EnvironmentSetupError(MendflowError):
    """The target repository's Python environment could not be prepared.

    ``output_tail`` holds the last lines of the failing install's output.
    """

    exit_code = 3

    def __init__(self, message: str, *, output_tail: str = "", **kwargs):
        super().__init__(message, **kwargs)
        self.output_tail = output_tail

    def __str__(self) -> str:
        base = super().__str__()
        return f"{base}\n--- install output (tail) ---\n{self.output_tail}" if self.output_tail else base


class SandboxError(MendflowError):
    """The isolated sandbox (a git worktree) could not be created, reset or used."""

    exit_code = 3


class ValidationUnavailable(MendflowError):
    """Validation could not run (for example the baseline test run timed out)."""

    exit_code = 3


class PatchRejected(MendflowError):
    """A candidate patch was refused by a guard or a validation gate.

    ``reason`` is a short machine-readable code (``apply-failed``,
    ``path-escape``, ``denylisted``, ``syntax``, ``regression`` …).
    """

    exit_code = 2

    def __init__(self, message: str, *, reason: str, **kwargs):
        super().__init__(message, **kwargs)
        self.reason = reason


class LLMError(MendflowError):
    """A call to a language model failed.

    Attributes:
        retryable: True for transient faults (HTTP 429, 5xx, timeouts,
            connection errors) that a later attempt may survive.
        retry_after_s: the server's ``retry-after`` in seconds, already capped, or None.
        status_code: the HTTP status, or None for a connection-level fault.
        auth: True when the key was refused (401/403): the fixer cannot work at all.
    """

    def __init__(self, message: str, *, retryable: bool = False,
                 retry_after_s: float | None = None, status_code: int | None = None,
                 auth: bool = False, **kwargs):
        super().__init__(message, **kwargs)
        self.retryable = retryable
        self.retry_after_s = retry_after_s
        self.status_code = status_code
        self.auth = auth


class ApprovalRejected(MendflowError):
    """A human rejected (or did not approve in time) the mission's patches."""

    exit_code = 2


class DeliveryError(MendflowError):
    """Approved commits could not be delivered to the target branch; it was left untouched.

    ``reason`` is a short code: ``conflict``, ``target-moved``, ``dirty-checkout``,
    ``no-target``, ``push-failed`` or ``git``.
    """

    def __init__(self, message: str, *, reason: str, **kwargs):
        super().__init__(message, **kwargs)
        self.reason = reason


class ForgeError(DeliveryError):
    """A forge API request failed: nothing was half-done, the cycle records it and can resume.

    ``reason`` is ``auth`` (401), ``forbidden`` (403: token without the scope,
    protected branch), ``not-found`` (404: the repository vanished, or a token
    that may not see it), ``invalid`` (422), ``unavailable`` (5xx), ``timeout``
    or ``no-token``; ``status`` is the HTTP status, if any; ``retryable`` says
    whether the next cycle may succeed unchanged.
    """

    def __init__(self, message: str, *, reason: str, status: int | None = None,
                 retryable: bool = False, **kwargs):
        super().__init__(message, reason=reason, **kwargs)
        self.status = status
        self.retryable = retryable


class ApprovalError(MendflowError):
    """An approval command cannot act: unknown run, run not waiting, input refused."""


class NotificationFailed(MendflowError):
    """A Prefect notification block could not deliver a message."""


class CheckoutChanged(MendflowError):
    """The user's working tree, index or branches differ from before the mission."""


class MissionInterrupted(MendflowError):
    """The mission was interrupted by SIGINT or SIGTERM; it can be resumed."""

    exit_code = 130


class CrashLoop(MendflowError):
    """A served flow run was marked Crashed and rescheduled more often than the config allows.

    Its process keeps dying (out of memory, a killed host, a step that hangs
    the interpreter); auto-resume stops so that it does not loop forever.
    """


class MissionLocked(MendflowError):
    """Another live mendflow process runs a mission on the same repository.

    Attributes:
        holder: the :class:`mendflow.infra.lock.LockInfo` of the running mission
            (None when the lock file could not be read).
    """

    def __init__(self, message: str, *, holder: object = None, **kwargs):
        super().__init__(message, **kwargs)
        self.holder = holder


class FleetError(MendflowError):
    """``fleet.yaml`` is invalid (the message names the field), or the fleet cannot be submitted."""


class CloneError(RepositoryError):
    """A repository's git URL cannot be cloned, fetched or pushed to (the message carries git's
    own words)."""


class EngineUnavailable(MendflowError):
    """The Prefect server is unreachable, or answers that its database is (HTTP 5xx).

    Shared state (concurrency limits, the mission registry, fleets) lives there.
    """
