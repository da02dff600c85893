"""Stuck tasks: partitions with records to copy that made no progress for ``task.stuck.timeout.seconds``.

A task's `StuckWatch` notes when each partition last had a batch acknowledged (or committed). Every few
seconds it compares that with the partitions' lag; partitions paused by an operator or halted on a
refused record do not count, nor does the time the task waits for its throttle (`StuckWatch.held`: a
record larger than what the throttle lets through in the timeout is slow, not stuck). A stuck task raises
`TaskStuck`: its session ends and is started again with backoff, the restart is counted
(``mirror_task_restarts_total``, ``mirror_errors_total{kind="stuck"}``), and ``stuck`` in its status (so
/readyz) names the partitions until one of them moves or catches up.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator, Mapping

import structlog

from mirror.errors import TaskStuck
from mirror.types import TP

__all__ = ["StuckWatch"]

log = structlog.get_logger(__name__)


class StuckWatch:
    """When each partition of one task last moved, and whether the task is stuck (``stuck``: why)."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.stuck: str | None = None
        self._stuck_tps: set[TP] = set()
        self._moved: dict[TP, float] = {}
        self._since = time.monotonic()
        self._held = 0  # waits under way that do not count (`held`)

    def session_started(self, now: float | None = None) -> None:
        """A new session: every partition gets a full ``timeout`` to move again."""
        self._since = time.monotonic() if now is None else now
        self._moved.clear()

    def moved(self, tp: TP, now: float | None = None) -> None:
        self._moved[tp] = time.monotonic() if now is None else now
        if tp in self._stuck_tps:
            self._unstuck()

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """A wait the task chose (its throttle): no check fails during it, and afterwards its time does
        not count as standing still."""
        start = time.monotonic()
        self._held += 1
        try:
            yield
        finally:
            self._held -= 1
            shift = time.monotonic() - start
            self._since += shift
            for tp in self._moved:
                self._moved[tp] += shift

    def _unstuck(self) -> None:
        if self.stuck is not None:
            log.info("task moves again", partitions=sorted(self._stuck_tps))
        self.stuck, self._stuck_tps = None, set()

    def check(self, lags: Mapping[TP, int], now: float | None = None) -> str | None:
        """Why the task is stuck given the lag of the partitions that count (None: it is not)."""
        now = time.monotonic() if now is None else now
        if self._held:
            return None
        if self._stuck_tps and all(lags.get(tp, 0) == 0 for tp in self._stuck_tps):
            self._unstuck()  # caught up (or no longer here)
        stuck = sorted(
            tp
            for tp, lag in lags.items()
            if lag > 0 and now - self._moved.get(tp, self._since) > self.timeout
        )
        if not stuck:
            return None
        shown = ", ".join(f"{t}-{p}" for t, p in stuck[:5]) + (" ..." if len(stuck) > 5 else "")
        behind = sum(lags[tp] for tp in stuck)
        self._stuck_tps |= set(stuck)
        self.stuck = f"no progress for {self.timeout:g} s in {shown} ({behind} records behind)"
        return self.stuck

    async def loop(self, lags: Callable[[], Mapping[TP, int]]) -> None:
        """Check every few seconds; raise `TaskStuck` when stuck (the task restarts its session)."""
        while True:
            await asyncio.sleep(min(5.0, self.timeout / 4))
            why = self.check(lags())
            if why is not None:
                raise TaskStuck(f"task stuck: {why}")
