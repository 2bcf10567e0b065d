"""Data models over the enriched events (page views, sessions, users,
transactions) and the reports built on them; docs/analytics.md."""

from plowline.analytics.models import ModelResult, ModelSettings, build_models
from plowline.analytics.reports import REPORTS, Filters
from plowline.analytics.run import run_report, update_models
from plowline.analytics.warehouse import Warehouse

__all__ = [
    "REPORTS",
    "Filters",
    "ModelResult",
    "ModelSettings",
    "Warehouse",
    "build_models",
    "run_report",
    "update_models",
]
