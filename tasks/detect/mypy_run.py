"""Type-check the worktree with mendflow's own mypy and normalize its JSON lines.

mypy runs as ``sys.executable -m mypy -O json`` with
``--python-executable <target python>`` so that it sees the target's
installed dependencies, and with its cache beside the worktree. The
repository's mypy config (mypy.ini, .mypy.ini, pyproject.toml [tool.mypy],
setup.cfg [mypy]) is read by mypy itself; when that config names what to
check (``files``/``packages``/``modules``) no targets are passed, otherwise
the package directories are discovered (src layout or flat layout).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from mendflow.core.config import ToolsConfig
from mendflow.core.findings import SourceIndex, disambiguate, make_finding
from mendflow.core.models import Finding, Sandbox, TargetEnv, ToolResult
from mendflow.infra.isolation import run_isolated
from mendflow.infra.tool_cache import save_cache, seed_cache, shared_cache_dir
from mendflow.tasks.detect.common import (
    NOT_LIBRARY_FILES,
    NOT_LIBRARY_TOP_DIRS,
    TEST_DIR_NAMES,
    failed_result,
    is_test_path,
    load_pyproject,
    read_ini,
    relative_posix,
    tool_environ,
    tool_home_dir,
    tool_table,
)

TARGET_KEYS = ("files", "packages", "modules")
LOW_CODES = frozenset({"import-not-found", "import-untyped"})
SKIP_DIRS = NOT_LIBRARY_TOP_DIRS | TEST_DIR_NAMES | {"site-packages", "node_modules",
                                                     "__pycache__"}


def mypy_config_sets_targets(root: Path) -> bool:
    """Does the mypy config mypy would read set ``files``, ``packages`` or ``modules``?

    mypy reads the first of ``mypy.ini``, ``.mypy.ini``, ``pyproject.toml`` (with
    [tool.mypy]) and ``setup.cfg`` (with [mypy]); this checks the same one.

    Args:
        root: the worktree root (mypy's working directory).

    Returns:
        True if that config names what to check.
    """
    for name in ("mypy.ini", ".mypy.ini"):
        if (root / name).is_file():
            parser = read_ini(root / name)
            return bool(parser and parser.has_section("mypy") and any(
                parser.get("mypy", k, fallback="").strip() for k in TARGET_KEYS))
    table = tool_table(load_pyproject(root), "mypy")
    if table is not None:
        return any(table.get(k) for k in TARGET_KEYS)
    parser = read_ini(root / "setup.cfg")
    if parser is not None and parser.has_section("mypy"):
        return any(parser.get("mypy", k, fallback="").strip() for k in TARGET_KEYS)
    return False


def _is_candidate_dir(path: Path) -> bool:
    name = path.name
    return (path.is_dir() and not name.startswith((".", "_")) and name not in SKIP_DIRS
            and not name.endswith(".egg-info") and not (path / "pyvenv.cfg").exists())


def discover_mypy_targets(root: Path) -> list[str]:
    """Find what to type-check when the repository's mypy config does not say.

    Args:
        root: the worktree root.

    Returns:
        POSIX paths relative to ``root``: the directories under ``src/`` that hold
        Python files (src layout), else the top-level packages (directories with
        ``__init__.py``) and top-level modules; tests, docs, build output, hidden
        directories, venvs and helper scripts (setup.py ...) are left out.
        Empty if there is nothing to check.
    """
    src = root / "src"
    if src.is_dir():
        found = sorted(f"src/{p.name}" for p in src.iterdir()
                       if _is_candidate_dir(p) and any(p.rglob("*.py")))
        found += sorted(f"src/{p.name}" for p in src.glob("*.py") if p.is_file())
        if found:
            return found
    targets = [p.name for p in sorted(root.iterdir())
               if _is_candidate_dir(p) and (p / "__init__.py").is_file()]
    targets += [p.name for p in sorted(root.glob("*.py"))
                if p.is_file() and p.name not in NOT_LIBRARY_FILES and not is_test_path(p.name)
                and p.stem.isidentifier()]
    return targets


def mypy_command(sandbox: Sandbox, env: TargetEnv, tools: ToolsConfig,
                 targets: list[str]) -> list[str]:
    """Build ``python -m mypy -O json ...`` (mendflow's interpreter, target's packages)."""
    cache = tool_home_dir(sandbox) / "mypy-cache"
    return [sys.executable, "-m", "mypy", "-O", "json", "--cache-dir", str(cache),
            "--hide-error-context", "--no-error-summary", "--show-column-numbers",
            "--python-executable", str(env.python), *tools.mypy.args, *targets]


def measure_mypy(sandbox: Sandbox, env: TargetEnv, tools: ToolsConfig,
                 share_cache: bool = False) -> ToolResult:
    """Type-check the worktree with mypy.

    Args:
        sandbox: the worktree to check.
        env: the target environment (its site-packages are visible to mypy).
        tools: the ``tools`` config (``mypy.args``, ``mypy.timeout_s`` seconds).
        share_cache: a baseline's run: start from the repository's shared mypy cache (the
            last baseline's) and leave this run's cache there for the next mission
            (:mod:`mendflow.infra.tool_cache`). A later mission's cold check of an
            unchanged package becomes a cache read (toolz: 16 s to 0.7 s).

    Returns:
        A ``mypy`` :class:`ToolResult`; ``ok=True`` with no findings when there is
        nothing to check; ``ok=False`` (with ``error``) when mypy crashed, timed out
        or printed no readable JSON for its errors.

    Raises:
        ToolError: mypy is not installed beside mendflow.
    """
    if not tools.mypy.enabled:
        return ToolResult(tool="mypy", ok=True)
    configured = mypy_config_sets_targets(sandbox.path)
    targets = [] if configured else discover_mypy_targets(sandbox.path)
    if not configured and not targets:
        return ToolResult(tool="mypy", ok=True)
    cache = tool_home_dir(sandbox) / "mypy-cache"
    shared = shared_cache_dir(sandbox.path, sandbox.repo_root, "mypy")
    # a cache this sandbox already holds (a resumed mission's) may come from a validation's
    # run, which model-written code could have touched: it is neither replaced nor shared
    share_cache = share_cache and not (cache.is_dir() and any(cache.iterdir()))
    if share_cache:
        seed_cache(shared, cache)
    # isolated too: a mypy plugin named by the repository's config is the target's code.
    # MYPY_NUM_WORKERS=0 overrides the config's `num_workers`: mypy 2.4's worker processes
    # crashed ("Failed to establish connection with worker", exit 2, no findings) on
    # humanize 4.17.0's `num_workers = 4`; mendflow already runs the tools side by side
    proc = run_isolated(mypy_command(sandbox, env, tools, targets), target_env=env,
                        worktree=sandbox.path, timeout_s=tools.mypy.timeout_s,
                        env=tool_environ(sandbox, {"MYPY_NUM_WORKERS": "0"}))
    if proc.timed_out:
        return failed_result("mypy", proc, f"mypy exceeded {tools.mypy.timeout_s:g} s")
    records = _json_lines(proc.stdout)
    if proc.returncode not in (0, 1, 2) or (proc.returncode != 0 and not records):
        return failed_result("mypy", proc, f"mypy crashed or failed (exit {proc.returncode})")
    if share_cache:
        save_cache(cache, shared)
    findings = parse_mypy(records, sandbox.path)
    return ToolResult(tool="mypy", findings=tuple(findings), command=proc.args,
                      exit_code=proc.returncode, duration_s=proc.duration_s)


def _json_lines(text: str) -> list[dict[str, Any]]:
    records = []
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and "file" in record and "message" in record:
            records.append(record)
    return records


def parse_mypy(records: list[dict[str, Any]], root: Path) -> list[Finding]:
    """Turn mypy's JSON records (one per output line) into findings.

    A ``note`` record is appended to the ``detail`` of the error just before it
    in the same file; a note with no such error (``reveal_type`` ...) is dropped.

    Args:
        records: parsed JSON objects with file, line, column (0-based), message,
            hint, code and severity.
        root: the worktree root; records for files outside it are left out.

    Returns:
        Findings with unique ids.
    """
    index = SourceIndex(root)
    pending: list[tuple[dict[str, Any], list[str]]] = []
    for record in records:
        if record.get("severity") == "note":
            if pending and pending[-1][0].get("file") == record.get("file"):
                pending[-1][1].append(str(record.get("message", "")))
            continue
        notes = [str(record["hint"])] if record.get("hint") else []
        pending.append((record, notes))
    found = []
    for record, notes in pending:
        path = relative_posix(root, str(record.get("file", "")))
        if path is None:
            continue
        found.append(_finding(record, notes, path, index))
    return disambiguate(found)


def _finding(record: dict[str, Any], notes: list[str], path: str,
             index: SourceIndex) -> Finding:
    code = str(record.get("code") or "misc")
    column = record.get("column")
    severity = "low" if code in LOW_CODES else "high" if code == "syntax" else "medium"
    return make_finding(
        index, source="mypy", rule=code, path=path, line=record.get("line"),
        column=column + 1 if isinstance(column, int) and column >= 0 else None,
        end_line=record.get("end_line"), severity=severity,
        category="syntax" if code == "syntax" else "type",
        message=str(record.get("message", "")),
        detail="\n".join(notes) or None,
        url=f"https://mypy.readthedocs.io/en/stable/_refs.html#code-{code}",
    )
