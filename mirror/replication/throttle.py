"""A flow's byte-rate limit (``throttle.bytes.per.second``, or set at run time with ``mirror throttle``),
shared over the tasks that copy something: every worker computes the same share, the flow's rate divided by
the number of its tasks that have partitions (`mirror.replication.assignment` is the same function
everywhere), so the flow as a whole keeps to its rate whichever workers run its tasks.

A task takes its record value bytes (what ``mirror_bytes_total`` counts) from its `TokenBucket` before it
sends a fetch, and fetches about one second of its share at a time, so a throttled task still obeys a
pause or a stop within a second or so.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

__all__ = ["TokenBucket"]

#: How many seconds of its rate a bucket may save up while idle (the burst after a quiet time).
BURST_SECONDS = 1.0


class TokenBucket:
    """Bytes per second, as ``rate()`` says now (0: unlimited); `take` waits until the bytes are due."""

    def __init__(self, rate: Callable[[], float], clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self._clock = clock
        self._tokens = 0.0
        self._last = clock()
        self._avg_record = 1024.0  # value bytes per record, as recently seen

    def debt(self, size: int, records: int) -> float:
        """Take ``size`` bytes (of ``records`` records); the seconds to wait before sending them."""
        now = self._clock()
        rate = self.rate()
        if records:
            self._avg_record = 0.8 * self._avg_record + 0.2 * (size / records)
        if rate <= 0:
            self._tokens, self._last = 0.0, now
            return 0.0
        self._tokens = min(rate * BURST_SECONDS, self._tokens + (now - self._last) * rate) - size
        self._last = now
        return max(0.0, -self._tokens / rate)

    async def take(self, size: int, records: int) -> None:
        wait = self.debt(size, records)
        if wait > 0:
            await asyncio.sleep(wait)

    def fetch_bytes(self) -> int | None:
        """Bytes to fetch per partition and request: about a second of the rate (None: as configured)."""
        rate = self.rate()
        return None if rate <= 0 else max(1024, int(rate * BURST_SECONDS))

    def max_records(self) -> int | None:
        """How many records one fetch may return: about a second of the rate (None: unlimited)."""
        rate = self.rate()
        if rate <= 0:
            return None
        return max(1, int(rate / max(1.0, self._avg_record)))
