"""Pull requests on GitHub (PyGithub) and merge requests on GitLab (python-gitlab).

One small interface, :class:`Forge`, for what the evolution loop does on a forge:
list its own open (and recently finished) pull requests, open one, close one
with a comment, merge one (full autonomy), and keep one tracking issue (the
dashboard). Every forge failure becomes a :class:`~mendflow.core.errors.ForgeError`
with a reason code (see :func:`forge_error`); the clients' own retries are off
(Prefect's task retries are the retry layer).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Literal, Protocol, TypeVar

from pydantic import SecretStr

from mendflow.core.config import DeliveryConfig
from mendflow.core.errors import ForgeError
from mendflow.core.models import Contract

PullState = Literal["open", "closed", "merged"]
T = TypeVar("T")


class PullInfo(Contract):
    """One pull request (GitHub) or merge request (GitLab) as mendflow sees it."""

    number: int
    url: str
    head: str
    base: str
    state: PullState
    title: str
    body: str = ""
    labels: tuple[str, ...] = ()
    created_at: str = ""


class Forge(Protocol):
    """What the evolution loop needs from a forge; every method raises ForgeError on failure."""

    repository: str

    def list_pulls(self, label: str, state: Literal["open", "all"]) -> list[PullInfo]: ...

    def open_pull(self, head: str, base: str, title: str, body: str,
                  labels: Sequence[str]) -> PullInfo: ...

    def get_pull(self, number: int) -> PullInfo: ...

    def close_pull(self, number: int, comment: str) -> None: ...

    def merge_pull(self, number: int) -> None: ...

    def upsert_issue(self, title: str, body: str, label: str) -> str: ...


def forge_error(status: int | None, what: str, repository: str, detail: str = "") -> ForgeError:
    """The typed error of a forge answer (``status`` None = timeout or no connection).

    Returns:
        A ForgeError whose reason is auth | forbidden | not-found | invalid |
        unavailable | timeout | http, with a hint on what to do.
    """
    tail = f": {detail[:300]}" if detail else ""
    if status is None:
        return ForgeError(f"{what}: the forge did not answer{tail}", reason="timeout",
                          retryable=True, subject=repository,
                          hint="check delivery.forge_url and the network; the next cycle retries")
    table = {
        401: ("auth", False, "the token was refused: renew it (delivery.token_block or "
                             "GITHUB_TOKEN / GITLAB_TOKEN)"),
        403: ("forbidden", False, "the token lacks the scope (repo / api), or the branch is "
                                  "protected: grant it, or lift the protection for mendflow's "
                                  "branches"),
        404: ("not-found", False, "the repository is gone or the token may not see it: check "
                                  "delivery.repository"),
        422: ("invalid", False, "the forge refused the request's content (an existing PR for "
                                "this branch, an unknown base branch)"),
    }
    reason, retryable, hint = table.get(status, ("unavailable" if status >= 500 else "http",
                                                 status >= 500 or status == 429,
                                                 "the forge is failing; the next cycle retries"))
    return ForgeError(f"{what}: HTTP {status}{tail}", reason=reason, status=status,
                      retryable=retryable, subject=repository, hint=hint)


def body_marker(finding_ids: Sequence[str]) -> str:
    """The hidden line of a PR body that names the findings it fixes (for deduplication)."""
    return f"<!-- mendflow:findings {','.join(sorted(finding_ids))} -->"


_MARKER = re.compile(r"<!-- mendflow:findings ([^ ]*) -->")


def marked_findings(body: str) -> frozenset[str]:
    """The finding ids a PR body's marker names (empty when it has none)."""
    match = _MARKER.search(body or "")
    return frozenset(x for x in match.group(1).split(",") if x) if match else frozenset()


# --- GitHub ------------------------------------------------------------------------------


class GitHubForge:
    """GitHub or GitHub Enterprise through PyGithub (REST v3 at any ``base_url``)."""

    def __init__(self, repository: str, token: SecretStr, base_url: str | None, timeout_s: float):
        from github import Auth, Github

        self.repository = repository
        self._gh = Github(base_url=(base_url or "https://api.github.com").rstrip("/"),
                          auth=Auth.Token(token.get_secret_value()), timeout=int(timeout_s),
                          retry=None)
        self._repo = None

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        import requests
        from github import GithubException

        try:
            yield
        except GithubException as err:
            message = err.data.get("message", "") if isinstance(err.data, dict) else ""
            raise forge_error(err.status, what, self.repository, str(message)) from None
        except requests.RequestException as err:
            raise forge_error(None, what, self.repository, type(err).__name__) from None

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        with self._errors(what):
            return fn()
        raise AssertionError("unreachable")  # pragma: no cover

    def repo(self):
        if self._repo is None:
            self._repo = self._call("open the repository", lambda: self._gh.get_repo(
                self.repository))
        return self._repo

    def list_pulls(self, label: str, state: Literal["open", "all"]) -> list[PullInfo]:
        repo = self.repo()
        pulls = self._call("list pull requests", lambda: list(repo.get_pulls(state=state)))
        return [p for p in (self._info(x) for x in pulls) if label in p.labels]

    def open_pull(self, head: str, base: str, title: str, body: str,
                  labels: Sequence[str]) -> PullInfo:
        repo = self.repo()
        pull = self._call("open a pull request", lambda: repo.create_pull(
            title=title, body=body, head=head, base=base))
        if labels:
            self._call("label the pull request", lambda: pull.add_to_labels(*labels))
        return self._info(pull).model_copy(update={"labels": tuple(labels)})

    def get_pull(self, number: int) -> PullInfo:
        repo = self.repo()
        return self._info(self._call("read a pull request", lambda: repo.get_pull(number)))

    def close_pull(self, number: int, comment: str) -> None:
        repo = self.repo()
        pull = self._call("read a pull request", lambda: repo.get_pull(number))
        self._call("comment on a pull request", lambda: pull.create_issue_comment(comment))
        self._call("close a pull request", lambda: pull.edit(state="closed"))

    def merge_pull(self, number: int) -> None:
        repo = self.repo()
        pull = self._call("read a pull request", lambda: repo.get_pull(number))
        self._call("merge a pull request", lambda: pull.merge(merge_method="merge"))

    def upsert_issue(self, title: str, body: str, label: str) -> str:
        repo = self.repo()
        issues = self._call("list issues", lambda: list(repo.get_issues(state="open",
                                                                         labels=[label])))
        mine = [i for i in issues if i.title == title and i.pull_request is None]
        if mine:
            self._call("update the dashboard", lambda: mine[0].edit(body=body))
            return mine[0].html_url
        issue = self._call("create the dashboard", lambda: repo.create_issue(
            title=title, body=body, labels=[label]))
        return issue.html_url

    @staticmethod
    def _info(pull) -> PullInfo:
        state: PullState = "merged" if pull.merged_at else pull.state
        return PullInfo(number=pull.number, url=pull.html_url or "", head=pull.head.ref,
                        base=pull.base.ref, state=state, title=pull.title or "",
                        body=pull.body or "", labels=tuple(x.name for x in pull.labels),
                        created_at=pull.created_at.isoformat() if pull.created_at else "")


# --- GitLab ------------------------------------------------------------------------------


class GitLabForge:
    """GitLab (gitlab.com or self-managed) through python-gitlab: merge requests."""

    def __init__(self, repository: str, token: SecretStr, base_url: str | None, timeout_s: float):
        import gitlab

        self.repository = repository
        self._gl = gitlab.Gitlab((base_url or "https://gitlab.com").rstrip("/"),
                                 private_token=token.get_secret_value(), timeout=timeout_s,
                                 retry_transient_errors=False)
        self._project = None

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        import requests
        from gitlab.exceptions import GitlabError

        try:
            return fn()
        except GitlabError as err:
            raise forge_error(err.response_code, what, self.repository,
                              str(err.error_message)) from None
        except requests.RequestException as err:
            raise forge_error(None, what, self.repository, type(err).__name__) from None

    def project(self):
        if self._project is None:
            self._project = self._call("open the project", lambda: self._gl.projects.get(
                self.repository))
        return self._project

    def list_pulls(self, label: str, state: Literal["open", "all"]) -> list[PullInfo]:
        project = self.project()
        wanted = "opened" if state == "open" else "all"
        mrs = self._call("list merge requests", lambda: project.mergerequests.list(
            state=wanted, labels=[label], get_all=True))
        return [self._info(m) for m in mrs]

    def open_pull(self, head: str, base: str, title: str, body: str,
                  labels: Sequence[str]) -> PullInfo:
        project = self.project()
        mr = self._call("open a merge request", lambda: project.mergerequests.create({
            "source_branch": head, "target_branch": base, "title": title,
            "description": body, "labels": ",".join(labels)}))
        return self._info(mr)

    def get_pull(self, number: int) -> PullInfo:
        project = self.project()
        return self._info(self._call("read a merge request",
                                     lambda: project.mergerequests.get(number)))

    def close_pull(self, number: int, comment: str) -> None:
        project = self.project()
        mr = self._call("read a merge request", lambda: project.mergerequests.get(number))
        self._call("comment on a merge request", lambda: mr.notes.create({"body": comment}))
        mr.state_event = "close"
        self._call("close a merge request", mr.save)

    def merge_pull(self, number: int) -> None:
        project = self.project()
        mr = self._call("read a merge request", lambda: project.mergerequests.get(number))
        self._call("merge a merge request", mr.merge)

    def upsert_issue(self, title: str, body: str, label: str) -> str:
        project = self.project()
        issues = self._call("list issues", lambda: project.issues.list(
            state="opened", labels=[label], get_all=True))
        mine = [i for i in issues if i.title == title]
        if mine:
            mine[0].description = body
            self._call("update the dashboard", mine[0].save)
            return str(mine[0].web_url)
        issue = self._call("create the dashboard", lambda: project.issues.create(
            {"title": title, "description": body, "labels": label}))
        return str(issue.web_url)

    @staticmethod
    def _info(mr) -> PullInfo:
        state: PullState = {"opened": "open", "merged": "merged"}.get(mr.state, "closed")
        return PullInfo(number=int(mr.iid), url=str(getattr(mr, "web_url", "")),
                        head=mr.source_branch, base=mr.target_branch, state=state,
                        title=mr.title or "", body=mr.description or "",
                        labels=tuple(mr.labels or ()), created_at=str(mr.created_at or ""))


def repository_from_url(url: str) -> str | None:
    """``owner/name`` from a remote URL (https://host/o/n.git, git@host:o/n.git), else None
    (a local path or file:// URL names no forge repository)."""
    from urllib.parse import urlsplit

    url = url.strip()
    if "://" in url:
        parts = urlsplit(url)
        if parts.scheme == "file" or not parts.hostname:
            return None
        path = parts.path
    elif re.match(r"^[\w.-]+@[\w.-]+:", url):
        path = url.split(":", 1)[1]
    else:
        return None
    path = path.strip("/").removesuffix(".git")
    return path if "/" in path else None


def open_forge(config: DeliveryConfig, token: SecretStr, remote_url: str | None) -> Forge:
    """The forge client of the ``delivery`` section.

    Raises:
        ForgeError: reason ``invalid``: no repository configured and none derivable.
    """
    repository = config.repository or (repository_from_url(remote_url) if remote_url else None)
    if not repository:
        raise ForgeError("no forge repository: set delivery.repository (owner/name)",
                         reason="invalid", subject="delivery.repository",
                         hint="the remote's URL does not name one")
    kind = GitHubForge if config.forge == "github" else GitLabForge
    return kind(repository, token, config.forge_url, config.timeout_s)
