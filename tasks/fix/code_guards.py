"""Static guards on model-written code, before it is ever applied or run.

These are a first line only: the code that passes them still runs under the
sandbox (:mod:`mendflow.infra.isolation`), whose limits hold whatever the
code does. A patch is refused when it *adds* (the count grows against the
file before the edit):

- ``dangerous-code``: a command or process (``os.system``, ``os.popen``,
  ``os.exec*``, ``os.spawn*``, ``os.fork``, ``subprocess``, ``pty``), a network
  client (``socket``, ``urllib.request``, ``http.client``, ``requests``,
  ``httpx``, ``aiohttp``, ``ftplib``, ``smtplib``), ``ctypes``, or dynamic code
  (``eval``, ``exec``, ``compile``, ``__import__``, ``importlib.import_module``);
- ``bidi``: a Unicode bidirectional control character (the "Trojan Source" trick:
  code that reads differently from how it runs).
"""

from __future__ import annotations

import ast
import re
from collections import Counter

BIDI = re.compile("[\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c]")
DANGEROUS_MODULES = frozenset({
    "subprocess", "socket", "ctypes", "pty", "requests", "httpx", "aiohttp", "urllib3",
    "urllib.request", "http.client", "ftplib", "smtplib", "telnetlib", "paramiko",
    "webbrowser", "multiprocessing", "asyncio.subprocess",
})
_DANGEROUS_CALL = re.compile(
    r"^(os\.(system|popen|exec\w*|spawn\w*|fork\w*|kill\w*|posix_spawn\w*)"
    r"|(subprocess|socket|ctypes|pty|requests|httpx|aiohttp|urllib3|urllib\.request|"
    r"http\.client|ftplib|smtplib|telnetlib|paramiko|webbrowser)\.\w+"
    r"|eval|exec|compile|__import__|importlib\.import_module"
    r"|([\w.]+\.)?(urlopen|create_connection|Popen|check_output|getoutput))$")


def dangerous_uses(text: str) -> Counter[str]:
    """Count the dangerous imports and calls in Python source (see the module docstring).

    Args:
        text: Python source (unparsable source counts nothing: the syntax guard judges it).

    Returns:
        ``{"import subprocess": 1, "call os.system": 2, ...}``.
    """
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return Counter()
    found: Counter[str] = Counter()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(f"import {a.name}" for a in node.names if _dangerous_module(a.name))
        elif isinstance(node, ast.ImportFrom) and node.module:
            if _dangerous_module(node.module):
                found[f"import {node.module}"] += 1
            found.update(f"import {node.module}.{a.name}" for a in node.names
                         if _dangerous_module(f"{node.module}.{a.name}")
                         or (node.module == "os" and _DANGEROUS_CALL.match(f"os.{a.name}")))
        elif isinstance(node, ast.Call):
            name = ast.unparse(node.func)
            if _DANGEROUS_CALL.match(name):
                found[f"call {name}"] += 1
    return found


def _dangerous_module(name: str) -> bool:
    parts = name.split(".")
    return any(".".join(parts[:i]) in DANGEROUS_MODULES for i in range(1, len(parts) + 1))


def added_dangerous_uses(before: str | None, after: str) -> list[str]:
    """The dangerous uses ``after`` holds more of than ``before`` (sorted; [] if none)."""
    grown = dangerous_uses(after) - dangerous_uses(before or "")
    return sorted(grown)


def bidi_characters(text: str) -> list[str]:
    """The bidirectional control characters in ``text``, as ``U+202E`` names (sorted)."""
    return sorted({f"U+{ord(c):04X}" for c in BIDI.findall(text)})
