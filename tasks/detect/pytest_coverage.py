"""The coverage.py side of a test run: what the repository's config measures, the
test-impact contexts, and the combined JSON report.

Used by :func:`mendflow.tasks.detect.pytest_run.measure_tests`.
"""

from __future__ import annotations

from pathlib import Path

from mendflow.core.errors import ToolError
from mendflow.core.models import Sandbox, TargetEnv
from mendflow.infra.isolation import run_isolated
from mendflow.tasks.detect.common import (
    first_on_pythonpath,
    load_pyproject,
    read_ini,
    tool_table,
)
from mendflow.tasks.detect.impact import PLUGIN_MODULE as IMPACT_PLUGIN
from mendflow.tasks.detect.impact import (
    read_imported,
    save_impact_map,
    write_plugin,
)
from mendflow.tasks.detect.pytest_reports import parse_coverage_json

COVERAGE_REPORT_TIMEOUT_S = 600.0


def coverage_config_sets_source(root: Path) -> bool:
    """Does the repository's coverage config choose what to measure (``source``/``include``)?

    coverage.py reads the first of ``.coveragerc``, ``setup.cfg`` ([coverage:run]),
    ``tox.ini`` ([coverage:run]) and ``pyproject.toml`` ([tool.coverage.run]) that
    has coverage settings; this looks at the same files in the same order.

    Args:
        root: the worktree root.

    Returns:
        True if that config sets ``source``, ``source_pkgs`` or ``include`` in its run section.
    """
    keys = ("source", "source_pkgs", "include")
    rc = root / ".coveragerc"
    if rc.is_file():
        parser = read_ini(rc)
        return bool(parser and parser.has_section("run")
                    and any(parser.get("run", k, fallback="").strip() for k in keys))
    for name in ("setup.cfg", "tox.ini"):
        parser = read_ini(root / name)
        if parser is None:
            continue
        sections = [s for s in parser.sections() if s.startswith("coverage:")]
        if sections:
            return parser.has_section("coverage:run") and any(
                parser.get("coverage:run", k, fallback="").strip() for k in keys)
    table = tool_table(load_pyproject(root), "coverage")
    run = (table or {}).get("run")
    return isinstance(run, dict) and any(run.get(k) for k in keys)


def with_contexts(command: list[str], environ: dict[str, str],
                   out_dir: Path) -> tuple[list[str], dict[str, str]]:
    """Load the context-switching plugin (from ``out_dir``) into the test run."""
    write_plugin(out_dir)
    at = command.index("pytest") + 1
    return [*command[:at], "-p", IMPACT_PLUGIN, *command[at:]], first_on_pythonpath(environ,
                                                                                     out_dir)


def coverage_report(sandbox: Sandbox, env: TargetEnv, out_dir: Path, environ: dict[str, str],
                     impact_file: Path | None = None):
    """Combine parallel data files if any, write ``coverage json`` and parse it.

    With ``impact_file``, the report shows contexts and the impact map is saved there.

    Returns:
        ``(report, None, impact map or None)``, or ``(None, error text, None)`` when
        coverage failed; the map is the one saved to ``impact_file`` by this call.
    """
    python = str(env.python)
    if any(out_dir.glob(".coverage.*")):  # side processes, or the repo's config sets parallel
        run_isolated([python, "-m", "coverage", "combine", "--append"], target_env=env,
                     worktree=sandbox.path, timeout_s=COVERAGE_REPORT_TIMEOUT_S, env=environ,
                     writable=(out_dir,))
    report = out_dir / "coverage.json"
    if impact_file is not None:
        proc = _json_report(sandbox, env, out_dir, environ, contexts=True)
        try:
            parsed = parse_coverage_json(report, sandbox.path) if proc.returncode >= 0 else None
        except ToolError:
            parsed = None
        if parsed is not None:
            impact = save_impact_map(report, sandbox.path, impact_file,
                                     whole_tree=not coverage_config_sets_source(sandbox.path),
                                     imported=read_imported(out_dir, sandbox.path))
            return parsed, None, impact
        # the contexts' report grows with tests x lines: packaging 26.4 (64,207 tests) wrote
        # more than the sandbox's file size limit (1 GiB), truncated, and the whole baseline
        # failed; without contexts there is no impact map (validation runs whole suites)
    proc = _json_report(sandbox, env, out_dir, environ, contexts=False)
    if not report.is_file():  # exit 2 only means fail_under was not met
        return None, f"coverage json failed (exit {proc.returncode}):\n{proc.tail(20)}", None
    try:
        return parse_coverage_json(report, sandbox.path), None, None
    except ToolError as err:
        return None, err.message, None


def _json_report(sandbox: Sandbox, env: TargetEnv, out_dir: Path, environ: dict[str, str], *,
                 contexts: bool):
    """Write ``out_dir/coverage.json`` (``coverage json -i``, with ``--show-contexts``)."""
    report = out_dir / "coverage.json"
    report.unlink(missing_ok=True)
    return run_isolated([str(env.python), "-m", "coverage", "json", "-i",
                         *(["--show-contexts"] if contexts else []), "-o", str(report)],
                        target_env=env, worktree=sandbox.path,
                        timeout_s=COVERAGE_REPORT_TIMEOUT_S, env=environ, writable=(out_dir,))
