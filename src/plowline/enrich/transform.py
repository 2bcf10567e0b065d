"""From tracker-protocol parameters to enriched-event fields (spec section 1.3).

Every parameter that has a column is converted by the rule of its field; a value
that does not convert becomes a message naming the parameter, the value and what
was expected, and the event fails with all such messages at once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from plowline.compiled import core
from plowline.enrich.convert import (
    ConversionError,
    has_control_characters,
    to_bool,
    to_decimal,
    to_dimensions,
    to_int,
    to_money,
    to_tstamp,
    to_uuid,
    tsv_safe,
)
from plowline.enrich.failed import Message, field_message

Converter = Callable[[str], str | None]
Event = dict[str, str | None]

# Parameters copied as free text. Legacy aliases come before the current names so
# that the current name wins when a tracker sends both.
STRING_PARAMS: tuple[tuple[str, str], ...] = (
    ("aid", "app_id"),
    ("tna", "name_tracker"),
    ("tv", "v_tracker"),
    ("cv", "v_collector"),
    ("uid", "user_id"),
    ("fp", "user_fingerprint"),
    ("duid", "domain_userid"),
    ("nuid", "network_userid"),
    ("ua", "useragent"),
    ("page", "page_title"),
    ("refr", "page_referrer"),
    ("url", "page_url"),
    ("lang", "br_lang"),
    ("cd", "br_colordepth"),
    ("cs", "doc_charset"),
    ("tz", "os_timezone"),
    ("ev_ca", "se_category"),
    ("ev_ac", "se_action"),
    ("ev_la", "se_label"),
    ("ev_pr", "se_property"),
    ("se_ca", "se_category"),
    ("se_ac", "se_action"),
    ("se_la", "se_label"),
    ("se_pr", "se_property"),
    ("tr_id", "tr_orderid"),
    ("tr_af", "tr_affiliation"),
    ("tr_ci", "tr_city"),
    ("tr_st", "tr_state"),
    ("tr_co", "tr_country"),
    ("tr_cu", "tr_currency"),
    ("ti_id", "ti_orderid"),
    ("ti_sk", "ti_sku"),
    ("ti_na", "ti_name"),
    ("ti_nm", "ti_name"),
    ("ti_ca", "ti_category"),
    ("ti_cu", "ti_currency"),
)

CONVERTED_PARAMS: tuple[tuple[str, str, Converter], ...] = (
    ("tid", "txn_id", to_int),
    ("vid", "domain_sessionidx", to_int),
    ("ti_qu", "ti_quantity", to_int),
    ("pp_mix", "pp_xoffset_min", to_int),
    ("pp_max", "pp_xoffset_max", to_int),
    ("pp_miy", "pp_yoffset_min", to_int),
    ("pp_may", "pp_yoffset_max", to_int),
    ("ev_va", "se_value", to_decimal),
    ("se_va", "se_value", to_decimal),
    ("tr_tt", "tr_total", to_money),
    ("tr_tx", "tr_tax", to_money),
    ("tr_sh", "tr_shipping", to_money),
    ("ti_pr", "ti_price", to_money),
    ("f_pdf", "br_features_pdf", to_bool),
    ("f_fla", "br_features_flash", to_bool),
    ("f_java", "br_features_java", to_bool),
    ("f_dir", "br_features_director", to_bool),
    ("f_qt", "br_features_quicktime", to_bool),
    ("f_realp", "br_features_realplayer", to_bool),
    ("f_wma", "br_features_windowsmedia", to_bool),
    ("f_gears", "br_features_gears", to_bool),
    ("f_ag", "br_features_silverlight", to_bool),
    ("cookie", "br_cookies", to_bool),
    ("eid", "event_id", to_uuid),
    ("sid", "domain_sessionid", to_uuid),
    ("dtm", "dvce_created_tstamp", to_tstamp),
    ("stm", "dvce_sent_tstamp", to_tstamp),
    ("ttm", "true_tstamp", to_tstamp),
)

DIMENSION_PARAMS: tuple[tuple[str, str, str], ...] = (
    ("res", "dvce_screenwidth", "dvce_screenheight"),
    ("vp", "br_viewwidth", "br_viewheight"),
    ("ds", "doc_width", "doc_height"),
)

EVENT_TYPES = {
    "pv": "page_view",
    "pp": "page_ping",
    "se": "struct",
    "ev": "struct",
    "ue": "unstruct",
    "tr": "transaction",
    "ti": "transaction_item",
    "ad": "ad_impression",
}

PLATFORMS = frozenset(
    {"web", "mob", "pc", "srv", "app", "tv", "cnsl", "iot", "headset"}
)


# Legacy names, and the current name that wins when a tracker sends both.
LEGACY_ALIASES = {
    "ev_ca": "se_ca", "ev_ac": "se_ac", "ev_la": "se_la", "ev_pr": "se_pr",
    "ev_va": "se_va", "ti_na": "ti_nm",
}  # fmt: skip

# parameter -> (field, converter or None for free text, the current name that
# wins over this legacy one or None): one lookup per parameter sent, rather than
# one per parameter known (the per-event hot path).
_RULES: dict[str, tuple[str, Converter | None, str | None]] = {
    **{param: (name, None, LEGACY_ALIASES.get(param)) for param, name in STRING_PARAMS},
    **{
        param: (name, convert, LEGACY_ALIASES.get(param))
        for param, name, convert in CONVERTED_PARAMS
    },
}


# The parameters with a rule, in the order sent, for each list of parameter
# names seen (trackers send the same names in the same order, event after
# event): the rule lookups and the legacy-name checks are made once per list.
Step = tuple[str, str, Converter | None]
_PLANS: dict[tuple[str, ...], tuple[Step, ...]] = {}
PLANS_KEPT = 4096


def _plan(names: tuple[str, ...]) -> tuple[Step, ...]:
    present = set(names)
    steps: list[Step] = []
    for param in names:
        rule = _RULES.get(param)
        if rule is None:
            continue
        name, convert, preferred = rule
        if preferred is not None and preferred in present:
            continue
        steps.append((param, name, convert))
    if len(_PLANS) >= PLANS_KEPT:
        _PLANS.clear()
    plan = _PLANS[names] = tuple(steps)
    return plan


# The kinds of value of _core.c's apply_params, and its rules: parameter ->
# (field, kind, the current name that wins over this legacy one, and for
# dimensions the height's field, for choices the dict of values).
_KINDS: dict[Converter | None, int] = {
    None: 0, to_int: 1, to_decimal: 2, to_money: 3, to_bool: 4, to_uuid: 5,
    to_tstamp: 6,
}  # fmt: skip
_DIMENSIONS_KIND, _CHOICE_KIND, _ADDRESS_KIND, _LATE_TEXT_KIND = 7, 8, 9, 10
_CORE_RULES: dict[str, tuple[str, int, str | None, Any]] = {
    **{
        param: (name, _KINDS[convert], preferred, None)
        for param, (name, convert, preferred) in _RULES.items()
    },
    **{
        param: (width, _DIMENSIONS_KIND, None, height)
        for param, width, height in DIMENSION_PARAMS
    },
    "e": ("event", _CHOICE_KIND, None, EVENT_TYPES),
    "p": ("platform", _CHOICE_KIND, None, {p: p for p in PLATFORMS}),
    "ip": ("user_ipaddress", _ADDRESS_KIND, None, None),
    # tnuid beats both nuid and the collector's cookie.
    "tnuid": ("network_userid", _LATE_TEXT_KIND, None, None),
    "nuid": ("network_userid", 0, "tnuid", None),
}
# Applied after the others, in this order, as _apply_params_py applies them.
_LATE = (*(param for param, _, _ in DIMENSION_PARAMS), "e", "p", "ip", "tnuid")
_DIMENSIONS = {param: (width, height) for param, width, height in DIMENSION_PARAMS}
_SPECIAL = frozenset({"e", "p", "ip", "tnuid"})


def apply_params(event: Event, params: dict[str, str]) -> list[Message]:
    """Set every field that a parameter maps to; return the conversion problems."""
    if core is None:
        return _apply_params_py(event, params)
    # Plain values in C; the rest here, with the same messages and forms as the
    # Python path: problems in the order sent, then those of dimensions, then
    # those of the event type and the platform.
    left = core.apply_params(event, params, _CORE_RULES, _LATE)
    if left is None:  # not plain dicts of str keys
        return _apply_params_py(event, params)
    if not left:
        return []
    return finish_params(event, params, left)


def finish_params(
    event: Event, params: dict[str, str], left: list[str]
) -> list[Message]:
    """The parameters that C's apply_params ``left``, the Python way; return
    the conversion problems (also called from C, by ``core.base_event``)."""
    problems: list[Message] = []
    for param in left:
        if param in _DIMENSIONS or param in _SPECIAL:
            continue
        name, convert, _ = _RULES[param]
        value = params[param]
        if convert is None:
            event[name] = tsv_safe(value)
            continue
        try:
            event[name] = convert(value)
        except ConversionError as exc:
            del event[name]  # the place C held for it: a field not set
            problems.append(field_message(param, value, exc.expectation))
    for param, (width, height) in _DIMENSIONS.items():
        if param in left:
            _apply_dimensions(event, params[param], param, width, height, problems)
    if _SPECIAL.intersection(left):
        problems.extend(_apply_special(event, {p: params[p] for p in left}))
    return problems


def _apply_dimensions(
    event: Event,
    dimensions: str,
    param: str,
    width: str,
    height: str,
    problems: list[Message],
) -> None:
    try:
        event[width], event[height] = to_dimensions(dimensions)
    except ConversionError as exc:
        problems.append(field_message(param, dimensions, exc.expectation))


def _apply_params_py(event: Event, params: dict[str, str]) -> list[Message]:
    problems: list[Message] = []
    # One scan of all values for tabs and control characters: when there are
    # none (nearly always), free text is copied as it is.
    clean = not has_control_characters("".join(params.values()))
    names = tuple(params)
    steps = _PLANS.get(names)
    if steps is None:
        steps = _plan(names)
    for param, name, convert in steps:
        value = params[param]
        if convert is None:
            event[name] = (value or None) if clean else tsv_safe(value)
            continue
        try:
            event[name] = convert(value)
        except ConversionError as exc:
            problems.append(field_message(param, value, exc.expectation))
    for param, width, height in DIMENSION_PARAMS:
        dimensions = params.get(param)
        if dimensions is not None:
            _apply_dimensions(event, dimensions, param, width, height, problems)
    problems.extend(_apply_special(event, params))
    return problems


def _apply_special(event: Event, params: dict[str, str]) -> list[Message]:
    problems: list[Message] = []
    code = params.get("e")
    if code is not None:
        if code in EVENT_TYPES:
            event["event"] = EVENT_TYPES[code]
        else:
            problems.append(
                field_message(
                    "e", code, "an event type: one of " + ", ".join(EVENT_TYPES)
                )
            )
    platform = params.get("p")
    if platform is not None:
        if platform in PLATFORMS:
            event["platform"] = platform
        else:
            problems.append(
                field_message(
                    "p", platform, "a platform: one of " + ", ".join(sorted(PLATFORMS))
                )
            )
    ip = params.get("ip")
    if ip is not None:
        event["user_ipaddress"] = tsv_safe(first_ip_token(ip))
    # tnuid is applied last: it beats both nuid and the collector's cookie.
    tnuid = params.get("tnuid")
    if tnuid is not None:
        event["network_userid"] = tsv_safe(tnuid)
    return problems


def first_ip_token(value: str) -> str:
    """The first address of a list such as ``203.0.113.9, 10.0.0.1``."""
    for separator in (",", "|", " "):
        value = value.split(separator, 1)[0]
    return value.strip()
