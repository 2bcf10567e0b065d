"""PII pseudonymisation (``pii_enrichment_config`` 2-0-*): personal data replaced
by a salted hash.

Configured fields are either atomic ("pojo") fields from a fixed list, or string
values inside self-describing JSON (``contexts``, ``derived_contexts``,
``unstruct_event``) picked by a schema criterion and a JSONPath. Each value
becomes ``hex(H(utf8(value + salt)))``. Only strings are hashed (also the strings
of an array the path selects); nothing is ever added.

Nothing it did not create is changed in place: a derived context with
something to hash is replaced by a hashed copy.

With ``emitEvent``, an event that had anything hashed also yields a separate
``pii_transformation`` event holding the original and new values; it is
appended to ``inp.extra_events`` (see ``EMITTED_EVENTS_ATTRIBUTE``) for the
pipeline to emit, linked to its parent by a ``parent_event`` context.

``emitEvent`` and ``anonymousOnly`` sit beside ``parameters`` in Snowplow's file
(in ``data``); the configuration loader passes them inside the parameters.
"""

from __future__ import annotations

import hashlib
import logging
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, ClassVar

import orjson

from plowline.enrich.enrichments.base import Enrichment, EnrichmentInput, Event
from plowline.enrich.enrichments.jsonpath import JsonPath, JsonPathError
from plowline.enrich.selfdesc import CONTEXTS_SCHEMA, UNSTRUCT_SCHEMA
from plowline.errors import ConfigurationError

logger = logging.getLogger(__name__)

# Where the extra pii_transformation events go: a list on EnrichmentInput.
EMITTED_EVENTS_ATTRIBUTE = "extra_events"

PII_SCHEMA = "iglu:com.snowplowanalytics.snowplow/pii_transformation/jsonschema/1-0-0"
PARENT_SCHEMA = "iglu:com.snowplowanalytics.snowplow/parent_event/jsonschema/1-0-0"
POJO_FIELDS = frozenset(
    {
        "user_id", "user_ipaddress", "user_fingerprint", "domain_userid",
        "network_userid", "ip_organization", "ip_domain", "tr_orderid", "ti_orderid",
        "mkt_term", "mkt_content", "se_category", "se_action", "se_label",
        "se_property", "mkt_clickid", "refr_domain_userid", "domain_sessionid",
    }
)  # fmt: skip
JSON_FIELDS = ("contexts", "derived_contexts", "unstruct_event")
HASH_FUNCTIONS = {
    "MD2": "md2",
    "MD5": "md5",
    "SHA-1": "sha1",
    "SHA-256": "sha256",
    "SHA-384": "sha384",
    "SHA-512": "sha512",
}
_CRITERION_RE = re.compile(
    r"iglu:([a-zA-Z0-9\-_.]+)/([a-zA-Z0-9\-_]+)/([a-zA-Z0-9\-_]+)/"
    r"([1-9][0-9]*|\*)-(0|[1-9][0-9]*|\*)-(0|[1-9][0-9]*|\*)"
)
_SCHEMA_RE = re.compile(r"iglu:([^/]+)/([^/]+)/([^/]+)/([0-9]+)-([0-9]+)-([0-9]+)")
# The same values come again and again (a user id on each of its events): the
# digests of this many salted texts are kept, of texts up to this length (a
# long value is rare, and would make the memory that cache holds unbounded).
DIGESTS_KEPT = 8192
DIGESTED_TEXT_KEPT = 256


@dataclass(frozen=True, slots=True)
class JsonField:
    """One ``json`` entry: which column, which entities, which values."""

    field: str
    criterion: tuple[str, ...]  # vendor, name, format, model, revision, addition
    path: JsonPath

    def selects(self, schema: Any) -> bool:
        match = _SCHEMA_RE.fullmatch(schema) if isinstance(schema, str) else None
        if match is None:
            return False
        return all(
            want in ("*", got)
            for want, got in zip(self.criterion, match.groups(), strict=True)
        )


@dataclass(slots=True)
class PiiTransformation:
    """What one event had hashed: the data of the pii_transformation event."""

    pojo: list[dict[str, str]] = field(default_factory=list)
    json: list[dict[str, str]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.pojo or self.json)

    def as_dict(self) -> dict[str, list[dict[str, str]]]:
        return {"pojo": self.pojo, "json": self.json}


def _fail(source: str, where: str, expected: str, found: Any) -> ConfigurationError:
    return ConfigurationError(f"{source}: {where} must be {expected}; found {found!r}.")


def _hasher(name: Any, source: str) -> Callable[[str], str]:
    if name not in HASH_FUNCTIONS:
        raise _fail(
            source,
            "parameters.strategy.pseudonymize.hashFunction",
            f"one of {', '.join(HASH_FUNCTIONS)}",
            name,
        )
    algorithm = HASH_FUNCTIONS[name]
    if algorithm not in hashlib.algorithms_available:
        raise ConfigurationError(
            f"{source}: hashFunction {name} is not available in this Python's "
            "hashlib (OpenSSL 3 no longer provides it); choose SHA-256 or another."
        )

    # The named constructor (hashlib.sha256...) is about twice as fast per call
    # as hashlib.new; MD2 has none.
    constructor: Callable[..., Any] = getattr(hashlib, algorithm, None) or (
        lambda data: hashlib.new(algorithm, data)
    )

    def digest(value: str) -> str:
        text: str = constructor(value.encode("utf-8")).hexdigest()
        return text

    return digest


def _json_field(entry: Any, where: str, source: str) -> JsonField:
    if not isinstance(entry, dict):
        raise _fail(
            source, where, "an object {field, schemaCriterion, jsonPath}", entry
        )
    column = entry.get("field")
    if column not in JSON_FIELDS:
        raise _fail(
            source, f"{where}.field", f"one of {', '.join(JSON_FIELDS)}", column
        )
    criterion = entry.get("schemaCriterion")
    match = _CRITERION_RE.fullmatch(criterion) if isinstance(criterion, str) else None
    if match is None:
        raise _fail(
            source,
            f"{where}.schemaCriterion",
            "an Iglu schema criterion such as iglu:com.acme/user/jsonschema/1-*-*",
            criterion,
        )
    path = entry.get("jsonPath")
    try:
        compiled = JsonPath.parse(path)
    except JsonPathError as exc:
        raise _fail(source, f"{where}.jsonPath", f"a JSONPath ({exc})", path) from exc
    return JsonField(column, match.groups(), compiled)


def _fields(entries: Any, source: str) -> tuple[tuple[str, ...], tuple[JsonField, ...]]:
    if not isinstance(entries, list):
        raise _fail(
            source, "parameters.pii", "a list of {pojo} or {json} objects", entries
        )
    pojo: list[str] = []
    json_fields: list[JsonField] = []
    for index, entry in enumerate(entries):
        where = f"parameters.pii[{index}]"
        if isinstance(entry, dict) and entry.keys() == {"pojo"}:
            name = (
                entry["pojo"].get("field") if isinstance(entry["pojo"], dict) else None
            )
            if name not in POJO_FIELDS:
                raise _fail(
                    source,
                    f"{where}.pojo.field",
                    f"one of {', '.join(sorted(POJO_FIELDS))}",
                    name,
                )
            pojo.append(name)
        elif isinstance(entry, dict) and entry.keys() == {"json"}:
            json_fields.append(_json_field(entry["json"], f"{where}.json", source))
        else:
            raise _fail(
                source, where, "an object with exactly one of pojo, json", entry
            )
    return tuple(pojo), tuple(json_fields)


def _flag(parameters: dict[str, Any], name: str, source: str) -> bool:
    value = parameters.get(name, False)
    if not isinstance(value, bool):
        raise _fail(source, name, "true or false", value)
    return value


class PiiPseudonymizer(Enrichment):
    name: ClassVar[str] = "pii_enrichment_config"
    accepts: ClassVar[tuple[str, ...]] = ("2-0-*",)

    def __init__(
        self,
        pojo: tuple[str, ...],
        json_fields: tuple[JsonField, ...],
        hash_function: str,
        salt: str,
        *,
        emit_event: bool = False,
        anonymous_only: bool = False,
        source: str = "<parameters>",
    ) -> None:
        self.pojo = pojo
        self.json_fields = json_fields
        self.hash_function = hash_function
        self.salt = salt
        self.emit_event = emit_event
        self.anonymous_only = anonymous_only
        self._digest = _hasher(hash_function, source)
        # Keyed on the salted text, so that a salt changed later is honoured.
        self._kept_digest = lru_cache(maxsize=DIGESTS_KEPT)(self._digest)

    @classmethod
    def from_parameters(
        cls, parameters: dict[str, Any], *, source: str
    ) -> PiiPseudonymizer:
        pojo, json_fields = _fields(parameters.get("pii"), source)
        strategy = parameters.get("strategy")
        pseudonymize = (
            strategy.get("pseudonymize") if isinstance(strategy, dict) else None
        )
        if not isinstance(pseudonymize, dict):
            raise _fail(
                source,
                "parameters.strategy",
                "an object {pseudonymize: {hashFunction, salt}}",
                strategy,
            )
        function: Any = pseudonymize.get("hashFunction")  # checked by _hasher
        salt = pseudonymize.get("salt")
        if not isinstance(salt, str):
            raise _fail(
                source, "parameters.strategy.pseudonymize.salt", "a string", salt
            )
        return cls(
            pojo,
            json_fields,
            function,
            salt,
            emit_event=_flag(parameters, "emitEvent", source),
            anonymous_only=_flag(parameters, "anonymousOnly", source),
            source=source,
        )

    def hash(self, value: str) -> str:
        text = value + self.salt
        if len(text) <= DIGESTED_TEXT_KEPT:
            return self._kept_digest(text)
        return self._digest(text)

    @property
    def emits_events(self) -> bool:
        return self.emit_event

    def enrich(self, event: Event, inp: EnrichmentInput) -> None:
        if self.anonymous_only and not _anonymous(inp):
            return
        if not self.emit_event and not self.json_fields:
            # What was hashed is recorded only for the event it may emit.
            for name in self.pojo:
                value = event.get(name)
                if value:
                    event[name] = self.hash(value)
            return
        done = PiiTransformation()
        for name in self.pojo:
            value = event.get(name)
            if value:
                event[name] = hashed = self.hash(value)
                done.pojo.append(
                    {"fieldName": name, "originalValue": value, "modifiedValue": hashed}
                )
        for spec in self.json_fields:
            self._hash_json(spec, event, inp, done)
        if done and self.emit_event:
            extra = getattr(inp, EMITTED_EVENTS_ATTRIBUTE, None)
            if isinstance(extra, list):
                extra.append(self.transformation_event(event, done))

    def _hash_json(
        self,
        spec: JsonField,
        event: Event,
        inp: EnrichmentInput,
        done: PiiTransformation,
    ) -> None:
        if spec.field == "derived_contexts":
            # The entities belong to the enrichments that derived them (which
            # may reuse them for every event): a changed entity is a copy.
            entities = inp.derived_contexts
            for index, entity in enumerate(entities):
                if isinstance(entity, dict) and spec.selects(entity.get("schema")):
                    copy = orjson.loads(orjson.dumps(entity))
                    if self._hash_entity(spec, copy, done):
                        entities[index] = copy
            return
        text = event.get(spec.field)
        if not text:
            return
        document = orjson.loads(text)
        if spec.field == "contexts":
            entities = document.get("data") or []
        else:
            entities = [document.get("data")]
        changed = sum(self._hash_entity(spec, entity, done) for entity in entities)
        if changed:
            event[spec.field] = orjson.dumps(document).decode()

    def _hash_entity(
        self, spec: JsonField, entity: Any, done: PiiTransformation
    ) -> int:
        if not isinstance(entity, dict) or not spec.selects(entity.get("schema")):
            return 0
        holder = [entity.get("data")]
        count = 0
        for container, key in spec.path.locate(holder):
            for parent, index, value in _strings(container, key):
                parent[index] = hashed = self.hash(value)
                count += 1
                done.json.append(
                    {
                        "fieldName": spec.field,
                        "originalValue": value,
                        "modifiedValue": hashed,
                        "jsonPath": spec.path.text,
                        "schema": entity["schema"],
                    }
                )
        entity["data"] = holder[0]
        return count

    def transformation_event(self, parent: Event, done: PiiTransformation) -> Event:
        """The ``pii_transformation`` event for ``parent``; its derived and true
        timestamps are the parent's etl_tstamp (the pipeline's "now")."""
        pii = {key: value for key, value in done.as_dict().items() if value}
        data = {
            "pii": pii,
            "strategy": {"pseudonymize": {"hashFunction": self.hash_function}},
        }
        parent_context = {
            "schema": PARENT_SCHEMA,
            "data": {"parentEventId": parent.get("event_id")},
        }
        copied = ("app_id", "etl_tstamp", "collector_tstamp", "v_collector", "v_etl")
        unstruct = {"schema": PII_SCHEMA, "data": data}
        return {name: parent.get(name) for name in copied} | {
            "event_id": str(uuid.uuid4()),
            "platform": "srv",
            "derived_tstamp": parent.get("etl_tstamp"),
            "true_tstamp": parent.get("etl_tstamp"),
            "event": "pii_transformation",
            "event_vendor": "com.snowplowanalytics.snowplow",
            "event_name": "pii_transformation",
            "event_format": "jsonschema",
            "event_version": "1-0-0",
            "unstruct_event": _dumps({"schema": UNSTRUCT_SCHEMA, "data": unstruct}),
            "contexts": _dumps({"schema": CONTEXTS_SCHEMA, "data": [parent_context]}),
        }


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def _anonymous(inp: EnrichmentInput) -> bool:
    return any(
        name.lower().startswith("sp-anonymous") for name, _ in inp.record.headers
    )


def _strings(container: Any, key: Any) -> list[tuple[Any, Any, str]]:
    """The string slots at ``container[key]``: the value itself, or the strings
    of the array (and nested arrays) it holds."""
    value = container[key]
    if isinstance(value, str):
        return [(container, key, value)]
    if isinstance(value, list):
        return [slot for index in range(len(value)) for slot in _strings(value, index)]
    return []
