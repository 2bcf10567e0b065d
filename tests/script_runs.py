"""Running a short Python script in a fresh interpreter, with or without
Plowline's C module, under the debug allocator (freed memory that is read
again shows, or crashes the script instead of passing by chance)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap


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
