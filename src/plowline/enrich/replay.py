"""Replaying failed events: enrich again from the input each one carries.

After a fix (a schema published, a configuration corrected, a bug fixed), the
failed events of a run go through enrichment again:

- a failed request (adapter failure, protocol violation, size violation, a fault
  in Plowline) carries its raw record under ``payload.rawRecord`` or as the
  payload text, and is enriched as a whole request again;
- a failed event (schema violation, enrichment failure) carries its parameters
  and request context under ``payload.raw``; it is rebuilt as one event, with the
  event id it was given the first time;
- an unreadable line carries the line and the loader that could not read it.
"""

from __future__ import annotations

import calendar
import logging
import time
from collections.abc import Sequence
from typing import Any

import orjson

from plowline.enrich.adapters import RawEvent
from plowline.enrich.files import open_output
from plowline.enrich.loaders import loader_for
from plowline.enrich.pipeline import (
    Enricher,
    EnrichStats,
    Outcome,
    output_line,
    require_pii_output,
)
from plowline.errors import BadInputError
from plowline.rawlog.reader import expand_inputs, iter_lines
from plowline.rawlog.record import RawRecord, decode_record

logger = logging.getLogger(__name__)

EVENT_FAILURES = frozenset({"schema_violations", "enrichment_failures"})


def replay_failed(document: dict[str, Any], enricher: Enricher) -> list[Outcome]:
    """The outcomes of enriching a failed event's input again."""
    schema = str(document.get("schema", ""))
    kind = schema.split("/")[1] if schema.count("/") >= 2 else ""
    data = document.get("data") or {}
    payload = data.get("payload")
    failure = data.get("failure") or {}
    if kind in EVENT_FAILURES and isinstance(payload, dict) and "raw" in payload:
        return _replay_event(payload, enricher)
    if isinstance(payload, dict) and isinstance(payload.get("rawRecord"), dict):
        record = decode_record(orjson.dumps(payload["rawRecord"]))
        return enricher.enrich_record(record)
    if kind == "collector_payload_format_violation" and isinstance(payload, str):
        name = str(failure.get("loader", "plowline"))
        return enricher.enrich_line(
            payload.encode(), loader=loader_for(name), loader_name=name
        )
    if kind == "generic_error" and isinstance(payload, str) and payload[:1] == "{":
        return enricher.enrich_line(payload.encode())
    raise BadInputError(
        f"This failed event ({kind or 'no schema'}) carries no input that can be "
        "enriched again."
    )


def _replay_event(payload: dict[str, Any], enricher: Enricher) -> list[Outcome]:
    raw = payload["raw"]
    params = {
        p["name"]: p["value"]
        for p in raw.get("parameters", [])
        if p.get("value") is not None
    }
    first_id = (payload.get("enriched") or {}).get("event_id")
    if first_id and "eid" not in params:
        params["eid"] = first_id
    headers = tuple(
        (name.strip(), value.strip())
        for name, _, value in (h.partition(":") for h in raw.get("headers", []))
    )
    record = RawRecord(
        id=str(raw.get("rawRecordId") or first_id),
        tstamp=_iso_ms(str(raw["timestamp"])),
        collector=str(raw.get("loaderName") or "unknown"),
        method="GET",
        path=f"/{raw.get('vendor')}/{raw.get('version')}",
        content_type=raw.get("contentType"),
        headers=headers,
        ip=raw.get("ipAddress"),
        useragent=raw.get("useragent"),
        referer=raw.get("refererUri"),
        host=raw.get("hostname"),
        network_userid=raw.get("userId"),
    )
    event = RawEvent(str(raw.get("vendor")), str(raw.get("version")), params, record)
    return enricher.enrich_events(event, enricher.now_ms())


def _iso_ms(text: str) -> int:
    base, _, rest = text.rstrip("Z").partition(".")
    seconds = calendar.timegm(time.strptime(base, "%Y-%m-%dT%H:%M:%S"))
    return seconds * 1000 + int((rest + "000")[:3])


def replay_files(
    inputs: Sequence[str],
    good: str,
    bad: str,
    enricher: Enricher | None = None,
    *,
    pii: str | None = None,
) -> EnrichStats:
    """Replay every failed event in ``inputs`` (JSON lines, ``-`` for stdin)."""
    enricher = enricher or Enricher()
    require_pii_output(enricher, pii)
    stats = EnrichStats()
    sources = expand_inputs(inputs)
    with (
        open_output(good) as good_out,
        open_output(bad) as bad_out,
        open_output(pii) as pii_out,
    ):
        outputs = {"good": good_out, "bad": bad_out, "pii": pii_out}
        for source, number, line in iter_lines(sources):
            stats.lines += 1
            try:
                outcomes = replay_failed(orjson.loads(line), enricher)
            except (orjson.JSONDecodeError, BadInputError, KeyError, ValueError) as exc:
                raise BadInputError(
                    f"{source}, line {number}: cannot replay this line ({exc}).",
                    source=source,
                    line=number,
                ) from exc
            for outcome in outcomes:
                stats.add(outcome)
                stream, text = output_line(outcome)
                outputs[stream].write(text + b"\n")
    logger.info(
        "Replayed %d failed events: %d enriched events, %d failed again",
        stats.lines,
        stats.enriched,
        stats.failed,
    )
    return stats
