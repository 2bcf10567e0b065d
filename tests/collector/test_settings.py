"""The collector's HTTP settings: environment variables, checks and messages;
and reading addresses out of proxy headers."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import fields
from pathlib import Path

import pytest

from plowline.collector.client_ip import ClientAddress, parse_address
from plowline.collector.config import CollectorConfig
from plowline.collector.metrics import CollectorMetrics
from plowline.errors import ConfigurationError


def test_http_settings_survive_the_environment_round_trip() -> None:
    config = CollectorConfig(
        cookie_domains=("shop.example", ".brand.example"),
        cookie_secure=False,
        cookie_same_site="Strict",
        cookie_http_only=False,
        do_not_track_cookie_name="optout",
        do_not_track_cookie_value="1|yes",
        do_not_track_cookie_regex=True,
        redirect_allowed_hosts=("shop.example", "*.brand.example"),
        trusted_proxies=("10.0.0.0/8", "fd00::/8", "192.0.2.1"),
        proxy_header="forwarded",
        max_querystring_bytes=1000,
        max_header_bytes=2000,
        metrics_enabled=False,
        metrics_dir=Path("/run/plowline-metrics"),
        tracker_max_age=0,
    )

    assert CollectorConfig.from_env(config.to_env()) == config


def test_lists_are_comma_separated_and_trimmed() -> None:
    env = {
        "PLOWLINE_COLLECTOR_REDIRECT_ALLOWED_HOSTS": " a.example , *.b.example,, ",
        "PLOWLINE_COLLECTOR_TRUSTED_PROXIES": "10.0.0.1,::1",
        "PLOWLINE_COLLECTOR_COOKIE_SECURE": "auto",
    }
    config = CollectorConfig.from_env(env)

    assert config.redirect_allowed_hosts == ("a.example", "*.b.example")
    assert config.trusted_proxies == ("10.0.0.1", "::1")
    assert config.cookie_secure is None


def test_http_defaults() -> None:
    config = CollectorConfig()

    assert config.redirect_allowed_hosts == ()
    assert config.trusted_proxies == ()
    assert (config.max_querystring_bytes, config.max_header_bytes) == (20480, 40960)
    assert (config.cookie_secure, config.cookie_same_site) == (None, None)
    assert config.metrics_enabled is True


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"TRUSTED_PROXIES": "10.0.0.0/33"}, "'10.0.0.0/33', which is not an IP"),
        ({"TRUSTED_PROXIES": "proxy.internal"}, "not an IP address or network"),
        ({"REDIRECT_ALLOWED_HOSTS": "https://a.example"}, "without scheme, port"),
        ({"REDIRECT_ALLOWED_HOSTS": "*"}, "'*', which is not a host name"),
        ({"REDIRECT_ALLOWED_HOSTS": "a.example:443"}, "which is not a host name"),
        ({"COOKIE_SAME_SITE": "sometimes"}, "must be None, Lax or Strict"),
        (
            {"COOKIE_SAME_SITE": "None", "COOKIE_SECURE": "false"},
            "browsers drop SameSite=None cookies without Secure",
        ),
        ({"COOKIE_DOMAINS": "a.example,b;c"}, "may not contain ';'"),
        ({"COOKIE_DOMAIN": "dömain.example"}, "non-ASCII"),
        ({"DO_NOT_TRACK_COOKIE_VALUE": "1"}, "set the cookie name too"),
        ({"DO_NOT_TRACK_COOKIE_NAME": "opt out"}, "not a valid HTTP token"),
        (
            {"DO_NOT_TRACK_COOKIE_NAME": "o", "DO_NOT_TRACK_COOKIE_REGEX": "true"},
            "holds no pattern",
        ),
        (
            {
                "DO_NOT_TRACK_COOKIE_NAME": "o",
                "DO_NOT_TRACK_COOKIE_VALUE": "(",
                "DO_NOT_TRACK_COOKIE_REGEX": "true",
            },
            "not a valid regular expression",
        ),
        ({"PROXY_HEADER": "x-real-ip"}, "must be x-forwarded-for or forwarded"),
        ({"MAX_QUERYSTRING_BYTES": "0"}, "max_querystring_bytes must be positive"),
        ({"MAX_HEADER_BYTES": "-1"}, "max_header_bytes must be positive"),
        ({"TRACKER_MAX_AGE": "-5"}, "tracker_max_age must be 0 or more"),
        ({"METRICS_ENABLED": "perhaps"}, "METRICS_ENABLED='perhaps'"),
    ],
    ids=lambda value: str(value) if isinstance(value, str) else None,
)
def test_bad_http_setting_is_a_clear_error(env: dict[str, str], message: str) -> None:
    prefixed = {"PLOWLINE_COLLECTOR_" + key: value for key, value in env.items()}

    with pytest.raises(ConfigurationError, match=message.replace("(", r"\(")):
        CollectorConfig.from_env(prefixed)


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        ("198.51.100.7", "198.51.100.7"),
        (" 198.51.100.7:8080 ", "198.51.100.7"),
        ('"198.51.100.7"', "198.51.100.7"),
        ("2001:db8::1", "2001:db8::1"),
        ("[2001:db8::1]", "2001:db8::1"),
        ('"[2001:db8::1]:443"', "2001:db8::1"),
        ("::ffff:198.51.100.7", "198.51.100.7"),
        ("[2001:db8::1", None),
        ("unknown", None),
        ("_hidden", None),
        ("", None),
        ("1.2.3.4.5", None),
    ],
)
def test_parse_address_reads_header_forms(token: str, expected: str | None) -> None:
    address = parse_address(token)

    assert (str(address) if address else None) == expected


def test_trusted_peer_cache_stays_bounded() -> None:
    resolver = ClientAddress(["10.0.0.0/8"], "x-forwarded-for")
    for n in range(5000):
        peer = str(ipaddress.IPv4Address(0x0B000000 + n))
        assert resolver.resolve(peer, [b"198.51.100.7"]) == peer

    assert resolver.resolve("10.1.2.3", [b"198.51.100.7"]) == "198.51.100.7"


# --- docs kept honest ---------------------------------------------------------------

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_every_setting_is_documented() -> None:
    text = (DOCS / "collector.md").read_text() + (DOCS / "raw-log.md").read_text()
    missing = [
        item.name
        for item in fields(CollectorConfig)
        if item.name not in text
        and f"PLOWLINE_COLLECTOR_{item.name.upper()}" not in text
        and not item.name.startswith("nats_")  # documented as nats_*
    ]

    assert missing == []


def test_every_metric_is_documented() -> None:
    metrics = CollectorMetrics()
    metrics.requests[("pixel", 200)] = 1
    exported = metrics.render().decode()
    names = re.findall(r"^(plowline_\w+)(?:\{.*\})? ", exported, re.MULTILINE)
    text = (DOCS / "collector.md").read_text()

    assert len(set(names)) == 6
    assert [name for name in names if f"`{name}`" not in text] == []
