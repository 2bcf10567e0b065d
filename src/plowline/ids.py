"""Random (version 4) UUIDs as text, drawn in batches.

:class:`RandomIds` gives ids as ``str(uuid.uuid4())`` would, from the same
source (``os.urandom``), but draws the random bytes for many ids at once: one
system call and one ``hex()`` per batch instead of a ``UUID`` object per id
(system calls are slow on virtual machines; the collector's record ids and
enrich's event ids are on their hot paths). A process started by ``fork``
starts with an empty batch, so two workers never hand out the same ids.
"""

from __future__ import annotations

import os
import weakref

# How many ids one os.urandom call provides.
BATCH = 256

# The variant nibble of an RFC 9562 UUID is 10xx: 8, 9, a or b.
_VARIANT = str.maketrans("0123456789abcdef", "89ab89ab89ab89ab")
_live: weakref.WeakSet[RandomIds] = weakref.WeakSet()


class RandomIds:
    """Random (version 4) UUIDs as text, drawn in batches."""

    def __init__(self, batch: int = BATCH) -> None:
        self._batch = batch
        self._ready: list[str] = []
        _live.add(self)

    def next(self) -> str:
        """A new random UUID, e.g. ``c8009e74-2125-4b6d-9f9b-d95ba8309fa2``."""
        try:
            return self._ready.pop()
        except IndexError:
            self._ready = self._draw()
            return self._ready.pop()

    def forget(self) -> None:
        """Drop the ids drawn but not handed out yet."""
        self._ready = []

    def _draw(self) -> list[str]:
        digits = os.urandom(16 * self._batch).hex()
        ids = []
        for start in range(0, len(digits), 32):
            h = digits[start : start + 32]
            variant = h[16].translate(_VARIANT)
            ids.append(f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{variant}{h[17:20]}-{h[20:]}")
        return ids


def _forget_all() -> None:
    for ids in list(_live):
        ids.forget()


os.register_at_fork(after_in_child=_forget_all)
