"""SQL queries on a DuckDB file, also while another process holds it for writing.

DuckDB lets one process open a file for writing, and no other process open it at
all meanwhile. So the process that owns the database (``plowline up``) runs a
QueryServer: a Unix domain socket next to the file (``<db file>.sock``, mode 0600)
that takes one JSON request per connection, ``{"sql": "..."}``, and answers
``{"columns": [...], "types": [...], "rows": [[...]]}`` or ``{"error": "..."}``.
``run_query`` asks that socket when something answers on it, and otherwise opens
the file read-only itself.

The socket serves only reading statements (SELECT, EXPLAIN), like the read-only
file, and only to whoever can open the socket file (mode 0600, the owner).
Known limitation: a result is built whole in memory on both sides, and a query
runs as long as it takes; there is no row limit or time limit.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import os
import re
import socket
import socketserver
import tempfile
import threading
import time as clock
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from time import monotonic, sleep
from types import TracebackType
from typing import Any, Literal
from uuid import UUID

import duckdb
import orjson
from rich.table import Table
from rich.text import Text

from plowline.errors import BadInputError, ConfigurationError, StoreUnavailableError
from plowline.storage.duckdb import connect

log = logging.getLogger(__name__)

SOCKET_SUFFIX = ".sock"

_MAX_REQUEST_BYTES = 1 << 20
_REQUEST_TIMEOUT_S = 30.0
_CONNECT_TIMEOUT_S = 5.0
_READ_CHUNK = 1 << 16

ConnectionSource = duckdb.DuckDBPyConnection | Callable[[], duckdb.DuckDBPyConnection]


@dataclass(frozen=True)
class QueryResult:
    """A query's answer; values are JSON types, others already turned into text."""

    columns: list[str]
    types: list[str]
    rows: list[list[Any]]
    via: Literal["socket", "file", "connection"] = "connection"


def socket_path_for(db_path: str | Path) -> Path:
    """Where the process that owns ``db_path`` serves queries."""
    return Path(f"{db_path}{SOCKET_SUFFIX}")


def execute(conn: duckdb.DuckDBPyConnection, sql: str) -> QueryResult:
    """Run SQL on a connection and return the result in JSON-ready values."""
    cursor = conn.execute(sql)
    if cursor.description is None:
        return QueryResult([], [], [])

    columns = [str(column[0]) for column in cursor.description]
    types = [str(column[1]) for column in cursor.description]
    rows = [[to_json_value(value) for value in row] for row in cursor.fetchall()]
    return QueryResult(columns, types, rows)


def to_json_value(value: object) -> Any:
    """A value JSON can carry: text for timestamps, decimals, UUIDs and the like."""
    if value is None or isinstance(value, str | bool):
        return value
    if isinstance(value, int):
        # HUGEINT and UBIGINT reach past the 64 bits JSON readers keep exactly.
        return value if -(2**63) <= value < 2**63 else str(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else _float_text(value)
    if isinstance(value, datetime):
        return _datetime_text(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, time):
        return value.isoformat(timespec="milliseconds" if _whole_ms(value) else "auto")
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, bytes | bytearray | memoryview):
        # Printable ASCII stays readable; other bytes become \xNN, as DuckDB shows them.
        return bytes(value).decode("ascii", "backslashreplace")
    if isinstance(value, list | tuple):
        return [to_json_value(item) for item in value]
    if isinstance(value, dict):
        return {str(key): to_json_value(item) for key, item in value.items()}
    if isinstance(value, UUID | timedelta):
        return str(value)
    return str(value)


def _float_text(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


def _whole_ms(value: datetime | time) -> bool:
    return value.microsecond % 1000 == 0


def _datetime_text(value: datetime) -> str:
    # The enriched TSV's form, yyyy-MM-dd HH:mm:ss.SSS, with microseconds only
    # when there are any below the millisecond.
    return value.isoformat(
        sep=" ", timespec="milliseconds" if _whole_ms(value) else "microseconds"
    )


class QueryServer:
    """Serves SQL on a Unix socket from the process that owns a DuckDB file.

    ``source`` is the owning connection (each request then runs on its own
    cursor) or a function returning a fresh connection per request.
    """

    def __init__(self, source: ConnectionSource, socket_path: str | Path) -> None:
        self._owner: duckdb.DuckDBPyConnection | None = None
        self._base: duckdb.DuckDBPyConnection | None = None
        if isinstance(source, duckdb.DuckDBPyConnection):
            self._owner = source
            self._connect: Callable[[], duckdb.DuckDBPyConnection] = self._cursor
        else:
            self._connect = source
        self.socket_path = Path(socket_path)
        self._lock = threading.Lock()
        self._server: _UnixServer | None = None
        self._thread: threading.Thread | None = None
        self._inode: int | None = None
        self._active: set[duckdb.DuckDBPyConnection] = set()

    def __enter__(self) -> QueryServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Bind the socket and answer requests in a background thread."""
        if self._server is not None:
            return
        _check_socket_free(self.socket_path)

        try:
            server = _UnixServer(str(self.socket_path), self.answer)
        except OSError as exc:
            raise ConfigurationError(
                f"Cannot serve queries on {self.socket_path}: "
                f"{exc.strerror or exc}. Unix socket paths are limited to about "
                "100 bytes; a shorter path to the database may help."
            ) from exc
        self._inode = self.socket_path.stat().st_ino
        self._server = server
        if self._owner is not None:
            # The owner's connection belongs to its thread (a loader may be
            # inserting on it): request cursors come from a base cursor made here.
            self._base = self._owner.cursor()
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.2},
            name="plowline-query-server",
            daemon=True,
        )
        self._thread.start()
        log.info("Serving SQL queries on %s", self.socket_path)

    def stop(self) -> None:
        """Stop answering and remove the socket file."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        with self._lock:
            # A long query must not hold up a shutdown: it is interrupted, and
            # its client is told so.
            for conn in self._active:
                conn.interrupt()
        server.shutdown()
        server.server_close()
        thread.join()
        # Request threads are daemons: wait (briefly) for interrupted ones to
        # let go of their cursors before the base cursor closes.
        deadline = monotonic() + _STOP_WAIT_S
        while self._active and monotonic() < deadline:
            sleep(0.01)
        self._server = self._thread = None
        self._remove_socket_file()
        if self._base is not None:
            with self._lock, suppress(duckdb.Error):
                self._base.close()
            self._base = None

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        if self._base is None:
            raise duckdb.ConnectionException("the query server is stopped")
        return self._base.cursor()

    def _remove_socket_file(self) -> None:
        # Another server may have replaced a socket file we no longer answer on.
        try:
            if self.socket_path.stat().st_ino == self._inode:
                self.socket_path.unlink()
        except FileNotFoundError:
            pass

    def answer(self, request: bytes) -> bytes:
        """The JSON reply to one JSON request; never raises for a bad request."""
        if len(request) > _MAX_REQUEST_BYTES:
            return _error_reply(f"The request is over {_MAX_REQUEST_BYTES} bytes.")
        try:
            sql = orjson.loads(request)["sql"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            sql = None
        if not isinstance(sql, str):
            return _error_reply('Expected a JSON object {"sql": "..."}.')

        if not sql.strip(_BLANK_SQL):
            return _error_reply(_EMPTY_QUERY)

        try:
            with self._lock:
                conn = self._connect()
                self._active.add(conn)
        except duckdb.Error as exc:
            return _error_reply(f"The database cannot be queried now: {exc}")
        try:
            problem = _not_read_only(conn, sql)
            if problem is not None:
                return _error_reply(problem)
            result = execute(conn, sql)
        except duckdb.Error as exc:
            log.debug("Query failed: %s", exc)
            return _error_reply(str(exc))
        finally:
            with self._lock:
                self._active.discard(conn)
                conn.close()
        reply = {"columns": result.columns, "types": result.types, "rows": result.rows}
        return orjson.dumps(reply)


_STOP_WAIT_S = 5.0
_BLANK_SQL = " \t\r\n;"
_EMPTY_QUERY = "The query is empty: give an SQL statement such as SELECT 1."

# The socket serves reads, as the read-only file does when nothing serves it:
# the database belongs to the process that loads it.
_READ_STATEMENTS = frozenset(
    {duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN}
)


def _not_read_only(conn: duckdb.DuckDBPyConnection, sql: str) -> str | None:
    try:
        statements = conn.extract_statements(sql)
    except duckdb.Error:
        return None  # the query itself reports the syntax error
    for statement in statements:
        if statement.type not in _READ_STATEMENTS:
            kind = statement.type.name
            article = "an" if kind[:1] in "AEIOU" else "a"
            return (
                f"Only reading queries are served here; this is {article} {kind} "
                "statement. "
                "Stop `plowline up` to change the database."
            )
    return None


def _error_reply(message: str) -> bytes:
    return orjson.dumps({"error": message})


def _check_socket_free(path: Path) -> None:
    if not path.exists():
        return
    if not path.is_socket():
        raise ConfigurationError(
            f"{path} exists and is not a socket; move it away to serve queries there."
        )
    if _answers(path):
        raise ConfigurationError(f"Another process already serves queries on {path}.")


def _answers(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(_CONNECT_TIMEOUT_S)
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True


class _Handler(socketserver.StreamRequestHandler):
    timeout = _REQUEST_TIMEOUT_S

    def handle(self) -> None:
        # The client half-closes after its request, so reading to EOF gets it all.
        request = self.rfile.read(_MAX_REQUEST_BYTES + 1)
        assert isinstance(self.server, _UnixServer)
        self.wfile.write(self.server.answer(request))


class _UnixServer(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True
    block_on_close = False
    # Connections waiting to be accepted (socketserver's default is 5): a
    # dashboard or a script may send many queries at once.
    request_queue_size = 128

    def __init__(self, path: str, answer: Callable[[bytes], bytes]) -> None:
        self.answer = answer
        self.target = Path(path)
        super().__init__(path, _Handler)

    def server_bind(self) -> None:
        # Bind in a fresh 0700 directory, set 0600, then move the socket into
        # place: no other user can connect in between, and a stale socket file
        # is replaced in one step.
        target = self.target
        private = Path(tempfile.mkdtemp(prefix=".plowline-", dir=target.parent))
        staging = private / "s"
        try:
            self.socket.bind(str(staging))
            os.chmod(staging, 0o600)
            os.replace(staging, target)
        finally:
            staging.unlink(missing_ok=True)
            private.rmdir()
        self.server_address = str(target)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that vanished or never finished its request: nothing to report
        # beyond the log, and no traceback on stderr.
        log.debug("Query request from a client failed", exc_info=True)


def run_query(db_path: str | Path, sql: str) -> QueryResult:
    """Run SQL on a DuckDB file: through its socket if it is served, else read-only."""
    if not sql.strip(_BLANK_SQL):
        raise BadInputError(_EMPTY_QUERY)
    sock = socket_path_for(db_path)
    if sock.exists():
        reply = _ask_server(sock, sql)
        if reply is not None:
            return reply

    try:
        conn = connect(db_path, read_only=True)
    except ConfigurationError as exc:
        raise ConfigurationError(
            f"{exc} Load events into it first (`plowline load` or `plowline up`), "
            "or name another database with --duckdb FILE."
        ) from exc
    except StoreUnavailableError as exc:
        raise StoreUnavailableError(
            f"No query server answers on {sock}, and the file cannot be opened "
            f"read-only: {exc}"
        ) from exc
    try:
        result = execute(conn, sql)
    except duckdb.Error as exc:
        raise BadInputError(f"The query failed: {_headline(str(exc))}") from exc
    finally:
        conn.close()
    return QueryResult(result.columns, result.types, result.rows, via="file")


def _ask_server(sock: Path, sql: str) -> QueryResult | None:
    """Send SQL to a query server; None when nobody listens on the socket."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(_CONNECT_TIMEOUT_S)
        deadline = clock.monotonic() + _CONNECT_TIMEOUT_S
        while True:
            try:
                client.connect(str(sock))
                break
            except (ConnectionRefusedError, FileNotFoundError):
                return None
            except BlockingIOError as exc:
                # Every waiting place of the server is taken: wait a little.
                if clock.monotonic() > deadline:
                    raise StoreUnavailableError(
                        f"The query server on {sock} is busy: no answer within "
                        f"{_CONNECT_TIMEOUT_S:.0f} s; try again."
                    ) from exc
                clock.sleep(0.01)
            except OSError as exc:
                raise StoreUnavailableError(
                    f"Cannot reach the query server on {sock}: {exc.strerror or exc}."
                ) from exc

        # The query itself may take long: no timeout once it is sent.
        client.settimeout(None)
        client.sendall(orjson.dumps({"sql": sql}))
        client.shutdown(socket.SHUT_WR)
        data = _read_all(client)
    return _parse_reply(sock, data)


def _read_all(client: socket.socket) -> bytes:
    parts = []
    while chunk := client.recv(_READ_CHUNK):
        parts.append(chunk)
    return b"".join(parts)


def _parse_reply(sock: Path, data: bytes) -> QueryResult:
    try:
        reply = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise StoreUnavailableError(
            f"The query server on {sock} sent no valid answer ({len(data)} bytes)."
        ) from exc
    if not isinstance(reply, dict):
        raise StoreUnavailableError(f"The query server on {sock} sent no valid answer.")
    if "error" in reply:
        raise BadInputError(f"The query failed: {_headline(str(reply['error']))}")
    return QueryResult(reply["columns"], reply["types"], reply["rows"], via="socket")


def _headline(message: str) -> str:
    """DuckDB's error up to its first blank line (before the "LINE 1:" excerpt)."""
    head = message.strip().split("\n\n", 1)[0]
    return " ".join(line.strip() for line in head.splitlines())


def format_csv(result: QueryResult) -> str:
    """The result as CSV with a header; NULL is an empty field."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(result.columns)
    for row in result.rows:
        writer.writerow([_csv_value(value) for value in row])
    return out.getvalue()


def _csv_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | dict):
        return orjson.dumps(value).decode()
    return str(value)


def format_json(result: QueryResult) -> str:
    """The result as a JSON array with one object per row, keyed by column."""
    # Known limitation: of two columns with the same name, the last one wins.
    objects = [dict(zip(result.columns, row, strict=True)) for row in result.rows]
    return orjson.dumps(objects).decode()


def rich_table(result: QueryResult) -> Table:
    """The result as a rich table for the terminal."""
    count = len(result.rows)
    table = Table(caption=f"{count} row{'' if count == 1 else 's'}")
    for name, type_name in zip(result.columns, result.types, strict=True):
        numeric = _NUMERIC_TYPE.fullmatch(type_name) is not None
        table.add_column(name, justify="right" if numeric else "left")
    for row in result.rows:
        # Text() so that values are never read as rich markup.
        table.add_row(*(_cell(value) for value in row))
    return table


_NUMERIC_TYPE = re.compile(r"U?(TINY|SMALL|BIG|HUGE)?INT(EGER)?|FLOAT|DOUBLE|DECIMAL.*")


def _cell(value: Any) -> Text:
    if value is None:
        return Text("NULL", style="dim")
    return Text(_csv_value(value))
