"""The post-merge watch: which commit made a test fail (``git bisect run``), and whose it is.

The bisect runs in a temporary detached worktree under the state directory,
with a scrubbed environment (no secrets), and is killed with its process group
after a timeout. Each step overlays the failing tests' files from the new tip (a
test a human added after the culprit must still be run against the older
commits), runs them, and restores the tree. The step's git work is mendflow's;
the tests are the repository's code (code mendflow may have delivered), so they
run with the target's interpreter under its isolation: bubblewrap, no network,
the machine read-only but for the worktree (:func:`mendflow.infra.isolation.bwrap_argv`).
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from mendflow.core.learning import LandedCommit
from mendflow.core.models import TargetEnv
from mendflow.infra.gitops import run_git
from mendflow.infra.isolation import bwrap_argv, interpreter_dirs
from mendflow.infra.layout import tool_state_path
from mendflow.infra.runner import run_process, sandbox_environ
from mendflow.tasks.approve.build import git_outcome

MENDFLOW_TRAILER = re.compile(r"^Mendflow-(Patch|Revert|Mission): ", re.MULTILINE)

STEP = r'''
import json, subprocess, sys
command, bad, files = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3].split("\0")
added = []
for name in files:
    data = subprocess.run(["git", "show", f"{bad}:{name}"], capture_output=True).stdout
    try:
        with open(name, "rb") as handle:
            existed = True
    except OSError:
        existed = False
        added.append(name)
    with open(name, "wb") as handle:
        handle.write(data)
code = subprocess.call(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
subprocess.call(["git", "checkout", "-q", "--", "."])
for name in added:
    subprocess.call(["rm", "-f", name])
sys.exit(0 if code == 0 else 1 if code in (1, 2) else 125)  # 2: collection error
'''


def first_bad_commit(root: Path, good: str, bad: str, tests: Sequence[str],
                     target_env: TargetEnv, timeout_s: float, work_parent: Path) -> str | None:
    """Find the first commit of ``good..bad`` at which ``tests`` fail (``git bisect run``).

    Args:
        root: the repository.
        good: the tip the previous cycle saw (the tests passed there).
        bad: the new tip (they fail).
        tests: pytest node ids.
        target_env: the target's interpreter (runs pytest) and its isolation (each
            step's tests run under it: bubblewrap unless ``sandbox.isolation: none``).
        timeout_s: seconds for the whole bisect; its process group is killed after.
        work_parent: where the temporary worktree goes.

    Returns:
        The first bad commit's sha, or None when bisect could not tell (every
        step skipped, a timeout, or ``good`` is not an ancestor of ``bad``).
    """
    if git_outcome(root, "merge-base", "--is-ancestor", good, bad)[0] != 0:
        return None
    work_parent.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="bisect-", dir=work_parent))
    step = workdir.with_suffix(".step.py")
    step.write_text(STEP, encoding="utf-8")
    shutil.rmtree(workdir)
    run_git(root, "worktree", "add", "-q", "--detach", str(workdir), bad)
    files = sorted({t.split("::", 1)[0] for t in tests})
    try:
        run_git(workdir, "bisect", "start", bad, good)
        command = step_command(target_env, workdir, tests)
        result = run_process(["git", "bisect", "run", sys.executable, str(step),
                              json.dumps(command), bad, "\0".join(files)], cwd=workdir,
                             timeout_s=timeout_s, env=sandbox_environ())
        match = re.search(r"^([0-9a-f]{40}) is the first bad commit", result.stdout, re.MULTILINE)
        return match.group(1) if match and not result.timed_out else None
    finally:
        run_git(workdir, "bisect", "reset", "-q", check=False)
        run_git(root, "worktree", "remove", "--force", str(workdir), check=False)
        shutil.rmtree(workdir, ignore_errors=True)
        shutil.rmtree(tool_state_path(workdir), ignore_errors=True)
        step.unlink(missing_ok=True)
        run_git(root, "worktree", "prune", check=False)


def step_command(target_env: TargetEnv, workdir: Path, tests: Sequence[str]) -> list[str]:
    """The command one bisect step runs: the tests, wrapped in bubblewrap when isolated.

    Returns:
        ``[python, -m, pytest, ...]``, or ``bwrap ... -- prlimit ... -- python -m pytest ...``
        writing only to the bisect worktree and its tool state (private HOME, caches).
    """
    argv = [str(target_env.python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x",
            *tests]
    isolation = target_env.isolation
    if isolation.backend == "none":
        return argv
    state = tool_state_path(workdir)
    (state / "home").mkdir(parents=True, exist_ok=True)
    readable = tuple(dict.fromkeys(interpreter_dirs(Path(target_env.python))))
    return bwrap_argv(["env", f"HOME={state / 'home'}", *argv], isolation, worktree=workdir,
                      writable=(state,), readable=readable)


def delivered_by_mendflow(root: Path, commit: str) -> tuple[bool, str]:
    """``(is mendflow's, author)``: a commit carrying a ``Mendflow-Patch`` / ``-Revert`` trailer."""
    message = run_git(root, "log", "-1", "--format=%B", commit)
    author = run_git(root, "log", "-1", "--format=%an <%ae>", commit).strip()
    return bool(MENDFLOW_TRAILER.search(message)), author


REVERTS = re.compile(r"^This reverts commit ([0-9a-f]{7,40})", re.MULTILINE)


def landed_commits(root: Path, previous_tip: str, tip: str) -> list[LandedCommit]:
    """The commits that reached the target branch in ``previous_tip..tip``: mendflow's
    patches (``Mendflow-Patch`` / ``Mendflow-Mission`` trailers, which survive a squash or a
    rebase of the PR) and reverts (``Mendflow-Revert: <sha>`` or git's ``This reverts commit
    <sha>``), oldest first. Other commits are left out.

    Args:
        root: the repository.
        previous_tip: the tip the previous cycle saw.
        tip: the new tip.

    Returns:
        :class:`~mendflow.core.learning.LandedCommit` items; empty when ``previous_tip``
        is not an ancestor of ``tip`` (a force-push: nothing can be said).
    """
    if git_outcome(root, "merge-base", "--is-ancestor", previous_tip, tip)[0] != 0:
        return []
    fmt = ("%H%x00%(trailers:key=Mendflow-Patch,valueonly,separator=%x2c)%x00"
           "%(trailers:key=Mendflow-Mission,valueonly,separator=%x2c)%x00"
           "%(trailers:key=Mendflow-Revert,valueonly,separator=%x2c)%x00%B%x1e")
    out = run_git(root, "log", "--reverse", f"--format={fmt}", f"{previous_tip}..{tip}")
    landed = []
    for entry in out.split("\x1e"):
        parts = entry.strip().split("\0")
        if len(parts) != 5:
            continue
        sha, patch, mission, revert, body = (p.strip() for p in parts)
        reverted = revert or next(iter(REVERTS.findall(body)), "")
        if patch or reverted:
            landed.append(LandedCommit(commit=sha, patch_id=patch or None,
                                       mission_id=mission or None, reverts=reverted or None))
    return landed


def with_trailers(root: Path, commits: Sequence[LandedCommit]) -> list[LandedCommit]:
    """Fill in the patch and mission ids of commits known only by sha (a revert that names
    a commit outside the watched range) from that commit's trailers, when it exists here."""
    out = []
    for commit in commits:
        if commit.patch_id is None:
            fmt = ("%(trailers:key=Mendflow-Patch,valueonly,separator=%x2c)%x00"
                   "%(trailers:key=Mendflow-Mission,valueonly,separator=%x2c)")
            status, text, _ = git_outcome(root, "log", "-1", f"--format={fmt}", commit.commit)
            patch, _, mission = text.strip().partition("\0")
            if status == 0 and patch.strip():
                commit = commit.model_copy(update={"patch_id": patch.strip(),
                                                   "mission_id": mission.strip() or None})
        out.append(commit)
    return out
