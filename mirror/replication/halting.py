"""Records the target refuses for good (`RecordRejected`): locating the refused record, then halting its
partition there (docs/guarantees.md, "A refused batch is refused whole").

A refused batch of several records is sent again in batches half as large, session after session, until
one record is refused alone; the partition then halts at that record: the records before it are copied,
it and those after it wait (order is kept). A batch refused for its size only makes that partition's
batches smaller from then on.
"""

from __future__ import annotations

from collections.abc import Mapping

import structlog

from mirror.errors import RecordRejected
from mirror.kafka import Reader, SourceBatch
from mirror.replication.observe import TaskMetrics
from mirror.replication.status import Halt
from mirror.types import TP

__all__ = ["Halting"]

log = structlog.get_logger(__name__)


class Halting:
    """A task's halted partitions (``halted``, shown in /status), and those narrowing down on a refused
    record (``probing``) or sent in smaller batches for their size (``cap``)."""

    def __init__(self, halted: dict[TP, Halt], observed: TaskMetrics, flow: str, task: int) -> None:
        self.halted = halted
        # A refused multi-record batch: its records are sent again in batches half as large (up to the
        # batch's last offset), until the refused record itself is found: (last offset, records/batch).
        self.probing: dict[TP, tuple[int, int]] = {}
        # Partitions whose batches the target refused as too large: at most this many records per batch.
        self.cap: dict[TP, int] = {}
        self._observed = observed
        self._fields = {"flow": flow, "task": task}

    def rejected(self, exc: RecordRejected) -> None:
        """The target refused a batch for good: find the refused record, then halt its partition there."""
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
        self.halted[tp] = Halt(exc.offset, exc.reason)
        self._observed.halted(tp)
        log.error(
            "target refused a record; partition halted",
            **fields,
            offset=exc.offset,
            reason=exc.reason,
            hint="fix the remote topic (or the record) and restart: copying resumes at this offset",
        )

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
        """Drop the records of halted partitions from their halt offset on; stop fetching those."""
        out = []
        for b in batches:
            halt = self.halted.get((b.topic, b.partition))
            if halt is not None and b.last_offset >= halt.offset:
                reader.pause([(b.topic, b.partition)])
                kept = [r for r in b.records if r.offset < halt.offset]
                if kept:
                    out.append(SourceBatch(b.topic, b.partition, kept))
            else:
                out.append(b)
        return out

    def assigned(self, positions: Mapping[TP, int | None]) -> list[TP]:
        """The task now copies the partitions of ``positions`` (from there): halts of others are dropped;
        returns the partitions to pause (they start at or past their halt)."""
        for tp in [tp for tp in self.halted if tp not in positions]:
            self.unhalt(tp)
        return [tp for tp, h in self.halted.items() if (positions[tp] or 0) >= h.offset]

    def unhalt(self, tp: TP) -> None:
        if self.halted.pop(tp, None) is not None:
            self._observed.unhalted(tp)
