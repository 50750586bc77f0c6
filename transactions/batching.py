"""Group commit: concurrent requests in one process share one DB transaction.

A wallet's balance row can change only as often as PostgreSQL can commit while
holding its lock; under a gevent worker the lock is also held while the greenlet
that took it waits for its turn to send the COMMIT. So instead of every request
running its own transaction, requests that arrive while one is in flight queue
up, and the next leader takes the whole queue into a single transaction: one row
lock, one statement, one COMMIT for many operations, each of them still checked
and answered on its own.

`Coalescer.submit(item)` blocks until `item` has been handled and returns its
outcome (or raises its error). The first caller with nothing in flight becomes
the leader and runs `handle(batch)` with its own item and whatever queued
behind it (up to `max_batch`); when it is done it wakes the callers it answered
and hands leadership to the next queued caller, so no caller ever runs more than
one batch and the leader's own response is never held up by later arrivals.

Plain `threading` primitives: under Gunicorn's gevent worker they are
monkey-patched into greenlet-aware ones, in tests they are real threads. Every
batch runs on the leader's own database connection.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Pending(Generic[T]):
    """One submitted item and, once handled, its outcome."""

    __slots__ = ("_done", "_lead", "error", "item", "result")

    def __init__(self, item: T) -> None:
        self.item = item
        self.result: Any = None
        self.error: BaseException | None = None
        self._done = threading.Event()
        self._lead = False

    def resolve(self, result: Any) -> None:
        self.result = result

    def fail(self, error: BaseException) -> None:
        self.error = error

    def outcome(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.result


class Coalescer(Generic[T]):
    def __init__(
        self, handle: Callable[[Sequence[Pending[T]]], None], *, max_batch: int
    ) -> None:
        self._handle = handle
        self._max_batch = max_batch
        self._lock = threading.Lock()
        self._queue: deque[Pending[T]] = deque()
        self._busy = False  # a leader is running a batch

    def submit(self, item: T) -> Any:
        pending = Pending(item)
        with self._lock:
            if self._busy:
                self._queue.append(pending)
            else:
                self._busy = True
                pending._lead = True
        if not pending._lead:
            pending._done.wait()
        if pending._lead:
            self._lead(pending)
        return pending.outcome()

    def _lead(self, first: Pending[T]) -> None:
        with self._lock:
            batch = [first]
            while self._queue and len(batch) < self._max_batch:
                batch.append(self._queue.popleft())
        try:
            self._handle(batch)
        except BaseException as exc:  # every caller in the batch must hear back
            for pending in batch:
                if pending.error is None and pending.result is None:
                    pending.fail(exc)
            raise
        finally:
            with self._lock:
                successor = self._queue.popleft() if self._queue else None
                if successor is None:
                    self._busy = False
                else:
                    successor._lead = True
            for pending in batch[1:]:
                pending._done.set()
            if successor is not None:
                successor._done.set()
