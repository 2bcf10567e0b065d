"""The enrichment function: one raw record in, enriched and failed events out.

``Enricher.enrich_record`` is pure apart from the clock and a random event id
for events that came without one: the same function runs in ``plowline enrich``,
in ``plowline up`` and anywhere else enrichment is needed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import orjson

from plowline import __version__
from plowline.compiled import core
from plowline.enrich import selfdesc, transform
from plowline.enrich.adapters import RawEvent, to_raw_events
from plowline.enrich.client_ip import client_ip
from plowline.enrich.convert import (
    ConversionError,
    ms_to_tstamp,
    to_tstamp,
    tsv_safe,
)
from plowline.enrich.enrichments.base import (
    Enrichment,
    EnrichmentError,
    EnrichmentInput,
)
from plowline.enrich.failed import (
    FailedEvent,
    Message,
    event_failure,
    field_message,
    generic_error,
    request_context,
    unreadable_input,
)
from plowline.enrich.fields import FIELD_INDEX, FIELD_NAMES
from plowline.enrich.limits import enforce_lengths
from plowline.enrich.transform import Event, apply_params
from plowline.enrich.urls import querystring_params, split_url
from plowline.enrich.validation import validate_derived_contexts, validate_entities
from plowline.errors import BadInputError, ConfigurationError
from plowline.ids import RandomIds
from plowline.iglu.resolver import Resolver
from plowline.rawlog.record import RawRecord, decode_record, encode_record

if TYPE_CHECKING:
    from plowline.enrich.settings import EnrichSettings

logger = logging.getLogger(__name__)

V_ETL = f"plowline-{__version__}"
PLAUSIBLE_DEVICE_MS = 946_684_800_000  # 2000-01-01

# event -> (event_vendor, event_name, event_format, event_version)
EVENT_SCHEMAS: dict[str, tuple[str, str, str, str]] = {
    "page_view": ("com.snowplowanalytics.snowplow", "page_view", "jsonschema", "1-0-0"),
    "page_ping": ("com.snowplowanalytics.snowplow", "page_ping", "jsonschema", "1-0-0"),
    "struct": ("com.google.analytics", "event", "jsonschema", "1-0-0"),
    "transaction": (
        "com.snowplowanalytics.snowplow",
        "transaction",
        "jsonschema",
        "1-0-0",
    ),
    "transaction_item": (
        "com.snowplowanalytics.snowplow",
        "transaction_item",
        "jsonschema",
        "1-0-0",
    ),
}

# Ids for events sent without one, drawn in batches (os.urandom per event cost
# several microseconds here).
_EVENT_IDS = RandomIds()

_EMPTY_ROW: dict[str, str | None] = dict.fromkeys(FIELD_NAMES)

PAGE_PARTS = ("scheme", "host", "port", "path", "query", "fragment")


@dataclass(slots=True)
class EnrichedEvent:
    """The 131 fields of one enriched event, as TSV text (None = empty).

    ``stream`` is ``good`` for enriched events and ``pii`` for the events that
    PII pseudonymisation emits with the original values, which go to an output
    of their own."""

    fields: Event
    stream: str = "good"

    def to_row(self) -> list[str]:
        """The 131 fields in TSV order, empty ones as ``""``."""
        # Every field in TSV order with the set ones laid over it: the merge runs
        # in C, where 131 lookups would not.
        row = _EMPTY_ROW | self.fields
        if len(row) != len(FIELD_NAMES):
            unknown = sorted(row.keys() - _EMPTY_ROW.keys())
            raise ValueError(f"not fields of an enriched event: {unknown}")
        return [value or "" for value in row.values()]

    def to_tsv(self) -> str:
        return "\t".join(self.to_row())

    def to_tsv_bytes(self) -> bytes:
        """The TSV line as UTF-8, without the line break."""
        if core is not None:
            try:
                row: bytes = core.tsv_row(self.fields, FIELD_INDEX)
            except (KeyError, TypeError):
                pass  # a key that is no field, a value that is no text: to_row's way
            else:
                return row
        return self.to_tsv().encode("utf-8")

    def __getitem__(self, name: str) -> str | None:
        return self.fields.get(name)


Outcome = EnrichedEvent | FailedEvent


class Enricher:
    """Turns raw records into enriched events; configuration is fixed at creation.

    ``enrichments`` run in the order given (Snowplow's order, as
    :func:`plowline.enrich.enrichments.config.load_enrichments` returns them).
    """

    def __init__(
        self,
        *,
        v_etl: str = V_ETL,
        clock: Callable[[], float] = time.time,
        enrichments: Sequence[Enrichment] = (),
        resolver: Resolver | None = None,
        settings: EnrichSettings | None = None,
    ) -> None:
        self.v_etl = v_etl
        self.clock = clock
        self.enrichments = tuple(enrichments)
        # Validates contexts, self-describing events and derived contexts
        # against their schemas; None checks their shape only.
        self.resolver = resolver
        # What built this enricher, for worker processes to build their own.
        self.settings = settings
        # Without enrichments no event emits others: one list less per event.
        self._may_emit = bool(self.enrichments)
        # The last record's head for core.base_event: (record, now_ms, head).
        self._last_head: tuple[Any, int, tuple[Event, str | None] | None] = (
            None,
            0,
            None,
        )

    @property
    def emits_pii_events(self) -> bool:
        """Whether PII events (``EnrichedEvent.stream == "pii"``) may come out:
        the caller must have somewhere to put them."""
        return any(e.emits_events for e in self.enrichments)

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    def enrich_line(
        self,
        line: bytes,
        *,
        source: str | None = None,
        line_number: int | None = None,
        loader: Callable[[bytes], RawRecord | None] = decode_record,
        loader_name: str = "plowline",
    ) -> list[Outcome]:
        """Enrich one line of a raw log; a line the loader cannot read is a failed
        event, and a line that is not a request (a header) gives nothing."""
        try:
            record = loader(line)
        except BadInputError as exc:
            return [
                unreadable_input(
                    line,
                    str(exc),
                    loader=loader_name,
                    now_ms=self.now_ms(),
                    source=source,
                    line_number=line_number,
                )
            ]
        if record is None:
            return []
        return self.enrich_record(record)

    def enrich_record(self, record: RawRecord) -> list[Outcome]:
        now_ms = self.now_ms()
        try:
            items = to_raw_events(record, now_ms)
        except Exception as exc:
            return [self._unexpected(exc, record, now_ms)]
        outcomes: list[Outcome] = []
        for item in items:
            if isinstance(item, FailedEvent):
                outcomes.append(item)
                continue
            try:
                if self._may_emit:
                    outcomes.extend(self.enrich_events(item, now_ms))
                else:  # the same, without the list of emitted events
                    outcomes.append(self.enrich_event(item, now_ms))
            except Exception as exc:
                outcomes.append(self._unexpected(exc, record, now_ms))
        return outcomes

    def _unexpected(
        self, exc: Exception, record: RawRecord, now_ms: int
    ) -> FailedEvent:
        # A fault in Plowline must cost one event, never the pipeline: the event
        # is kept, with the raw record, to replay once the fault is fixed.
        logger.exception("Enrichment failed unexpectedly on raw record %s", record.id)
        error = f"Plowline could not enrich this event ({type(exc).__name__}: {exc})"
        return generic_error(
            [error], encode_record(record).decode().rstrip("\n"), now_ms=now_ms
        )

    def enrich_events(self, raw: RawEvent, now_ms: int) -> list[Outcome]:
        """The event's outcome, then any events its enrichments emitted."""
        extra: list[Event] = []
        outcome = self.enrich_event(raw, now_ms, extra_events=extra)
        if isinstance(outcome, FailedEvent) or not extra:
            return [outcome]
        return [outcome, *(EnrichedEvent(fields, "pii") for fields in extra)]

    def enrich_event(
        self, raw: RawEvent, now_ms: int, *, extra_events: list[Event] | None = None
    ) -> Outcome:
        """One event's outcome; events that enrichments emit besides it go to
        ``extra_events`` (dropped when it is None)."""
        if FUSED and core is not None:
            head = self._head(raw.record, now_ms)
            if head is not None:
                done = core.base_event(head[0], head[1], raw.record.tstamp, raw.params)
                if done is not None:
                    # The base steps in C: the same fields as below.
                    event, contexts, unstruct = done
                    if self.resolver is not None:
                        problems = validate_entities(self.resolver, contexts, unstruct)
                        if problems:  # failed below, as it would have been
                            return self._enrich_event_py(
                                raw, now_ms, extra_events, problems
                            )
                    return self._enriched(event, raw, now_ms, extra_events)
        return self._enrich_event_py(raw, now_ms, extra_events)

    def _head(self, record: RawRecord, now_ms: int) -> tuple[Event, str | None] | None:
        """For ``core.base_event``: the event's first fields, which come from
        the record alone, and the referer as a page URL; None when the Python
        code must see the event. Kept for the record's other events."""
        last = self._last_head
        if last[0] is record and last[1] == now_ms:
            return last[2]
        head: tuple[Event, str | None] | None = None
        assert core is not None
        collector = core.ms_text(record.tstamp) if type(record.tstamp) is int else None
        if collector is not None and record.collector:
            try:
                etl_tstamp = ms_to_tstamp(now_ms)
            except ConversionError:
                etl_tstamp = None  # a clock out of range: Python's way
            if etl_tstamp is not None:
                fields = self._record_fields(record, etl_tstamp)
                fields["collector_tstamp"] = collector
                referer = tsv_safe(record.referer) if record.referer else None
                head = (fields, referer)
        self._last_head = (record, now_ms, head)
        return head

    def _record_fields(self, record: RawRecord, etl_tstamp: str) -> Event:
        """An event's first fields, which come from its record, in order."""
        return {
            "v_collector": record.collector,
            "v_etl": self.v_etl,
            "etl_tstamp": etl_tstamp,
            "network_userid": record.network_userid,
            "user_ipaddress": client_ip(record),
            "useragent": tsv_safe(record.useragent) if record.useragent else None,
        }

    def _enrich_event_py(
        self,
        raw: RawEvent,
        now_ms: int,
        extra_events: list[Event] | None,
        entity_problems: list[Message] | None = None,
    ) -> Outcome:
        """``enrich_event`` in Python: every event that ``core.base_event`` does
        not take, and those it took that fail schema validation
        (``entity_problems``, found already)."""
        record, params = raw.record, raw.params
        event = self._record_fields(record, ms_to_tstamp(now_ms))
        problems: list[Message] = []
        try:
            event["collector_tstamp"] = ms_to_tstamp(record.tstamp)
        except ConversionError as exc:
            problems.append(
                field_message("collector_tstamp", str(record.tstamp), exc.expectation)
            )
        problems.extend(apply_params(event, params))
        if event.get("event_id") is None:
            # An event the tracker sent without a (valid) id gets one now, so
            # that a failed event carries it too and a replay keeps it.
            event["event_id"] = _EVENT_IDS.next()
        schema_parts, documents = _self_describing(event, params, problems)
        if not problems and self.resolver is not None:
            problems = entity_problems or validate_entities(self.resolver, *documents)
        if problems:
            return self._failure("schema_violations", problems, raw, event, now_ms)

        problems = _derived_fields(event, params, record, schema_parts)
        if problems:
            return self._failure("enrichment_failures", problems, raw, event, now_ms)
        return self._enriched(event, raw, now_ms, extra_events)

    def _enriched(
        self,
        event: Event,
        raw: RawEvent,
        now_ms: int,
        extra_events: list[Event] | None,
    ) -> Outcome:
        """The steps after the base ones: the configured enrichments, the
        validation of the contexts they derive, the field lengths."""
        if self.enrichments:
            derived: list[dict[str, Any]] = []
            problems = self._run_enrichments(event, raw, derived, extra_events)
            if problems:
                return self._failure(
                    "enrichment_failures", problems, raw, event, now_ms
                )
            if derived and self.resolver is not None:
                problems = validate_derived_contexts(self.resolver, derived)
                if problems:
                    return self._failure(
                        "schema_violations", problems, raw, event, now_ms
                    )
        problems = enforce_lengths(event)
        if problems:
            return self._failure("schema_violations", problems, raw, event, now_ms)
        return EnrichedEvent(event)

    def _run_enrichments(
        self,
        event: Event,
        raw: RawEvent,
        derived: list[dict[str, Any]],
        extra_events: list[Event] | None,
    ) -> list[Message]:
        """Every configured enrichment, in order; a failing one does not stop
        the others, so the failed event names every problem at once. The
        contexts they derive are added to ``derived`` too."""
        inp = EnrichmentInput(raw.params, raw.record, derived)
        problems: list[Message] = []
        for enrichment in self.enrichments:
            try:
                enrichment.enrich(event, inp)
            except EnrichmentError as exc:
                problems.append(
                    {"enrichment": enrichment.identity(), "message": exc.message}
                )
        if inp.derived_contexts:
            event["derived_contexts"] = orjson.dumps(
                {"schema": selfdesc.CONTEXTS_SCHEMA, "data": inp.derived_contexts}
            ).decode()
        if extra_events is not None and not problems:
            extra_events.extend(inp.extra_events)
        return problems

    def _failure(
        self,
        kind: str,
        problems: list[Message],
        raw: RawEvent,
        event: Event,
        now_ms: int,
    ) -> FailedEvent:
        # The fields in TSV order, whichever order the steps set them in.
        enriched: Event = {
            k: v for k, v in sorted(event.items(), key=_tsv_place) if v is not None
        }
        if kind == "enrichment_failures":
            # Failures of the base steps are no configured enrichment's.
            problems = [
                p if "message" in p else {"enrichment": None, "message": p}
                for p in problems
            ]
        return event_failure(kind, problems, raw_payload(raw), enriched, now_ms=now_ms)


def _tsv_place(item: tuple[str, str | None]) -> int:
    return FIELD_INDEX.get(item[0], len(FIELD_INDEX))


Document = dict[str, Any] | None


def _self_describing(
    event: Event, params: dict[str, str], problems: list[Message]
) -> tuple[tuple[str, ...] | None, tuple[Document, Document]]:
    """Set the ``contexts`` and ``unstruct_event`` columns; return the inner
    event's schema parts and the documents the two columns are the JSON of."""
    contexts: Document = None
    try:
        column = selfdesc.contexts_column(params)
    except selfdesc.SelfDescribingError as exc:
        problems.append(exc.message)
    else:
        event["contexts"], contexts = column if column else (None, None)
    try:
        unstruct = selfdesc.unstruct_column(params)
    except selfdesc.SelfDescribingError as exc:
        problems.append(exc.message)
        return None, (contexts, None)
    if unstruct is None:
        return None, (contexts, None)
    event["unstruct_event"] = unstruct[0]
    return unstruct[1], (contexts, unstruct[2])


def _derived_fields(
    event: Event,
    params: dict[str, str],
    record: RawRecord,
    schema_parts: tuple[str, ...] | None,
) -> list[Message]:
    problems: list[Message] = []
    if not event.get("v_collector"):
        problems.append(
            field_message("cv", params.get("cv"), "a collector name; it is empty")
        )
    page_url = event.get("page_url") or (
        tsv_safe(record.referer) if record.referer else None
    )
    if page_url:
        event.update(_url_columns(page_url, "page_url", "page_url"))
        problems.extend(_cross_navigation(event))
    referrer = event.get("page_referrer")
    if referrer:
        event.update(_url_columns(referrer, "page_referrer", "refr_url"))
    event["derived_tstamp"] = derived_tstamp(params, record.tstamp)

    kind = event.get("event")
    if kind == "unstruct":
        if schema_parts is None:
            problems.append(
                field_message(
                    "ue_pr", None, "a self-describing event: e=ue needs ue_pr or ue_px"
                )
            )
        else:
            _set_schema(event, schema_parts)
    elif kind in EVENT_SCHEMAS:
        _set_schema(event, EVENT_SCHEMAS[kind])
    elif kind is None:
        problems.append(
            field_message("e", None, "an event type: the e parameter is missing")
        )
    else:
        problems.append(
            field_message(
                "e",
                params.get("e"),
                "an event type that current trackers send; this one is retired",
            )
        )
    return problems


def _cross_navigation(event: Event) -> list[Message]:
    """``_sp=<domain user id>.<ms timestamp>[...]`` in the page URL: the user and
    time on the site the visitor came from (set whether or not the
    cross-navigation enrichment is on, as in Snowplow)."""
    query = event.get("page_urlquery")
    if not query or "_sp=" not in query:
        return []
    value = querystring_params(query).get("_sp")
    if not value:
        return []
    userid, _, rest = value.partition(".")
    tstamp = rest.partition(".")[0]
    event["refr_domain_userid"] = tsv_safe(userid) if userid else None
    if tstamp:
        try:
            event["refr_dvce_tstamp"] = to_tstamp(tstamp)
        except ConversionError:
            return [field_message("sp_dtm", tstamp, "milliseconds since the epoch")]
    return []


@lru_cache(maxsize=1024)  # about 1 KB each
def _url_columns(url: str, full: str, stem: str) -> tuple[tuple[str, str | None], ...]:
    """The columns of one URL (the whole, then its parts), in the order they are
    set: a page's pings and a site's referrers repeat the same URLs."""
    parts = split_url(url)
    columns: list[tuple[str, str | None]] = [(full, parts.url)]
    for name in PAGE_PARTS:
        value = getattr(parts, name)
        columns.append((stem + name, tsv_safe(value) if value else None))
    return tuple(columns)


def _set_schema(event: Event, parts: tuple[str, ...]) -> None:
    (
        event["event_vendor"],
        event["event_name"],
        event["event_format"],
        event["event_version"],
    ) = parts


def derived_tstamp(params: dict[str, str], collector_ms: int) -> str:
    """True timestamp if sent; else the collector time minus the device's send
    delay (when the device clock says created < sent); else the collector time."""
    if "ttm" in params:
        return ms_to_tstamp(int(params["ttm"]))
    created, sent = params.get("dtm"), params.get("stm")
    if created is not None and sent is not None:
        created_ms, sent_ms = int(created), int(sent)
        # A device time before 2000 is a clock that was never set, or seconds
        # sent as milliseconds: it says nothing about the delay (kept as sent).
        plausible = min(created_ms, sent_ms) >= PLAUSIBLE_DEVICE_MS
        if plausible and created_ms < sent_ms:
            try:
                return ms_to_tstamp(collector_ms - (sent_ms - created_ms))
            except ConversionError:
                pass  # a device clock far off: fall back to the collector's time
    return ms_to_tstamp(collector_ms)


def _configure_fused() -> bool:
    """Hand ``core.base_event`` the rules, caches and functions it shares with
    the Python code; whether it is in use."""
    if core is None:
        return False
    core.configure_base(
        transform._CORE_RULES,
        transform._LATE,
        transform.finish_params,
        _EVENT_IDS.next,
        orjson.loads,
        orjson.dumps,
        selfdesc._CONTEXTS_PREFIX,
        selfdesc._UNSTRUCT_PREFIX,
        selfdesc._SCHEMA_PARTS,
        selfdesc.CONTEXTS_SCHEMA,
        selfdesc.UNSTRUCT_SCHEMA,
        EVENT_SCHEMAS,
        selfdesc.MAX_JSON_DEPTH,
        PLAUSIBLE_DEVICE_MS,
    )
    return True


# Whether enrich_event runs the base steps of a plain event in one call of
# C (core.base_event); tests switch it off to compare with the Python steps.
FUSED = _configure_fused()


def raw_payload(raw: RawEvent) -> dict[str, Any]:
    """The input of one event, in the shape of Snowplow's ``raw`` payload."""
    record = raw.record
    return {
        "vendor": raw.vendor,
        "version": raw.version,
        "parameters": [{"name": k, "value": v} for k, v in raw.params.items()],
        "loaderName": record.collector,
        **request_context(record),
        "userId": record.network_userid,
        "rawRecordId": record.id,
    }


@dataclass(slots=True)
class EnrichStats:
    """What one enrichment run read and wrote."""

    lines: int = 0
    enriched: int = 0
    failed: int = 0
    pii: int = 0  # events PII pseudonymisation emitted (not input events)

    def merge(self, other: EnrichStats) -> None:
        self.lines += other.lines
        self.enriched += other.enriched
        self.failed += other.failed
        self.pii += other.pii

    def add(self, outcome: Outcome) -> None:
        if isinstance(outcome, FailedEvent):
            self.failed += 1
        elif outcome.stream == "pii":
            self.pii += 1
        else:
            self.enriched += 1


def output_line(outcome: Outcome) -> tuple[str, bytes]:
    """Which output an outcome goes to (good, bad or pii) and its line there,
    without the line break."""
    if isinstance(outcome, FailedEvent):
        return "bad", outcome.to_json()
    return outcome.stream, outcome.to_tsv_bytes()


def require_pii_output(enricher: Enricher, pii: str | None) -> None:
    """Refuse to start when PII events would have nowhere to go."""
    if pii is None and enricher.emits_pii_events:
        raise ConfigurationError(
            "The PII enrichment has emitEvent on: its events carry the original "
            "values and need an output of their own (--pii FILE); or set "
            "emitEvent to false."
        )
