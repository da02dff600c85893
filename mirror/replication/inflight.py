"""Back-pressure: what a source task sent and the target has not acknowledged yet, bounded in bytes.

At-least-once, the fetch loop queues each fetch's sent batches here (waiting while the bytes in flight
reach the task's bound, so a slow target slows the reads instead of growing memory) and the ack loop
takes them off in order, once accounted for.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from mirror.kafka import Pending
from mirror.kafka.batches import Chunk
from mirror.types import TP

__all__ = ["InFlight", "InFlightQueue"]


@dataclass(slots=True)
class InFlight:
    """The target batches of one fetched source batch: (delivery future, the chunk it carries). The
    chunks are kept until acknowledged: offset syncs need their source offsets."""

    tp: TP
    remote_topic: str
    newest_timestamp: int
    value_bytes: int
    futures: list[tuple[Pending, Chunk]]
    #: its one record went to the dead-letter topic (``remote_topic``), not the partition's remote topic
    dead_letter: bool = False
    #: the progress resets of ``tp`` when it was sent (`Positions.resets`): one sent before a later reset
    #: does not move the partition's position when acknowledged
    resets: int = 0

    @property
    def first_offset(self) -> int:
        return self.futures[0][1].first_offset

    @property
    def last_offset(self) -> int:
        return self.futures[-1][1].last_offset


class InFlightQueue:
    """Sent entries in order, then None once the fetcher stopped (the end marker)."""

    def __init__(self) -> None:
        self._entries: deque[InFlight | None] = deque()
        self._bytes = 0
        self._changed = asyncio.Condition()

    async def room(self, max_bytes: int) -> None:
        """Until fewer than ``max_bytes`` are in flight."""
        async with self._changed:
            await self._changed.wait_for(lambda: self._bytes < max_bytes)

    async def put(self, entries: Iterable[InFlight]) -> None:
        async with self._changed:
            for entry in entries:
                self._entries.append(entry)
                self._bytes += entry.value_bytes
            self._changed.notify_all()

    async def end(self) -> None:
        """The fetcher stopped: the ack loop returns after the entries before this."""
        async with self._changed:
            self._entries.append(None)
            self._changed.notify_all()

    async def first(self) -> InFlight | None:
        """The oldest entry, still queued (None: the end)."""
        async with self._changed:
            await self._changed.wait_for(lambda: bool(self._entries))
            return self._entries[0]

    async def done(self, entry: InFlight) -> None:
        """The oldest entry, ``entry``, is accounted for: take it off."""
        async with self._changed:
            self._entries.popleft()
            self._bytes -= entry.value_bytes
            self._changed.notify_all()

    async def drained(self, acker: asyncio.Task[None], timeout: float) -> bool:
        """The fetcher stopped: let ``acker`` (the loop taking entries off) account for every entry in
        flight, within ``timeout`` seconds; else it is cancelled (False)."""
        await self.end()
        # not wait_for: on Python 3.11 it drops a cancellation that comes as the acker ends
        done, _ = await asyncio.wait({acker}, timeout=timeout)
        if not done:
            acker.cancel()
            return False
        acker.result()  # its error, if it failed
        return True
