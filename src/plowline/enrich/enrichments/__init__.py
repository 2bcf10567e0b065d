"""Configurable enrichments, configured with Snowplow's enrichment JSON files.

Each enrichment is a class in its own module, built from the ``parameters``
of its configuration file and called once per event by the pipeline, in
Snowplow's order (see ``ORDER`` in :mod:`.base`).
"""
