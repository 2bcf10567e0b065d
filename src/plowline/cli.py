"""The ``plowline`` command: each sub-command is a thin call into the library."""

from __future__ import annotations

import logging
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import click

from plowline import __version__

if TYPE_CHECKING:
    from plowline.enrich.pipeline import Enricher
    from plowline.storage.loader import LoadResult


@click.group()
@click.version_option(__version__, prog_name="plowline")
@click.option("-v", "--verbose", is_flag=True, help="Debug output in the log.")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors.")
def cli(verbose: bool, quiet: bool) -> None:
    """Plowline: collect, enrich and load behavioural events."""
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def _outputs(command: Callable[..., None]) -> Callable[..., None]:
    """The --good and --bad options of the commands that enrich."""
    good = click.option(
        "--good",
        required=True,
        metavar="FILE",
        help="Where enriched events go, as TSV (- for standard output).",
    )
    bad = click.option(
        "--bad",
        required=True,
        metavar="FILE",
        help="Where failed events go, as JSON lines (- for standard output).",
    )
    pii = click.option(
        "--pii",
        metavar="FILE",
        help="Where the events of PII pseudonymisation with emitEvent go, as "
        "TSV: they hold the original values, so they never join the enriched "
        "events.",
    )
    return good(bad(pii(command)))


def _enrich_settings(command: Callable[..., None]) -> Callable[..., None]:
    """The --enrichments and --iglu-resolver options of the commands that enrich."""
    enrichments = click.option(
        "--enrichments",
        metavar="DIR",
        envvar="PLOWLINE_ENRICHMENTS",
        type=click.Path(exists=True, file_okay=False),
        help="Folder of Snowplow enrichment JSON files (docs/enrichments.md).",
    )
    resolver = click.option(
        "--iglu-resolver",
        metavar="FILE",
        envvar="PLOWLINE_IGLU_RESOLVER",
        type=click.Path(exists=True, dir_okay=False),
        help="Iglu resolver configuration: validate contexts and self-describing "
        "events against their schemas (docs/iglu.md).",
    )
    return enrichments(resolver(command))


def _pii_note(count: int) -> str:
    return f" ({count} PII events)" if count else ""


def _build_enricher(enrichments: str | None, iglu_resolver: str | None) -> Enricher:
    from plowline.enrich.settings import EnrichSettings
    from plowline.errors import PlowlineError

    try:
        return EnrichSettings(enrichments, iglu_resolver).build()
    except PlowlineError as exc:
        raise click.ClickException(str(exc)) from exc


@cli.command()
@_outputs
@_enrich_settings
@click.option(
    "--input-format",
    default="auto",
    show_default=True,
    type=click.Choice(["auto", "plowline", "cloudfront", "clj-tomcat", "querystring"]),
    help="Format of the inputs; auto judges each file by its first lines.",
)
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1, 256),
    help="Processes that enrich in parallel (the output order stays the input's).",
)
@click.option(
    "--from-nats",
    "nats_url",
    metavar="URL",
    help="Read raw records from a NATS JetStream stream (the collector's --sink "
    "nats) instead of INPUTs; outputs are appended to, and each batch is "
    "acknowledged once written.",
)
@click.option(
    "--stream",
    default="PLOWLINE_RAW",
    show_default=True,
    help="Stream to read with --from-nats.",
)
@click.option(
    "--durable",
    default="plowline-enrich",
    show_default=True,
    help="Durable consumer that keeps the --from-nats position.",
)
@click.option(
    "--until-idle",
    is_flag=True,
    help="With --from-nats, stop once the stream has nothing left to read.",
)
@click.argument("inputs", nargs=-1, metavar="INPUT...")
def enrich(
    good: str,
    bad: str,
    pii: str | None,
    enrichments: str | None,
    iglu_resolver: str | None,
    input_format: str,
    workers: int,
    nats_url: str | None,
    stream: str,
    durable: str,
    until_idle: bool,
    inputs: tuple[str, ...],
) -> None:
    """Enrich raw logs (files, folders or - for standard input): Plowline's raw
    log, CloudFront access logs, Clojure-collector Tomcat logs or querystrings.

    A folder gives its closed raw logs only (docs/raw-log.md)."""
    from plowline.enrich.files import enrich_files
    from plowline.errors import PlowlineError

    if bool(nats_url) == bool(inputs):
        raise click.UsageError("Give INPUT files or --from-nats URL (one of them).")
    enricher = _build_enricher(enrichments, iglu_resolver)
    try:
        if nats_url:
            from plowline.enrich.stream import StreamSource, enrich_stream

            source = StreamSource(nats_url, stream, durable)
            stats = enrich_stream(
                source, good, bad, enricher=enricher, until_idle=until_idle, pii=pii
            )
        else:
            stats = enrich_files(
                inputs,
                good,
                bad,
                enricher,
                input_format=input_format,
                workers=workers,
                pii=pii,
            )
    except PlowlineError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(
        f"Read {stats.lines} raw records: {stats.enriched} enriched events, "
        f"{stats.failed} failed events" + _pii_note(stats.pii) + ".",
        err=True,
    )


@cli.command()
@_outputs
@_enrich_settings
@click.argument("inputs", nargs=-1, required=True, metavar="FAILED...")
def replay(
    good: str,
    bad: str,
    pii: str | None,
    enrichments: str | None,
    iglu_resolver: str | None,
    inputs: tuple[str, ...],
) -> None:
    """Enrich failed events again (after a fix) from the input each one carries.

    FAILED are failed-event JSON-lines files (from --bad), folders or -.
    A replayed event keeps its event id.
    """
    from plowline.enrich.replay import replay_files
    from plowline.errors import PlowlineError

    try:
        stats = replay_files(
            inputs, good, bad, _build_enricher(enrichments, iglu_resolver), pii=pii
        )
    except PlowlineError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(
        f"Replayed {stats.lines} failed events: {stats.enriched} enriched events, "
        f"{stats.failed} failed again" + _pii_note(stats.pii) + ".",
        err=True,
    )


@cli.command()
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    envvar="PLOWLINE_COLLECTOR_HOST",
    help="Address to listen on.",
)
@click.option(
    "--port",
    default=8080,
    show_default=True,
    type=click.IntRange(0, 65535),
    envvar="PLOWLINE_COLLECTOR_PORT",
    help="TCP port to listen on.",
)
@click.option(
    "--raw-dir",
    default="./plowline-data/raw",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    envvar="PLOWLINE_COLLECTOR_RAW_DIR",
    help="Folder of the raw log.",
)
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1),
    envvar="PLOWLINE_COLLECTOR_WORKERS",
    help="Worker processes.",
)
@click.option(
    "--sink",
    default="rawlog",
    show_default=True,
    type=click.Choice(["rawlog", "stdout", "nats"]),
    envvar="PLOWLINE_COLLECTOR_SINK",
    help="Where records go: the raw log, standard output (one line each), or a "
    "NATS JetStream stream with the raw log as spool while it is away.",
)
@click.option(
    "--durability",
    default="os",
    show_default=True,
    type=click.Choice(["os", "fsync"]),
    envvar="PLOWLINE_COLLECTOR_DURABILITY",
    help="Answer once a record is handed to the system (os) or synced to disk "
    "(fsync, a group commit of a few ms).",
)
@click.option(
    "--nats-url",
    default="nats://127.0.0.1:4222",
    show_default=True,
    envvar="PLOWLINE_COLLECTOR_NATS_URL",
    help="NATS server of --sink nats.",
)
@click.option(
    "--nats-stream",
    default="PLOWLINE_RAW",
    show_default=True,
    envvar="PLOWLINE_COLLECTOR_NATS_STREAM",
    help="JetStream stream of --sink nats (created if missing).",
)
@click.option(
    "--nats-subject",
    default="plowline.raw",
    show_default=True,
    envvar="PLOWLINE_COLLECTOR_NATS_SUBJECT",
    help="Subject records are published on.",
)
def collector(
    host: str,
    port: int,
    raw_dir: Path,
    workers: int,
    sink: str,
    durability: str,
    nats_url: str,
    nats_stream: str,
    nats_subject: str,
) -> None:
    """Run the collector: record tracker requests into the raw log (or --sink).

    Other settings (cookie, body limit, rotation) come from PLOWLINE_COLLECTOR_*
    environment variables; see docs/raw-log.md for the log it writes, its
    closed files, durability and the sinks.
    """
    from dataclasses import replace

    from plowline.collector.config import CollectorConfig
    from plowline.collector.server import serve
    from plowline.errors import PlowlineError

    try:
        config = replace(
            CollectorConfig.from_env(),
            host=host,
            port=port,
            raw_dir=raw_dir,
            workers=workers,
            sink=sink,
            durability=durability,
            nats_url=nats_url,
            nats_stream=nats_stream,
            nats_subject=nats_subject,
        )
        serve(config)
    except PlowlineError as exc:
        raise click.ClickException(str(exc)) from exc


@cli.command()
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address the collector listens on (0.0.0.0 for every interface).",
)
@click.option(
    "--port",
    default=8080,
    show_default=True,
    type=click.IntRange(1, 65535),
    help="Port the collector listens on.",
)
@click.option(
    "--data-dir",
    default="plowline-data",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for the raw log (DATA_DIR/raw).",
)
@click.option(
    "--duckdb",
    "duckdb_path",
    default="plowline.duckdb",
    show_default=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="DuckDB database the events are loaded into.",
)
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Collector worker processes.",
)
@click.option(
    "--models-every",
    "models_seconds",
    default=60.0,
    show_default=True,
    type=click.FloatRange(min=0),
    metavar="SECONDS",
    help="Update the analytics models (plowline models) this often while "
    "events arrive, and at the stop; 0 never.",
)
@click.option(
    "--dashboard-port",
    default=0,
    show_default=True,
    type=click.IntRange(0, 65535),
    metavar="PORT",
    help="Also serve the dashboard (plowline dashboard) on 127.0.0.1:PORT, "
    "e.g. 8090; 0 for none. A busy port leaves up running without it.",
)
@_enrich_settings
def up(
    host: str,
    port: int,
    data_dir: Path,
    duckdb_path: Path,
    workers: int,
    models_seconds: float,
    dashboard_port: int,
    enrichments: str | None,
    iglu_resolver: str | None,
) -> None:
    """Run the collector and load what it receives into DuckDB, until stopped."""
    from plowline.enrich.settings import EnrichSettings
    from plowline.errors import PlowlineError
    from plowline.up import UpConfig, run_up

    config = UpConfig(
        host=host,
        port=port,
        data_dir=data_dir,
        duckdb_path=duckdb_path,
        workers=workers,
        models_seconds=models_seconds,
        dashboard_port=dashboard_port,
        enrich=EnrichSettings(enrichments, iglu_resolver),
    )
    try:
        code = run_up(config)
    except PlowlineError as exc:
        raise click.ClickException(str(exc)) from exc
    sys.exit(code)


@cli.command()
@click.option(
    "--duckdb",
    "duckdb_paths",
    multiple=True,
    metavar="FILE",
    type=click.Path(dir_okay=False, path_type=Path),
    help="DuckDB database to load into (created if missing); repeatable.",
)
@click.option(
    "--postgres",
    "postgres_dsns",
    multiple=True,
    metavar="DSN",
    help="PostgreSQL database to load into, as a libpq connection string "
    "(postgresql://user@host:5432/db); repeatable.",
)
@click.option(
    "--parquet",
    "parquet_dirs",
    multiple=True,
    metavar="DIR",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder of Parquet files in a Hive layout (created if missing); repeatable.",
)
@click.option(
    "--failed",
    "failed_inputs",
    multiple=True,
    metavar="FILE",
    help="A failed-events JSON-lines file (from plowline enrich --bad) to load "
    "into atomic.failed_events; repeatable.",
)
@click.option(
    "--iglu-resolver",
    metavar="FILE",
    envvar="PLOWLINE_IGLU_RESOLVER",
    help="Iglu resolver configuration: child-table column types come from the "
    "JSON Schemas (else from the values seen).",
)
@click.option(
    "--batch-bytes",
    type=click.IntRange(min=1),
    envvar="PLOWLINE_LOAD_BATCH_BYTES",
    metavar="N",
    help="Load in batches of about N bytes of whole lines, one transaction "
    "each (default 128 MiB). Re-runs must use the same size to skip whole "
    "batches.",
)
@click.argument("inputs", nargs=-1, metavar="INPUT...")
def load(
    duckdb_paths: tuple[Path, ...],
    postgres_dsns: tuple[str, ...],
    parquet_dirs: tuple[Path, ...],
    failed_inputs: tuple[str, ...],
    iglu_resolver: str | None,
    batch_bytes: int | None,
    inputs: tuple[str, ...],
) -> None:
    """Load enriched TSV files (.gz too, - for standard input) into stores.

    Exactly once: each batch is one transaction, recorded in a manifest, so a
    file loaded twice is loaded once and a re-run after a crash completes the
    load. Duplicate events are dropped or re-keyed, and self-describing JSON is
    shredded into one table per schema (docs/storage.md).
    """
    from plowline.errors import PlowlineError
    from plowline.storage.loader import load_failed_files, load_files
    from plowline.storage.stores import open_store

    if not inputs and not failed_inputs:
        raise click.UsageError("Give enriched TSV inputs, --failed files, or both.")
    targets = [
        *(("duckdb", str(path)) for path in duckdb_paths),
        *(("postgres", dsn) for dsn in postgres_dsns),
        *(("parquet", str(path)) for path in parquet_dirs),
    ]
    if not targets:
        raise click.UsageError(
            "Give a store to load into: --duckdb FILE, --postgres DSN or --parquet DIR."
        )
    try:
        resolver = None
        if iglu_resolver is not None:
            from plowline.iglu.config import load_resolver

            resolver = load_resolver(iglu_resolver)
        with _spooled_stdin(inputs, len(targets)) as events_in:
            for kind, where in targets:
                store = open_store(kind, where)
                path = _shown(kind, where)
                try:
                    if events_in:
                        result = load_files(
                            store, events_in, batch_bytes=batch_bytes, resolver=resolver
                        )
                        click.echo(f"Loaded {result.events} events into {path}")
                        _echo_details(result)
                    if failed_inputs:
                        failed = load_failed_files(
                            store, failed_inputs, batch_bytes=batch_bytes
                        )
                        click.echo(f"Loaded {failed.events} failed events into {path}")
                        _echo_details(failed)
                finally:
                    store.close()
    except PlowlineError as exc:
        raise click.ClickException(str(exc)) from exc


def _shown(kind: str, where: str) -> str:
    """A store's location for messages, without a password in a DSN."""
    if kind != "postgres":
        return where
    from urllib.parse import urlsplit

    parts = urlsplit(where)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return parts._replace(netloc=netloc).geturl()
    return where


def _echo_details(result: LoadResult) -> None:
    if result.skipped_batches:
        skipped = result.skipped_batches
        were = "batch was" if skipped == 1 else "batches were"
        click.echo(f"  {skipped} {were} loaded before: skipped")
    if result.natural_duplicates or result.synthetic_duplicates:
        click.echo(
            f"  {result.natural_duplicates} duplicate events dropped, "
            f"{result.synthetic_duplicates} events sharing an id given new ids"
        )


@contextmanager
def _spooled_stdin(inputs: tuple[str, ...], readers: int) -> Iterator[tuple[str, ...]]:
    """The inputs, with standard input saved to a temporary file first when
    several stores must read it."""
    if "-" not in inputs or readers < 2:
        yield inputs
        return
    with tempfile.TemporaryDirectory(prefix="plowline-load-") as folder:
        spool = Path(folder) / "stdin.tsv"
        with open(spool, "wb") as out:
            shutil.copyfileobj(sys.stdin.buffer, out, 1 << 20)
        yield tuple(str(spool) if name == "-" else name for name in inputs)


@cli.command()
@click.option(
    "--duckdb",
    "duckdb_path",
    default="plowline.duckdb",
    show_default=True,
    metavar="FILE",
    type=click.Path(dir_okay=False, path_type=Path),
    help="DuckDB database to query.",
)
@click.option(
    "--format",
    "output_format",
    default="table",
    show_default=True,
    type=click.Choice(["table", "csv", "json"]),
    help="table for people; csv or json for scripts.",
)
@click.argument("sql")
def query(duckdb_path: Path, output_format: str, sql: str) -> None:
    """Run SQL on the DuckDB database, also while `plowline up` writes to it.

    While `plowline up` runs, the query goes through its socket (FILE.sock);
    otherwise the file is opened read-only.
    """
    from rich.console import Console

    from plowline.errors import PlowlineError
    from plowline.storage.query import (
        format_csv,
        format_json,
        rich_table,
        run_query,
    )

    try:
        result = run_query(duckdb_path, sql)
    except PlowlineError as exc:
        raise click.ClickException(str(exc)) from exc
    if output_format == "csv":
        click.echo(format_csv(result), nl=False)
    elif output_format == "json":
        click.echo(format_json(result))
    else:
        Console().print(rich_table(result))


def main() -> None:
    cli()


# -- data models and reports (docs/analytics.md) ----------------------------


def _model_store(
    command: Callable[..., None],
) -> Callable[..., None]:
    """The --duckdb and --postgres options of `models` and `report`."""
    duckdb_option = click.option(
        "--duckdb",
        "duckdb_path",
        metavar="FILE",
        type=click.Path(dir_okay=False),
        help="DuckDB database (default plowline.duckdb when no --postgres).",
    )
    postgres_option = click.option(
        "--postgres",
        "postgres_dsn",
        metavar="DSN",
        help="PostgreSQL database, as a libpq connection string.",
    )
    return duckdb_option(postgres_option(command))


def _model_target(
    duckdb_path: str | None, postgres_dsn: str | None
) -> tuple[Literal["duckdb", "postgres"], str]:
    if duckdb_path and postgres_dsn:
        raise click.UsageError("Give --duckdb FILE or --postgres DSN, not both.")
    if postgres_dsn:
        import psycopg
        from psycopg import conninfo

        try:
            conninfo.conninfo_to_dict(postgres_dsn)
        except psycopg.ProgrammingError as exc:  # its message says what is wrong
            raise click.BadParameter(
                f"not a PostgreSQL connection string or URI ({str(exc).strip()})",
                param_hint="--postgres",
            ) from None
        return "postgres", postgres_dsn
    return "duckdb", duckdb_path or "plowline.duckdb"


@cli.command()
@_model_store
@click.option(
    "--include-bots",
    is_flag=True,
    help="Keep events labelled as bots (excluded by default). A change of this "
    "setting rebuilds the models.",
)
@click.option(
    "--heartbeat",
    "heartbeat_s",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    metavar="SECONDS",
    help="The trackers' page-ping interval: each ping counts this many "
    "seconds of engaged time. A change rebuilds the models.",
)
@click.option(
    "--lookback-hours",
    type=click.IntRange(min=0),
    default=24,
    show_default=True,
    metavar="N",
    help="Events enriched up to N hours before the newest one processed are "
    "still looked for (late loads).",
)
@click.option("--full-refresh", is_flag=True, help="Rebuild from scratch.")
def models(
    duckdb_path: str | None,
    postgres_dsn: str | None,
    include_bots: bool,
    heartbeat_s: int,
    lookback_hours: int,
    full_refresh: bool,
) -> None:
    """Build or update the data models (derived.page_views, sessions, users,
    transactions, transaction_items) from atomic.events.

    Only new events are processed; a re-run with nothing new changes nothing.
    """
    from plowline.analytics import ModelSettings, update_models
    from plowline.errors import PlowlineError

    kind, where = _model_target(duckdb_path, postgres_dsn)
    try:
        settings = ModelSettings(
            include_bots=include_bots,
            heartbeat_s=heartbeat_s,
            lookback_s=lookback_hours * 3600,
            full_refresh=full_refresh,
        )
        result = update_models(kind, where, settings)
    except PlowlineError as exc:
        raise click.ClickException(str(exc)) from exc
    verb = "Built" if result.full else "Updated"
    click.echo(
        f"{verb} the models in {_shown(kind, where)}: {result.new_events} new "
        f"events, {result.sessions} sessions, {result.orders} orders and "
        f"{result.users} users re-derived in {result.seconds:.2f} s"
    )


_REPORT_NAMES = (
    "overview",
    "pages",
    "referrers",
    "campaigns",
    "devices",
    "geo",
    "ecommerce",
    "funnel",
)


@cli.command()
@click.argument("name", type=click.Choice(_REPORT_NAMES))
@click.argument("steps", nargs=-1, metavar="[STEP...]")
@_model_store
@click.option("--since", metavar="DATE", help="From this day or time (UTC).")
@click.option("--until", metavar="DATE", help="To this day (included) or time.")
@click.option("--app-id", metavar="ID", help="Only this application's sessions.")
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=50,
    show_default=True,
    help="Rows at most (pages, referrers, ...).",
)
@click.option(
    "--format",
    "output_format",
    default="table",
    show_default=True,
    type=click.Choice(["table", "csv", "json"]),
    help="table for people; csv or json for scripts.",
)
def report(
    name: str,
    steps: tuple[str, ...],
    duckdb_path: str | None,
    postgres_dsn: str | None,
    since: str | None,
    until: str | None,
    app_id: str | None,
    limit: int,
    output_format: str,
) -> None:
    """Print a report from the models: overview, pages, referrers, campaigns,
    devices, geo, ecommerce or funnel.

    funnel takes its steps in order: pages (/cart, page:/product/*) or events
    (event:NAME, a self-describing event's name or a structured event's
    action), and gives the sessions that reached each step after the one
    before. Sessions are counted by their start time.
    """
    from rich.console import Console

    from plowline.analytics import Filters, run_report
    from plowline.analytics.reports import parse_time
    from plowline.errors import PlowlineError
    from plowline.storage.query import format_csv, format_json, rich_table

    kind, where = _model_target(duckdb_path, postgres_dsn)
    try:
        filters = Filters(
            since=parse_time(since) if since else None,
            until=parse_time(until, end=True) if until else None,
            app_id=app_id,
            limit=limit,
        )
        result = run_report(kind, where, name, filters, list(steps))
    except PlowlineError as exc:
        raise click.ClickException(str(exc)) from exc
    if output_format == "csv":
        click.echo(format_csv(result), nl=False)
    elif output_format == "json":
        click.echo(format_json(result))
    else:
        Console().print(rich_table(result))


# -- the dashboard (docs/dashboard.md) ---------------------------------------


@cli.command()
@_model_store
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on. The dashboard has no login: keep it on "
    "loopback or behind a proxy that authenticates.",
)
@click.option(
    "--port",
    default=8090,
    show_default=True,
    type=click.IntRange(1, 65535),
    help="Port to listen on.",
)
def dashboard(
    duckdb_path: str | None, postgres_dsn: str | None, host: str, port: int
) -> None:
    """Serve the analytics dashboard: the reports of `plowline report` as web
    pages, filtered by date range and app, and a live view of the last 30
    minutes. Reads DuckDB through `plowline up`'s query socket while it runs."""
    from plowline.dashboard.server import DashboardConfig, serve
    from plowline.errors import PlowlineError

    kind, where = _model_target(duckdb_path, postgres_dsn)
    try:
        serve(DashboardConfig(kind, where, host, port))
    except PlowlineError as exc:
        raise click.ClickException(str(exc)) from exc
