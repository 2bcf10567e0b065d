"""Plowline: an event-analytics pipeline that speaks the Snowplow tracker protocol."""

__version__ = "0.1.0"
