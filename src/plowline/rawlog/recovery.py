"""Closing the raw logs of writers that are gone, and setting torn lines aside.

A writer holds an exclusive ``flock`` on its active file (``<name>.jsonl.open``)
for as long as it may write to it; the kernel drops the lock when the process
dies, however it dies. An active file whose lock is free therefore belongs to a
writer that is gone. Recovery closes such a file: the bytes after its last
newline (a line torn by a crash) move to ``<name>.jsonl.torn``, so that no byte
is lost and none is ever read as a record, and the file takes its closed name.
Each step is safe to repeat, so a crash during recovery is recovered next time.
"""

from __future__ import annotations

import fcntl
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from plowline.rawlog.writer import OPEN_SUFFIX, closed_path, sync_directory

logger = logging.getLogger(__name__)

TORN_SUFFIX = ".torn"
_CHUNK = 64 * 1024


@dataclass(frozen=True, slots=True)
class RecoveredFile:
    """One active file of a gone writer, now closed.

    ``closed`` is ``None`` when the file held no whole line and was removed.
    """

    active: Path
    closed: Path | None
    torn_bytes: int


def recover_raw_dir(raw_dir: Path) -> list[RecoveredFile]:
    """Close every active raw log in ``raw_dir`` whose writer is gone.

    Files of live writers (their lock is held) are left alone, so this may run
    while other collector processes write to the same folder.
    """
    try:
        names = sorted(os.listdir(raw_dir))
    except FileNotFoundError:
        return []
    recovered: list[RecoveredFile] = []
    for name in names:
        if name.startswith(".") or not name.endswith(".jsonl" + OPEN_SUFFIX):
            continue
        found = _recover(raw_dir / name)
        if found is not None:
            recovered.append(found)
    if recovered:
        sync_directory(raw_dir)
        torn = sum(1 for item in recovered if item.torn_bytes)
        logger.warning(
            "Closed %d raw log(s) left by stopped collector processes in %s; "
            "%d ended with a torn line, kept aside in a .torn file.",
            len(recovered),
            raw_dir,
            torn,
        )
    return recovered


def _recover(path: Path) -> RecoveredFile | None:
    try:
        fd = os.open(path, os.O_RDWR | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return None  # closed by its writer or another recovery meanwhile
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return None  # a live writer holds it
        if not _still_named(fd, path):
            return None
        return _close_dead_file(fd, path)
    finally:
        os.close(fd)


def _still_named(fd: int, path: Path) -> bool:
    # Another recovery may have renamed the file between our open and our lock.
    try:
        return os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False


def _close_dead_file(fd: int, path: Path) -> RecoveredFile:
    size = os.fstat(fd).st_size
    keep = _end_of_last_line(fd, size)
    target = closed_path(path)
    if keep < size:
        # The tail is safely on disk under its own name before it is cut off.
        _save_tail(fd, keep, size, target.with_name(target.name + TORN_SUFFIX))
        os.ftruncate(fd, keep)
    os.fsync(fd)
    if keep == 0:
        os.unlink(path)
        return RecoveredFile(path, None, size)
    os.rename(path, target)
    return RecoveredFile(path, target, size - keep)


def _end_of_last_line(fd: int, size: int) -> int:
    """The offset just after the last newline of the file (0 if it has none)."""
    end = size
    while end > 0:
        start = max(0, end - _CHUNK)
        chunk = os.pread(fd, end - start, start)
        found = chunk.rfind(b"\n")
        if found >= 0:
            return start + found + 1
        end = start
    return 0


def _save_tail(fd: int, start: int, end: int, torn_path: Path) -> None:
    temporary = torn_path.with_name(f".{torn_path.name}.tmp")
    out = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        position = start
        while position < end:
            data = os.pread(fd, min(_CHUNK, end - position), position)
            if not data:
                break
            view = memoryview(data)
            while view:
                view = view[os.write(out, view) :]
            position += len(data)
        os.fsync(out)
    finally:
        os.close(out)
    os.replace(temporary, torn_path)
