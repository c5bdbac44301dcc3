"""Benchmark hanging tests: the first mission on a repository whose suite hangs.

Usage::

    .venv/bin/python bench/hangs.py [--hangs 20] [--fast 200] [--honest-s 40]
                                    [--interpreter] [--keep]

It generates a git repository (a small installable package) with ``--hangs``
tests that loop forever (busy loops), ``--fast`` quick tests, one honest test
that waits ``--honest-s`` seconds on a subprocess (as integration tests do),
and one unused import in one source file, which the offline fixer removes:
the one candidate patch, validated against the whole suite.

It then runs the first mission on it with no history (a fresh
``MENDFLOW_HOME`` and ``PREFECT_HOME``): ``mendflow mission run --json``
with the default config (the managed venv, the offline ruff fixer), as a
real process, timestamping each progress line on stderr, and prints:

- the environment time (from the start to the baseline's measurement);
- the baseline time: from ``measuring baseline`` to its result line
  (goal <= 4 min on 2 cores);
- the one-file validation time: from ``measuring candidate`` to its result
  line (goal <= 1 min);
- whether the honest test was reported passing (a passing test slower than
  ``tools.pytest.slow_test_s`` is a ``slow-test`` finding; it must not be a
  ``hang`` or a ``test-failure``), and the number of ``hang`` findings;
- the mission's wall time, exit code and patches.

``--interpreter`` tests with this interpreter instead of a managed venv (no
install). It asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def generate(root: Path, hangs: int, fast: int, honest_s: float) -> None:
    """Write and commit the repository."""
    files: dict[str, str] = {
        "pyproject.toml": '[build-system]\nrequires = ["setuptools>=61"]\n'
                          'build-backend = "setuptools.build_meta"\n\n[project]\n'
                          'name = "hangbench"\nversion = "0.1"\n\n'
                          '[tool.setuptools]\npackages = ["hangbench"]\n',
        "hangbench/__init__.py": "",
        "hangbench/loops.py": "".join(
            f"def loop_{i}(n):\n    total = 0\n    while n > 0:\n        total += {i}\n"
            f"    return total\n\n\n" for i in range(hangs)),
        "hangbench/calc.py": "import os\n\n\ndef add(a, b):\n    return a + b\n",
        "tests/test_loops.py": "from hangbench import loops\n\n\n" + "".join(
            f"def test_loop_{i}():\n    assert loops.loop_{i}(1) >= 0\n\n\n"
            for i in range(hangs)),
        "tests/test_honest.py": (
            "import subprocess\nimport sys\n\n\ndef test_waits_on_a_service():\n"
            f"    subprocess.run([sys.executable, '-c', 'import time; time.sleep({honest_s})'],"
            " check=True)\n"),
    }
    per_file = 20
    for start in range(0, fast, per_file):
        files[f"tests/test_fast_{start // per_file:02d}.py"] = \
            "from hangbench.calc import add\n\n\n" + "".join(
                f"def test_add_{i}():\n    assert add({i}, 1) == {i + 1}\n\n\n"
                for i in range(start, min(fast, start + per_file)))
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    env = {**os.environ, "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@example.com",
           "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@example.com"}
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "gen"]):
        subprocess.run(["git", *args], cwd=root, check=True, env=env)


def run_mission(repo: Path, work: Path, interpreter: bool) -> tuple[dict, list, float, int]:
    """Run the mission; return (its JSON, [(seconds, stderr line)], wall seconds, exit code)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API_")}
    env.update(MENDFLOW_HOME=str(work / "home"), PREFECT_HOME=str(work / "prefect"))
    command = [sys.executable, "-m", "mendflow.cli", "mission", "run", str(repo), "--json"]
    if interpreter:
        config = work / "cfg.yaml"
        config.write_text(f"environment: {{type: interpreter, python: {sys.executable}}}\n")
        command += ["--config", str(config)]
    start = time.monotonic()
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    lines: list[tuple[float, str]] = []

    def read() -> None:
        for line in proc.stderr:
            lines.append((time.monotonic() - start, line.rstrip("\n")))
            print(f"  [{lines[-1][0]:7.1f} s] {line.rstrip()}", file=sys.stderr, flush=True)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    out = proc.stdout.read()
    proc.wait()
    reader.join(10)
    wall = time.monotonic() - start
    try:
        data = json.loads(out)
    except ValueError:
        data = {}
    return data, lines, wall, proc.returncode


def span(lines: list[tuple[float, str]], begin: str, end: str) -> float | None:
    """Seconds between the first line containing ``begin`` and the next containing ``end``."""
    start = next((t for t, line in lines if begin in line), None)
    if start is None:
        return None
    stop = next((t for t, line in lines if t >= start and end in line and begin not in line),
                None)
    return None if stop is None else stop - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hangs", type=int, default=20)
    parser.add_argument("--fast", type=int, default=200)
    parser.add_argument("--honest-s", type=float, default=40.0)
    parser.add_argument("--interpreter", action="store_true",
                        help="test with this interpreter instead of a managed venv")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mendflow-bench-hangs-"))
    repo = work / "repo"
    generate(repo, args.hangs, args.fast, args.honest_s)
    data, lines, wall, code = run_mission(repo, work, args.interpreter)
    honest = "tests/test_honest.py::test_waits_on_a_service"
    findings = data.get("findings", [])
    about_honest = {f["rule"] for f in findings if f.get("test_id") == honest}
    environment = next((t for t, line in lines if "measuring baseline" in line), None)
    baseline = span(lines, "measuring baseline", "baseline: ")
    validation = span(lines, "measuring candidate", "candidate ")
    print(f"repository: {args.hangs} tests that loop forever, {args.fast} fast tests, one honest "
          f"test waiting {args.honest_s:g} s; {os.cpu_count()} cores; load average "
          f"{os.getloadavg()[0]:.1f}")
    print(f"mission: exit {code}, status {data.get('status')}, wall {wall:.1f} s, patches "
          f"{[(p['status'], p.get('reason')) for p in data.get('patches', [])]}")
    print(f"start to baseline (environment, Prefect): "
          f"{environment:.1f} s" if environment is not None else "no baseline line")
    print(f"baseline: {baseline:.1f} s (goal <= 240 s)" if baseline is not None
          else "baseline: not measured")
    print(f"one-file validation: {validation:.1f} s (goal <= 60 s)" if validation is not None
          else "one-file validation: no candidate")
    passing = "slow-test" in about_honest and not about_honest & {"hang", "test-failure",
                                                                  "test-error"}
    print(f"honest test reported passing: {passing} "
          f"(its findings: {sorted(about_honest) or 'none'})")
    print(f"hang findings: {sum(1 for f in findings if f['rule'] == 'hang')} "
          f"(of {args.hangs} tests that loop forever)")
    if args.keep:
        print(f"kept: {work}")
    else:
        subprocess.run(["rm", "-rf", str(work)], check=False)


if __name__ == "__main__":
    main()
