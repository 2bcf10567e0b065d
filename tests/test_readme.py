"""The README's commands work as written: its curl examples against a running
``plowline up``, its queries, and the stage-by-stage commands."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from up_process import RunningUp, start_up

README = Path(__file__).resolve().parent.parent / "README.md"
DEFAULT_PORT = "8080"


def shell_blocks() -> list[str]:
    """Every ```sh block of the README, continuation lines joined."""
    text = README.read_text("utf-8")
    return re.findall(r"```sh\n(.*?)```", text, re.DOTALL)


def commands(block: str) -> list[str]:
    joined = re.sub(r"\\\n\s*", " ", block)
    result: list[str] = []
    current = ""
    for line in joined.splitlines():
        line = line.split("  #")[0].rstrip() if "  #" in line else line.rstrip()
        current = f"{current}\n{line}" if current else line
        # A command spans lines while a quote is still open.
        if current.count("'") % 2 == 0 and current.strip():
            result.append(current.strip())
            current = ""
    return result


def readme_commands(prefix: str) -> list[str]:
    found = [
        c for block in shell_blocks() for c in commands(block) if c.startswith(prefix)
    ]
    assert found, f"the README has no command starting with {prefix!r}"
    return found


def run_shell(command: str, cwd: Path, port: int) -> subprocess.CompletedProcess[str]:
    command = command.replace(f"127.0.0.1:{DEFAULT_PORT}", f"127.0.0.1:{port}")
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    # The README runs the venv's plowline from the clone; here that is this venv.
    command = command.replace(".venv/bin/plowline", shlex.quote(f"{bin_dir}/plowline"))
    return subprocess.run(
        ["sh", "-c", command],
        cwd=cwd,
        env=env,
        text=True,
        capture_output=True,
        timeout=60,
    )


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningUp]:
    running = start_up(tmp_path_factory.mktemp("readme"))
    yield running
    assert running.stop() == 0, running.stderr()


def test_readme_gives_the_two_setup_commands() -> None:
    first = shell_blocks()[0]
    assert first.splitlines()[0].startswith("./dev up")
    assert first.splitlines()[1].startswith("./dev test")
    ci = (README.parent / ".ci" / "run").read_text("utf-8")
    assert "./dev test" in ci


def test_readme_curl_examples_arrive_as_events(up: RunningUp) -> None:
    for command in readme_commands("curl"):
        done = run_shell(command, up.workdir, up.port)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() in ("200", "ok"), (command, done.stdout)

    up.wait_for(
        lambda: (
            up.scalar("SELECT count(*) FROM atomic.events WHERE app_id = 'my-site'")
            == 4
        )
    )
    rows = up.rows(
        "SELECT event, se_category, se_action, page_urlpath, page_title "
        "FROM atomic.events WHERE app_id = 'my-site' ORDER BY event"
    )
    assert sorted((r["event"], r["page_urlpath"] or "") for r in rows) == [
        ("page_view", "/cart"),
        ("page_view", "/home"),
        ("page_view", "/home"),  # the browser-like one of "Reports"
        ("struct", ""),
    ]
    struct = next(r for r in rows if r["event"] == "struct")
    assert (struct["se_category"], struct["se_action"]) == ("video", "play")


def test_readme_queries_run_against_the_live_database(up: RunningUp) -> None:
    for command in readme_commands("plowline query"):
        done = run_shell(command, up.workdir, up.port)
        assert done.returncode == 0, (command, done.stderr)
    table = run_shell(readme_commands("plowline query")[0], up.workdir, up.port)
    assert "page_view" in table.stdout
    csv = run_shell(
        readme_commands("plowline query --format csv")[0], up.workdir, up.port
    )
    assert csv.stdout.splitlines()[0] == "failure_type,message"


def test_readme_stage_commands_run_in_order(tmp_path: Path, up: RunningUp) -> None:
    raw_dir = tmp_path / "plowline-data" / "raw"
    raw_dir.mkdir(parents=True)
    for source in sorted(up.raw_dir.iterdir()):
        # As the collector leaves them when it stops: closed, without ".open".
        closed = source.name.removesuffix(".open")
        (raw_dir / closed).write_bytes(source.read_bytes())
    # The README's paths are relative to a clone.
    shutil.copytree(README.parent / "examples", tmp_path / "examples")
    stages = ("plowline enrich", "plowline load", "plowline replay")
    for command in [c for stage in stages for c in readme_commands(stage)]:
        done = run_shell(command, tmp_path, up.port)
        assert done.returncode == 0, (command, done.stderr)
    loaded = run_shell(
        "plowline query --format csv "
        '"select count(*) as n from atomic.events where app_id = '
        "'my-site'\"",
        tmp_path,
        up.port,
    )
    assert loaded.stdout.splitlines() == ["n", "4"]
    # As "Reports" says: of the README's events, only the browser-like one
    # makes a session and a user; the curl ones are bots without ids.
    models = run_shell("plowline models --duckdb plowline.duckdb", tmp_path, up.port)
    assert models.returncode == 0, models.stderr
    overview = run_shell(
        "plowline report overview --duckdb plowline.duckdb --app-id my-site "
        "--format csv",
        tmp_path,
        up.port,
    )
    assert overview.returncode == 0, overview.stderr
    head, row = overview.stdout.splitlines()[:2]
    figures = dict(zip(head.split(","), row.split(","), strict=True))
    assert (figures["users"], figures["sessions"], figures["page_views"]) == (
        "1",
        "1",
        "1",
    )
    # The README's replay ran on the failed events of enrich (none are fixed).
    failed = (tmp_path / "failed.jsonl").read_text().splitlines()
    assert len((tmp_path / "still-failed.jsonl").read_text().splitlines()) == len(
        failed
    )
