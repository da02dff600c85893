"""Records the target refuses for good (`RecordRejected`): locating the refused record, then halting its
partition there and retrying it until the target takes it, or sending it to the dead-letter topic
(docs/guarantees.md, "A refused batch is refused whole" and "Refused records").

A refused batch of several records is sent again in batches half as large, session after session, until
one record is refused alone; a batch refused for its size only makes that partition's batches smaller
from then on. The record refused alone then, as the flow's ``rejected.records.policy`` says:

- ``halt`` (the default): the partition halts at that record: the records before it are copied, it and
  those after it wait (order is kept). Every ``rejected.records.retry.backoff.ms`` (doubling up to
  ``rejected.records.retry.backoff.max.ms``) the record is sent again, alone: taken, the partition
  resumes by itself; refused, it stays halted until the next retry.
- ``dead-letter``: the record goes to the flow's dead-letter topic instead (`DeadLetter`), the partition
  goes on with the next record. Refused there too, the partition halts as above.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

import structlog

from mirror.config import FlowSettings
from mirror.errors import RecordRejected
from mirror.kafka import Reader, SourceBatch, SourceRecord
from mirror.kafka.batches import Chunk
from mirror.replication.observe import TaskMetrics
from mirror.replication.status import Halt
from mirror.retry import Backoff
from mirror.types import TP

__all__ = ["DEAD_LETTER_HEADERS", "DeadLetter", "Halting"]

log = structlog.get_logger(__name__)

#: The headers a dead-letter record carries after the source record's own: where it came from and why
#: the target refused it (values UTF-8 text).
DEAD_LETTER_HEADERS = (
    "mirror.dead-letter.source.topic",
    "mirror.dead-letter.source.partition",
    "mirror.dead-letter.source.offset",
    "mirror.dead-letter.remote.topic",
    "mirror.dead-letter.reason",
)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A refused record as it goes to the dead-letter topic: key, value and timestamp unchanged, its
    headers followed by `DEAD_LETTER_HEADERS`."""

    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes | None]]

    @classmethod
    def of(cls, record: SourceRecord, tp: TP, remote_topic: str, reason: str) -> DeadLetter:
        about = (tp[0], str(tp[1]), str(record.offset), remote_topic, reason)
        extra = [(name, value.encode()) for name, value in zip(DEAD_LETTER_HEADERS, about, strict=True)]
        return cls(record.timestamp, record.key, record.value, [*record.headers, *extra])


class Halting:
    """A task's halted partitions (``halted``, shown in /status), and those narrowing down on a refused
    record (``probing``), sent in smaller batches for their size (``cap``), retrying their halt record
    (``retrying``) or about to send some to the dead-letter topic (``dead_letter``)."""

    def __init__(self, halted: dict[TP, Halt], observed: TaskMetrics, flow: FlowSettings, task: int) -> None:
        self.halted = halted
        # A refused multi-record batch: its records are sent again in batches half as large (up to the
        # batch's last offset), until the refused record itself is found: (last offset, records/batch).
        self.probing: dict[TP, tuple[int, int]] = {}
        # Partitions whose batches the target refused as too large: at most this many records per batch.
        self.cap: dict[TP, int] = {}
        # Halted partitions whose record is being sent again: not cut, not paused (still named halted).
        self.retrying: set[TP] = set()
        # Halted partitions the reader read past their halt (records cut): where to seek back to on retry.
        self.rewind: dict[TP, int] = {}
        # dead-letter policy: the refused records of a partition (offset: reason), to go to the
        # dead-letter topic. Several at once: a record after one may be refused before that one's
        # dead-letter write counted (exactly once: the transaction holding both is aborted).
        self.dead_letter: dict[TP, dict[int, str]] = {}
        self._policy = flow.rejected_records_policy
        self._backoff_s = (
            flow.rejected_records_retry_backoff_ms / 1000,
            flow.rejected_records_retry_backoff_max_ms / 1000,
        )
        self._backoffs: dict[TP, Backoff] = {}
        self._retry_at: dict[TP, float] = {}  # time.monotonic() of a halted partition's next retry
        self._observed = observed
        self._fields = {"flow": flow.name, "task": task}

    def rejected(self, exc: RecordRejected) -> None:
        """The target refused a batch for good: find the refused record, then halt its partition there
        (or, with the dead-letter policy, send that record to the dead-letter topic)."""
        assert exc.topic is not None and exc.partition is not None and exc.offset is not None
        tp = (exc.topic, exc.partition)
        fields = {**self._fields, "topic": tp[0], "partition": tp[1]}
        if exc.count > 1:
            per_batch = max(1, exc.count // 2)
            last = exc.last_offset if exc.last_offset is not None else exc.offset + exc.count - 1
            self.probing[tp] = (last, per_batch)
            if exc.too_large:
                self.cap[tp] = per_batch
            log.warning(
                "target refused a batch; sending it again in smaller batches to find the refused record",
                **fields,
                first_offset=exc.offset,
                records=exc.count,
                records_per_batch=per_batch,
                reason=exc.reason,
            )
            return
        self.probing.pop(tp, None)
        if self._policy == "dead-letter":
            pending = self.dead_letter.setdefault(tp, {})
            if pending.pop(exc.offset, None) is None:  # else the dead-letter topic refused it
                pending[exc.offset] = exc.reason
                log.warning(
                    "target refused a record; it goes to the dead-letter topic",
                    **fields,
                    offset=exc.offset,
                    reason=exc.reason,
                )
                return
            if not pending:
                del self.dead_letter[tp]
        self.retrying.discard(tp)
        before = self.halted.get(tp)
        self.halted[tp] = Halt(exc.offset, exc.reason)
        self._observed.halted(tp)
        again = before is not None and before.offset == exc.offset  # a retry refused: a warning only
        if not again:
            self._backoffs[tp] = Backoff(*self._backoff_s)
        delay = self._retry_later(tp)
        (log.warning if again else log.error)(
            "target still refuses the record; partition stays halted"
            if again
            else "target refused a record; partition halted",
            **fields,
            offset=exc.offset,
            reason=exc.reason,
            retry_in_s=round(delay, 1),
            hint="fix the remote topic (or the record): copying resumes by itself at this offset, "
            "retried with a growing backoff (rejected.records.retry.backoff.max.ms)",
        )

    def _retry_later(self, tp: TP) -> float:
        backoff = self._backoffs.setdefault(tp, Backoff(*self._backoff_s))
        delay = backoff.next()
        self._retry_at[tp] = time.monotonic() + delay
        return delay

    def per_batch(self, tp: TP, first_offset: int) -> int:
        """Records per target batch for a batch of ``tp`` starting at ``first_offset`` (0: no limit)."""
        per_batch = self.cap.get(tp, 0)
        probing = self.probing.get(tp)
        if probing is not None:
            if first_offset <= probing[0]:
                per_batch = probing[1]  # narrowing down on the record the target refuses
            else:
                del self.probing[tp]  # past the refused batch, and nothing of it was refused this time
        return per_batch

    def cut(self, reader: Reader, batches: list[SourceBatch]) -> list[SourceBatch]:
        """Drop the records of halted partitions from their halt offset on; stop fetching those (a
        partition retrying its halt record is not cut)."""
        out = []
        for b in batches:
            tp = (b.topic, b.partition)
            halt = self.halted.get(tp)
            if halt is not None and tp not in self.retrying and b.last_offset >= halt.offset:
                reader.pause([tp])
                self.rewind[tp] = halt.offset  # the reader is past it now
                # whole chunks before the halt stay as they are; the one holding it is decoded and cut
                kept = [c for c in b.chunks if c.last_offset < halt.offset]
                cut = [
                    r
                    for c in b.chunks
                    if c.first_offset < halt.offset <= c.last_offset
                    for r in c.records
                    if r.offset < halt.offset
                ]
                if cut:
                    kept.append(Chunk.of(cut))
                if kept:
                    out.append(SourceBatch(b.topic, b.partition, chunks=kept))
            else:
                out.append(b)
        return out

    def due(self, partitions: Collection[TP], now: float | None = None) -> list[TP]:
        """Halted partitions of ``partitions`` whose retry is due (and not under way)."""
        now = time.monotonic() if now is None else now
        return [
            tp
            for tp in self.halted
            if tp in partitions and tp not in self.retrying and self._retry_at.get(tp, 0.0) <= now
        ]

    def retry(self, tp: TP) -> int | None:
        """Start retrying a halted partition: its halt record goes to the target in a batch of its own
        (`mirror.replication.delivery`); returns the offset to seek the reader back to (None: the reader
        has not read past it)."""
        self.retrying.add(tp)
        log.info(
            "retrying a halted partition's refused record",
            **self._fields,
            topic=tp[0],
            partition=tp[1],
            offset=self.halted[tp].offset,
        )
        return self.rewind.pop(tp, None)

    def passed(self, tp: TP, last_offset: int) -> None:
        """The target took ``tp``'s records up to ``last_offset``: a halt at or before it is over."""
        halt = self.halted.get(tp)
        if halt is not None and last_offset >= halt.offset:
            self._clear(tp)
            self._observed.resumed(tp)
            log.info(
                "target took the refused record; partition resumed",
                **self._fields,
                topic=tp[0],
                partition=tp[1],
                offset=halt.offset,
            )

    def letters(self, tp: TP, first_offset: int) -> dict[int, str]:
        """``tp``'s records to send to the dead-letter topic (offset: reason), from ``first_offset`` on
        (the reader is past those before it: deleted on the source meanwhile, by compaction)."""
        pending = self.dead_letter.get(tp, {})
        for offset in [o for o in pending if o < first_offset]:
            self.dead_lettered(tp, offset)
        return self.dead_letter.get(tp, {})

    def dead_lettered(self, tp: TP, offset: int) -> None:
        """The record at ``offset`` is in the dead-letter topic (and will not go to the remote topic)."""
        pending = self.dead_letter.get(tp)
        if pending is not None:
            pending.pop(offset, None)
            if not pending:
                del self.dead_letter[tp]

    def assigned(self, positions: Mapping[TP, int | None]) -> list[TP]:
        """The task now copies the partitions of ``positions`` (from there; the reader is seeked to them):
        halts of others are dropped; returns the partitions to pause (they start at or past their halt)."""
        self.rewind.clear()
        for tp in [tp for tp in self.halted if tp not in positions]:
            self.unhalt(tp)
        for tp in [tp for tp in self.dead_letter if tp not in positions]:
            del self.dead_letter[tp]
        return [
            tp
            for tp, h in self.halted.items()
            if tp not in self.retrying and (positions[tp] or 0) >= h.offset
        ]

    def unhalt(self, tp: TP) -> None:
        """``tp`` moved to another task: forget its halt."""
        if tp in self.halted:
            self._clear(tp)
            self._observed.unhalted(tp)

    def _clear(self, tp: TP) -> None:
        self.halted.pop(tp, None)
        self.retrying.discard(tp)
        self.rewind.pop(tp, None)
        self._backoffs.pop(tp, None)
        self._retry_at.pop(tp, None)
