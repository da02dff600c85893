"""Where a source task stands in each partition it copies, and the truncation checks on the source.

A partition is read from the position this session reached, else from the offset after the last one the
target acknowledged, else from the stored progress. A stored position below the source's log start
offset means records were deleted before they were copied: they are reported as lost (log and
``mirror_source_truncated_records_total``), once each, at assignment and while running; a position above
the log end means the log was cut or re-created, and the partition is read again from its start
(docs/guarantees.md, "Reading the source"). A topic known to be re-created (a new topic id) is read from
offset 0, with nothing of the old topic's positions or progress; a partition whose stored progress cannot
be read starts at its log start (docs/guarantees.md, "Topics deleted and re-created").
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

import structlog

from mirror import metrics
from mirror.config import FlowSettings
from mirror.errors import SourceOutOfRange
from mirror.kafka import Reader
from mirror.replication.progress import EarlierTopic, ProgressStore, StoredProgress
from mirror.types import TP

__all__ = ["Positions"]

log = structlog.get_logger(__name__)


class Positions:
    """The per-partition positions of one task (kept across its sessions)."""

    def __init__(
        self,
        flow: FlowSettings,
        created_while_running: set[TP],
        exactly_once: bool,
        flow_topic_ids: Mapping[str, str | None] | None = None,
    ) -> None:
        self.flow = flow
        self.exactly_once = exactly_once
        #: The source topics' ids as the flow last listed them (shared with the flow).
        self.flow_topic_ids: Mapping[str, str | None] = flow_topic_ids if flow_topic_ids is not None else {}
        #: The id of the topic each partition is read from, as it was when first assigned: stored with
        #: its progress.
        self.topic_ids: dict[TP, str | None] = {}
        self.loaded_ids: dict[TP, str | None] = {}  # the topic id stored with each loaded offset
        self.on_earlier_topic: EarlierTopic | None = None  # told of progress of an earlier topic id
        self.from_zero: set[TP] = set()  # stored progress is an earlier topic's: read the new one from 0
        self.from_log_start: set[TP] = set()  # stored progress unreadable: read from the log start
        self.recreated_topics: set[str] = set()  # topics re-created while this task ran
        #: Source partitions created while the flow ran (shared with the flow): they began at offset 0, so a
        #: later log start offset, before anything was copied, means records deleted before we saw them.
        self.created_while_running = created_while_running
        self.acked: dict[TP, int] = {}  # last source offset acknowledged by the target
        self.dirty: set[TP] = set()  # acked but not stored yet
        #: progress resets of each partition (`mirror.replication.pausing`): an acknowledgement of a batch
        #: sent before the last one is no position any more (stored, it would undo the reset)
        self.resets: dict[TP, int] = {}
        self.position: dict[TP, int] = {}  # the next offset to read, in this session
        self.loaded: dict[TP, int] = {}  # stored progress as this task's session last read it
        # where partitions without stored progress start with auto.offset.reset=latest (kept across
        # sessions), and, in exactly-once mode, that start not yet committed as progress
        self.initial: dict[TP, int] = {}
        self.initial_unstored: dict[TP, int] = {}
        self._lost_reported: dict[TP, int] = {}  # log start offset up to which a loss was reported
        self._labels = (flow.source, flow.target)

    def load(self, stored: StoredProgress) -> None:
        """Take stored progress as a session read it (checked against the topic ids at assignment)."""
        self.loaded = dict(stored.offsets)
        self.loaded_ids = dict(stored.topic_ids)
        self.from_zero = set()
        self.from_log_start = set(stored.unreadable)

    def _of_another_topic(self, tp: TP) -> bool:
        """Whether the loaded progress of ``tp`` belongs to an earlier topic of the same name: stored with
        another id than the topic has now, or without one (Java's, an older mirror's) for a topic this
        task saw re-created. Such progress is dropped, and the partition read from offset 0."""
        if tp not in self.loaded:
            return False
        stored, current = self.loaded_ids.get(tp), self.flow_topic_ids.get(tp[0])
        if stored is None:
            earlier = tp[0] in self.recreated_topics
        else:
            earlier = current is not None and stored != current
            if earlier and current is not None and self.on_earlier_topic is not None:
                self.on_earlier_topic(tp[0], stored, current)
        if earlier:
            del self.loaded[tp]
            self.from_zero.add(tp)
        return earlier

    def _recreated_by_progress(self) -> set[str]:
        """Topics for which some loaded progress names another id than the topic has now."""
        return {
            topic
            for (topic, _partition), stored in self.loaded_ids.items()
            if stored is not None and self.flow_topic_ids.get(topic) not in (None, stored)
        }

    def forget(self, topics: Collection[str]) -> None:
        """``topics`` were deleted and created again: drop everything known of their old partitions (called
        between sessions, so that no acknowledgement of the old topic arrives afterwards)."""
        self.recreated_topics |= set(topics)
        for known in (
            self.acked,
            self.position,
            self.loaded,
            self.loaded_ids,
            self.initial,
            self.initial_unstored,
            self._lost_reported,
            self.topic_ids,
        ):
            for tp in [tp for tp in known if tp[0] in topics]:
                del known[tp]
        self.dirty = {tp for tp in self.dirty if tp[0] not in topics}

    def ack(self, tp: TP, last_offset: int, resets: int) -> bool:
        """The target acknowledged ``tp`` up to ``last_offset``, sent after ``resets`` progress resets: its
        acknowledged position now, unless its progress was reset since (False)."""
        if resets != self.resets.get(tp, 0):
            return False
        self.acked[tp] = last_offset
        return True

    def stored_next(self, tp: TP) -> int | None:
        """Where stored progress (as last loaded, or committed since) says to resume; None: nothing stored."""
        last = self.loaded.get(tp)
        if last is not None:
            return last + 1
        return self.initial.get(tp)

    def next_offset(self, tp: TP) -> int:
        """The next offset to copy (for lag): after the last acknowledged one, else the stored progress."""
        acked = self.acked.get(tp)
        return acked + 1 if acked is not None else self.stored_next(tp) or 0

    async def assign(self, reader: Reader, partitions: Collection[TP]) -> dict[TP, int | None]:
        """Where to read ``partitions`` from (None: as ``auto.offset.reset`` says); reports the records
        the source deleted before they were copied."""
        positions: dict[TP, int | None] = {}
        for tp in partitions:
            if self.topic_ids.get(tp) is None:
                self.topic_ids[tp] = self.flow_topic_ids.get(tp[0])
            if tp in self.position:
                positions[tp] = self.position[tp]
            elif tp in self.acked:
                positions[tp] = self.acked[tp] + 1
            else:
                self._of_another_topic(tp)
                positions[tp] = self.stored_next(tp)
        # A partition without any stored progress of a topic whose other partitions' progress names an
        # earlier id (say, one more partition than the old topic had): part of the new topic as well, read
        # from offset 0 whatever auto.offset.reset says, like its siblings.
        recreated = self._recreated_by_progress()
        self.from_zero |= {
            tp
            for tp, pos in positions.items()
            if pos is None and tp[0] in recreated and tp not in self.from_log_start
        }
        # A stored position below the log start offset means the source deleted records we never copied;
        # so does a log start offset above 0 in a partition created while we ran (or re-created), not
        # copied from yet.
        from_zero = self.created_while_running | self.from_zero
        checked = [
            tp
            for tp, pos in positions.items()
            if pos is not None or tp in from_zero or tp in self.from_log_start
        ]
        starts = await reader.beginning_offsets(checked)
        for tp, start in starts.items():
            pos = positions[tp]
            if pos is None and tp not in from_zero:
                positions[tp] = start  # its progress cannot be read: all the source still holds, again
                continue
            if pos is None:
                pos = positions[tp] = 0  # created while we ran: all of it is new, whatever auto.offset.reset
            if pos < start:
                self.report_lost(tp, pos, start)
                positions[tp] = start
        await self._resolve_latest(reader, positions)
        return positions

    async def _resolve_latest(self, reader: Reader, positions: dict[TP, int | None]) -> None:
        """``auto.offset.reset = latest``: partitions without stored progress start at their end *now*,
        once. The start is kept for later sessions and stored as progress (at-least-once: with the next
        flush; exactly-once: in the next transaction), so neither a failed session nor a task moving to
        another worker moves it again and skips what was written meanwhile."""
        unknown = [tp for tp, pos in positions.items() if pos is None]
        if not unknown or reader.start_at != "latest":
            return
        ends = await reader.end_offsets(unknown)
        for tp, end in ends.items():
            positions[tp] = self.initial[tp] = end
            if end > 0:
                if self.exactly_once:
                    self.initial_unstored[tp] = end - 1
                else:
                    self.acked[tp] = end - 1
                    self.dirty.add(tp)

    def report_lost(self, tp: TP, first_missing: int, log_start: int) -> None:
        """Records [first_missing, log_start) were deleted on the source before we copied them: say so,
        once per record (a later session finding the same gap does not count it again)."""
        first_missing = max(first_missing, self._lost_reported.get(tp, first_missing))
        if first_missing >= log_start:
            return
        missing = log_start - first_missing
        self._lost_reported[tp] = log_start
        metrics.truncated_records_total.labels(*self._labels, *map(str, tp)).inc(missing)
        log.error(
            "source truncated records before they were replicated: they are lost",
            flow=self.flow.name,
            topic=tp[0],
            partition=tp[1],
            first_missing=first_missing,
            log_start_offset=log_start,
            records=missing,
        )

    async def out_of_range(
        self, reader: Reader, positions: dict[TP, int], partitions: Collection[TP]
    ) -> None:
        """The source no longer holds these positions: report the loss, read on from the log start."""
        positions = {tp: pos for tp, pos in positions.items() if tp in partitions}
        starts = await reader.beginning_offsets(list(positions))
        ends = await reader.end_offsets(list(positions))
        for tp, pos in positions.items():
            start, end = starts[tp], ends[tp]
            if pos < start:
                self.report_lost(tp, pos, start)
            elif pos > end:
                # the log now ends below what we read: an unclean leader election cut it, or the topic
                # was deleted and created again. Read it again from its start (Java's
                # auto.offset.reset=earliest): duplicates rather than skipping the new records.
                log.error(
                    "source partition ends below the replication position; copying it again from its start",
                    flow=self.flow.name,
                    topic=tp[0],
                    partition=tp[1],
                    position=pos,
                    log_start_offset=start,
                    log_end_offset=end,
                )
                metrics.errors_total.labels(*self._labels, SourceOutOfRange.kind).inc()
            else:
                # back in range by now (say, a leader change): read on as we were; the seek is still
                # needed, the reader raises SourceOutOfRange for the partition until one
                reader.seek({tp: pos})
                continue
            self.position[tp] = start
            reader.seek({tp: start})

    async def store(self, progress: ProgressStore) -> None:
        """Store the acknowledged positions not stored yet (at-least-once)."""
        if not self.dirty:
            return
        dirty, self.dirty = self.dirty, set()
        try:
            await progress.store({tp: self.acked[tp] for tp in dirty}, self.topic_ids)
        except BaseException:
            self.dirty |= dirty
            raise
