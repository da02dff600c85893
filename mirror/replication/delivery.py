"""Sending a source task's fetched batches to the target, and accounting for the target's acknowledgements.

Records of one source partition become one (or a few) target batches for the same partition of the
remote topic. At-least-once, the first batch a session sends to a partition goes alone and is awaited
before the rest is queued (docs/guarantees.md, "Behind a refused batch"). An acknowledged batch moves the
partition's acknowledged position, feeds the offset syncs and the metrics; a refused one raises
`RecordRejected` naming its partition and first record (`mirror.replication.halting` takes it from there).
"""

from __future__ import annotations

import asyncio
import time

import structlog

from mirror.errors import MergedBatchRefused, RecordRejected
from mirror.kafka import Pending, SourceBatch, SourceRecord
from mirror.kafka.batches import Chunk
from mirror.kafka.writer import BatchWriter
from mirror.replication.halting import DeadLetter, Halting
from mirror.replication.inflight import InFlight
from mirror.replication.observe import TaskMetrics
from mirror.replication.offset_syncs import OffsetSyncEmitter
from mirror.replication.positions import Positions
from mirror.replication.status import TaskStatus
from mirror.types import TP

__all__ = ["Delivery"]

log = structlog.get_logger(__name__)

#: A partition whose last acknowledgement is older than this counts as new to the producer again: the
#: broker may have dropped the producer's state for it (idle producer ids expire, retention may delete
#: all of its batches), and then would accept batches queued behind a refused one.
_CONFIRMED_FOR = 30.0


class Delivery:
    """The sending and acknowledgement side of one task (its parts are the task's own)."""

    def __init__(  # noqa: PLR0917 (the task's parts, in one place)
        self,
        positions: Positions,
        halting: Halting,
        observed: TaskMetrics,
        syncs: OffsetSyncEmitter,
        status: TaskStatus,
        exactly_once: bool,
        dead_letter_topic: str,
    ) -> None:
        self.positions = positions
        self.halting = halting
        self.observed = observed
        self.syncs = syncs
        self.status = status
        self.exactly_once = exactly_once
        self.dead_letter_topic = dead_letter_topic
        # partitions this session's producer wrote to, and when the target last acknowledged them
        self.confirmed: dict[TP, float] = {}
        # a batch the producer merged of several was refused: up to this source offset, each target batch
        # goes unmerged, so the next refusal names exactly its records
        self.unmerged: dict[TP, int] = {}

    async def send_all(self, writer: BatchWriter, batches: list[SourceBatch]) -> list[InFlight]:
        """Queue every fetched batch on the writer: the partitions side by side, the batches of one
        partition in order. When one fails, the others are cancelled and awaited before this returns:
        nothing of this fetch may go on sending into the next session."""
        by_partition: dict[TP, list[SourceBatch]] = {}
        for b in batches:
            by_partition.setdefault((b.topic, b.partition), []).append(b)
        async with asyncio.TaskGroup() as tg:
            sends = [tg.create_task(self._send_in_order(writer, bs)) for bs in by_partition.values()]
        return [entry for s in sends for entry in s.result()]

    async def _send_in_order(self, writer: BatchWriter, batches: list[SourceBatch]) -> list[InFlight]:
        return [entry for b in batches for entry in await self.send(writer, b)]

    async def send(self, writer: BatchWriter, batch: SourceBatch) -> list[InFlight]:
        """Queue one fetched batch. Refused records in it are cut out, in order (the records before one,
        it, the records after it): one bound for the dead-letter topic (`Halting.dead_letter`) goes there
        and is acknowledged before anything after it is queued; the halt record of a retried partition
        (`Halting.retrying`) goes to the target in a batch of its own."""
        tp = (batch.topic, batch.partition)
        letters = self.halting.letters(tp, batch.first_offset)
        marks = {o for o in letters if o <= batch.last_offset}
        retry = self.halting.halted.get(tp) if tp in self.halting.retrying else None
        if retry is not None and batch.first_offset <= retry.offset <= batch.last_offset:
            marks.add(retry.offset)
        if not marks:
            return [await self._send(writer, batch)]
        entries: list[InFlight] = []
        run: list[SourceRecord] = []
        for record in batch.records:
            if record.offset not in marks:
                run.append(record)
                continue
            marks.discard(record.offset)
            if run:
                entries.append(await self._send(writer, SourceBatch(*tp, run)))
                run = []
            if record.offset in letters:
                entries.append(await self._dead_letter(writer, tp, record, letters[record.offset]))
            else:
                entries.append(await self._send(writer, SourceBatch(*tp, [record])))
        if run:
            entries.append(await self._send(writer, SourceBatch(*tp, run)))
        for offset in marks & letters.keys():  # not there any more (compacted away): nothing to send
            self.halting.dead_lettered(tp, offset)
        return entries

    async def _dead_letter(self, writer: BatchWriter, tp: TP, record: SourceRecord, reason: str) -> InFlight:
        """Write a refused record to the dead-letter topic and wait for it; refused there too, the
        partition halts at it (`RecordRejected`). Exactly once, it is part of the open transaction."""
        remote = self.observed.remote_topic(tp[0])
        letter = DeadLetter.of(record, tp, remote, reason)
        # never merged (with another partition's dead letter): refused, it must name its record
        pending = await writer.send(
            self.dead_letter_topic,
            letter.key,
            letter.value,
            0,
            letter.timestamp,
            headers=letter.headers,
            mergeable=False,
        )
        try:
            await pending.ack(shield=True)
        except RecordRejected as exc:
            raise RecordRejected(
                f"the dead-letter topic {self.dead_letter_topic} refused it too: {exc.reason} (and the "
                f"remote topic: {reason})",
                topic=tp[0],
                partition=tp[1],
                offset=record.offset,
                count=1,
            ) from exc
        self.positions.position[tp] = record.offset + 1
        size = len(record.value) if record.value is not None else 0
        resets = self.positions.resets.get(tp, 0)
        futures = [(pending, Chunk.of([record]))]
        return InFlight(tp, self.dead_letter_topic, record.timestamp, size, futures, True, resets)

    async def _send(self, writer: BatchWriter, batch: SourceBatch) -> InFlight:
        tp = (batch.topic, batch.partition)
        remote = self.observed.remote_topic(batch.topic)
        per_batch = self.halting.per_batch(tp, batch.first_offset)
        targets = writer.pieces(batch.chunks, per_batch)
        unmerged = self.unmerged.get(tp, -1)
        if unmerged < batch.first_offset:
            self.unmerged.pop(tp, None)
        # narrowing down on a refused record (or keeping batches small for the target): never merged
        merged_up_to = batch.last_offset if per_batch > 0 else unmerged
        futures: list[tuple[Pending, Chunk]] = []
        confirmed = self.confirmed.get(tp)
        if not self.exactly_once and (confirmed is None or time.monotonic() - confirmed >= _CONFIRMED_FOR):
            # At-least-once, the first batch of a partition in this session (its producer is new): the
            # broker keeps no sequence state for a new producer, so were that batch refused, the ones
            # queued behind it would be accepted — written past a record that is not there. It goes
            # alone, and the rest follows once it is in (after that, a refused batch makes the broker
            # refuse those behind it as out of sequence).
            first = targets[0]
            pending = await writer.send_chunk(  # awaited next: lingering would only delay it
                remote, batch.partition, first, mergeable=first.first_offset > merged_up_to, linger=False
            )
            try:
                await pending.ack(shield=True)
            except RecordRejected as exc:
                raise _refused(exc, tp, first) from exc
            except MergedBatchRefused:  # merged with batches still queued from an earlier fetch
                self._unmerge(tp, first.last_offset)
                raise
            self.confirmed[tp] = time.monotonic()
            futures.append((pending, first))
            targets = targets[1:]
        futures += [
            (await writer.send_chunk(remote, batch.partition, p, mergeable=p.first_offset > merged_up_to), p)
            for p in targets
        ]
        self.positions.position[tp] = batch.last_offset + 1
        newest = max(c.newest_timestamp for c in batch.chunks)
        resets = self.positions.resets.get(tp, 0)
        return InFlight(tp, remote, newest, batch.value_bytes(), futures, resets=resets)

    def _unmerge(self, tp: TP, last_offset: int) -> None:
        """A merged batch of ``tp`` was refused: what was sent of it so far goes unmerged next time."""
        sent = self.positions.position.get(tp, last_offset + 1) - 1
        self.unmerged[tp] = max(sent, last_offset, self.unmerged.get(tp, -1))

    async def acks_of(self, entry: InFlight) -> list[int]:
        """The target's base offset of each batch of ``entry``; a refused batch raises `RecordRejected`
        naming its partition and first record."""
        bases = []
        for fut, chunk in entry.futures:
            try:
                bases.append((await fut.ack()).base_offset)
            except RecordRejected as exc:
                for later, _ in entry.futures:  # refused too, or out of sequence: nothing to report
                    later.ignore_failure()
                raise _refused(exc, entry.tp, chunk) from exc
            except MergedBatchRefused:
                for later, _ in entry.futures:
                    later.ignore_failure()
                self._unmerge(entry.tp, entry.last_offset)
                raise
        return bases

    async def complete(self, entry: InFlight) -> None:
        """The target acknowledged (or the transaction committed) ``entry``: account for it, per batch."""
        if entry.dead_letter:
            await self.acks_of(entry)
            # no offset sync: the record is not in the remote topic (translation never maps to it)
            offset = entry.first_offset
            self.positions.ack(entry.tp, offset, entry.resets)
            self.halting.dead_lettered(entry.tp, offset)
            self.halting.passed(entry.tp, offset)
            self.status.dead_lettered += 1
            self.observed.dead_lettered(entry.tp, 1)
            log.warning(
                "record written to the dead-letter topic instead of the remote topic",
                topic=entry.tp[0],
                partition=entry.tp[1],
                offset=offset,
                dead_letter_topic=entry.remote_topic,
            )
            return
        count = 0
        try:
            bases = await self.acks_of(entry)
        except (RecordRejected, MergedBatchRefused):
            # the batches of this entry before the refused one were acknowledged: they count, and get
            # their offset syncs (a partition halting on the refused record stays where they left it)
            for fut, chunk in entry.futures:
                if not fut.acknowledged:
                    break
                self._synced(entry.tp, chunk, (await fut.ack()).base_offset)
                if self.positions.ack(entry.tp, chunk.last_offset, entry.resets):
                    self.positions.dirty.add(entry.tp)
            self.syncs.notify()
            raise
        for base, (_fut, chunk) in zip(bases, entry.futures, strict=True):
            count += chunk.count
            self._synced(entry.tp, chunk, base)
        self.syncs.notify()
        last = entry.last_offset
        self.positions.ack(entry.tp, last, entry.resets)
        if self.halting.halted:
            self.halting.passed(entry.tp, last)
        if entry.tp in self.confirmed:
            self.confirmed[entry.tp] = time.monotonic()
        self.status.records += count
        self.observed.completed(entry, count)
        if self.observed.lag_of(entry.tp) == 0:
            self.syncs.caught_up()

    def _synced(self, tp: TP, chunk: Chunk, base: int) -> None:
        """The target took ``chunk`` at ``base``: its offset syncs."""
        gaps = None if chunk.contiguous else [r.offset for r in chunk.records]
        self.syncs.acked(tp, chunk.first_offset, base, chunk.count, gaps)


def _refused(exc: RecordRejected, tp: TP, chunk: Chunk) -> RecordRejected:
    """``exc`` naming the partition and the source records of the refused batch ``chunk``."""
    return RecordRejected(
        exc.reason,
        topic=tp[0],
        partition=tp[1],
        offset=chunk.first_offset,
        count=chunk.count,
        last_offset=chunk.last_offset,
        too_large=exc.too_large,
    )
