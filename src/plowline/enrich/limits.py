"""Field lengths: the maximum lengths of the Snowplow atomic schema, enforced.

Loaders into typed stores (Redshift, PostgreSQL varchar columns) refuse longer
values, so enrich decides first, per field:

- free text that pages and people write (page URL, title and referrer and their
  parts, the user agent, the structured-event label) is cut to the maximum
  length: the event keeps its value, and the raw log keeps the whole text;
- every other field (identifiers, names, codes, currencies, ...) makes the event
  fail as a schema violation naming the field, its length and the limit, because
  a cut identifier would silently join the wrong rows.
"""

from __future__ import annotations

from plowline.compiled import core
from plowline.enrich.failed import Message
from plowline.enrich.fields import FIELDS
from plowline.enrich.transform import Event

MAX_LENGTHS: dict[str, int] = {
    field.name: field.max_length for field in FIELDS if field.max_length is not None
}

TRUNCATED_FIELDS = frozenset(
    {
        "page_url", "page_title", "page_referrer",
        "page_urlpath", "page_urlquery", "page_urlfragment",
        "refr_urlpath", "refr_urlquery", "refr_urlfragment",
        "useragent", "se_label",
    }
)  # fmt: skip


# Fields with a limit under this many characters are checked by name; a value
# of any other field that is not longer than it needs no lookup (the hot path).
_SHORT_BELOW = 36
_SHORT_LIMITS = {n: limit for n, limit in MAX_LENGTHS.items() if limit < _SHORT_BELOW}


def enforce_lengths(event: Event) -> list[Message]:
    """Cut free-text fields that are too long; report every other one."""
    problems: list[Message] = []
    if core is not None and core.lengths_ok(event, MAX_LENGTHS):
        return problems
    # The few values that may be too long: the rest are not looked up.
    too_long = [
        (name, value)
        for name, value in event.items()
        if value is not None and len(value) >= _SHORT_BELOW
    ]
    too_long += [
        (name, value)
        for name, limit in _SHORT_LIMITS.items()
        if (value := event.get(name)) is not None and limit < len(value) < _SHORT_BELOW
    ]
    for name, value in too_long:
        limit = MAX_LENGTHS.get(name)
        if limit is None or len(value) <= limit:
            continue
        if name in TRUNCATED_FIELDS:
            event[name] = value[:limit]
        else:
            problems.append(
                {
                    "field": name,
                    "value": value if len(value) <= 100 else value[:100] + "...",
                    "expectation": f"at most {limit} characters; it has {len(value)}",
                }
            )
    return problems
