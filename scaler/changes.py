"""A broadcast that wakes every waiter when new data arrives (StreamIsActive uses it to push at once)."""

from __future__ import annotations

import asyncio
import contextlib


class Changes:
    def __init__(self) -> None:
        self._event = asyncio.Event()

    def current(self) -> asyncio.Event:
        """Take this before reading the data, then wait on it: no change in between is missed."""
        return self._event

    def notify(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    @staticmethod
    async def wait(event: asyncio.Event, timeout: float) -> None:
        # Not asyncio.wait_for: on Python 3.11 it swallows a cancellation that races with the event
        # being set, and a StreamIsActive whose client has gone would then run on forever.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await event.wait()
