"""Load enriched events and failed events into a PostgreSQL database.

:class:`PostgresStore` is the store (:mod:`plowline.storage.base`); the
tables it creates are described in :mod:`plowline.storage.postgres.schema`
and in docs/storage.md.
"""

from __future__ import annotations

from plowline.storage.postgres.store import PostgresStore

__all__ = ["PostgresStore"]
