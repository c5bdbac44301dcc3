"""Fake GitHub REST v3 and GitLab REST v4 servers on loopback, for the real PyGithub and
python-gitlab clients.

They keep pull/merge requests, issues, comments and labels in memory, answer
the endpoints mendflow's delivery uses, and, being :class:`FakeServer`\\ s,
serve scripted faults first (``enqueue(json_reply({...}, 503))``). A test
"merges" a PR with :meth:`FakeGitHub.mark_merged` after it merged the branch in
the bare remote itself; a merge asked through the API calls ``on_merge`` first.
"""

from __future__ import annotations

import itertools
import re
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from tests.fakes.server import FakeServer, RecordedRequest, ScriptedReply, json_reply

NOW = "2026-12-01T12:00:00Z"


class _Forge(FakeServer):
    """Shared state: numbered items (PRs and issues share GitHub's numbering)."""

    def __init__(self, repository: str):
        super().__init__("/")
        self.repository = repository
        self.items: dict[int, dict[str, Any]] = {}
        self.comments: dict[int, list[str]] = {}
        self._numbers = itertools.count(1)
        self._state_lock = threading.Lock()
        self.on_merge: Callable[[dict[str, Any]], None] | None = None
        """Called with the PR when a client merges it (a test merges the branch in its
        bare remote there, as the forge would)."""
        self.respond_with(self._route)

    def matches(self, request: RecordedRequest) -> bool:
        return True

    def _route(self, request: RecordedRequest) -> ScriptedReply:
        path = urlsplit(request.path)
        query = {k: v[0] for k, v in parse_qs(path.query).items()}
        body = request.json if request.raw else {}
        with self._state_lock:
            for pattern, method, handler in self.routes():
                match = re.fullmatch(pattern, unquote(path.path))
                if match and method == request.method:
                    return handler(body, query, *match.groups())
        return json_reply({"message": "Not Found"}, 404)

    def routes(self) -> list[tuple[str, str, Any]]:  # pragma: no cover - subclasses
        raise NotImplementedError

    def pulls(self) -> list[dict[str, Any]]:
        return [x for x in self.items.values() if x.get("_kind") == "pull"]

    def issues(self) -> list[dict[str, Any]]:
        return [x for x in self.items.values() if x.get("_kind") == "issue"]

    @staticmethod
    def public(item: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in item.items() if not k.startswith("_")}


class FakeGitHub(_Forge):
    """``/repos/{owner}/{name}`` with pulls, issues, labels, comments and merge."""

    def routes(self):
        repo = re.escape(f"/repos/{self.repository}")
        return [
            (repo, "GET", self._repo),
            (repo + r"/pulls", "GET", self._list_pulls),
            (repo + r"/pulls", "POST", self._create_pull),
            (repo + r"/pulls/(\d+)", "GET", self._get),
            (repo + r"/pulls/(\d+)", "PATCH", self._edit),
            (repo + r"/pulls/(\d+)/merge", "PUT", self._merge),
            (repo + r"/issues", "GET", self._list_issues),
            (repo + r"/issues", "POST", self._create_issue),
            (repo + r"/issues/(\d+)", "PATCH", self._edit),
            (repo + r"/issues/(\d+)/labels", "POST", self._label),
            (repo + r"/issues/(\d+)/comments", "POST", self._comment),
        ]

    @property
    def base(self) -> str:
        return f"{self.root_url}/repos/{self.repository}"

    def _repo(self, body, query):
        owner, name = self.repository.split("/")
        return json_reply({"id": 1, "name": name, "full_name": self.repository,
                           "owner": {"login": owner}, "url": self.base,
                           "html_url": f"https://github.example/{self.repository}",
                           "default_branch": "main"})

    def _list_pulls(self, body, query):
        state = query.get("state", "open")
        return json_reply([self.public(p) for p in self.pulls()
                           if state == "all" or p["state"] == state])

    def _create_pull(self, body, query):
        if any(p["head"]["ref"] == body["head"] and p["state"] == "open" for p in self.pulls()):
            return json_reply({"message": "Validation Failed", "errors": [
                {"message": f"A pull request already exists for {body['head']}."}]}, 422)
        number = next(self._numbers)
        url = f"{self.base}/pulls/{number}"
        self.items[number] = {
            "_kind": "pull", "id": number, "number": number, "url": url,
            "html_url": f"https://github.example/{self.repository}/pull/{number}",
            "issue_url": f"{self.base}/issues/{number}", "state": "open",
            "title": body["title"], "body": body.get("body", ""), "labels": [],
            "head": {"ref": body["head"], "label": body["head"], "sha": "0" * 40},
            "base": {"ref": body["base"], "label": body["base"], "sha": "0" * 40},
            "created_at": NOW, "updated_at": NOW, "merged_at": None, "merged": False,
            "user": {"login": "mendflow-bot"}}
        return json_reply(self.public(self.items[number]), 201)

    def _get(self, body, query, number):
        item = self.items.get(int(number))
        return json_reply(self.public(item)) if item else json_reply({"message": "Not Found"}, 404)

    def _edit(self, body, query, number):
        item = self.items.get(int(number))
        if item is None:
            return json_reply({"message": "Not Found"}, 404)
        item.update({k: v for k, v in body.items() if k in ("state", "title", "body")})
        return json_reply(self.public(item))

    def _merge(self, body, query, number):
        if self.on_merge is not None:
            self.on_merge(self.public(self.items[int(number)]))
        self.mark_merged(int(number), locked=True)
        return json_reply({"merged": True, "sha": "0" * 40, "message": "merged"})

    def _label(self, body, query, number):
        names = body if isinstance(body, list) else body.get("labels", [])
        item = self.items[int(number)]
        item["labels"] = [*item["labels"], *({"name": n} for n in names)]
        return json_reply(item["labels"])

    def _comment(self, body, query, number):
        self.comments.setdefault(int(number), []).append(body["body"])
        return json_reply({"id": len(self.comments[int(number)]), "body": body["body"]}, 201)

    def _list_issues(self, body, query):
        label = query.get("labels")
        found = [self.public(i) for i in self.issues() if i["state"] == query.get("state", "open")
                 and (not label or label in [x["name"] for x in i["labels"]])]
        return json_reply(found)

    def _create_issue(self, body, query):
        number = next(self._numbers)
        self.items[number] = {
            "_kind": "issue", "id": number, "number": number, "state": "open",
            "url": f"{self.base}/issues/{number}", "title": body["title"],
            "html_url": f"https://github.example/{self.repository}/issues/{number}",
            "body": body.get("body", ""), "labels": [{"name": n} for n in body.get("labels", [])],
            "created_at": NOW, "updated_at": NOW, "pull_request": None}
        return json_reply(self.public(self.items[number]), 201)

    def mark_merged(self, number: int, locked: bool = False) -> None:
        """A human (or full autonomy) merged PR ``number`` in the forge."""
        item = self.items[number]
        item.update({"state": "closed", "merged": True, "merged_at": NOW})


class FakeGitLab(_Forge):
    """``/api/v4/projects/{id}`` with merge requests, notes and issues (project id 7)."""

    def routes(self):
        project = r"/api/v4/projects/(?:7|" + re.escape(self.repository) + ")"
        return [
            (project, "GET", self._project),
            (project + r"/merge_requests", "GET", self._list_mrs),
            (project + r"/merge_requests", "POST", self._create_mr),
            (project + r"/merge_requests/(\d+)", "GET", self._get),
            (project + r"/merge_requests/(\d+)", "PUT", self._update),
            (project + r"/merge_requests/(\d+)/merge", "PUT", self._merge),
            (project + r"/merge_requests/(\d+)/notes", "POST", self._note),
            (project + r"/issues", "GET", self._list_issues),
            (project + r"/issues", "POST", self._create_issue),
            (project + r"/issues/(\d+)", "PUT", self._update),
        ]

    def _project(self, body, query):
        return json_reply({"id": 7, "path_with_namespace": self.repository,
                           "default_branch": "main"})

    def _list_mrs(self, body, query):
        state = query.get("state", "all")
        return json_reply([self.public(m) for m in self.pulls()
                           if state == "all" or m["state"] == state])

    def _create_mr(self, body, query):
        iid = next(self._numbers)
        labels = body.get("labels") or []
        labels = labels.split(",") if isinstance(labels, str) else labels
        self.items[iid] = {
            "_kind": "pull", "id": 100 + iid, "iid": iid, "project_id": 7, "state": "opened",
            "title": body["title"], "description": body.get("description", ""),
            "source_branch": body["source_branch"], "target_branch": body["target_branch"],
            "labels": labels, "created_at": NOW,
            "web_url": f"https://gitlab.example/{self.repository}/-/merge_requests/{iid}"}
        return json_reply(self.public(self.items[iid]), 201)

    def _get(self, body, query, iid):
        item = self.items.get(int(iid))
        return json_reply(self.public(item)) if item else json_reply({"message": "404"}, 404)

    def _update(self, body, query, iid):
        item = self.items[int(iid)]
        event = body.pop("state_event", None)
        if event == "close":
            item["state"] = "closed"
        item.update({k: v for k, v in body.items() if k in ("title", "description")})
        return json_reply(self.public(item))

    def _merge(self, body, query, iid):
        self.items[int(iid)]["state"] = "merged"
        return json_reply(self.public(self.items[int(iid)]))

    def _note(self, body, query, iid):
        self.comments.setdefault(int(iid), []).append(body["body"])
        return json_reply({"id": 1, "body": body["body"]}, 201)

    def _list_issues(self, body, query):
        return json_reply([self.public(i) for i in self.issues() if i["state"] == "opened"])

    def _create_issue(self, body, query):
        iid = next(self._numbers)
        self.items[iid] = {"_kind": "issue", "id": 100 + iid, "iid": iid, "project_id": 7,
                           "state": "opened", "title": body["title"],
                           "description": body.get("description", ""),
                           "labels": [body.get("labels", "")],
                           "web_url": f"https://gitlab.example/{self.repository}/-/issues/{iid}"}
        return json_reply(self.public(self.items[iid]), 201)

    def mark_merged(self, iid: int) -> None:
        self.items[iid]["state"] = "merged"
