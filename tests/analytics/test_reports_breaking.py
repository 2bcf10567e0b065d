"""`plowline report` and the models against hostile and careless input: dates
at the ends of the calendar and in other spellings, limits past 64 bits,
money past DECIMAL(18,2), SQL and wildcards in funnel steps, and values that
CSV readers treat specially.

The tests for a bug fail until it is fixed; the others pin what held up.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from analytics_support import Target
from click.testing import CliRunner, Result

from plowline.analytics import simulate as sim
from plowline.analytics.reports import Filters
from plowline.analytics.run import run_report, update_models
from plowline.cli import cli

# The known site's sessions of the app "shop" on 2026-03-02 (UTC): alice at
# 09:00, carol at 14:00 and bob at 20:00 (the crawler at 03:00 is a bot).
SHOP_ON_MARCH_2 = 3
# Each fits the atomic columns (DECIMAL(18,2)); two of them together do not.
BIG = Decimal("9000000000000000.00")
CAMPAIGNS = (
    '=HYPERLINK("http://evil.example","click")',
    'spring, "big" sale',
    "+cmd|' /C calc'!A0",
    "semi;colon \\ back",
)


@pytest.fixture(scope="module", params=["duckdb", "postgres"])
def known(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Target]:
    """The known site, and one session per odd campaign name on 2026-03-07."""
    target = Target(str(request.param), tmp_path_factory.mktemp("reports-breaking"))
    odd = [
        sim.Visitor(
            f"d-campaign-{n}",
            sim.LINUX,
            sim.BERLIN,
            (
                sim.Session(
                    datetime(2026, 3, 7, 12, n),
                    sim.Acquisition(
                        "Email", mkt={"mkt_medium": "email", "mkt_campaign": name}
                    ),
                    (sim.Visit("/"),),
                ),
            ),
            app_id="odd",
        )
        for n, name in enumerate(CAMPAIGNS)
    ]
    target.load(list(sim.events([*sim.known_site(), *odd])))
    update_models(target.kind, target.where)
    yield target


def run(target: Target, *args: str) -> Result:
    return CliRunner().invoke(cli, ["report", *args, *target.cli_args()])


def rows(target: Target, *args: str) -> list[dict[str, Any]]:
    result = run(target, *args, "--format", "json")
    assert result.exit_code == 0, result.output
    found: list[dict[str, Any]] = json.loads(result.output)
    return found


def assert_no_traceback(result: Result) -> None:
    """A failure the command explains (click's "Error: ..."), not a crash."""
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(
            f"plowline report crashed: {result.exception!r}\n{result.output}"
        ) from result.exception


# -- dates -----------------------------------------------------------------------


def test_until_the_last_day_of_the_calendar(known: Target) -> None:
    """Once a bug: ``--until 9999-12-31`` crashes with OverflowError (the end of the
    day is 10000-01-01), a traceback instead of the report or an error."""
    result = run(known, "overview", "--until", "9999-12-31", "--format", "json")
    assert_no_traceback(result)
    assert result.exit_code == 0, result.output
    everything = rows(known, "overview")
    assert json.loads(result.output) == everything


@pytest.mark.parametrize(
    "args",
    [
        ("--until", "20260302"),
        ("--since", "2026-03-02T10:00+05:00", "--until", "2026-03-02"),
    ],
    ids=["compact-date", "offset"],
)
def test_dates_mean_the_instant_they_name(known: Target, args: tuple[str, ...]) -> None:
    """Once a bug: ``--until 20260302`` (ISO 8601's basic form, read by Python 3.11)
    is taken as a time, 2026-03-02 00:00, so the day is left out (0 sessions,
    against 3 for ``--until 2026-03-02``); and ``2026-03-02T10:00+05:00`` loses
    its offset, read as 10:00 UTC instead of 05:00 (2 sessions). Expected: the
    same sessions as the UTC spelling, or an error saying how to write it."""
    (dashed,) = rows(known, "overview", "--until", "2026-03-02", "--app-id", "shop")
    assert dashed["sessions"] == SHOP_ON_MARCH_2
    result = run(known, "overview", *args, "--app-id", "shop", "--format", "json")
    assert_no_traceback(result)
    if result.exit_code == 0:
        (row,) = json.loads(result.output)
        assert row["sessions"] == SHOP_ON_MARCH_2


def test_a_reversed_range_counts_nothing(known: Target) -> None:
    (row,) = rows(known, "overview", "--since", "2026-03-05", "--until", "2026-03-01")
    assert (row["sessions"], row["page_views"], row["revenue"]) == (0, 0, "0.00")


# -- limits ------------------------------------------------------------------------


@pytest.mark.parametrize("limit", ["9223372036854775808", "10" * 20])
def test_a_limit_past_64_bits_is_an_error_not_a_crash(
    known: Target, limit: str
) -> None:
    """Once a bug on PostgreSQL: the query's "bigint out of range" escapes as a
    psycopg traceback (run_report catches no PostgreSQL error); DuckDB's
    conversion error is said as ``Error: The query failed: ...``. Expected:
    the same on both (or the option refusing the number)."""
    result = run(known, "pages", "--limit", limit)
    assert_no_traceback(result)
    assert result.exit_code != 0
    assert "Error" in result.output


def test_the_largest_64_bit_limit_lists_every_page(known: Target) -> None:
    listed = rows(known, "pages", "--limit", str(2**63 - 1))
    assert [r["page"] for r in listed] == [
        r["page"] for r in rows(known, "pages", "--limit", "1000")
    ]
    assert len(listed) == 7


# -- values ------------------------------------------------------------------------


def test_csv_and_json_keep_odd_campaign_names(known: Target) -> None:
    """Commas, quotes, backslashes and spreadsheet formulas come back as they went in
    (csv quoting; the formulas are not neutralised: see the report)."""
    result = run(known, "campaigns", "--app-id", "odd", "--format", "csv")
    assert result.exit_code == 0, result.output
    from_csv = sorted(
        r["mkt_campaign"] for r in csv.DictReader(io.StringIO(result.output))
    )
    from_json = sorted(
        r["mkt_campaign"] for r in rows(known, "campaigns", "--app-id", "odd")
    )
    assert from_csv == from_json == sorted(CAMPAIGNS)


@pytest.mark.parametrize(
    ("steps", "counts"),
    [
        (("/", "/cart"), [5, 3]),
        (("page:/product/*", "/cart"), [6, 3]),
        (("page:%", "/cart"), [0, 0]),
        (("page:/_art", "/cart"), [0, 0]),
        (("/", "/cart' OR '1'='1"), [5, 0]),
        (("/", "event:add_to_wishlist' OR 'x'='x"), [5, 0]),
        (("/product/rake", "event:add_to_wishlist"), [3, 1]),
    ],
)
def test_funnel_steps_are_literal_but_for_the_star(
    known: Target, steps: tuple[str, ...], counts: list[int]
) -> None:
    found = rows(known, "funnel", *steps, "--app-id", "shop")
    assert [r["sessions"] for r in found] == counts


# -- money past DECIMAL(18,2) --------------------------------------------------------


def big_customer(name: str, when: datetime, orders: int) -> sim.Visitor:
    sessions = tuple(
        sim.Session(
            when + timedelta(hours=2 * n),
            sim.DIRECT,
            (
                sim.Visit(
                    "/thank-you",
                    purchase=sim.Purchase(
                        f"{name}-{n}", (sim.Item("GOLD", "Gold", "metal", BIG, 1),)
                    ),
                ),
            ),
        )
        for n in range(orders)
    )
    return sim.Visitor(f"d-{name}", sim.DESKTOP, sim.LONDON, sessions)


def test_revenue_totals_past_decimal_18_2_are_reported(target: Target) -> None:
    """Once a bug: two customers with an order of 9e15 each (each fits the atomic
    column): the overview and the referrers fail on the CAST of the sum to
    DECIMAL(18,2) — "Error: The query failed: Conversion Error" on DuckDB, a
    psycopg traceback (NumericValueOutOfRange) on PostgreSQL. One order
    anywhere on the site is enough to take these reports down for everyone."""
    when = datetime(2026, 3, 2, 10)
    target.load(
        list(sim.events([big_customer("a", when, 1), big_customer("b", when, 1)]))
    )
    update_models(target.kind, target.where)
    for name in ("overview", "referrers", "devices", "geo"):
        result = run(target, name, "--format", "json")
        assert_no_traceback(result)
        assert result.exit_code == 0, (name, result.output)
        (row,) = json.loads(result.output)
        assert (row["transactions"], Decimal(row["revenue"])) == (2, 2 * BIG), name


def test_one_customer_with_two_large_orders_does_not_stop_the_models(
    target: Target,
) -> None:
    """Once a bug: one customer with two orders of 9e15 (each fits the atomic column)
    and ``plowline models`` fails: derived.users.revenue is DECIMAL(18,2) and
    the sum does not fit. Every later run fails the same way (the events stay
    new), so the models stop for the whole site, and ``plowline up`` logs the
    failure every minute."""
    when = datetime(2026, 3, 2, 10)
    ordinary = list(sim.events(sim.known_site()))
    target.load([*ordinary, *sim.events([big_customer("c", when, 2)], seed=3)])
    update_models(target.kind, target.where)
    wh = target.warehouse()
    try:
        revenue = wh.scalar(
            "SELECT revenue FROM derived.users WHERE stitched_user_id = 'd-c'"
        )
    finally:
        wh.close()
    assert Decimal(str(revenue)) == 2 * BIG


def test_an_ecommerce_revenue_past_decimal_18_2_does_not_stop_the_models(
    target: Target,
) -> None:
    """Once a bug: a snowplow_ecommerce transaction entity with ``revenue: 1e17`` (a
    JSON number: any tracker can send it, and without an Iglu resolver,
    `plowline up`'s default, nothing checks it) makes ``plowline models`` fail
    on its CAST to DECIMAL(18,2); every later run too. Expected: the models
    built, the other visitors' sessions counted (the order kept with its
    revenue unknown, or refused as a failed event upstream)."""
    hostile = sim.Visitor(
        "d-ecom",
        sim.PHONE,
        sim.BERLIN,
        (
            sim.Session(
                datetime(2026, 3, 8, 9),
                sim.DIRECT,
                (
                    sim.Visit(
                        "/thank-you",
                        purchase=sim.Purchase(
                            "E-1",
                            (sim.Item("X", "X", "x", Decimal("1e17"), 1),),
                            kind="ecommerce",
                        ),
                    ),
                ),
            ),
        ),
    )
    target.load([*sim.events(sim.known_site()), *sim.events([hostile], seed=4)])
    update_models(target.kind, target.where)
    (row,) = run_report(
        target.kind,
        target.where,
        "overview",
        Filters(until=datetime(2026, 3, 8)),
    ).rows
    assert row[1] == 9  # the known site's sessions, all there


def test_a_negative_quantity_is_reported_as_sent(tmp_path: Path) -> None:
    """Held up: a quantity of -3 (a refund, or a careless tracker) is summed
    as it is; nothing crashes and the figures add up."""
    target = Target("duckdb", tmp_path)
    item = sim.Item("R-1", "Rake", "tools", Decimal("10.00"), -3)
    visitor = sim.Visitor(
        "d-refund",
        sim.DESKTOP,
        sim.LONDON,
        (
            sim.Session(
                datetime(2026, 3, 9, 9),
                sim.DIRECT,
                (sim.Visit("/thank-you", purchase=sim.Purchase("N-1", (item,))),),
            ),
        ),
    )
    target.load(list(sim.events([visitor])))
    update_models("duckdb", target.where)
    (row,) = rows(target, "ecommerce")
    assert (row["quantity"], row["item_revenue"]) == (-3, "-30.00")
    (overview,) = rows(target, "overview")
    assert (overview["transactions"], overview["revenue"]) == (1, "-30.00")
