"""Enriched TSV into a typed, columnar batch (a pyarrow table), for every store.

A batch has one column per field of the enriched event, in TSV order, with the
Arrow type of the field's kind (see ``ARROW_TYPES``). Text is parsed by Arrow's
C++ CSV reader into string columns first; :func:`typed_batch` then converts and
checks each column, so every store receives the same values and refuses the
same input with the same message, naming the line, the field and the value.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from types import ModuleType

import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]
import pyarrow.csv as pcsv  # type: ignore[import-untyped]

from plowline import compiled
from plowline.enrich.fields import FIELD_NAMES, FIELDS, REQUIRED_FIELDS, Field, Kind
from plowline.errors import BadInputError

log = logging.getLogger(__name__)

# The compiled splitter and timestamp reader, or None (Arrow does the work).
_columns: ModuleType | None = compiled.columns

WIDTH = len(FIELDS)
SHOWN_CHARS = 80

ARROW_TYPES: dict[Kind, pa.DataType] = {
    "str": pa.string(),
    "int": pa.int32(),
    "bool": pa.bool_(),
    "tstamp": pa.timestamp("us"),
    "dec": pa.decimal128(18, 2),
    "float": pa.float64(),
    "json": pa.string(),
}

EVENTS_SCHEMA: pa.Schema = pa.schema(
    [
        pa.field(f.name, ARROW_TYPES[f.kind], nullable=f.name not in REQUIRED_FIELDS)
        for f in FIELDS
    ]
)

PROBLEMS: dict[Kind, str] = {
    "int": "is not a whole number in the 32-bit range",
    "bool": "is not 1 or 0",
    "tstamp": "is not a UTC timestamp like 2026-12-04 15:29:10.526",
    "dec": "is not a decimal number that fits DECIMAL(18,2)",
    "float": "is not a number",
    "json": "is not valid JSON",
}

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
_TSTAMP_TYPE = ARROW_TYPES["tstamp"]
# Arrow's block size is a 32-bit number.
_MAX_BLOCK = (1 << 31) - 1
# Arrow reads decimals exactly at this scale; rounding then gives two places.
_WIDE_DECIMAL = pa.decimal128(38, 10)
# Years 0001 to 9999, as every store (and Python) holds them: DuckDB would
# take year 0, PostgreSQL would refuse it.
_YEAR = r"(000[1-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-9][0-9]{3})"
_TSTAMP_TEXT = (
    rf"^{_YEAR}-[0-9]{{2}}-[0-9]{{2}}[ T][0-9]{{2}}:[0-9]{{2}}:[0-9]{{2}}"
    r"(\.[0-9]{1,6})?Z?$"
)


def show(value: object) -> str:
    """A value for an error message, cut to a readable length."""
    text = repr(value)
    return text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 1] + "…"


def where(source: str | None, number: int) -> str:
    return f"Row {number}" if source is None else f"{source}, line {number}"


def parse_tsv(data: bytes | memoryview, lines: int | None = None) -> pa.Table:
    """Whole lines of enriched TSV into a table of 131 string columns (NULL for
    empty fields). Raises ``pa.ArrowInvalid`` when a line has another width.

    With ``lines``, the number of lines, plain UTF-8 lines of 131 fields are
    cut by the compiled splitter (``_columns.split_tsv``), several times
    faster; anything else, and everything where it was not built, is read by
    Arrow's CSV reader, which reports the faults. Both read ``data`` in place
    and give the same table."""
    if lines and _columns is not None:
        table = _split_tsv(data, lines)
        if table is not None:
            return table
    try:
        return _read_tsv(data, _TSV_READ)
    except pa.ArrowInvalid as exc:
        # Arrow cuts its input into blocks; a line longer than a block can
        # straddle two of them. Read such data as one block instead.
        if "straddl" not in str(exc) or len(data) >= _MAX_BLOCK:
            raise
        log.debug("A line is longer than Arrow's block: read as one block")
        whole = pcsv.ReadOptions(
            column_names=list(FIELD_NAMES), block_size=len(data) + 1
        )
        return _read_tsv(data, whole)


def _read_tsv(data: bytes | memoryview, options: pcsv.ReadOptions) -> pa.Table:
    return pcsv.read_csv(
        pa.BufferReader(pa.py_buffer(data)),
        read_options=options,
        parse_options=_TSV_PARSE,
        convert_options=_TSV_CONVERT,
    )


def _split_tsv(data: bytes | memoryview, lines: int) -> pa.Table | None:
    assert _columns is not None
    columns = _columns.split_tsv(data, WIDTH, lines)
    if columns is None:
        return None
    arrays = []
    for valid, offsets, values, nulls in columns:
        buffers = [
            None if valid is None else pa.foreign_buffer(*valid),
            pa.foreign_buffer(*offsets),
            pa.foreign_buffer(*values),
        ]
        arrays.append(pa.Array.from_buffers(pa.string(), lines, buffers, nulls))
    return pa.Table.from_arrays(arrays, names=list(FIELD_NAMES))


def rows_to_table(rows: Sequence[Sequence[str]], *, first_row: int = 1) -> pa.Table:
    """Rows of 131 strings (``""`` for empty) into a string table.

    Joining to TSV and splitting that (:func:`parse_tsv`) is several times
    faster than transposing the rows in Python. Raises BadInputError naming
    the row."""
    if not rows:
        return EVENTS_SCHEMA.empty_table().cast(_text_schema())
    if set(map(len, rows)) != {WIDTH}:
        raise row_problem(rows, first_row)
    try:
        data = "\n".join(map("\t".join, rows)).encode("utf-8")
        table = parse_tsv(data, len(rows))
    except (TypeError, UnicodeError, pa.ArrowInvalid) as exc:
        raise row_problem(rows, first_row) from exc
    # A tab or line break inside a value shifts fields or splits the row.
    if table.num_rows != len(rows):
        raise row_problem(rows, first_row)
    return table


def _text_schema() -> pa.Schema:
    return pa.schema([pa.field(name, pa.string()) for name in FIELD_NAMES])


def row_problem(rows: Sequence[Sequence[str]], first_row: int) -> BadInputError:
    for offset, row in enumerate(rows):
        number = first_row + offset
        if len(row) != WIDTH:
            return BadInputError(
                f"Row {number} has {len(row)} fields; an enriched event has "
                f"{WIDTH}. Its batch was not loaded.",
                line=number,
            )
        for field, value in zip(FIELDS, row, strict=True):
            problem = _text_problem(value)
            if problem is not None:
                return BadInputError(
                    f"Row {number}: field {field.name} {problem}: "
                    f"{show(value)}. Its batch was not loaded.",
                    line=number,
                )
    last = first_row + len(rows) - 1
    return BadInputError(
        f"Rows {first_row} to {last} could not be read as enriched events. "
        "Their batch was not loaded.",
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


def typed_batch(
    text: pa.Table, *, source: str | None = None, first_line: int = 1
) -> pa.Table:
    """Convert a string table (from :func:`parse_tsv`) to ``EVENTS_SCHEMA``.

    Checks what the casts alone would let through: required fields present,
    strings within the atomic schema's maximum lengths, booleans only ``1``/``0``
    and timestamps without a zone offset. Money with more than two decimals is
    rounded half away from zero, as DECIMAL(18,2) columns do. JSON columns are
    checked when they are shredded. Raises BadInputError for the first bad value.
    """
    columns = []
    for index, field in enumerate(FIELDS):
        column = text.column(index)
        if field.name in REQUIRED_FIELDS and column.null_count:
            _fail_at(column, pc.is_null(column), field, source, first_line, empty=True)
        columns.append(_convert(column, field, source, first_line))
    return pa.Table.from_arrays(columns, schema=EVENTS_SCHEMA)


def _convert(
    column: pa.ChunkedArray, field: Field, source: str | None, first_line: int
) -> pa.ChunkedArray:
    kind = field.kind
    if kind in ("str", "json"):
        # A value has at most as many characters as bytes: counting characters
        # is needed only when some value has more bytes than the limit.
        if field.max_length is not None and _longest_bytes(column) > field.max_length:
            too_long = pc.greater(pc.utf8_length(column), field.max_length)
            if pc.any(too_long).as_py():
                _fail_at(column, too_long, field, source, first_line, limit=True)
        return column
    if kind == "bool":
        valid = pc.is_in(column, value_set=pa.array(["0", "1"]))
        bad = pc.and_kleene(pc.invert(valid), pc.is_valid(column))
        if pc.any(bad).as_py():
            _fail_at(column, bad, field, source, first_line)
        return pc.equal(column, "1")
    if kind == "tstamp" and column.null_count < len(column):
        compiled = _compiled_tstamps(column)
        if compiled is not None:
            return compiled
        bad = pc.invert(pc.match_substring_regex(column, _TSTAMP_TEXT))
        if pc.any(bad).as_py():
            _fail_at(column, bad, field, source, first_line)
        if pc.any(pc.ends_with(column, "Z")).as_py():
            column = pc.replace_substring_regex(column, "Z$", "")
    try:
        if kind == "dec":
            wide = pc.cast(column, _WIDE_DECIMAL)
            rounded = pc.round(wide, ndigits=2, round_mode="half_towards_infinity")
            return pc.cast(rounded, ARROW_TYPES[kind])
        return pc.cast(column, ARROW_TYPES[kind])
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        bad = _uncastable(column, kind)
        _fail_at(column, bad, field, source, first_line, cause=exc)
        raise AssertionError("unreachable") from exc


def _compiled_tstamps(column: pa.ChunkedArray) -> pa.ChunkedArray | None:
    """The timestamps of a string column read by ``_columns.tstamps``, when
    every value is plain (what ``_TSTAMP_TEXT`` matches, of a real date and
    time); None for anything else, which the checks and the cast then take."""
    if _columns is None:
        return None
    arrays = []
    for chunk in column.chunks:
        if chunk.offset:
            return None
        validity, offsets, values = chunk.buffers()
        micros = _columns.tstamps(
            validity, offsets, b"" if values is None else values, len(chunk)
        )
        if micros is None:
            return None
        arrays.append(
            pa.Array.from_buffers(
                _TSTAMP_TYPE,
                len(chunk),
                [validity, pa.py_buffer(micros)],
                chunk.null_count,
            )
        )
    return pa.chunked_array(arrays, _TSTAMP_TYPE)


def _longest_bytes(column: pa.ChunkedArray) -> int:
    longest = pc.max(pc.binary_length(column)).as_py()
    return 0 if longest is None else int(longest)


def _uncastable(column: pa.ChunkedArray, kind: Kind) -> pa.Array:
    """Which values fail the cast of their kind, one by one (only on error)."""
    flags = []
    for value in column.to_pylist():
        if value is None:
            flags.append(False)
            continue
        try:
            if kind == "dec":
                wide = pc.cast(pa.array([value]), _WIDE_DECIMAL)
                rounded = pc.round(wide, ndigits=2, round_mode="half_towards_infinity")
                pc.cast(rounded, ARROW_TYPES[kind])
            else:
                pc.cast(pa.array([value]), ARROW_TYPES[kind])
            flags.append(False)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            flags.append(True)
    return pa.array(flags, pa.bool_())


def _fail_at(
    column: pa.ChunkedArray,
    bad: pa.Array | pa.ChunkedArray,
    field: Field,
    source: str | None,
    first_line: int,
    *,
    empty: bool = False,
    limit: bool = False,
    cause: BaseException | None = None,
) -> None:
    flags = pc.fill_null(bad, False).to_pylist()
    offset = flags.index(True) if True in flags else 0
    value = column[offset].as_py()
    number = first_line + offset
    if empty:
        detail = f"field {field.name} is empty, but every event must have it"
    elif limit:
        detail = (
            f"field {field.name} is longer than its maximum of {field.max_length} "
            f"characters: {show(value)}"
        )
    else:
        detail = f"field {field.name} {PROBLEMS[field.kind]}: {show(value)}"
    error = BadInputError(
        f"{where(source, number)}: {detail}. Its batch was not loaded.",
        source=source,
        line=number,
    )
    if cause is not None:
        raise error from cause
    raise error
