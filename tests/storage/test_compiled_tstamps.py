"""Timestamps read by the compiled ``_columns.tstamps`` against the checks
and Arrow's cast they stand in for: the same values, and the same errors for
any text they leave."""

from __future__ import annotations

from datetime import datetime

import pyarrow as pa  # type: ignore[import-untyped]
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plowline.enrich.fields import FIELD_INDEX, FIELDS
from plowline.errors import BadInputError
from plowline.storage import batch

columns = pytest.importorskip("plowline.storage._columns")

FIELD = FIELDS[FIELD_INDEX["collector_tstamp"]]


def _typed(
    values: list[str | None], monkeypatch: pytest.MonkeyPatch, *, compiled: bool
) -> object:
    """The column as typed_batch makes it, or the error's message."""
    if not compiled:
        monkeypatch.setattr(batch, "_columns", None)
    try:
        column = pa.chunked_array([pa.array(values, pa.string())])
        return batch._convert(column, FIELD, "in.tsv", 1).to_pylist()
    except BadInputError as exc:
        return str(exc)
    finally:
        monkeypatch.undo()


def _both(values: list[str | None], monkeypatch: pytest.MonkeyPatch) -> object:
    fast = _typed(values, monkeypatch, compiled=True)
    slow = _typed(values, monkeypatch, compiled=False)
    assert fast == slow
    return fast


def test_plain_timestamps_of_every_form(monkeypatch: pytest.MonkeyPatch) -> None:
    values = [
        "2026-12-04 15:29:10.526",
        "2026-12-04T15:29:10.526Z",
        "2026-12-04 15:29:10",
        "2026-12-04 15:29:10.5",
        "2026-12-04 15:29:10.123456",
        None,
        "0001-01-01 00:00:00",
        "9999-12-31 23:59:59.999999",
        "2024-02-29 12:00:00",
        "1969-12-31 23:59:59.999",
        "2000-02-29 00:00:00Z",
    ]
    got = _both(values, monkeypatch)
    assert got[0] == datetime(2026, 12, 4, 15, 29, 10, 526000)
    assert got[4] == datetime(2026, 12, 4, 15, 29, 10, 123456)
    assert got[5] is None
    assert got[6] == datetime(1, 1, 1)
    assert got[7] == datetime(9999, 12, 31, 23, 59, 59, 999999)
    assert got[9] == datetime(1969, 12, 31, 23, 59, 59, 999000)


@pytest.mark.parametrize(
    "text",
    [
        "0000-01-01 00:00:00",
        "2026-13-01 00:00:00",
        "2026-00-10 00:00:00",
        "2026-02-29 00:00:00",
        "1900-02-29 00:00:00",
        "2026-04-31 00:00:00",
        "2026-12-04 24:00:00",
        "2026-12-04 23:60:00",
        "2026-12-04 23:59:60",
        "2026-12-04 15:29:10.",
        "2026-12-04 15:29:10.1234567",
        "2026-12-04 15:29:10ZZ",
        "2026-12-04",
        "2026-12-04 15:29",
        "2026-12-04+15:29:10",
        "2026-12-04 15:29:10+01:00",
        "２０２６-12-04 15:29:10",
        "2026-1a-04 15:29:10",
        " 2026-12-04 15:29:10",
    ],
)
def test_text_the_compiled_reader_leaves_gets_the_same_outcome(
    text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _typed([text], monkeypatch, compiled=True) == _typed(
        [text], monkeypatch, compiled=False
    )
    column = pa.array([text], pa.string())
    validity, offsets, values = column.buffers()
    assert columns.tstamps(validity, offsets, values, 1) is None


def test_bad_value_after_good_ones_is_named_with_its_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    values = ["2026-12-04 15:29:10.526"] * 5 + ["2026-02-30 00:00:00"]
    message = _both(values, monkeypatch)
    assert isinstance(message, str)
    assert "in.tsv, line 6" in message and "2026-02-30" in message


def test_sliced_and_multi_chunk_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    whole = pa.array(["2026-12-04 15:29:10.526", None, "2026-12-05 00:00:00"] * 4)
    sliced = pa.chunked_array([whole.slice(1, 5), whole.slice(7)])
    fast = batch._convert(sliced, FIELD, None, 1)
    monkeypatch.setattr(batch, "_columns", None)
    slow = batch._convert(sliced, FIELD, None, 1)
    assert fast.to_pylist() == slow.to_pylist()
    assert fast.type == pa.timestamp("us")


def test_short_buffers_are_refused() -> None:
    column = pa.array(["2026-12-04 15:29:10"], pa.string())
    validity, offsets, values = column.buffers()
    with pytest.raises(ValueError, match="too small"):
        columns.tstamps(validity, offsets, values, 5)


_DIGITS = st.text(alphabet="0123456789", min_size=1, max_size=2)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.none(),
            st.datetimes(
                min_value=datetime(1, 1, 1),
                max_value=datetime(9999, 12, 31, 23, 59, 59),
            ).map(lambda d: d.isoformat(sep=" ")),
            st.builds(
                "{}-{}-{}{}{}:{}:{}{}{}".format,
                st.text(alphabet="0123456789", min_size=4, max_size=4),
                _DIGITS,
                _DIGITS,
                st.sampled_from([" ", "T", "_"]),
                _DIGITS,
                _DIGITS,
                _DIGITS,
                st.sampled_from(["", ".", ".5", ".123", ".123456", ".1234567"]),
                st.sampled_from(["", "Z"]),
            ),
        ),
        min_size=1,
        max_size=6,
    )
)
def test_random_timestamps_read_alike(values: list[str | None]) -> None:
    with pytest.MonkeyPatch.context() as monkeypatch:
        _both(values, monkeypatch)
