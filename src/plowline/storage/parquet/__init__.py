"""The Parquet store: a Hive-partitioned folder of Parquet files that DuckDB,
Spark, Trino and Hive read, loaded exactly once (see docs/storage.md)."""

from __future__ import annotations

from plowline.storage.parquet.store import ParquetStore

__all__ = ["ParquetStore"]
