"""A keyed work queue: each object is reconciled by one worker at a time, however many events arrive.

Events only mark an object dirty; a worker reads it fresh and converges it. An object
that changes while it is being reconciled is queued again once the worker is done.
Failures back off per object; a reconcile may ask to be looked at again after a delay.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class Key:
    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"


class WorkQueue:
    def __init__(self, base_delay: float = 0.5, max_delay: float = 60.0):
        self._ready: asyncio.Queue[Key] = asyncio.Queue()
        self._dirty: set[Key] = set()
        self._processing: set[Key] = set()
        self._timers: dict[Key, tuple[float, asyncio.TimerHandle]] = {}
        self._failures: dict[Key, int] = {}
        self._base_delay = base_delay
        self._max_delay = max_delay

    def add(self, key: Key) -> None:
        if key in self._dirty:
            return
        self._dirty.add(key)
        if key not in self._processing:
            self._ready.put_nowait(key)

    def add_after(self, key: Key, delay: float) -> None:
        """Queue `key` in `delay` seconds; an earlier pending wake-up wins."""
        if delay <= 0:
            self.add(key)
            return
        loop = asyncio.get_running_loop()
        when = loop.time() + delay
        pending = self._timers.get(key)
        if pending is not None:
            if pending[0] <= when:
                return
            pending[1].cancel()
        self._timers[key] = (when, loop.call_at(when, self._fire, key))

    def _fire(self, key: Key) -> None:
        self._timers.pop(key, None)
        self.add(key)

    def retry(self, key: Key) -> float:
        """Queue `key` again after a failure, backing off exponentially; returns the delay."""
        failures = self._failures.get(key, 0)
        self._failures[key] = failures + 1
        delay = min(self._base_delay * 2**failures, self._max_delay)
        self.add_after(key, delay)
        return delay

    def forget(self, key: Key) -> None:
        """`key` reconciled cleanly: its next failure starts the backoff afresh."""
        self._failures.pop(key, None)

    def drop(self, key: Key) -> None:
        """`key` is gone: no timers, no backoff state."""
        self._failures.pop(key, None)
        pending = self._timers.pop(key, None)
        if pending is not None:
            pending[1].cancel()

    async def get(self) -> Key:
        key = await self._ready.get()
        self._dirty.discard(key)
        self._processing.add(key)
        return key

    def done(self, key: Key) -> None:
        self._processing.discard(key)
        if key in self._dirty:
            self._ready.put_nowait(key)

    def __len__(self) -> int:
        return len(self._dirty)
