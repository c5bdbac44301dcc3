"""The forge clients (real PyGithub / python-gitlab) against the suite's fake servers."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from mendflow.core.config import DeliveryConfig
from mendflow.core.errors import ForgeError
from mendflow.tasks.deliver.forge import (
    GitHubForge,
    GitLabForge,
    body_marker,
    marked_findings,
    open_forge,
    repository_from_url,
)
from tests.fakes.fake_forges import FakeGitHub, FakeGitLab
from tests.fakes.server import ScriptedReply, json_reply

TOKEN = SecretStr("t0ken-secret")


@pytest.fixture(scope="module")
def github():
    with FakeGitHub("acme/widgets") as server:
        yield server


@pytest.fixture(scope="module")
def gitlab_server():
    with FakeGitLab("acme/widgets") as server:
        yield server


def test_github_pull_request_lifecycle(github):
    forge = GitHubForge("acme/widgets", TOKEN, github.root_url, 5)
    body = "report\n" + body_marker(["f2", "f1"])
    pull = forge.open_pull("mendflow/evolve-a", "main", "fix it", body, ["mendflow", "bot"])
    assert pull.state == "open" and pull.labels == ("mendflow", "bot")
    assert [p.number for p in forge.list_pulls("mendflow", "open")] == [pull.number]
    assert marked_findings(forge.get_pull(pull.number).body) == {"f1", "f2"}
    forge.close_pull(pull.number, "gone")
    assert forge.get_pull(pull.number).state == "closed"
    assert github.comments[pull.number] == ["gone"]
    assert forge.list_pulls("mendflow", "open") == []
    second = forge.open_pull("mendflow/evolve-b", "main", "more", "x", ["mendflow"])
    forge.merge_pull(second.number)
    assert forge.get_pull(second.number).state == "merged"
    url = forge.upsert_issue("mendflow dashboard", "one", "mendflow")
    assert forge.upsert_issue("mendflow dashboard", "two", "mendflow") == url
    issues = [i for i in github.issues() if i["title"] == "mendflow dashboard"]
    assert len(issues) == 1 and issues[0]["body"] == "two"
    token_headers = {r.headers.get("authorization") for r in github.requests}
    assert token_headers == {"token t0ken-secret"}


@pytest.mark.parametrize(("status", "reason", "retryable"), [
    (401, "auth", False), (403, "forbidden", False), (404, "not-found", False),
    (422, "invalid", False), (502, "unavailable", True)])
def test_github_faults_are_typed(github, status, reason, retryable):
    forge = GitHubForge("acme/widgets", TOKEN, github.root_url, 5)
    github.enqueue(json_reply({"message": "nope"}, status))
    with pytest.raises(ForgeError) as caught:
        forge.list_pulls("mendflow", "open")
    assert (caught.value.reason, caught.value.status, caught.value.retryable) == \
        (reason, status, retryable)
    assert "t0ken-secret" not in str(caught.value)


def test_github_timeout_is_typed(github):
    forge = GitHubForge("acme/widgets", TOKEN, github.root_url, 1)
    github.enqueue(ScriptedReply(delay_s=2.5))
    with pytest.raises(ForgeError) as caught:
        forge.list_pulls("mendflow", "open")
    assert caught.value.reason == "timeout" and caught.value.retryable


def test_gitlab_merge_request_lifecycle(gitlab_server):
    forge = GitLabForge("acme/widgets", TOKEN, gitlab_server.root_url, 5)
    mr = forge.open_pull("mendflow/evolve-a", "main", "fix", body_marker(["f1"]), ["mendflow"])
    assert mr.state == "open" and mr.head == "mendflow/evolve-a"
    assert [m.number for m in forge.list_pulls("mendflow", "open")] == [mr.number]
    forge.close_pull(mr.number, "stale")
    assert forge.get_pull(mr.number).state == "closed"
    assert gitlab_server.comments[mr.number] == ["stale"]
    other = forge.open_pull("mendflow/evolve-b", "main", "fix", "", ["mendflow"])
    forge.merge_pull(other.number)
    assert forge.get_pull(other.number).state == "merged"
    assert forge.upsert_issue("dash", "a", "mendflow") == forge.upsert_issue("dash", "b",
                                                                             "mendflow")
    assert {r.headers.get("private-token") for r in gitlab_server.requests} == {"t0ken-secret"}
    gitlab_server.enqueue(json_reply({"message": "401 Unauthorized"}, 401))
    with pytest.raises(ForgeError) as caught:
        GitLabForge("acme/widgets", TOKEN, gitlab_server.root_url, 5).project()
    assert caught.value.reason == "auth"


def test_repository_is_derived_from_the_remote_url():
    assert repository_from_url("https://github.com/acme/widgets.git") == "acme/widgets"
    assert repository_from_url("git@github.com:acme/widgets.git") == "acme/widgets"
    assert repository_from_url("https://gitlab.example/group/sub/proj") == "group/sub/proj"
    with pytest.raises(ForgeError, match="delivery.repository"):
        open_forge(DeliveryConfig(), TOKEN, "/srv/git/widgets.git")
