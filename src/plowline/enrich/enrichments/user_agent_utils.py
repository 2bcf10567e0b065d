"""user-agent-utils (``user_agent_utils_config`` 1-0-*, deprecated): the
legacy browser, OS and device columns.

Snowplow fills br_name, br_family, br_version, br_type, br_renderengine,
os_name, os_family, os_manufacturer, dvce_type and dvce_ismobile with the
Java library UserAgentUtils, which Python cannot run. Plowline derives them
from the ua-parser result (the same cached parse as ``ua_parser_config``)
with the tables below, written to give the values UserAgentUtils gives for
common browsers (spec/enrichment.md 3.6):

* robots (ua-parser device ``Spider``, or an HTTP library such as
  python-requests): ``Robot/Spider``, type ``Robot``, OS and device unknown;
* an agent ua-parser does not know: ``Unknown`` / type ``unknown``;
* known browsers: family and render engine from ``_BROWSERS``; the name is
  family + major version, but mobile variants carry no version (``Mobile
  Safari``); br_version is every version part joined with dots;
* OS: ``_os`` below; the device type follows from the OS (iPad and Android
  without "Mobile" are tablets).

Like Snowplow, building the enrichment logs a deprecation warning.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import Any, NamedTuple

from ua_parser import Result

from plowline.enrich.enrichments.base import Enrichment, EnrichmentInput, Event
from plowline.enrich.enrichments.ua_parser import CACHE_SIZE, builtin_parse
from plowline.errors import ConfigurationError

logger = logging.getLogger(__name__)

FIELDS = (
    "br_name",
    "br_family",
    "br_version",
    "br_type",
    "br_renderengine",
    "os_name",
    "os_family",
    "os_manufacturer",
    "dvce_type",
    "dvce_ismobile",
)
# HTTP libraries and tools that UserAgentUtils files under Robot/Spider.
_TOOLS = frozenset(
    {
        "Python Requests",
        "Python-urllib",
        "Apache-HttpClient",
        "curl",
        "Wget",
        "Java",
        "okhttp",
        "Go-http-client",
        "aiohttp",
        "HTTPie",
    }
)


class _Browser(NamedTuple):
    family: str
    engine: str
    mobile_name: str | None = None  # set for mobile variants: their br_name


_BROWSERS: dict[str, _Browser] = {
    "Firefox": _Browser("Firefox", "GECKO"),
    "Firefox Mobile": _Browser("Firefox", "GECKO", "Firefox Mobile"),
    "Firefox iOS": _Browser("Firefox", "WEBKIT", "Firefox Mobile"),
    "Chrome": _Browser("Chrome", "WEBKIT"),
    "Chromium": _Browser("Chrome", "WEBKIT"),
    "HeadlessChrome": _Browser("Chrome", "WEBKIT"),
    "Chrome Mobile": _Browser("Chrome", "WEBKIT", "Chrome Mobile"),
    "Chrome Mobile iOS": _Browser("Chrome", "WEBKIT", "Chrome Mobile"),
    "Chrome Mobile WebView": _Browser("Chrome", "WEBKIT", "Chrome Mobile"),
    "IE": _Browser("Internet Explorer", "TRIDENT"),
    "IE Mobile": _Browser("Internet Explorer", "TRIDENT", "IE Mobile"),
    "Edge": _Browser("Microsoft Edge", "EDGE_HTML"),
    "Edge Mobile": _Browser("Microsoft Edge", "EDGE_HTML", "Microsoft Edge Mobile"),
    "Safari": _Browser("Safari", "WEBKIT"),
    "Mobile Safari": _Browser("Safari", "WEBKIT", "Mobile Safari"),
    "Mobile Safari UI/WKWebView": _Browser("Safari", "WEBKIT", "Mobile Safari"),
    "Opera": _Browser("Opera", "PRESTO"),
    "Opera Mobile": _Browser("Opera", "PRESTO", "Opera Mobile"),
    "Opera Mini": _Browser("Opera", "PRESTO", "Opera Mini"),
    "Samsung Internet": _Browser("Samsung Internet", "WEBKIT", "Samsung Internet"),
    "Thunderbird": _Browser("Thunderbird", "GECKO"),
}
# Engines that changed: Edge on Chromium (79+), Opera on Blink (15+).
_ENGINE_SINCE = {"Edge": (79, "WEBKIT"), "Opera": (15, "WEBKIT")}

_ROBOT = (
    "Robot/Spider", "Robot/Spider", None, "Robot", "OTHER",
    "Unknown", "Unknown", "Other", "Unknown", "0",
)  # fmt: skip
_UNKNOWN_OS = ("Unknown", "Unknown", "Other", "Unknown")
_MOBILE_TYPES = frozenset({"Mobile", "Tablet", "Wearable computer"})

Row = tuple[str | None, ...]


def legacy_fields(ua: str) -> Row:
    """The ten legacy column values (in ``FIELDS`` order) for ``ua``."""
    result = builtin_parse()(ua)
    full = result.with_defaults()
    agent = full.user_agent
    if full.device.family == "Spider" or agent.family in _TOOLS:
        return _ROBOT

    os_name, os_family, maker, device = _os(result, ua)
    if agent.family == "Other":
        return (
            "Unknown", "Unknown", None, "unknown", "OTHER",
            os_name, os_family, maker, device, "0",
        )  # fmt: skip

    known = _BROWSERS.get(agent.family)
    family = known.family if known else agent.family
    engine = _engine(agent.family, agent.major, known)
    mobile = (known is not None and known.mobile_name is not None) or (
        known is None and device in _MOBILE_TYPES
    )
    if known is not None and known.mobile_name is not None:
        name = known.mobile_name
    else:
        name = f"{family} {agent.major}" if agent.major else family
    parts = (agent.major, agent.minor, agent.patch, agent.patch_minor)
    version = _dotted(parts)
    kind = "Browser (mobile)" if mobile else "Browser"
    is_mobile = "1" if device in _MOBILE_TYPES else "0"
    return (name, family, version, kind, engine, os_name, os_family, maker, device,
            is_mobile)  # fmt: skip


def _engine(ua_family: str, major: str | None, known: _Browser | None) -> str:
    if known is None:
        return "OTHER"
    since = _ENGINE_SINCE.get(ua_family)
    if since and major and major.isdigit() and int(major) >= since[0]:
        return since[1]
    return known.engine


def _dotted(parts: tuple[str | None, ...]) -> str | None:
    present: list[str] = []
    for part in parts:
        if part is None:
            break
        present.append(part)
    return ".".join(present) or None


def _os(result: Result, ua: str) -> tuple[str, str, str, str]:
    """os_name, os_family, os_manufacturer, dvce_type."""
    os = result.with_defaults().os
    device = result.with_defaults().device.family
    family, major = os.family, os.major
    if family == "Windows":
        version = f"{major}.{os.minor}" if major and os.minor else major
        name = f"Windows {version}" if version else "Windows"
        return name, "Windows", "Microsoft Corporation", "Computer"
    if family in ("Mac OS X", "macOS"):
        return "Mac OS X", "Mac OS X", "Apple Inc.", "Computer"
    if family == "iOS":
        tablet = device == "iPad"
        model = device if device in ("iPhone", "iPad", "iPod") else "iPhone"
        name = f"iOS {major} ({model})" if major else "iOS"
        return name, "iOS", "Apple Inc.", "Tablet" if tablet else "Mobile"
    if family == "Android":
        tablet = "Mobile" not in ua
        name = f"Android {major}.x" if major else "Android"
        if tablet:
            return name + " Tablet", "Android", "Google Inc.", "Tablet"
        return name, "Android", "Google Inc.", "Mobile"
    if family == "Chrome OS":
        return "Chrome OS", "Chrome OS", "Google Inc.", "Computer"
    if family in ("Linux", "Ubuntu", "Debian", "Fedora", "Red Hat", "SUSE"):
        return "Linux", "Linux", "Other", "Computer"
    return _UNKNOWN_OS


class UserAgentUtils(Enrichment):
    name = "user_agent_utils_config"
    accepts = ("1-0-*",)

    def __init__(self) -> None:
        self.fields = lru_cache(maxsize=CACHE_SIZE)(_field_map)

    @classmethod
    def from_parameters(
        cls, parameters: dict[str, Any], *, source: str
    ) -> UserAgentUtils:
        if parameters:
            raise ConfigurationError(
                f"{source}: user_agent_utils_config takes no parameters, but "
                f"{sorted(parameters)} were given."
            )
        logger.warning(
            "%s: user_agent_utils_config is deprecated (as in Snowplow); its "
            "br_*/os_*/dvce_* values are approximated from ua-parser. Prefer "
            "ua_parser_config.",
            source,
        )
        return cls()

    def enrich(self, event: Event, inp: EnrichmentInput) -> None:
        ua = event.get("useragent")
        if not ua:
            return
        event.update(self.fields(ua))


def _field_map(ua: str) -> dict[str, str | None]:
    """The ten legacy fields by name; kept per user agent and never changed
    (``event.update`` copies them, in ``FIELDS`` order)."""
    return dict(zip(FIELDS, legacy_fields(ua), strict=True))
