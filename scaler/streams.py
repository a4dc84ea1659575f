"""StreamIsActive for thousands of ScaledObjects: one task re-checks every open stream, a slice at a time.

KEDA holds one stream per push-scaler trigger. When each stream ran its own loop, every push woke all
of them at once to re-evaluate, and GetMetrics, health checks and pushes waited behind them.
Here a stream does its first check itself, when it opens, and then only waits; the hub re-checks the
streams in rounds (at most every `min_interval`, at least every `idle_recheck`, and when a resend is
due), yields to the loop every `slice_seconds` or `wakes_per_slice` messages, and wakes a stream only
when it has a message to send. `load/bench_streams.py` measures what open streams cost other calls."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from scaler.changes import Changes
from scaler.errors import StaleData

logger = logging.getLogger(__name__)

SLICE_SECONDS = 0.005  # longest the hub holds the event loop between yields
WAKES_PER_SLICE = 64  # streams woken to send before the hub yields: their sends run between slices
T = TypeVar("T")


@dataclass(eq=False, slots=True)
class Watch(Generic[T]):
    """One open stream: what it last answered, when to send `true` again, and what it has to say."""

    subject: T  # what `check` is asked about, prepared once when the stream opens
    was_active: bool = False
    resend_at: float = math.inf
    message: str | None = None  # "activation" or "resend": a `true` to send
    error: Exception | None = None  # the evaluation failed in a way that ends the stream
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    def take(self) -> str | None:
        message, self.message = self.message, None
        return message


class StreamHub(Generic[T]):
    """Checks every open stream on one task; `check` answers whether a stream's subject is active now."""

    def __init__(
        self,
        check: Callable[[T], bool],
        changes: Changes,
        stopping: asyncio.Event,
        resend: float,
        min_interval: float,
        idle_recheck: float,
        slice_seconds: float = SLICE_SECONDS,
        wakes_per_slice: int = WAKES_PER_SLICE,
    ) -> None:
        if resend <= 0 or min_interval < 0 or idle_recheck <= 0:
            raise ValueError("resend and idle_recheck must be positive, min_interval not negative")
        self.check = check
        self.changes = changes
        self.stopping = stopping
        self.resend = resend
        self.min_interval = min_interval
        self.idle_recheck = idle_recheck
        self.slice_seconds = slice_seconds
        self.wakes_per_slice = wakes_per_slice
        self._watches: dict[Watch[T], None] = {}  # insertion-ordered: rounds go oldest stream first
        self._task: asyncio.Task[None] | None = None
        self.rounds = 0

    def __len__(self) -> int:
        return len(self._watches)

    def watch(self, subject: T) -> Watch[T]:
        """Open a stream and check it at once: opening while active is an activation."""
        watch = Watch(subject)
        self._check(watch, asyncio.get_running_loop().time())
        self._watches[watch] = None
        self._ensure_running()
        return watch

    async def wait(self, watch: Watch[T]) -> None:
        """Until the stream has something to send, or the scaler stops."""
        watch.wake.clear()
        if watch.message is None and watch.error is None and not self.stopping.is_set():
            self._ensure_running()  # a hub that ended (no streams left, or a bug) never strands a stream
            await watch.wake.wait()

    def _ensure_running(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="stream-hub")

    def unwatch(self, watch: Watch[T]) -> None:
        self._watches.pop(watch, None)

    def _check(self, watch: Watch[T], now: float) -> bool:
        """Re-evaluate one stream; True when it now has something to send."""
        try:
            active = self.check(watch.subject)
        except StaleData:
            active = False
        except Exception as exc:  # the handler raises it, so the stream ends with its code
            watch.error = exc
            watch.wake.set()
            return True
        if active and (not watch.was_active or now >= watch.resend_at):
            watch.message = "resend" if watch.was_active else "activation"
            watch.resend_at = now + self.resend
            watch.wake.set()
            watch.was_active = True
            return True
        watch.was_active = active
        return False

    async def _run(self) -> None:
        try:
            await self._rounds()
        finally:
            for watch in list(self._watches):  # on shutdown every stream ends, with OK
                watch.wake.set()

    async def _rounds(self) -> None:
        loop = asyncio.get_running_loop()
        while not self.stopping.is_set() and self._watches:
            change = self.changes.current()
            started = loop.time()
            next_resend = await self._round(loop)
            self.rounds += 1
            await asyncio.sleep(max(0.0, started + self.min_interval - loop.time()))
            if self.stopping.is_set():
                break
            wait = min(self.idle_recheck, next_resend - loop.time())
            await self.changes.wait(change, max(0.0, wait))

    async def _round(self, loop: asyncio.AbstractEventLoop) -> float:
        """Check every stream, yielding between slices; returns the earliest resend due."""
        next_resend = math.inf
        since, woken = time.perf_counter(), 0
        for watch in list(self._watches):
            if watch not in self._watches:  # closed while the hub yielded
                continue
            if self._check(watch, loop.time()):
                woken += 1
            if watch.was_active:
                next_resend = min(next_resend, watch.resend_at)
            if woken >= self.wakes_per_slice or time.perf_counter() - since >= self.slice_seconds:
                await asyncio.sleep(0)
                since, woken = time.perf_counter(), 0
                if self.stopping.is_set():
                    break
        return next_resend
