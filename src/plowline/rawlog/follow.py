"""Following a raw-log folder while the collector writes to it.

The follower remembers, per file, the byte offset up to which records were taken.
It only takes whole lines: a record the collector is still writing (or a torn
last line after a crash) stays unread until its newline arrives. Offsets are
kept by the caller, next to what it did with the records, so a restart resumes
exactly where the last committed batch ended.

A file is written as ``<name>.jsonl.open`` and renamed to ``<name>.jsonl`` when
closed. Both names are one file to the follower: offsets are keyed by the
closed name, so they hold across the rename.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from plowline.rawlog.writer import OPEN_SUFFIX

logger = logging.getLogger(__name__)

RAW_LOG_SUFFIX = ".jsonl"


@dataclass(slots=True)
class Batch:
    """Whole lines read in one poll, and the offsets to store once they are used."""

    lines: list[tuple[str, int, bytes]] = field(default_factory=list)
    offsets: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.lines)


class RawLogFollower:
    """Reads new whole lines from every raw log in ``raw_dir``, oldest file first."""

    def __init__(
        self,
        raw_dir: Path,
        offsets: dict[str, int] | None = None,
        *,
        max_bytes_per_poll: int = 16 * 1024 * 1024,
    ) -> None:
        self.raw_dir = raw_dir
        self.offsets: dict[str, int] = dict(offsets or {})
        self.max_bytes_per_poll = max_bytes_per_poll

    def _files(self) -> list[tuple[str, str]]:
        """(closed name, name as listed) of every raw log, by closed name."""
        try:
            names = os.listdir(self.raw_dir)
        except FileNotFoundError:
            return []
        found: dict[str, str] = {}
        for name in names:
            if name.startswith("."):
                continue
            key = name[: -len(OPEN_SUFFIX)] if name.endswith(OPEN_SUFFIX) else name
            if key.endswith(RAW_LOG_SUFFIX) and found.get(key) != key:
                found[key] = name
        return sorted(found.items())

    def _open(self, key: str, name: str) -> BinaryIO | None:
        # The writer may rename the file between the listing and the open.
        for candidate in dict.fromkeys((name, key)):
            try:
                return open(self.raw_dir / candidate, "rb")
            except FileNotFoundError:
                continue
        return None

    def poll(self) -> Batch:
        """New whole lines since the offsets; call :meth:`commit` after using them."""
        batch = Batch()
        budget = self.max_bytes_per_poll
        for name, listed in self._files():
            if budget <= 0:
                break
            start = self.offsets.get(name, 0)
            opened = self._open(name, listed)
            if opened is None:
                continue
            with opened as handle:
                size = os.fstat(handle.fileno()).st_size
                if size <= start:
                    continue
                handle.seek(start)
                chunk = handle.read(min(size - start, budget))
                end = chunk.rfind(b"\n") + 1
                if end == 0 and len(chunk) < size - start:
                    # One record longer than the budget: take it whole, or it
                    # would block its file for good.
                    handle.seek(start)
                    chunk = handle.readline()
                    end = len(chunk) if chunk.endswith(b"\n") else 0
            if end == 0:
                continue
            budget -= end
            self._split(name, start, chunk[:end], batch)
            batch.offsets[name] = start + end
        return batch

    def _split(self, name: str, start: int, chunk: bytes, batch: Batch) -> None:
        # Line numbers are not known without reading the file from its start;
        # the byte offset of the line identifies it just as well.
        position = start
        for line in chunk.split(b"\n")[:-1]:
            if line.strip():
                batch.lines.append((name, position, line))
            position += len(line) + 1

    def commit(self, batch: Batch) -> None:
        self.offsets.update(batch.offsets)
