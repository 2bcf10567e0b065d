"""The canonical enriched event: 131 fields, in the order of the enriched TSV.

Each field carries the kind of value it holds and, for strings, the maximum length
of the Snowplow atomic schema (``iglu:com.snowplowanalytics.snowplow/atomic/1-0-0``).
Kinds: ``str``, ``int``, ``bool`` (``1``/``0`` in TSV), ``tstamp``
(``yyyy-MM-dd HH:mm:ss.SSS`` UTC), ``dec`` (money, decimal text), ``float`` and
``json`` (one-line self-describing JSON). Loaders derive column types from this.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

Kind = Literal["str", "int", "bool", "tstamp", "dec", "float", "json"]


class Field(NamedTuple):
    name: str
    kind: Kind
    max_length: int | None


FIELDS: tuple[Field, ...] = (
    Field("app_id", "str", 255),
    Field("platform", "str", 255),
    Field("etl_tstamp", "tstamp", None),
    Field("collector_tstamp", "tstamp", None),
    Field("dvce_created_tstamp", "tstamp", None),
    Field("event", "str", 128),
    Field("event_id", "str", 36),
    Field("txn_id", "int", None),
    Field("name_tracker", "str", 128),
    Field("v_tracker", "str", 100),
    Field("v_collector", "str", 100),
    Field("v_etl", "str", 100),
    Field("user_id", "str", 255),
    Field("user_ipaddress", "str", 128),
    Field("user_fingerprint", "str", 128),
    Field("domain_userid", "str", 128),
    Field("domain_sessionidx", "int", None),
    Field("network_userid", "str", 128),
    Field("geo_country", "str", 2),
    Field("geo_region", "str", 3),
    Field("geo_city", "str", 75),
    Field("geo_zipcode", "str", 15),
    Field("geo_latitude", "float", None),
    Field("geo_longitude", "float", None),
    Field("geo_region_name", "str", 100),
    Field("ip_isp", "str", 100),
    Field("ip_organization", "str", 128),
    Field("ip_domain", "str", 128),
    Field("ip_netspeed", "str", 100),
    Field("page_url", "str", 4096),
    Field("page_title", "str", 2000),
    Field("page_referrer", "str", 4096),
    Field("page_urlscheme", "str", 16),
    Field("page_urlhost", "str", 255),
    Field("page_urlport", "int", None),
    Field("page_urlpath", "str", 3000),
    Field("page_urlquery", "str", 6000),
    Field("page_urlfragment", "str", 3000),
    Field("refr_urlscheme", "str", 16),
    Field("refr_urlhost", "str", 255),
    Field("refr_urlport", "int", None),
    Field("refr_urlpath", "str", 6000),
    Field("refr_urlquery", "str", 6000),
    Field("refr_urlfragment", "str", 3000),
    Field("refr_medium", "str", 25),
    Field("refr_source", "str", 50),
    Field("refr_term", "str", 255),
    Field("mkt_medium", "str", 255),
    Field("mkt_source", "str", 255),
    Field("mkt_term", "str", 255),
    Field("mkt_content", "str", 500),
    Field("mkt_campaign", "str", 255),
    Field("contexts", "json", None),
    Field("se_category", "str", 1000),
    Field("se_action", "str", 1000),
    Field("se_label", "str", 4096),
    Field("se_property", "str", 1000),
    Field("se_value", "float", None),
    Field("unstruct_event", "json", None),
    Field("tr_orderid", "str", 255),
    Field("tr_affiliation", "str", 255),
    Field("tr_total", "dec", None),
    Field("tr_tax", "dec", None),
    Field("tr_shipping", "dec", None),
    Field("tr_city", "str", 255),
    Field("tr_state", "str", 255),
    Field("tr_country", "str", 255),
    Field("ti_orderid", "str", 255),
    Field("ti_sku", "str", 255),
    Field("ti_name", "str", 255),
    Field("ti_category", "str", 255),
    Field("ti_price", "dec", None),
    Field("ti_quantity", "int", None),
    Field("pp_xoffset_min", "int", None),
    Field("pp_xoffset_max", "int", None),
    Field("pp_yoffset_min", "int", None),
    Field("pp_yoffset_max", "int", None),
    Field("useragent", "str", 1000),
    Field("br_name", "str", 50),
    Field("br_family", "str", 50),
    Field("br_version", "str", 50),
    Field("br_type", "str", 50),
    Field("br_renderengine", "str", 50),
    Field("br_lang", "str", 255),
    Field("br_features_pdf", "bool", None),
    Field("br_features_flash", "bool", None),
    Field("br_features_java", "bool", None),
    Field("br_features_director", "bool", None),
    Field("br_features_quicktime", "bool", None),
    Field("br_features_realplayer", "bool", None),
    Field("br_features_windowsmedia", "bool", None),
    Field("br_features_gears", "bool", None),
    Field("br_features_silverlight", "bool", None),
    Field("br_cookies", "bool", None),
    Field("br_colordepth", "str", 12),
    Field("br_viewwidth", "int", None),
    Field("br_viewheight", "int", None),
    Field("os_name", "str", 50),
    Field("os_family", "str", 50),
    Field("os_manufacturer", "str", 50),
    Field("os_timezone", "str", 255),
    Field("dvce_type", "str", 50),
    Field("dvce_ismobile", "bool", None),
    Field("dvce_screenwidth", "int", None),
    Field("dvce_screenheight", "int", None),
    Field("doc_charset", "str", 128),
    Field("doc_width", "int", None),
    Field("doc_height", "int", None),
    Field("tr_currency", "str", 3),
    Field("tr_total_base", "dec", None),
    Field("tr_tax_base", "dec", None),
    Field("tr_shipping_base", "dec", None),
    Field("ti_currency", "str", 3),
    Field("ti_price_base", "dec", None),
    Field("base_currency", "str", 3),
    Field("geo_timezone", "str", 64),
    Field("mkt_clickid", "str", 128),
    Field("mkt_network", "str", 64),
    Field("etl_tags", "str", 500),
    Field("dvce_sent_tstamp", "tstamp", None),
    Field("refr_domain_userid", "str", 128),
    Field("refr_dvce_tstamp", "tstamp", None),
    Field("derived_contexts", "json", None),
    Field("domain_sessionid", "str", 128),
    Field("derived_tstamp", "tstamp", None),
    Field("event_vendor", "str", 1000),
    Field("event_name", "str", 1000),
    Field("event_format", "str", 128),
    Field("event_version", "str", 128),
    Field("event_fingerprint", "str", 128),
    Field("true_tstamp", "tstamp", None),
)

FIELD_NAMES: tuple[str, ...] = tuple(field.name for field in FIELDS)
FIELD_INDEX: dict[str, int] = {name: i for i, name in enumerate(FIELD_NAMES)}

# Columns that the atomic schema makes NOT NULL.
REQUIRED_FIELDS: frozenset[str] = frozenset(
    {"collector_tstamp", "event_id", "v_collector", "v_etl"}
)

assert len(FIELDS) == 131
