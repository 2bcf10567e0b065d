"""Cross-navigation (``cross_navigation_config``): the ``_sp`` link decoration as
a ``cross_navigation`` context.

A tracker that links to another of the owner's sites adds
``_sp=<domain user id>.<ms timestamp>[.<session id>.<user id>.<source id>.
<source platform>.<reason>]`` to the link; user id, source id and reason are
URL-safe base64. The atomic fields ``refr_domain_userid`` and ``refr_dvce_tstamp``
come from the same value and are set by the pipeline whether or not this
enrichment is on; the enrichment only adds the context, when both the user id
and the timestamp are there.
"""

from __future__ import annotations

import binascii
import logging
from typing import Any, ClassVar

from plowline.enrich.convert import ConversionError, to_tstamp, tsv_safe
from plowline.enrich.enrichments.base import (
    Enrichment,
    EnrichmentError,
    EnrichmentInput,
    Event,
)
from plowline.enrich.selfdesc import decode_base64
from plowline.enrich.urls import querystring_params
from plowline.errors import ConfigurationError

logger = logging.getLogger(__name__)

SCHEMA = "iglu:com.snowplowanalytics.snowplow/cross_navigation/jsonschema/1-0-0"
# The parts of _sp after the timestamp, in order, and whether they are base64.
EXTRA_PARTS = (
    ("session_id", False),
    ("user_id", True),
    ("source_id", True),
    ("source_platform", False),
    ("reason", True),
)


def iso_from_tstamp(tstamp: str) -> str:
    """``2023-10-13 05:44:03.762`` as ``2023-10-13T05:44:03.762Z``."""
    return tstamp.replace(" ", "T") + "Z"


def _decoded(part: str, name: str) -> str:
    try:
        return decode_base64(part).decode("utf-8")
    except (binascii.Error, UnicodeError, ValueError) as exc:
        raise EnrichmentError.for_field(
            f"_sp.{name}", part, "URL-safe base64 of UTF-8 text"
        ) from exc


def cross_navigation_context(value: str) -> dict[str, Any] | None:
    """The context for one ``_sp`` value, or None when it carries no user id
    or no timestamp."""
    parts = value.split(".")
    parts += [""] * (2 + len(EXTRA_PARTS) - len(parts))
    userid, millis = parts[0], parts[1]
    if not userid or not millis:
        return None
    try:
        tstamp = to_tstamp(millis)
    except ConversionError as exc:
        raise EnrichmentError.for_field(
            "sp_dtm", millis, "Not in the expected format: ms since epoch"
        ) from exc
    data: dict[str, Any] = {
        "domain_user_id": tsv_safe(userid),
        "timestamp": iso_from_tstamp(tstamp),
    }
    for (name, encoded), part in zip(EXTRA_PARTS, parts[2:], strict=False):
        if not part:
            data[name] = None
        else:
            data[name] = _decoded(part, name) if encoded else part
    return {"schema": SCHEMA, "data": data}


class CrossNavigation(Enrichment):
    name: ClassVar[str] = "cross_navigation_config"
    accepts: ClassVar[tuple[str, ...]] = ("1-0-*",)

    @classmethod
    def from_parameters(
        cls, parameters: dict[str, Any], *, source: str
    ) -> CrossNavigation:
        if not isinstance(parameters, dict):
            raise ConfigurationError(
                f"{source}: parameters must be an object (this enrichment has "
                f"none, so {{}}); found {parameters!r}."
            )
        return cls()

    def enrich(self, event: Event, inp: EnrichmentInput) -> None:
        query = event.get("page_urlquery")
        if not query or "_sp=" not in query:
            return
        value = querystring_params(query).get("_sp")
        if not value:
            return
        context = cross_navigation_context(value)
        if context is not None:
            inp.derived_contexts.append(context)
