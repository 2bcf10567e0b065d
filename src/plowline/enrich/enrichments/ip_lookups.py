"""IP lookups (``ip_lookups`` 2-0-*): MaxMind databases -> geo_*, ip_*, ASN.

Each configured section (geo, isp, domain, connectionType, asn) names a
MaxMind ``.mmdb`` file as ``uri`` + "/" + ``database``. Plowline reads local
files only: ``uri`` is a directory path or a ``file://`` URI, and a relative
path is taken from the directory of the configuration file. Snowplow's
http(s) URIs are refused with a message saying to download the file first.

``"uri": "builtin:"`` in the geo section selects the GeoLite2 City database
that the ``maxminddb-geolite2`` package ships, so geo works out of the box.

The key is ``user_ipaddress`` with any port (and IPv6 brackets) removed; this
runs before ``anon_ip``, so the full address is looked up. A failed lookup
never fails the event: the fields stay empty. Results are cached per address.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any

import maxminddb

from plowline.enrich.convert import tsv_safe
from plowline.enrich.enrichments.addresses import without_port
from plowline.enrich.enrichments.base import Enrichment, EnrichmentInput, Event
from plowline.enrich.enrichments.databases import require_file, resolve_database
from plowline.errors import ConfigurationError

logger = logging.getLogger(__name__)

ASN_SCHEMA = "iglu:com.snowplowanalytics.snowplow/asn/jsonschema/1-0-1"
BUILTIN_URI = "builtin:"
SECTIONS = ("geo", "isp", "domain", "connectionType", "asn")
# What each section's file should be (a word of its metadata database_type);
# another file is accepted with a warning, as vendors name their types freely.
_EXPECTED_TYPE = {
    "geo": "City",
    "isp": "ISP",
    "domain": "Domain",
    "connectionType": "Connection-Type",
    "asn": "ASN",
}
_CACHE_SIZE = 65536
FLOAT_TEXTS_KEPT = 16384
IP_LENGTH_KEPT = 64

# The fields a lookup sets, in the order it sets them.
Fields = dict[str, str]
Lookup = tuple[Fields, dict[str, Any] | None]


def builtin_geo_database() -> Path:
    """The GeoLite2 City file that the maxminddb-geolite2 package ships."""
    from geolite2 import geolite2  # type: ignore[import-untyped]

    return Path(str(geolite2.filename))


def java_float_text(value: float) -> str:
    """``value`` as a Java float prints it (Float.toString): Snowplow keeps
    latitude and longitude as 32-bit floats."""
    single: float = struct.unpack("f", struct.pack("f", value))[0]
    if single == 0:
        return "-0.0" if str(single).startswith("-") else "0.0"
    # Zero, whose two signs are equal as keys, stays out of the cache.
    return _nonzero_float_text(single)


@lru_cache(maxsize=FLOAT_TEXTS_KEPT)
def _nonzero_float_text(single: float) -> str:
    # Kept: the same coordinates (a city's) come with many addresses.
    text = repr(single)
    for digits in range(1, 10):
        text = f"{single:.{digits}g}"
        if struct.unpack("f", struct.pack("f", float(text)))[0] == single:
            break
    number = Decimal(text)
    if 1e-3 <= abs(single) < 1e7:
        plain = format(number, "f")
        return plain if "." in plain else plain + ".0"
    sign, digit_tuple, exponent = number.as_tuple()
    shown = "".join(map(str, digit_tuple)).rstrip("0") or "0"
    power = exponent + len(digit_tuple) - 1  # type: ignore[operator]
    mantissa = shown[0] + "." + (shown[1:] or "0")
    return ("-" if sign else "") + f"{mantissa}E{power}"


def lookup_key(ip: str) -> str:
    """The address without a port: ``1.2.3.4:80`` and ``[::1]:80`` both work."""
    return without_port(ip)


class IpLookups(Enrichment):
    name = "ip_lookups"
    accepts = ("2-0-*",)

    def __init__(self, readers: dict[str, Any]) -> None:
        self.readers = readers
        self._steps: list[Callable[[dict[str, Any], list[tuple[str, str]]], None]]
        self._steps = [_STEPS[s] for s in SECTIONS if s in readers and s != "asn"]
        self.lookup = lru_cache(maxsize=_CACHE_SIZE)(self._lookup)

    @classmethod
    def from_parameters(cls, parameters: dict[str, Any], *, source: str) -> IpLookups:
        unknown = sorted(set(parameters) - set(SECTIONS))
        if unknown:
            raise ConfigurationError(
                f"{source}: ip_lookups has unknown parameters {unknown}; "
                f"expected some of {list(SECTIONS)}."
            )
        readers: dict[str, Any] = {}
        for section in SECTIONS:
            if section in parameters:
                readers[section] = _open(parameters[section], source, section)
        if not readers:
            logger.warning("%s: ip_lookups configures no database", source)
        return cls(readers)

    def enrich(self, event: Event, inp: EnrichmentInput) -> None:
        ip = event.get("user_ipaddress")
        if not ip:
            return
        # Kept per address as the event holds it (with any port): the cache
        # is asked first, and lookup_key is called on a miss only. Text longer
        # than any address with a port is looked up each time, not kept.
        fields, asn = self.lookup(ip) if len(ip) <= IP_LENGTH_KEPT else self._lookup(ip)
        event.update(fields)
        if asn is not None:
            inp.derived_contexts.append({"schema": ASN_SCHEMA, "data": dict(asn)})

    def _lookup(self, ip: str) -> Lookup:
        """What ``user_ipaddress`` ``ip`` gives (never changed: the caller
        copies it)."""
        key = lookup_key(ip)
        fields: list[tuple[str, str]] = []
        records = {s: _get(reader, key) for s, reader in self.readers.items()}
        for step in self._steps:
            step(records, fields)
        return dict(fields), _asn(records)


def _open(section_config: Any, source: str, section: str) -> Any:
    if not isinstance(section_config, dict):
        raise ConfigurationError(
            f"{source}: ip_lookups parameter {section} must be an object "
            f'{{"database": ..., "uri": ...}}, not {section_config!r}.'
        )
    uri, database = section_config.get("uri"), section_config.get("database")
    if section == "geo" and uri == BUILTIN_URI:
        path = builtin_geo_database()
    else:
        path = resolve_database(uri, database, source=source, section=section)
    require_file(
        path,
        source=source,
        what=f"the {section} database",
        hint="download the MaxMind file there or change uri/database.",
    )
    try:
        reader = maxminddb.open_database(str(path), maxminddb.MODE_AUTO)
    except (maxminddb.InvalidDatabaseError, OSError, ValueError) as exc:
        raise ConfigurationError(
            f"{source}: the {section} database {str(path)!r} is not a readable "
            f"MaxMind database ({exc})."
        ) from exc
    kind = str(reader.metadata().database_type)
    if _EXPECTED_TYPE[section] not in kind:
        logger.warning(
            "%s: the %s database %s is of type %s; expected a %s database",
            source,
            section,
            path,
            kind,
            _EXPECTED_TYPE[section],
        )
    logger.info("ip_lookups: %s from %s (%s)", section, path, kind)
    return reader


def _get(reader: Any, key: str) -> dict[str, Any] | None:
    try:
        record = reader.get(key)
    except (ValueError, TypeError):  # not an address, or IPv6 in an IPv4 file
        return None
    except maxminddb.InvalidDatabaseError as exc:  # a damaged file
        logger.warning("ip_lookups: cannot read the record of %s: %s", key, exc)
        return None
    return record if isinstance(record, dict) else None


# Records are read defensively: another vendor's .mmdb may lay them out
# otherwise (flat strings where MaxMind has objects). Whatever does not have
# the expected shape leaves its field empty; nothing but text and numbers is
# ever written to a field.


def _node(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        value = str(value)
    return tsv_safe(value) if isinstance(value, str) else None


def _name(node: Any) -> Any:
    return _node(_node(node).get("names")).get("en")


def _geo(records: dict[str, Any], out: list[tuple[str, str]]) -> None:
    record = records.get("geo")
    if record is None:
        return
    country = _node(record.get("country"))
    location = _node(record.get("location"))
    subdivisions = record.get("subdivisions")
    # The most specific subdivision, as Snowplow reports it.
    region = _node(
        subdivisions[-1] if isinstance(subdivisions, list) and subdivisions else None
    )
    values = {
        "geo_country": country.get("iso_code"),
        "geo_region": region.get("iso_code"),
        "geo_city": _name(record.get("city")),
        "geo_zipcode": _node(record.get("postal")).get("code"),
        "geo_region_name": _name(region),
        "geo_timezone": location.get("time_zone"),
    }
    texts = {field: _text(value) for field, value in values.items()}
    for axis, bound in (("latitude", 90.0), ("longitude", 180.0)):
        number = location.get(axis)
        if (
            isinstance(number, int | float)
            and not isinstance(number, bool)
            and -bound <= number <= bound  # also false for nan
        ):
            texts["geo_" + axis] = java_float_text(float(number))
    for field, text in texts.items():
        if text is not None:
            out.append((field, text))


def _text_step(
    section: str, pairs: tuple[tuple[str, str], ...]
) -> Callable[[dict[str, Any], list[tuple[str, str]]], None]:
    def step(records: dict[str, Any], out: list[tuple[str, str]]) -> None:
        record = records.get(section)
        if record is None:
            return
        for field, key in pairs:
            value = record.get(key)
            text = tsv_safe(value) if isinstance(value, str) else None
            if text is not None:
                out.append((field, text))

    return step


def _asn(records: dict[str, Any]) -> dict[str, Any] | None:
    # The ASN file when configured, else the AS fields of the ISP file (which
    # carries them too, as Snowplow's test of the ISP database shows).
    for section in ("asn", "isp"):
        record = records.get(section)
        if record is None:
            continue
        number = record.get("autonomous_system_number")
        if isinstance(number, int) and not isinstance(number, bool):
            organization = record.get("autonomous_system_organization")
            return {
                "number": number,
                "organization": organization if isinstance(organization, str) else None,
            }
    return None


_STEPS: dict[str, Callable[[dict[str, Any], list[tuple[str, str]]], None]] = {
    "geo": _geo,
    "isp": _text_step("isp", (("ip_isp", "isp"), ("ip_organization", "organization"))),
    "domain": _text_step("domain", (("ip_domain", "domain"),)),
    "connectionType": _text_step(
        "connectionType", (("ip_netspeed", "connection_type"),)
    ),
}
