"""Load enriched events and failed events into a DuckDB file.

``atomic.events`` has one column per field of the enriched TSV, in TSV order, typed
from the field's kind; ``atomic.failed_events`` keeps failed-event records whole.
Text is converted in SQL, a batch at a time: rows become one Arrow table of string
columns and a single ``INSERT ... SELECT CAST(...)`` turns it into typed columns.
"""

from __future__ import annotations

import gzip
import io
import logging
import re
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, nullcontext, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import IO, Any

import duckdb
import orjson
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.csv as pcsv  # type: ignore[import-untyped]

from plowline.enrich.fields import FIELD_NAMES, FIELDS, REQUIRED_FIELDS, Field, Kind
from plowline.errors import BadInputError, ConfigurationError, StoreUnavailableError

log = logging.getLogger(__name__)

EVENTS_TABLE = "atomic.events"
FAILED_EVENTS_TABLE = "atomic.failed_events"

_WIDTH = len(FIELDS)
_BATCH_VIEW = "plowline_batch"
_ByteStream = IO[bytes] | io.BufferedIOBase
_SHOWN_CHARS = 80

_SQL_TYPES: dict[Kind, str] = {
    "str": "VARCHAR",
    "int": "INTEGER",
    "bool": "BOOLEAN",
    "tstamp": "TIMESTAMP",
    "dec": "DECIMAL(18,2)",
    "float": "DOUBLE",
    "json": "JSON",
}

# DuckDB's casts accept more than the enriched TSV allows, and some of it silently
# changes the value: "1.5" casts to the integer 2, "true" to a boolean and a
# timestamp's "+02:00" offset is dropped. These checks run before the cast.
_TEXT_CHECKS: dict[Kind, str] = {
    "int": "regexp_full_match({v}, '-?[0-9]+')",
    "bool": "{v} IN ('0', '1')",
    "tstamp": (
        "regexp_full_match({v}, "
        "'[0-9]{4}-[0-9]{2}-[0-9]{2}[ T][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,6})?Z?')"
    ),
}

_PROBLEMS: dict[Kind, str] = {
    "int": "is not a whole number in the 32-bit range",
    "bool": "is not 1 or 0",
    "tstamp": "is not a UTC timestamp like 2026-12-04 15:29:10.526",
    "dec": "is not a decimal number that fits DECIMAL(18,2)",
    "float": "is not a number",
    "json": "is not valid JSON",
}

# Known limitation: money (DECIMAL(18,2)) with more than two decimal places is
# rounded to two by the cast, as the Redshift and Postgres DDL of Snowplow would.

_TSV_PARSE = pcsv.ParseOptions(
    delimiter="\t",
    quote_char=False,
    escape_char=False,
    double_quote=False,
    newlines_in_values=False,
    ignore_empty_lines=False,
)
_TSV_CONVERT = pcsv.ConvertOptions(
    column_types={name: pa.string() for name in FIELD_NAMES},
    strings_can_be_null=True,
    null_values=[""],
)
_TSV_READ = pcsv.ReadOptions(column_names=list(FIELD_NAMES), block_size=4 << 20)

_BADROW_SCHEMA = re.compile(
    r"iglu:com\.snowplowanalytics\.snowplow\.badrows/([A-Za-z0-9_]+)"
    r"/jsonschema/\d+-\d+-\d+"
)
_MESSAGE_CHARS = 300


@dataclass(frozen=True)
class LoadResult:
    """What ``load_files`` loaded: the total and the count for each input."""

    db_path: Path
    events: int
    inputs: tuple[tuple[str, int], ...]


def connect(path: str | Path, *, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """Open a DuckDB file, turning DuckDB's open errors into Plowline's."""
    try:
        return duckdb.connect(str(path), read_only=read_only)
    except duckdb.IOException as exc:
        text = str(exc)
        if read_only and "does not exist" in text:
            raise ConfigurationError(f"There is no DuckDB database at {path}.") from exc
        if "lock" in text.lower():
            raise StoreUnavailableError(_locked_message(path, text)) from exc
        raise StoreUnavailableError(
            f"Cannot open the DuckDB file {path}: {text}"
        ) from exc
    except duckdb.ConnectionException as exc:
        raise StoreUnavailableError(
            f"The DuckDB file {path} is already open in this process with other "
            f"settings (read-only or not); use that connection: {exc}"
        ) from exc


def _locked_message(path: str | Path, detail: str) -> str:
    # DuckDB's own text names the process that holds the lock, with its PID.
    detail = detail.split(". See also", 1)[0]
    return (
        f"The DuckDB file {path} is locked by another process ({detail}). DuckDB "
        "lets one process write to a file and no other process open it meanwhile: "
        "wait for that process to finish or stop it. While `plowline up` owns the "
        f"file, `plowline query` asks it through its socket {path}.sock."
    )


def ensure_schema(conn: duckdb.DuckDBPyConnection) -> None:
    """Create ``atomic.events`` and ``atomic.failed_events`` unless they exist."""
    # Known limitation: tables that already exist are not compared with FIELDS;
    # a file made with another layout fails on the first insert.
    conn.execute("CREATE SCHEMA IF NOT EXISTS atomic")
    conn.execute(events_ddl())
    conn.execute(
        f"CREATE TABLE IF NOT EXISTS {FAILED_EVENTS_TABLE} ("
        "failed_at TIMESTAMP NOT NULL, failure_type VARCHAR NOT NULL, "
        "message VARCHAR, failed_event JSON NOT NULL)"
    )


def events_ddl() -> str:
    """The ``CREATE TABLE`` statement of ``atomic.events``, derived from FIELDS."""
    columns = ",\n".join(f"    {_column_ddl(field)}" for field in FIELDS)
    return f"CREATE TABLE IF NOT EXISTS {EVENTS_TABLE} (\n{columns}\n)"


def _column_ddl(field: Field) -> str:
    ddl = f"{_quote(field.name)} {_SQL_TYPES[field.kind]}"
    return f"{ddl} NOT NULL" if field.name in REQUIRED_FIELDS else ddl


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _cast_expr(field: Field) -> str:
    column = _quote(field.name)
    if field.kind == "str":
        return column

    check = _TEXT_CHECKS.get(field.kind)
    if check is not None:
        # The error text is only a fallback: _diagnose names the row and value.
        column = (
            f"CASE WHEN {column} IS NULL OR {check.replace('{v}', column)} "
            f"THEN {column} ELSE error('invalid {field.name}') END"
        )
    return f"CAST({column} AS {_SQL_TYPES[field.kind]})"


_INSERT_EVENTS = (
    f"INSERT INTO {EVENTS_TABLE} ({', '.join(map(_quote, FIELD_NAMES))})\n"
    f"SELECT {', '.join(map(_cast_expr, FIELDS))}\nFROM {_BATCH_VIEW}"
)

_INSERT_REJECTIONS = (
    duckdb.ConversionException,
    duckdb.ConstraintException,
    duckdb.InvalidInputException,
    duckdb.OutOfRangeException,
)


@contextmanager
def _transaction(conn: duckdb.DuckDBPyConnection) -> Iterator[None]:
    conn.begin()
    try:
        yield
    except BaseException:
        conn.rollback()
        # A failed INSERT leaves its batch registered: DuckDB refuses to unregister
        # it until the aborted transaction is rolled back.
        with suppress(duckdb.Error):
            conn.unregister(_BATCH_VIEW)
        raise
    try:
        conn.commit()
    except duckdb.IOException as exc:
        raise StoreUnavailableError(f"Could not commit to DuckDB: {exc}") from exc


def load_rows(
    conn: duckdb.DuckDBPyConnection,
    rows: Iterable[Sequence[str]],
    *,
    batch_size: int = 50_000,
    transaction: bool = True,
) -> int:
    """Insert enriched rows (131 TSV strings each, ``""`` for NULL) in one transaction.

    Returns the number of rows. Raises BadInputError naming the row (1-based), the
    field and the value when a row does not fit; then nothing is inserted. The
    transaction is this function's own unless ``transaction=False``, for callers
    that write more in the same transaction (and roll it back on an error).
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")

    with _transaction(conn) if transaction else nullcontext():
        return _insert_rows(conn, rows, batch_size)


def _insert_rows(
    conn: duckdb.DuckDBPyConnection, rows: Iterable[Sequence[str]], batch_size: int
) -> int:
    iterator = iter(rows)
    count = 0
    while batch := list(islice(iterator, batch_size)):
        table = _rows_to_table(batch, first_row=count + 1)
        _insert_table(conn, table, first_row=count + 1, source=None)
        count += len(batch)
    return count


def _rows_to_table(batch: list[Sequence[str]], first_row: int) -> pa.Table:
    # Joining to TSV text and letting Arrow's C++ reader split it is several times
    # faster than transposing the rows in Python, and touches each value once.
    if set(map(len, batch)) != {_WIDTH}:
        raise _row_problem(batch, first_row)
    try:
        data = "\n".join(map("\t".join, batch)).encode("utf-8")
        table = pcsv.read_csv(
            io.BytesIO(data),
            read_options=_TSV_READ,
            parse_options=_TSV_PARSE,
            convert_options=_TSV_CONVERT,
        )
    except (TypeError, UnicodeError, pa.ArrowInvalid) as exc:
        raise _row_problem(batch, first_row) from exc

    # A tab or line break inside a value shifts fields or splits the row.
    if table.num_rows != len(batch):
        raise _row_problem(batch, first_row)
    return table


def _row_problem(batch: list[Sequence[str]], first_row: int) -> BadInputError:
    for offset, row in enumerate(batch):
        number = first_row + offset
        if len(row) != _WIDTH:
            return BadInputError(
                f"Row {number} has {len(row)} fields; an enriched event has "
                f"{_WIDTH}. Nothing was loaded.",
                line=number,
            )
        for field, value in zip(FIELDS, row, strict=True):
            problem = _text_problem(value)
            if problem is not None:
                return BadInputError(
                    f"Row {number}: field {field.name} {problem}: "
                    f"{_show(value)}. Nothing was loaded.",
                    line=number,
                )
    last = first_row + len(batch) - 1
    return BadInputError(
        f"Rows {first_row} to {last} could not be read as enriched events. "
        "Nothing was loaded.",
        line=first_row,
    )


def _text_problem(value: object) -> str | None:
    if not isinstance(value, str):
        return f"is not text but {type(value).__name__}"
    if "\t" in value or "\n" in value or "\r" in value:
        return "contains a tab or line break, which the enriched TSV cannot carry"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid Unicode text"
    return None


def _show(value: object) -> str:
    text = repr(value)
    if len(text) <= _SHOWN_CHARS:
        return text
    return text[: _SHOWN_CHARS - 1] + "…"


def _insert_table(
    conn: duckdb.DuckDBPyConnection,
    table: pa.Table,
    *,
    first_row: int,
    source: str | None,
) -> None:
    """Insert one batch; ``first_row`` is its first row's (or line's) number."""
    conn.register(_BATCH_VIEW, table)
    try:
        conn.execute(_INSERT_EVENTS)
    except _INSERT_REJECTIONS as exc:
        raise _diagnose(conn, table, first_row, source, exc) from exc
    except duckdb.IOException as exc:
        raise StoreUnavailableError(f"Could not write to DuckDB: {exc}") from exc
    conn.unregister(_BATCH_VIEW)


def _where(source: str | None, number: int) -> str:
    return f"Row {number}" if source is None else f"{source}, line {number}"


def _diagnose(
    conn: duckdb.DuckDBPyConnection,
    table: pa.Table,
    first_row: int,
    source: str | None,
    exc: duckdb.Error,
) -> BadInputError:
    """Find the first row and field that made DuckDB reject a batch."""
    numbered = table.append_column(
        "plowline_row", pa.array(range(table.num_rows), pa.int64())
    )
    # The failed INSERT left conn's transaction aborted; a cursor is a connection
    # of its own, so it can still read the batch.
    cursor = conn.cursor()
    try:
        cursor.register(_BATCH_VIEW, numbered)
        found = cursor.execute(_DIAGNOSE_SQL).fetchone()
    finally:
        cursor.close()

    if found is None:
        last = first_row + table.num_rows - 1
        return BadInputError(
            f"{_where(source, first_row)} to {last} were rejected by DuckDB: {exc}. "
            "Nothing was loaded.",
            source=source,
            line=first_row,
        )
    offset, index = int(found[0]), int(found[1])
    field = FIELDS[index]
    value = table.column(index)[offset].as_py()
    if value is None:
        detail = f"field {field.name} is empty, but every event must have it"
    else:
        detail = f"field {field.name} {_PROBLEMS[field.kind]}: {_show(value)}"
    number = first_row + offset
    return BadInputError(
        f"{_where(source, number)}: {detail}. Nothing was loaded.",
        source=source,
        line=number,
    )


def _bad_value_sql(field: Field) -> str | None:
    column = _quote(field.name)
    tests = []
    if field.name in REQUIRED_FIELDS:
        tests.append(f"{column} IS NULL")
    if field.kind != "str":
        valid = f"TRY_CAST({column} AS {_SQL_TYPES[field.kind]}) IS NOT NULL"
        check = _TEXT_CHECKS.get(field.kind)
        if check is not None:
            valid = f"{check.replace('{v}', column)} AND {valid}"
        tests.append(f"({column} IS NOT NULL AND NOT ({valid}))")
    return " OR ".join(tests) or None


def _diagnose_sql() -> str:
    parts = []
    for index, field in enumerate(FIELDS):
        bad = _bad_value_sql(field)
        if bad is not None:
            parts.append(
                f"SELECT min(plowline_row) AS r, {index} AS f "
                f"FROM {_BATCH_VIEW} WHERE {bad}"
            )
    union = "\nUNION ALL ".join(parts)
    return f"SELECT r, f FROM ({union}) WHERE r IS NOT NULL ORDER BY r, f LIMIT 1"


_DIAGNOSE_SQL = _diagnose_sql()


def read_tsv(path_or_dash: str | Path) -> Iterator[list[str]]:
    """Yield the rows of an enriched TSV file (``-`` for stdin, ``.gz`` unpacked).

    A line ends with LF or CRLF; a line without 131 fields, or with a carriage
    return inside, raises BadInputError naming the file and line.
    """
    source = str(path_or_dash)
    with _open_binary(source) as stream:
        for number, raw in enumerate(_read_or_fail(stream, source), start=1):
            yield _split_line(_decode_line(raw, source, number), source, number)


@contextmanager
def _open_binary(source: str) -> Iterator[_ByteStream]:
    if source == "-":
        yield sys.stdin.buffer
        return

    # Opened apart from the with below so that only opening errors are translated.
    try:
        if source.endswith(".gz"):
            stream: _ByteStream = gzip.open(source, "rb")  # noqa: SIM115
        else:
            stream = open(source, "rb")  # noqa: SIM115
    except OSError as exc:
        raise BadInputError(
            f"Cannot read {source}: {exc.strerror or exc}.", source=source
        ) from exc
    with stream:
        yield stream


def _read_or_fail(stream: _ByteStream, source: str) -> Iterator[bytes]:
    try:
        yield from stream
    except (OSError, EOFError) as exc:
        raise BadInputError(f"Cannot read {source}: {exc}.", source=source) from exc


def _decode_line(raw: bytes, source: str, number: int) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadInputError(
            f"{source}, line {number}: not valid UTF-8 ({exc.reason} at byte "
            f"{exc.start}).",
            source=source,
            line=number,
        ) from exc


def _split_line(line: str, source: str, number: int) -> list[str]:
    line = line.removesuffix("\n").removesuffix("\r")
    if "\r" in line:
        raise BadInputError(
            f"{source}, line {number}: a field contains a carriage return, which "
            "the enriched TSV never carries.",
            source=source,
            line=number,
        )
    fields = line.split("\t")
    if len(fields) != _WIDTH:
        hint = ""
        if line.startswith("{"):
            hint = " It looks like JSON: load failed events with --failed."
        raise BadInputError(
            f"{source}, line {number} has {len(fields)} fields; an enriched event "
            f"has {_WIDTH}.{hint}",
            source=source,
            line=number,
        )
    return fields


def load_files(
    db_path: str | Path, inputs: Sequence[str], *, chunk_bytes: int = 16 << 20
) -> LoadResult:
    """Load enriched TSV files into ``atomic.events``: all of them, or none.

    Files are read and inserted ``chunk_bytes`` of whole lines at a time.
    """
    if not inputs:
        raise BadInputError("No input files were given.")

    conn = connect(db_path)
    try:
        ensure_schema(conn)
        with _transaction(conn):
            counts = tuple(
                (source, _insert_tsv(conn, source, chunk_bytes)) for source in inputs
            )
    finally:
        conn.close()

    total = sum(count for _, count in counts)
    log.info("Loaded %d events from %d inputs into %s", total, len(counts), db_path)
    return LoadResult(Path(db_path), total, counts)


def _insert_tsv(conn: duckdb.DuckDBPyConnection, source: str, chunk_bytes: int) -> int:
    started = time.perf_counter()
    count = 0
    with _open_binary(source) as stream:
        for chunk in _line_chunks(stream, source, chunk_bytes):
            first_line = count + 1
            table = _parse_chunk(chunk, source, first_line)
            try:
                _insert_table(conn, table, first_row=first_line, source=source)
            except BadInputError as exc:
                # Arrow reads a blank line as a row of nulls, which DuckDB then
                # rejects for a missing field; the line rules name the real fault.
                problem = _line_problem(chunk, source, first_line)
                if problem is None:
                    raise
                raise problem from exc
            count += table.num_rows
    log.info(
        "Read %d events from %s in %.2f s", count, source, time.perf_counter() - started
    )
    return count


def _line_chunks(stream: _ByteStream, source: str, chunk_bytes: int) -> Iterator[bytes]:
    """Yield the stream in pieces of about chunk_bytes that end at a line end."""
    rest = b""
    while True:
        try:
            block = stream.read(chunk_bytes)
        except (OSError, EOFError) as exc:
            raise BadInputError(f"Cannot read {source}: {exc}.", source=source) from exc
        if not block:
            break
        data = rest + block
        cut = data.rfind(b"\n") + 1
        rest = data[cut:]
        if cut:
            yield data[:cut]
    if rest:
        yield rest


def _parse_chunk(chunk: bytes, source: str, first_line: int) -> pa.Table:
    expected = chunk.count(b"\n") + (not chunk.endswith(b"\n"))
    try:
        table = pcsv.read_csv(
            io.BytesIO(chunk),
            read_options=_TSV_READ,
            parse_options=_TSV_PARSE,
            convert_options=_TSV_CONVERT,
        )
    except pa.ArrowInvalid as exc:
        raise _chunk_problem(chunk, source, first_line, str(exc)) from exc

    # Arrow also ends a line at a lone CR, which the line rules reject.
    if table.num_rows != expected:
        raise _chunk_problem(chunk, source, first_line, "line count differs")
    return table


def _chunk_problem(
    chunk: bytes, source: str, first_line: int, detail: str
) -> BadInputError:
    """The first bad line of a chunk Arrow refused, or the chunk's line range."""
    problem = _line_problem(chunk, source, first_line)
    if problem is not None:
        return problem
    last_line = first_line + chunk.count(b"\n") - chunk.endswith(b"\n")
    return BadInputError(
        f"{source}, lines {first_line} to {last_line} could not be read as "
        f"enriched events ({detail}).",
        source=source,
        line=first_line,
    )


def _line_problem(chunk: bytes, source: str, first_line: int) -> BadInputError | None:
    """Check a chunk line by line, as read_tsv would, for the first bad line."""
    lines = chunk.split(b"\n")
    if chunk.endswith(b"\n"):
        lines.pop()
    for offset, raw in enumerate(lines):
        number = first_line + offset
        try:
            _split_line(_decode_line(raw, source, number), source, number)
        except BadInputError as exc:
            return exc
    return None


def load_failed(
    conn: duckdb.DuckDBPyConnection,
    failed: Iterable[bytes | str],
    *,
    batch_size: int = 50_000,
    transaction: bool = True,
) -> int:
    """Insert failed-event JSON lines into ``atomic.failed_events``, all or none.

    Blank lines are skipped; line numbers in errors count them. ``transaction``
    is as for :func:`load_rows`.
    """
    records = (
        _failed_record(line, number)
        for number, line in enumerate(failed, start=1)
        if line.strip()
    )
    count = 0
    with _transaction(conn) if transaction else nullcontext():
        while batch := list(islice(records, batch_size)):
            _insert_failed(conn, batch)
            count += len(batch)
    return count


_FailedRecord = tuple[datetime, str, str | None, str]

_INSERT_FAILED = (
    f"INSERT INTO {FAILED_EVENTS_TABLE} "
    "(failed_at, failure_type, message, failed_event) "
    "SELECT failed_at, failure_type, message, CAST(failed_event AS JSON) "
    f"FROM {_BATCH_VIEW}"
)


def _insert_failed(conn: duckdb.DuckDBPyConnection, batch: list[_FailedRecord]) -> None:
    failed_at, failure_type, message, failed_event = zip(*batch, strict=True)
    table = pa.table(
        {
            "failed_at": pa.array(failed_at, pa.timestamp("us")),
            "failure_type": pa.array(failure_type, pa.string()),
            "message": pa.array(message, pa.string()),
            "failed_event": pa.array(failed_event, pa.string()),
        }
    )
    conn.register(_BATCH_VIEW, table)
    conn.execute(_INSERT_FAILED)
    conn.unregister(_BATCH_VIEW)


def _failed_record(line: bytes | str, number: int) -> _FailedRecord:
    try:
        text = (line.decode("utf-8") if isinstance(line, bytes) else line).strip()
        document = orjson.loads(text)
    except UnicodeDecodeError as exc:
        raise _failed_problem(number, f"is not UTF-8 ({exc.reason})") from exc
    except orjson.JSONDecodeError as exc:
        raise _failed_problem(number, f"is not JSON ({exc})") from exc
    if not isinstance(document, dict):
        raise _failed_problem(number, "is not a JSON object")

    schema = document.get("schema")
    match = _BADROW_SCHEMA.fullmatch(schema) if isinstance(schema, str) else None
    if match is None:
        raise _failed_problem(
            number,
            f"has schema {_show(schema)}, not iglu:com.snowplowanalytics.snowplow"
            ".badrows/<type>/jsonschema/<version>",
        )
    data = document.get("data")
    failure = data.get("failure") if isinstance(data, dict) else None
    if not isinstance(failure, dict):
        raise _failed_problem(number, "has no data.failure object")

    failed_at = _parse_timestamp(failure.get("timestamp"), number)
    return failed_at, match.group(1), _failure_text(failure), text


def _failed_problem(number: int, problem: str) -> BadInputError:
    return BadInputError(
        f"Failed event {number} {problem}. Nothing was loaded.", line=number
    )


def _parse_timestamp(value: object, number: int) -> datetime:
    if not isinstance(value, str):
        raise _failed_problem(number, "has no data.failure.timestamp")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise _failed_problem(
            number, f"has a failure timestamp that is not ISO 8601: {_show(value)}"
        ) from exc
    if parsed.tzinfo is None:
        return parsed
    return parsed.astimezone(UTC).replace(tzinfo=None)


def _failure_text(failure: dict[str, Any]) -> str | None:
    """A short text for the failure: its first message, whatever its shape."""
    for key in ("messages", "errors"):
        items = failure.get(key)
        if isinstance(items, list) and items:
            return _shorten(_render(items[0]))
    for key in ("message", "expectation", "error"):
        if failure.get(key) is not None:
            return _shorten(_render(failure[key]))
    return None


def _render(value: object) -> str:
    if isinstance(value, str):
        return value
    if not isinstance(value, dict):
        return orjson.dumps(value).decode()

    label = _label(value)
    reports = value.get("dataReports")
    if isinstance(reports, list) and reports:
        return _join_label(label, _render(reports[0]))
    for key in ("message", "error", "expectation"):
        if value.get(key) is not None:
            return _join_label(label, _render(value[key]))
    return orjson.dumps(value).decode()


def _label(message: dict[str, Any]) -> str | None:
    """Which field, schema or enrichment a bad-row message is about."""
    field = message.get("field") or message.get("payloadField")
    if isinstance(field, str):
        if "value" in message:
            shown = orjson.dumps(message["value"]).decode()
            return f"{field} {_shorten(shown, 60)}"
        return field
    enrichment = message.get("enrichment")
    if isinstance(enrichment, dict) and isinstance(enrichment.get("identifier"), str):
        return str(enrichment["identifier"])
    schema = message.get("schemaKey") or message.get("schema")
    return schema if isinstance(schema, str) else None


def _join_label(label: str | None, text: str) -> str:
    return text if label is None else f"{label}: {text}"


def _shorten(text: str, limit: int = _MESSAGE_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def load_failed_files(db_path: str | Path, inputs: Sequence[str]) -> int:
    """Load failed-event JSON-lines files (``.gz`` too, ``-`` for standard input)
    into ``atomic.failed_events``: all of them, or none."""
    conn = connect(db_path)
    try:
        ensure_schema(conn)
        with _transaction(conn):
            total = 0
            for source in inputs:
                with _open_binary(source) as stream:
                    total += load_failed(conn, stream, transaction=False)
                log.info("Loaded failed events from %s", source)
    finally:
        conn.close()
    return total
