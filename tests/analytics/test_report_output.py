"""plowline report: figures from the simulated site, the three formats, the
filters, the funnel, and reading through plowline up's query socket."""

from __future__ import annotations

import csv
import io
import json
import re
import shlex
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pytest
from analytics_support import Target
from click.testing import CliRunner

from plowline.analytics import simulate as sim
from plowline.analytics.expected import expected
from plowline.cli import cli
from plowline.storage.query import QueryServer

EXPECTED = expected(sim.known_site())


@pytest.fixture
def built(target: Target) -> Target:
    target.load(list(sim.events(sim.known_site())))
    result = CliRunner().invoke(cli, ["models", *target.cli_args()])
    assert result.exit_code == 0, result.output
    assert "Built the models" in result.output
    return target


def report(target: Target, *args: str) -> list[dict[str, Any]]:
    result = CliRunner().invoke(
        cli, ["report", *args, *target.cli_args(), "--format", "json"]
    )
    assert result.exit_code == 0, result.output
    rows: list[dict[str, Any]] = json.loads(result.output)
    return rows


def test_overview_figures(built: Target) -> None:
    sessions = EXPECTED.sessions.values()
    (row,) = report(built, "overview")
    assert row["users"] == len({s["stitched_user_id"] for s in sessions})
    assert row["sessions"] == len(sessions) == 9
    assert row["page_views"] == len(EXPECTED.page_views) == 21
    assert row["transactions"] == 3
    assert Decimal(row["revenue"]) == sum(s["revenue"] for s in sessions)
    bounces = sum(s["is_bounce"] for s in sessions)
    assert Decimal(row["bounce_rate_pct"]) == round(Decimal(100 * bounces) / 9, 1)


def test_filters_by_app_and_time(built: Target) -> None:
    (blog,) = report(built, "overview", "--app-id", "blog")
    assert (blog["sessions"], blog["page_views"]) == (1, 1)
    # Sessions that started on 3 and 4 March: alice's two, dieter's.
    (days,) = report(
        built, "overview", "--since", "2026-03-03", "--until", "2026-03-04"
    )
    want = [s for s in EXPECTED.sessions.values() if s["start_tstamp"].day in (3, 4)]
    assert days["sessions"] == len(want) == 3


def test_pages_referrers_devices_geo(built: Target) -> None:
    pages = {row["page"]: row for row in report(built, "pages")}
    home = [pv for pv in EXPECTED.page_views.values() if pv["page_urlpath"] == "/"]
    assert pages["/"]["page_views"] == len(home)
    assert pages["/thank-you"]["exits"] == 3
    channels = {row["channel"]: row["sessions"] for row in report(built, "referrers")}
    assert channels == {
        "Direct": 3,
        "Organic Search": 2,
        "Email": 1,
        "Paid Search": 1,
        "Referral": 1,
        "Social": 1,
    }
    devices = {
        (r["dvce_type"], r["br_family"]): r["sessions"]
        for r in report(built, "devices")
    }
    assert devices == {
        ("Computer", "Chrome"): 4,
        ("Computer", "Firefox"): 3,
        ("Mobile", "Safari"): 2,
    }
    geo = {r["geo_city"]: Decimal(r["revenue"]) for r in report(built, "geo")}
    assert geo == {
        "London": Decimal("152.44"),
        "New York": Decimal("31.00"),
        "Berlin": Decimal("0.00"),
    }


def test_campaigns_and_ecommerce(built: Target) -> None:
    campaigns = {r["mkt_campaign"]: r for r in report(built, "campaigns")}
    assert set(campaigns) == {"spring", "spades"}
    assert Decimal(campaigns["spring"]["revenue"]) == Decimal("83.50")
    products = {r["sku"]: r for r in report(built, "ecommerce")}
    assert {
        k: (v["orders"], v["quantity"], Decimal(v["item_revenue"]))
        for k, v in products.items()
    } == {
        "SP-1": (2, 4, Decimal("98.00")),
        "RK-3": (2, 2, Decimal("62.00")),
        "GL-2": (1, 1, Decimal("9.99")),
    }


def test_funnel_counts_ordered_steps(built: Target) -> None:
    rows = report(built, "funnel", "/", "/product/*", "/cart", "event:transaction")
    assert [(r["name"], r["sessions"]) for r in rows] == [
        ("/", 5),
        ("/product/*", 3),
        ("/cart", 2),
        ("event:transaction", 1),
    ]
    assert [r["from_previous_pct"] for r in rows] == [None, "60.0", "66.7", "50.0"]
    assert rows[3]["from_first_pct"] == "20.0"
    # A structured event's action is a step too; the order matters.
    wishlist = report(built, "funnel", "event:add_to_wishlist", "/thank-you")
    assert [r["sessions"] for r in wishlist] == [1, 1]
    backwards = report(built, "funnel", "/thank-you", "/cart")
    assert [r["sessions"] for r in backwards] == [3, 0]


def test_csv_and_table_formats(built: Target) -> None:
    runner = CliRunner()
    result = runner.invoke(
        cli, ["report", "referrers", *built.cli_args(), "--format", "csv"]
    )
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.output)))
    assert rows[0]["channel"] == "Direct" and rows[0]["sessions"] == "3"
    result = runner.invoke(cli, ["report", "overview", *built.cli_args()])
    assert result.exit_code == 0 and "1 row" in result.output


def test_report_before_models_says_what_to_do(tmp_path: Path) -> None:
    target = Target("duckdb", tmp_path)
    target.load(list(sim.events(sim.known_site()))[:5])
    result = CliRunner().invoke(cli, ["report", "overview", *target.cli_args()])
    assert result.exit_code == 1
    assert "plowline models --duckdb" in result.output


def test_bad_funnel_step_is_refused(built: Target) -> None:
    result = CliRunner().invoke(
        cli, ["report", "funnel", "cart", "/x", *built.cli_args()]
    )
    assert result.exit_code == 1 and "neither a page" in result.output


def test_report_reads_through_the_query_socket(tmp_path: Path) -> None:
    target = Target("duckdb", tmp_path)
    target.load(list(sim.events(sim.known_site())))
    assert CliRunner().invoke(cli, ["models", *target.cli_args()]).exit_code == 0
    owner = duckdb.connect(target.where)  # as plowline up holds the file
    sock = Path(f"{target.where}.sock")
    with QueryServer(owner, sock):
        (row,) = report(target, "overview")
        assert row["sessions"] == 9
        # Another process cannot write while the file is held.
        denied = subprocess.run(
            [sys.executable, "-m", "plowline", "models", *target.cli_args()],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert denied.returncode == 1
        assert "while `plowline up` is stopped" in denied.stderr
    owner.close()


README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_report_commands_run(tmp_path: Path, monkeypatch: Any) -> None:
    blocks = re.findall(r"```sh\n(.*?)```", README.read_text("utf-8"), re.DOTALL)
    lines = [line for block in blocks for line in block.splitlines()]
    wanted = [
        line
        for line in lines
        if line.startswith(("plowline models", "plowline report"))
    ]
    assert len(wanted) >= 4
    target = Target("duckdb", tmp_path)
    target.load(list(sim.events(sim.known_site())))
    monkeypatch.chdir(tmp_path)
    Path("events.duckdb").rename("plowline.duckdb")
    for line in wanted:
        result = CliRunner().invoke(cli, shlex.split(line)[1:])
        assert result.exit_code == 0, (line, result.output)
        assert "0 rows" not in result.output, line


def test_models_of_an_earlier_version_are_named_as_such(built: Target) -> None:
    """A file whose model tables have other columns (built by an earlier
    version) gets an error that says so and names the command that rebuilds
    them, not the database's binder error; after that command the report
    works again."""
    wh = built.warehouse()
    try:
        wh.execute(
            "ALTER TABLE derived.page_views DROP COLUMN prev_path_view_in_session"
        )
    finally:
        wh.close()
    result = CliRunner().invoke(cli, ["report", "pages", *built.cli_args()])
    assert result.exit_code == 1, result.output
    assert "built by an earlier version" in result.output
    assert "plowline models" in result.output
    rebuilt = CliRunner().invoke(cli, ["models", *built.cli_args()])
    assert rebuilt.exit_code == 0, rebuilt.output
    rows = report(built, "pages")
    assert sum(row["page_views"] for row in rows) == len(EXPECTED.page_views)
