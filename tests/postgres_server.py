"""The PostgreSQL server the tests use (trust auth), from
$PLOWLINE_TEST_POSTGRES; each test folder makes databases of its own on it."""

from __future__ import annotations

import os

POSTGRES_SERVER = os.environ.get(
    "PLOWLINE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432"
)


def postgres_available() -> bool:
    """Whether the server answers (tests that need it skip otherwise)."""
    import psycopg

    try:
        psycopg.connect(f"{POSTGRES_SERVER}/postgres", connect_timeout=3).close()
    except psycopg.OperationalError:
        return False
    return True
