"""A time limit on a call of user code, in whichever thread makes the call.

``TimeLimit.run(seconds, function, *args)`` calls ``function`` in the calling
thread. One watchdog thread per process (started on the first call, asleep
while no call is made) wakes a few times a second while calls are running;
when a call has passed its deadline it asks CPython to raise
:class:`TimeLimitExceeded` in the calling thread
(``PyThreadState_SetAsyncExc``), which happens at the next bytecode boundary.

Why not ``signal.setitimer``: SIGALRM reaches only the main thread, replaces
any handler another part of the program (or a test runner) set, and Plowline
may enrich outside the main thread. The watchdog works in any thread, the main
thread under asyncio included, and costs a clock reading and one lock
round-trip per call: each thread keeps one record of its calls, which a call
fills in without the lock (see ``run``) and empties with it.

Limits: the exception is raised only when the thread runs Python bytecode. A
call blocked in C code (a ``time.sleep``, a read from a socket without a
timeout, a catastrophic regular expression, a huge integer power) is stopped
only when that C code returns. :class:`TimeLimitExceeded` derives from
``BaseException`` so that ``except Exception`` in user code does not swallow
it; a bare ``except:`` can, so it is raised again every
``max(seconds, 1)`` seconds until the call ends. Only CPython has the needed
call: elsewhere the limit is not enforced (a warning says so once).
"""

from __future__ import annotations

import ctypes
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Bound once: a call's start and end are on the path of every event.
_get_ident = threading.get_ident
_monotonic = time.monotonic

POLL_SECONDS = 0.05  # how late past its deadline a call may be stopped
IDLE_SECONDS = 2.0  # the watchdog sleeps after this long without calls


class TimeLimitExceeded(BaseException):
    """Raised inside a call that ran past its time limit."""


class _Call:
    """A thread's record of its running call, reused by its next calls (a
    call inside a call gets a record of its own). The watchdog reads it with
    the lock held; ``running`` is set last when a call begins and cleared
    with the lock held when it ends."""

    __slots__ = (
        "__weakref__",
        "deadline",
        "fired",
        "running",
        "seconds",
        "thread_id",
    )

    def __init__(self) -> None:
        self.thread_id = _get_ident()
        self.seconds = 0.0
        self.deadline = 0.0
        self.running = False
        self.fired = 0  # how many times the exception was sent


def _set_async_exc(thread_id: int, exc: type[BaseException] | None) -> int:
    api = getattr(ctypes, "pythonapi", None)
    if api is None:  # not CPython
        return 0
    result = api.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread_id), None if exc is None else ctypes.py_object(exc)
    )
    return int(result)


class TimeLimit:
    """Runs calls with a deadline; one instance (``TIME_LIMIT``) per process."""

    def __init__(self) -> None:
        self._reset()
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        # Also after a fork: the child has no watchdog thread, and the lock
        # may have been held by the parent's watchdog when it forked.
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        # Every thread's record, held by the thread (self._own): the record
        # of a thread that ended leaves this set by itself.
        self._calls: weakref.WeakSet[_Call] = weakref.WeakSet()
        self._own = threading.local()
        self._thread: threading.Thread | None = None
        self._sleeping = False
        self._last_call = 0.0

    @property
    def supported(self) -> bool:
        return hasattr(ctypes, "pythonapi")

    def run(self, seconds: float, function: Callable[..., T], *args: Any) -> T:
        """``function(*args)``, or :class:`TimeLimitExceeded` once it has run
        ``seconds`` (and returns to Python code)."""
        try:
            call: _Call = self._own.call
        except AttributeError:  # this thread's first call
            call = self._own.call = self._register()
        if call.running:  # a call inside a call: a record of its own
            call = self._register()

        try:
            try:
                # Filled in without the lock: the watchdog reads the record
                # only once ``running`` is set, and that is set last. (A record
                # is filled in again only after its previous call ended, which
                # took the lock.) Written out here rather than in a method of
                # its own: this runs once per event.
                call.seconds = seconds
                call.fired = 0
                self._last_call = now = _monotonic()
                call.deadline = now + seconds
                call.running = True
                # Set before _sleeping is read, while the watchdog sets
                # _sleeping before it looks for running calls one last time:
                # one of the two sees the other, and no call goes unwatched.
                if self._sleeping or self._thread is None:
                    with self._lock:
                        self._start_or_wake()
                result = function(*args)
            finally:
                with self._lock:
                    call.running = False  # from here on, nothing is sent to it
        except TimeLimitExceeded:
            self._end(call)  # in case the exception cut the first _end short
            if call.fired:
                _set_async_exc(call.thread_id, None)  # nothing may stay pending
            raise
        if call.fired:
            # Sent just as the call returned, or swallowed by the user's code:
            # the call still went past its limit.
            _set_async_exc(call.thread_id, None)
            raise TimeLimitExceeded
        return result

    def _register(self) -> _Call:
        call = _Call()
        with self._lock:
            self._calls.add(call)
        return call

    def _start_or_wake(self) -> None:
        # Called with the lock held.
        if self._thread is None or not self._thread.is_alive():
            self._sleeping = False
            self._thread = threading.Thread(
                target=self._watch, name="plowline-time-limit", daemon=True
            )
            self._thread.start()
        elif self._sleeping:
            self._sleeping = False
            self._wake.notify()

    def _end(self, call: _Call) -> None:
        with self._lock:
            call.running = False  # from here on, nothing is sent to that thread

    def _watch(self) -> None:
        try:
            self._watch_calls()
        finally:
            # Not expected to happen; the next call starts a new watchdog.
            self._thread = None

    def _watch_calls(self) -> None:
        with self._lock:
            while True:
                now = time.monotonic()
                if not self._check_calls(now) and now - self._last_call > IDLE_SECONDS:
                    # Set before the last look (see run): a call that began
                    # unseen since the look above sees it and wakes this one.
                    self._sleeping = True
                    if self._check_calls(now):
                        self._sleeping = False
                        continue
                    self._wake.wait()  # until the next call begins
                    continue
                self._wake.wait(POLL_SECONDS)

    def _check_calls(self, now: float) -> bool:
        """Whether a call is running; those past their deadline are stopped.
        (A function of its own: no record stays referenced from the
        watchdog's frame while it waits, and a thread's record goes with
        the thread.)"""
        running = False
        for call in self._snapshot():
            if call.running:
                running = True
                if now >= call.deadline:
                    self._fire(call, now)
        return running

    def _snapshot(self) -> list[_Call]:
        """The records, copied. A thread that ends drops its record from the
        weak set without the lock, and may do so while it is being copied:
        then the copy is made again."""
        while True:
            try:
                return list(self._calls)
            except RuntimeError:  # the set changed size while it was copied
                continue

    def _fire(self, call: _Call, now: float) -> None:
        # Called with the lock held, so the call cannot end meanwhile.
        call.fired += 1
        call.deadline = now + max(call.seconds, 1.0)  # again if it is swallowed
        if call.fired == 2:
            logger.warning(
                "A call past its time limit of %s s is still running: it may be "
                "blocked in C code, which cannot be interrupted",
                call.seconds,
            )
        if _set_async_exc(call.thread_id, TimeLimitExceeded) == 0 and call.fired == 1:
            logger.warning(
                "Cannot stop a call past its time limit of %s s: this Python "
                "has no PyThreadState_SetAsyncExc",
                call.seconds,
            )


TIME_LIMIT = TimeLimit()
