"""The derived tables: their columns, their DDL, and the acquisition channel.

The tables live in the schema ``derived``, next to ``atomic``. Column types are
ones DuckDB and PostgreSQL both name the same way (``FLOAT8`` is DuckDB's
``DOUBLE`` and PostgreSQL's ``double precision``).
"""

from __future__ import annotations

SCHEMA = "derived"

_V = "VARCHAR"
_T = "TIMESTAMP"
_I = "INTEGER"
_B = "BOOLEAN"
# Money: wide enough for any sum of DECIMAL(18,2) amounts (sources.money).
MONEY = "DECIMAL(38,2)"
_M = MONEY

PAGE_VIEWS: tuple[tuple[str, str], ...] = (
    ("page_view_id", _V),
    ("event_id", _V),
    ("app_id", _V),
    ("session_id", _V),
    ("domain_sessionidx", _I),
    ("domain_userid", _V),
    ("network_userid", _V),
    ("user_id", _V),
    ("stitched_user_id", _V),
    ("page_view_in_session_index", _I),
    ("page_views_in_session", _I),
    ("start_tstamp", _T),
    ("end_tstamp", _T),
    ("collector_tstamp", _T),
    ("page_url", _V),
    ("page_urlhost", _V),
    ("page_urlpath", _V),
    ("page_title", _V),
    ("page_referrer", _V),
    ("refr_medium", _V),
    ("refr_source", _V),
    ("refr_term", _V),
    ("mkt_medium", _V),
    ("mkt_source", _V),
    ("mkt_term", _V),
    ("mkt_content", _V),
    ("mkt_campaign", _V),
    ("page_pings", _I),
    ("engaged_time_s", _I),
    ("doc_height", _I),
    ("scroll_depth_pct", _I),
    ("br_family", _V),
    ("br_name", _V),
    ("os_family", _V),
    ("os_name", _V),
    ("dvce_type", _V),
    ("dvce_ismobile", _B),
    ("geo_country", _V),
    ("geo_region_name", _V),
    ("geo_city", _V),
    ("is_entry", _B),
    ("is_exit", _B),
    # The start of the previous page view of the same page_urlpath in the same
    # session / by the same stitched user (and, for the _app ones, of the same
    # app_id); NULL for the first. The pages report counts distinct sessions
    # and users with them (reports.pages).
    ("prev_path_view_in_session", _T),
    ("prev_path_view_in_session_app", _T),
    ("prev_path_view_by_user", _T),
    ("prev_path_view_by_user_app", _T),
)

# How the session reports group sessions (reports.overview and the reports by
# session): for each grouping, a session row has the start of its stitched
# user's previous session in the same group (prev_user_session_<name>) and in
# the same group and app_id (..._app); NULL for the first. The reports count
# distinct users with them.
SESSION_GROUPS: dict[str, tuple[str, ...]] = {
    "any": (),
    "referrer": ("channel", "refr_medium", "refr_source", "refr_term"),
    "campaign": ("mkt_campaign", "mkt_source", "mkt_medium"),
    "device": ("dvce_type", "br_family", "os_family"),
    "place": ("geo_country", "geo_city"),
}


def previous_session_column(group: str, app: bool) -> str:
    return f"prev_user_session_{group}{'_app' if app else ''}"


SESSIONS: tuple[tuple[str, str], ...] = (
    ("session_id", _V),
    ("domain_sessionidx", _I),
    ("app_id", _V),
    ("domain_userid", _V),
    ("network_userid", _V),
    ("user_id", _V),
    ("stitched_user_id", _V),
    ("start_tstamp", _T),
    ("end_tstamp", _T),
    ("min_collector_tstamp", _T),
    ("duration_s", "FLOAT8"),
    ("events", _I),
    ("page_views", _I),
    ("engaged_time_s", _I),
    ("entry_page_url", _V),
    ("entry_page_path", _V),
    ("exit_page_url", _V),
    ("exit_page_path", _V),
    ("page_referrer", _V),
    ("refr_medium", _V),
    ("refr_source", _V),
    ("refr_term", _V),
    ("mkt_medium", _V),
    ("mkt_source", _V),
    ("mkt_term", _V),
    ("mkt_content", _V),
    ("mkt_campaign", _V),
    ("channel", _V),
    ("is_bounce", _B),
    ("transactions", _I),
    ("revenue", _M),
    ("br_family", _V),
    ("os_family", _V),
    ("dvce_type", _V),
    ("geo_country", _V),
    ("geo_region_name", _V),
    ("geo_city", _V),
    *(
        (previous_session_column(group, app), _T)
        for group in SESSION_GROUPS
        for app in (False, True)
    ),
)

USERS: tuple[tuple[str, str], ...] = (
    ("stitched_user_id", _V),
    ("user_id", _V),
    ("domain_userids", _I),
    ("first_seen", _T),
    ("last_seen", _T),
    ("sessions", _I),
    ("page_views", _I),
    ("engaged_time_s", "BIGINT"),
    ("transactions", _I),
    ("revenue", _M),
    ("first_session_id", _V),
    ("first_channel", _V),
)

TRANSACTIONS: tuple[tuple[str, str], ...] = (
    ("order_id", _V),
    ("source", _V),
    ("event_id", _V),
    ("tstamp", _T),
    ("collector_tstamp", _T),
    ("app_id", _V),
    ("session_id", _V),
    ("domain_userid", _V),
    ("user_id", _V),
    ("revenue", _M),
    ("currency", _V),
    ("tax", _M),
    ("shipping", _M),
    ("affiliation", _V),
    ("payment_method", _V),
    ("city", _V),
    ("state", _V),
    ("country", _V),
)

TRANSACTION_ITEMS: tuple[tuple[str, str], ...] = (
    ("order_id", _V),
    ("sku", _V),
    ("name", _V),
    ("category", _V),
    ("price", _M),
    ("quantity", _I),
    ("item_revenue", _M),
    ("currency", _V),
    ("source", _V),
    ("event_id", _V),
    ("tstamp", _T),
    ("session_id", _V),
)

USER_MAPPING: tuple[tuple[str, str], ...] = (
    ("domain_userid", _V),
    ("user_id", _V),
    ("mapped_tstamp", _T),
    ("mapped_event_id", _V),
)

PROCESSED_EVENTS: tuple[tuple[str, str], ...] = (
    ("event_id", _V),
    ("arrival", _T),
)

MODEL_STATE: tuple[tuple[str, str], ...] = (
    ("include_bots", _B),
    ("heartbeat_s", _I),
    ("lookback_s", _I),
    ("watermark", _T),
    ("events_processed", "BIGINT"),
    ("updated_at", _T),
)

MODEL_TABLES: dict[str, tuple[tuple[str, str], ...]] = {
    "page_views": PAGE_VIEWS,
    "sessions": SESSIONS,
    "users": USERS,
    "transactions": TRANSACTIONS,
    "transaction_items": TRANSACTION_ITEMS,
}
STATE_TABLES: dict[str, tuple[tuple[str, str], ...]] = {
    "user_mapping": USER_MAPPING,
    "processed_events": PROCESSED_EVENTS,
    "model_state": MODEL_STATE,
}


def names(columns: tuple[tuple[str, str], ...]) -> str:
    return ", ".join(name for name, _ in columns)


def ddl_statements() -> list[str]:
    """CREATE statements for the schema and every derived table."""
    statements = [f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}"]
    for table, columns in {**MODEL_TABLES, **STATE_TABLES}.items():
        body = ", ".join(f"{name} {kind}" for name, kind in columns)
        statements.append(f"CREATE TABLE IF NOT EXISTS {SCHEMA}.{table} ({body})")
    return statements


def channel_sql(alias: str) -> str:
    """The acquisition channel of a session from its landing event's campaign
    (mkt_medium, first) and referrer (refr_medium); docs/analytics.md has the
    table."""
    medium = f"LOWER({alias}.mkt_medium)"
    return f"""CASE
        WHEN {medium} IN ('cpc', 'ppc', 'paidsearch', 'paid-search', 'paid_search')
            THEN 'Paid Search'
        WHEN {medium} IN ('display', 'cpm', 'banner') THEN 'Display'
        WHEN {medium} IN ('paid-social', 'paidsocial', 'paid_social')
            THEN 'Paid Social'
        WHEN {medium} IN ('social', 'social-network', 'social-media', 'sm')
            THEN 'Social'
        WHEN {medium} IN ('email', 'e-mail', 'e_mail', 'newsletter') THEN 'Email'
        WHEN {medium} IN ('affiliate', 'affiliates') THEN 'Affiliates'
        WHEN {medium} = 'referral' THEN 'Referral'
        WHEN {medium} = 'organic' THEN 'Organic Search'
        WHEN {alias}.mkt_medium IS NOT NULL THEN 'Other Campaigns'
        WHEN {alias}.refr_medium = 'search' THEN 'Organic Search'
        WHEN {alias}.refr_medium = 'social' THEN 'Social'
        WHEN {alias}.refr_medium = 'email' THEN 'Email'
        WHEN {alias}.refr_medium = 'paid' THEN 'Display'
        WHEN {alias}.refr_medium = 'internal' THEN 'Internal'
        WHEN {alias}.refr_medium IS NOT NULL OR {alias}.page_referrer IS NOT NULL
            THEN 'Referral'
        ELSE 'Direct'
    END"""
