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

from mirror.errors import RecordRejected
from mirror.kafka import SourceBatch, SourceRecord, Writer
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

    async def send_all(self, writer: Writer, batches: list[SourceBatch]) -> list[InFlight]:
        """Queue every fetched batch on the writer. When one fails, the others are cancelled and awaited
        before this returns: nothing of this fetch may go on sending into the next session."""
        async with asyncio.TaskGroup() as tg:
            sends = [tg.create_task(self.send(writer, b)) for b in batches]
        return [entry for s in sends for entry in s.result()]

    async def send(self, writer: Writer, batch: SourceBatch) -> list[InFlight]:
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

    async def _dead_letter(self, writer: Writer, tp: TP, record: SourceRecord, reason: str) -> InFlight:
        """Write a refused record to the dead-letter topic and wait for it; refused there too, the
        partition halts at it (`RecordRejected`). Exactly once, it is part of the open transaction."""
        remote = self.observed.remote_topic(tp[0])
        letter = DeadLetter.of(record, tp, remote, reason)
        futures = await writer.send_records(self.dead_letter_topic, 0, [letter])
        try:
            await futures[0][0].ack(shield=True)
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
        return InFlight(tp, self.dead_letter_topic, [record], record.timestamp, size, futures, True, resets)

    async def _send(self, writer: Writer, batch: SourceBatch) -> InFlight:
        tp = (batch.topic, batch.partition)
        remote = self.observed.remote_topic(batch.topic)
        per_batch = self.halting.per_batch(tp, batch.first_offset)
        records = batch.records
        confirmed = self.confirmed.get(tp)
        if self.exactly_once or (confirmed is not None and time.monotonic() - confirmed < _CONFIRMED_FOR):
            futures = await writer.send_records(remote, batch.partition, records, per_batch)
        else:
            # At-least-once, the first batch of a partition in this session (its producer is new): the
            # broker keeps no sequence state for a new producer, so were that batch refused, the ones
            # queued behind it would be accepted — written past a record that is not there. It goes
            # alone, and the rest follows once it is in (after that, a refused batch makes the broker
            # refuse those behind it as out of sequence).
            futures = await writer.send_records(remote, batch.partition, records, per_batch, max_batches=1)
            fut, _start, n = futures[0]
            try:
                await fut.ack(shield=True)
            except RecordRejected as exc:
                raise RecordRejected(
                    exc.reason,
                    topic=tp[0],
                    partition=tp[1],
                    offset=records[0].offset,
                    count=n,
                    last_offset=records[n - 1].offset,
                    too_large=exc.too_large,
                ) from exc
            self.confirmed[tp] = time.monotonic()
            if n < len(records):
                rest = await writer.send_records(remote, batch.partition, records[n:], per_batch)
                futures += [(f, start + n, count) for f, start, count in rest]
        self.positions.position[tp] = batch.last_offset + 1
        return InFlight(
            tp,
            remote,
            batch.records,
            max(batch.records[-1].timestamp, batch.records[0].timestamp),
            batch.value_bytes(),
            futures,
            resets=self.positions.resets.get(tp, 0),
        )

    async def acks_of(self, entry: InFlight) -> list[int]:
        """The target's base offset of each batch of ``entry``; a refused batch raises `RecordRejected`
        naming its partition and first record."""
        bases = []
        for fut, start, n in entry.futures:
            try:
                bases.append((await fut.ack()).base_offset)
            except RecordRejected as exc:
                for later, _, _ in entry.futures:  # refused too, or out of sequence: nothing to report
                    later.ignore_failure()
                raise RecordRejected(
                    exc.reason,
                    topic=entry.tp[0],
                    partition=entry.tp[1],
                    offset=entry.records[start].offset,
                    count=n,
                    last_offset=entry.records[start + n - 1].offset,
                    too_large=exc.too_large,
                ) from exc
        return bases

    async def complete(self, entry: InFlight) -> None:
        """The target acknowledged (or the transaction committed) ``entry``: account for it, per batch."""
        if entry.dead_letter:
            await self.acks_of(entry)
            # no offset sync: the record is not in the remote topic (translation never maps to it)
            offset = entry.records[0].offset
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
        recs = entry.records
        try:
            for base, (_fut, start, n) in zip(await self.acks_of(entry), entry.futures, strict=True):
                count += n
                first_up, last_up = recs[start].offset, recs[start + n - 1].offset
                gaps = None if last_up - first_up + 1 == n else [r.offset for r in recs[start : start + n]]
                self.syncs.acked(entry.tp, first_up, base, n, gaps)
        except RecordRejected:
            # the batches of this entry before the refused one were acknowledged: they count
            for fut, start, n in entry.futures:
                if not fut.acknowledged:
                    break
                if self.positions.ack(entry.tp, recs[start + n - 1].offset, entry.resets):
                    self.positions.dirty.add(entry.tp)
            raise
        self.syncs.notify()
        self.positions.ack(entry.tp, recs[-1].offset, entry.resets)
        if self.halting.halted:
            self.halting.passed(entry.tp, recs[-1].offset)
        if entry.tp in self.confirmed:
            self.confirmed[entry.tp] = time.monotonic()
        self.status.records += count
        self.observed.completed(entry, count)
