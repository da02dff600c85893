"""A flow's pauses and progress resets applied to one task's reader (`mirror.replication.controls`).

Before each fetch the task asks its `PauseGate` to catch up with the flow's controls: partitions of paused
topics are paused on the reader (records of theirs fetched but not returned yet are dropped by the
consumer, and its position stays at the next record not returned, so nothing is skipped); resumed ones
continue from that position. What was already sent is acknowledged as usual, and the progress of a paused
partition is stored as soon as its last acknowledgement is in (so a progress reset of a paused partition is
never overwritten by the task). A paused partition's high watermark is read every few seconds: its lag
stays current. A reset makes the task forget what it holds of those partitions and re-read the stored
progress before it fetches again.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Collection

import structlog

from mirror.errors import MirrorError
from mirror.kafka import Reader
from mirror.replication.controls import Controls, Reset, compile_pattern
from mirror.replication.observe import TaskMetrics
from mirror.replication.positions import Positions
from mirror.replication.progress import ProgressStore
from mirror.types import TP

__all__ = ["PauseGate"]

log = structlog.get_logger(__name__)

#: Seconds between reads of the paused partitions' high watermarks (their lag in /status and metrics).
LAG_INTERVAL = 5.0


class PauseGate:
    """The pauses of one task: which of its partitions are paused on its reader now."""

    def __init__(
        self,
        controls: Controls | None,
        observed: TaskMetrics,
        positions: Positions,
        progress: ProgressStore,
    ) -> None:
        self.controls = controls
        self.paused: set[TP] = set()
        self._observed = observed
        self._positions = positions
        self._progress = progress
        self._seen = -1  # the controls' version applied
        self._reload: list[re.Pattern[str]] = []

    def assigned(self) -> None:
        """The reader was (re)assigned: every partition fetches again until `apply` pauses it."""
        for tp in self.paused:
            self._observed.paused(tp, False)
        self.paused = set()
        self._seen = -1

    def request_reload(self, reset: Reset) -> bool:
        """A progress reset: the partitions of ``reset.topics`` are re-read from stored progress before
        the next fetch. False when the pattern is invalid (nothing to do)."""
        try:
            self._reload.append(compile_pattern(reset.topics))
        except ValueError:
            return False
        return True

    async def reload(self, partitions: set[TP]) -> None:
        """Forget what this task holds of the partitions a reset names; re-read the stored progress."""
        if not self._reload:
            return
        patterns, self._reload = self._reload, []
        reset = [tp for tp in partitions if any(p.fullmatch(tp[0]) for p in patterns)]
        positions = self._positions
        # forgotten before the read: should it fail, the next session starts from the stored progress
        for tp in reset:
            positions.resets[tp] = positions.resets.get(tp, 0) + 1  # batches in flight count no more
            for held in (positions.position, positions.acked, positions.initial, positions.initial_unstored):
                held.pop(tp, None)
            positions.dirty.discard(tp)
        positions.loaded = await self._progress.load()
        if reset:
            log.info("progress reset: re-read stored progress", partitions=len(reset))

    async def apply(self, reader: Reader, partitions: set[TP], halted: Collection[TP] = ()) -> None:
        """Pause and resume partitions as the flow's controls say; store paused partitions' progress.
        A ``halted`` partition stays paused on resume: its halt's retry resumes it (from the halt record;
        `mirror.replication.halting`). A partition whose retry is under way is not ``halted`` here: its
        retry is not started again, so a resume lets it go on."""
        controls = self.controls
        if controls is None:
            return
        if controls.version != self._seen:
            self._seen = controls.version
            want = {tp for tp in partitions if controls.is_paused(tp[0])}
            paused, resumed = sorted(want - self.paused), sorted(self.paused - want)
            if paused:
                reader.pause(paused)
                for tp in paused:
                    self._observed.paused(tp, True)
            if resumed:
                reader.resume([tp for tp in resumed if tp not in halted])
                for tp in resumed:
                    self._observed.paused(tp, False)
            self.paused = want
            if paused or resumed:
                log.info("partitions paused/resumed", paused=len(paused), resumed=len(resumed))
        if self.paused & self._positions.dirty:
            await self._positions.store(self._progress)  # settle: a reset must find nothing to overwrite

    async def lag_loop(self, reader: Reader) -> None:
        """Keep the paused partitions' high watermarks (and so their lag) current."""
        while True:
            await asyncio.sleep(LAG_INTERVAL)
            paused = sorted(self.paused)
            if not paused:
                continue
            with contextlib.suppress(MirrorError, TimeoutError):
                for tp, end in (await reader.end_offsets(paused)).items():
                    self._observed.highwater(tp, end)
