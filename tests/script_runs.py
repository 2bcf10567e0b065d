"""Running a short Python script, or ``plowline``, in a fresh interpreter:
``run_script`` with or without Plowline's C module, under the debug allocator
(freed memory that is read again shows, or crashes the script instead of
passing by chance); ``run_python`` and ``run_plowline`` as they are, so that a
crash fails one test instead of the session."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def run_python(
    code: str, *, timeout: float = 60, cwd: str | Path = REPO
) -> subprocess.CompletedProcess[str]:
    """``code`` (dedented) run by this interpreter, from the repository."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
    )


def run_plowline(
    *args: str, timeout: float = 120, **kwargs: Any
) -> subprocess.CompletedProcess[str]:
    """``python -m plowline`` with ``args``; ``kwargs`` go to subprocess.run."""
    return subprocess.run(
        [sys.executable, "-m", "plowline", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        **kwargs,
    )


def run_script(script: str, *args: str, pure: bool) -> tuple[int, str]:
    """(exit code, standard output) of ``script`` run with ``args``;
    ``pure`` sets PLOWLINE_PURE_PYTHON."""
    env = {**os.environ, "PYTHONMALLOC": "debug"}
    env.pop("PLOWLINE_PURE_PYTHON", None)
    if pure:
        env["PLOWLINE_PURE_PYTHON"] = "1"
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        env=env,
        capture_output=True,
        text=True,
        errors="replace",
        timeout=60,
    )
    return done.returncode, done.stdout
