"""The serving process re-executes itself after a cycle asked for a restart, and then runs
the new code of the git repository it runs from (`watch_restart`, used by `evolve serve`)."""

from __future__ import annotations

import subprocess
import sys

from mendflow.core.evolution import LoopMemory
from mendflow.infra.evolution_store import read_memory, write_memory
from tests.helpers.git import git, write_files

PROBE = '''
import sys, threading
from pathlib import Path
from mendflow.deployments.evolve import watch_restart

VERSION = {version}
print(f"running version {{VERSION}}", flush=True)
if VERSION == 1:
    watch_restart(Path(sys.argv[1]), threading.Event(), every_s=0.1)
'''


def test_serving_process_reexecs_into_the_new_version(make_repo, tmp_path):
    repo = make_repo({"probe.py": PROBE.format(version=1)}, name="loop-code")
    folder = tmp_path / "loop-state"
    folder.mkdir()
    process = subprocess.Popen([sys.executable, str(repo / "probe.py"), str(folder)],
                               stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "running version 1"
        # a cycle delivered to the loop's own code, then asked for a restart
        write_files(repo, {"probe.py": PROBE.format(version=2)})
        git(repo, "commit", "-q", "-am", "version 2")
        write_memory(folder, LoopMemory(restart_requested=True, last_tip=git(repo, "rev-parse",
                                                                            "HEAD")))
        out, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert out.strip() == "running version 2"
    assert process.returncode == 0
    assert read_memory(folder).restart_requested is False  # cleared before the re-exec
