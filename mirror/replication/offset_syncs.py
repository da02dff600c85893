"""Offset syncs of a source task (docs/mm2-compat.md §5): decided per acknowledged target batch, sent to the
flow's offset-syncs topic by their own loop, with their own producer."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Sequence

from mirror import metrics
from mirror.config import ClusterSettings, FlowSettings
from mirror.kafka import Writer
from mirror.mm2.offset_translation import MAX_OUTSTANDING_OFFSET_SYNCS, OffsetSyncWriter
from mirror.mm2.policy import ReplicationPolicy
from mirror.mm2.records import OffsetSync
from mirror.mm2.sync_history import WRITER_HEADER
from mirror.replication.topology import offset_syncs_location
from mirror.types import TP

__all__ = ["OffsetSyncEmitter"]

#: A caught-up task promotes its partitions' delayed syncs at most this often (seconds).
_CAUGHT_UP_EVERY = 1.0


class OffsetSyncEmitter:
    """The offset syncs of one task; ``cluster`` None: none are sent (no producer is made)."""

    def __init__(
        self, flow: FlowSettings, policy: ReplicationPolicy, cluster: ClusterSettings | None
    ) -> None:
        self.flow = flow
        self.cluster = cluster
        self.topic = offset_syncs_location(flow, policy)[1]
        self._syncs = OffsetSyncWriter(flow.offset_lag_max, precise=True)
        self._ready = asyncio.Event()
        self._labels = (flow.source, flow.target)
        self._headers = [(WRITER_HEADER, secrets.token_bytes(8))]
        self._promoted_at = 0.0  # when delayed syncs were last promoted (monotonic)

    def writer(self, client: str) -> Writer | None:
        """The producer of a session (None: syncs are not emitted)."""
        if self.cluster is None:
            return None
        self._syncs.unmark()  # a new session: what the last one sent may be incomplete
        self._headers = [(WRITER_HEADER, secrets.token_bytes(8))]  # and its syncs are another writer's
        role = f"offset-syncs-{self.flow.offset_syncs_topic_location}-producer"
        return Writer(self.cluster, f"{client}|{role}", {"linger.ms": "0"})

    def acked(self, tp: TP, first_upstream: int, base: int, count: int, gaps: list[int] | None) -> None:
        """The target acknowledged ``count`` records of ``tp`` from ``first_upstream`` at ``base``."""
        if base >= 0:  # -1: a duplicate the broker had already (no offset known), no sync
            self._syncs.on_ack_batch(tp, first_upstream, base, count, gaps)

    def notify(self) -> None:
        """An entry is accounted for: wake the sending loop when it made syncs to send."""
        if self._syncs.has_pending():
            self._ready.set()

    def tick(self) -> None:
        """Like Java's commit(): idle partitions get an exact sync for their last record."""
        self._promoted_at = time.monotonic()
        self._syncs.promote_delayed()
        self._ready.set()

    def caught_up(self) -> None:
        """A partition has copied everything its source had: its last record's sync goes out now (at most
        once a second per task), not at the next flush (Java waits for its offset commit): a group that
        read to the end is translated exactly by the next checkpoint."""
        if time.monotonic() - self._promoted_at >= _CAUGHT_UP_EVERY:
            self.tick()

    def remove_partitions(self, partitions: Sequence[TP]) -> None:
        self._syncs.remove_partitions(partitions)

    async def loop(self, writer: Writer) -> None:
        while True:
            await self._ready.wait()
            self._ready.clear()
            await self.send(writer)

    async def final(self, writer: Writer) -> None:
        """The session stops: send every sync still delayed or pending."""
        self._syncs.promote_delayed()
        await self.send(writer)

    async def send(self, writer: Writer) -> None:
        """Send pending syncs, at most MAX_OUTSTANDING_OFFSET_SYNCS (10) in flight, as Java does (a break
        marker travels with its sync). Syncs that may not have reached the topic are followed by a marker
        (docs/mm2-compat.md §5.1)."""
        while self._syncs.has_pending():
            batch: list[OffsetSync] = self._syncs.take_pending(MAX_OUTSTANDING_OFFSET_SYNCS)
            try:
                futures = [
                    await writer.send(self.topic, s.encode_key(), s.encode_value(), 0, headers=self._headers)
                    for s in batch
                ]
                for fut in futures:
                    await fut.ack()
            except BaseException:
                # these syncs may be lost (a gap they told of with them): the next ones carry a marker
                self._syncs.unmark([s.topic_partition for s in batch])
                raise
            metrics.offset_syncs_total.labels(*self._labels).inc(len(batch))
