"""Arrow tables as the data of ``COPY ... FROM STDIN`` in PostgreSQL's text
format, built by Arrow compute kernels, without a Python step per value.

Each column is cast to text (Arrow's text of timestamps, decimals, floats and
booleans is what PostgreSQL reads back as the same value: floats in their
shortest exact form, ``true``/``false``), backslash, tab, line feed and
carriage return are escaped in strings that hold them, NULL becomes ``\\N``,
and the columns are joined with tabs into lines. An empty string stays an
empty field, distinct from ``\\N``.

PostgreSQL text cannot hold U+0000; :func:`nul_rows` finds the values that
have it, so the store can refuse or replace them first.

Enriched TSV is nearly COPY text already (fields split by tabs, none holding a
tab or line break): with ``NULL ''`` and its backslashes doubled it loads as
it is (:func:`tsv_as_copy_text`), without a step per column.
"""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]

NULL = "\\N"
_ESCAPES = (("\\", "\\\\"), ("\t", "\\t"), ("\n", "\\n"), ("\r", "\\r"))
_SPECIAL = tuple(char.encode() for char, _ in _ESCAPES)
_JOIN = pc.JoinOptions(null_handling="replace", null_replacement=NULL)
SLICE_ROWS = 16_384


def _holds(column: pa.ChunkedArray | pa.Array, needles: tuple[bytes, ...]) -> bool:
    """Whether any of the bytes may occur in a string column: a scan of its
    data buffers (a slice's buffer may hold more: then only a false alarm)."""
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    for chunk in chunks:
        data = chunk.buffers()[2]
        if data is None:
            continue
        content = data.to_pybytes()
        if any(needle in content for needle in needles):
            return True
    return False


def _field_text(column: pa.ChunkedArray) -> pa.ChunkedArray:
    if column.type != pa.string():
        return pc.cast(column, pa.string())
    if _holds(column, _SPECIAL):
        for char, escaped in _ESCAPES:
            column = pc.replace_substring(column, char, escaped)
    return column


def _lines(table: pa.Table) -> pa.ChunkedArray:
    fields = [_field_text(column) for column in table.columns]
    # The line feed goes onto the last field, so the rows are joined once.
    fields[-1] = pc.binary_join_element_wise(fields[-1], "", "\n", options=_JOIN)
    return pc.binary_join_element_wise(*fields, "\t", options=_JOIN)


def copy_text(table: pa.Table, slice_rows: int = SLICE_ROWS) -> Iterator[memoryview]:
    """The table's rows as COPY text data, in pieces of ``slice_rows`` rows
    (made one after the other, so sending one overlaps making the next)."""
    for start in range(0, table.num_rows, slice_rows):
        for chunk in _lines(table.slice(start, slice_rows)).chunks:
            if len(chunk) == 0:
                continue
            _, offsets, data = chunk.buffers()
            ends = memoryview(offsets).cast("i")
            yield memoryview(data)[ends[chunk.offset] : ends[chunk.offset + len(chunk)]]


def nul_rows(column: pa.ChunkedArray) -> pa.ChunkedArray | None:
    """Which values of a string column hold U+0000, or None if none does."""
    if column.type != pa.string() or not _holds(column, (b"\x00",)):
        return None
    found = pc.fill_null(pc.match_substring(column, "\x00"), False)
    return found if pc.any(found).as_py() else None


def tsv_as_copy_text(text: bytes) -> bytes | None:
    """Enriched TSV lines as the data of ``COPY ... (FORMAT text, NULL '')``:
    an empty field is NULL, as the loader reads it. None when the text holds a
    carriage return (COPY would take CRLF for the line end only if every line
    had one) or U+0000 (which the Arrow path reports, naming the field)."""
    if b"\r" in text or b"\x00" in text:
        return None
    return text.replace(b"\\", b"\\\\") if b"\\" in text else text


def pieces(data: bytes, size: int = 1 << 20) -> Iterator[memoryview]:
    view = memoryview(data)
    for start in range(0, len(view), size):
        yield view[start : start + size]
