"""The source job of a flow: which partitions go to which task, and the task that copies records.

The hot path works per fetched batch: records of one source partition become one (or a few) target
batches for the same partition of the remote topic; acks are awaited in order; progress and metrics are
updated per batch. In-flight bytes are bounded per task, so a slow target slows the reads instead of
growing memory. Guarantee (at-least-once): a source offset is stored as progress only after the target
acknowledged it and everything before it in that partition, so a crash re-copies at most the tail since
the last stored progress and never skips a record. Exactly-once: a transaction commits only after the
target acknowledged every batch in it; otherwise it is aborted and nothing of it counts.

A batch the target refuses for good (`RecordRejected`) halts its own partition, never the task: the
refused range is sent again in batches half as large until one record is refused alone; the records
before it are copied, it and those after it wait (order is kept) and the halt is named in the log,
/status and ``mirror_partition_halted``. A batch refused for its size only makes that partition's
batches smaller. Records deleted on the source before they were copied are reported as
lost (log and ``mirror_source_truncated_records_total``), at assignment and while running. The Kafka and
aiokafka behaviours this relies on are in docs/guarantees.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import zlib
from collections import deque
from collections.abc import Awaitable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import structlog

from mirror import metrics
from mirror.config import ClusterSettings, FlowSettings
from mirror.errors import MirrorError, ProducerFenced, RecordRejected, SourceOutOfRange
from mirror.kafka import Pending, Reader, SourceBatch, Writer, as_mirror_error
from mirror.mm2.offset_translation import MAX_OUTSTANDING_OFFSET_SYNCS, OffsetSyncWriter
from mirror.mm2.policy import ReplicationPolicy
from mirror.mm2.records import Heartbeat, OffsetSync, RecordFormatError
from mirror.replication.progress import ProgressStore

log = structlog.get_logger(__name__)

TP = tuple[str, int]
TaskState = Literal["starting", "running", "retrying", "stopped"]

#: Bound on bytes fetched but not yet acknowledged by the target, per task.
DEFAULT_MAX_INFLIGHT_BYTES = 64 * 1024 * 1024
_BACKOFF_MIN, _BACKOFF_MAX = 0.5, 10.0
#: A partition whose last acknowledgement is older than this counts as new to the producer again: the
#: broker may have dropped the producer's state for it (idle producer ids expire, retention may delete
#: all of its batches), and then would accept batches queued behind a refused one.
_CONFIRMED_FOR = 30.0
#: A fenced exactly-once task waits at least this long before re-initialising its producer: when the
#: task really moved to another worker, the group revokes it here meanwhile and it stops instead.
_FENCED_BACKOFF = 3.0
#: On stop, how long in-flight batches may take to be acknowledged and the progress to be stored,
#: together, before they are given up (their records are then copied again by the task's next run:
#: at-least-once, never lost).
DRAIN_TIMEOUT = 5.0  # as Java Connect's task.shutdown.graceful.timeout.ms


def task_for_partition(topic: str, partition: int, tasks: int) -> int:
    """Partition -> task, a pure function every worker computes alike (docs/guarantees.md).

    Round-robin inside a topic, offset by a stable hash of the topic name, so partitions of many
    small topics spread over the tasks and a partition never changes task while ``tasks`` is fixed.
    """
    return (zlib.crc32(topic.encode()) + partition) % tasks


def offset_syncs_location(flow: FlowSettings, policy: ReplicationPolicy) -> tuple[str, str]:
    """(cluster alias, topic) of the flow's offset-syncs topic, named after the *other* cluster."""
    if flow.offset_syncs_topic_location == "source":
        return flow.source, policy.offset_syncs_topic(flow.target)
    return flow.target, policy.offset_syncs_topic(flow.source)


def assign_partitions(partitions: Iterable[TP], tasks: int) -> list[set[TP]]:
    out: list[set[TP]] = [set() for _ in range(tasks)]
    for topic, partition in partitions:
        out[task_for_partition(topic, partition, tasks)].add((topic, partition))
    return out


async def _unwrapped(session: Awaitable[None]) -> None:
    """Await a session; its TaskGroup wraps a loop's Kafka error in an ExceptionGroup: raise that error
    itself (the fencing one first), so the session is retried like any other. Other errors pass unchanged."""
    try:
        await session
    except ExceptionGroup as group:
        leaves = list(_leaves(group))
        if not all(isinstance(e, (MirrorError, OSError)) for e in leaves):
            raise
        fenced = [e for e in leaves if isinstance(e, ProducerFenced)]
        located = [e for e in leaves if isinstance(e, RecordRejected) and e.topic is not None]
        raise (fenced + located + leaves)[0] from None


def _cancelling() -> bool:
    current = asyncio.current_task()
    return current is not None and current.cancelling() > 0


def _leaves(exc: BaseException) -> Iterator[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            yield from _leaves(inner)
    else:
        yield exc


@dataclass(slots=True)
class _InFlight:
    tp: TP
    remote_topic: str
    records: list[Any]  # the source records, kept until acked (offset syncs need their offsets)
    newest_timestamp: int
    value_bytes: int
    futures: list[tuple[Pending, int, int]]


@dataclass(frozen=True, slots=True)
class Halt:
    """A partition stopped at ``offset``, the first record the target refused (``reason``)."""

    offset: int
    reason: str


@dataclass
class TaskStatus:
    state: TaskState = "starting"
    last_error: str | None = None
    restarts: int = 0
    records: int = 0
    partitions: int = 0
    halted: dict[TP, Halt] = field(default_factory=dict)


@dataclass
class SourceTask:
    """Copies a fixed share of a flow's source partitions to the target."""

    flow: FlowSettings
    index: int
    source: ClusterSettings
    target: ClusterSettings
    policy: ReplicationPolicy
    progress: ProgressStore
    syncs_cluster: ClusterSettings | None = None  # where offset syncs go; None: not emitted
    group: str = "mirror"  # the workers' group: part of exactly-once transactional ids
    max_inflight_bytes: int = DEFAULT_MAX_INFLIGHT_BYTES
    status: TaskStatus = field(default_factory=TaskStatus)
    #: Source partitions created while the flow ran (shared with the flow): they began at offset 0, so a
    #: later log start offset, before anything was copied, means records deleted before we saw them.
    created_while_running: set[TP] = field(default_factory=set)

    def __post_init__(self) -> None:
        self._partitions: set[TP] = set()
        self._partitions_changed = asyncio.Event()
        self._stopping = asyncio.Event()
        self._acked: dict[TP, int] = {}  # last source offset acknowledged by the target
        self._dirty: set[TP] = set()  # acked but not stored yet
        self._remote: dict[str, str] = {}
        self._labels = (self.flow.source, self.flow.target)
        self._batches = metrics.batches_total.labels(*self._labels)
        self._children: dict[TP, tuple[Any, Any]] = {}
        self._hw: dict[TP, int] = {}
        self._acked_ts: dict[TP, int] = {}  # timestamp (ms) of the last acked record
        self._position: dict[TP, int] = {}
        # partitions this session's producer wrote to, and when the target last acknowledged them
        self._confirmed: dict[TP, float] = {}
        self._loaded: dict[TP, int] = {}  # stored progress as this task's session last read it
        # where partitions without stored progress start with auto.offset.reset=latest (kept across
        # sessions), and, in exactly-once mode, that start not yet committed as progress
        self._initial: dict[TP, int] = {}
        self._initial_unstored: dict[TP, int] = {}
        self.name = f"{self.flow.name}|source-{self.index}"
        # Offset syncs (docs/mm2-compat.md §5): decided per acknowledged batch, sent by their own loop.
        self._syncs = OffsetSyncWriter(self.flow.offset_lag_max)
        self._syncs_topic = offset_syncs_location(self.flow, self.policy)[1]
        self._syncs_ready = asyncio.Event()
        # A refused multi-record batch: its records are sent again in batches half as large (up to the
        # batch's last offset), until the refused record itself is found: (last offset, records/batch).
        self._probing: dict[TP, tuple[int, int]] = {}
        # Partitions whose batches the target refused as too large: at most this many records per batch.
        self._cap: dict[TP, int] = {}
        self._lost_reported: dict[TP, int] = {}  # log start offset up to which a loss was reported

    # --- control ---------------------------------------------------------------------------------

    def set_partitions(self, partitions: set[TP]) -> None:
        if partitions != self._partitions:
            self._partitions = set(partitions)
            self.status.partitions = len(partitions)
            self._partitions_changed.set()

    def stop(self) -> None:
        self._stopping.set()
        self._partitions_changed.set()

    async def run(self) -> None:
        """Run sessions until stopped; a failed session is retried with backoff from the acked positions."""
        backoff = _BACKOFF_MIN
        logger = log.bind(flow=self.flow.name, task=self.index)
        while not self._stopping.is_set():
            try:
                await _unwrapped(self._session())
                backoff = _BACKOFF_MIN
                continue
            except RecordRejected as exc:
                if exc.topic is not None and exc.partition is not None and exc.offset is not None:
                    self._rejected(exc)
                    metrics.errors_total.labels(*self._labels, exc.kind).inc()
                    continue  # a new session at once: the other partitions go on, this one is contained
                err: MirrorError = exc
            except ProducerFenced as exc:
                # A newer producer took our transactional id (the task moved: the group revokes it here
                # soon, and it stops), or the coordinator aborted a transaction that outlived
                # transaction.timeout.ms. A new session re-initialises and reloads committed progress.
                err = exc
                backoff = max(backoff, _FENCED_BACKOFF)
            except Exception as exc:  # a task must survive anything: report it and start a new session
                err = as_mirror_error(exc)
                if not isinstance(exc, (MirrorError, OSError)):
                    logger.exception("unexpected error in task session", error=str(exc))
            if not self._stopping.is_set():
                self.status.state = "retrying"
                self.status.last_error = str(err)
                self.status.restarts += 1
                metrics.errors_total.labels(*self._labels, err.kind).inc()
                metrics.task_restarts_total.labels(*self._labels).inc()
                logger.warning(
                    "task session failed, retrying", error=str(err), kind=err.kind, backoff_s=backoff
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), backoff)
                backoff = min(backoff * 2, _BACKOFF_MAX)
        self.status.state = "stopped"
        self._remove_series(list(self._children))  # stopped here: the partitions move to another worker

    def _rejected(self, exc: RecordRejected) -> None:
        """The target refused a batch for good: find the refused record, then halt its partition there."""
        assert exc.topic is not None and exc.partition is not None and exc.offset is not None
        tp = (exc.topic, exc.partition)
        fields = {"flow": self.flow.name, "task": self.index, "topic": tp[0], "partition": tp[1]}
        if exc.count > 1:
            per_batch = max(1, exc.count // 2)
            last = exc.last_offset if exc.last_offset is not None else exc.offset + exc.count - 1
            self._probing[tp] = (last, per_batch)
            if exc.too_large:
                self._cap[tp] = per_batch
            log.warning(
                "target refused a batch; sending it again in smaller batches to find the refused record",
                **fields,
                first_offset=exc.offset,
                records=exc.count,
                records_per_batch=per_batch,
                reason=exc.reason,
            )
            return
        self._probing.pop(tp, None)
        self.status.halted[tp] = Halt(exc.offset, exc.reason)
        metrics.partition_halted.labels(*self._labels, self._remote_topic(tp[0]), str(tp[1])).set(1)
        log.error(
            "target refused a record; partition halted",
            **fields,
            offset=exc.offset,
            reason=exc.reason,
            hint="fix the remote topic (or the record) and restart: copying resumes at this offset",
        )

    # --- one session: a reader, a writer and three loops -------------------------------------------

    @property
    def exactly_once(self) -> bool:
        return self.flow.exactly_once_support != "disabled"

    @property
    def transactional_id(self) -> str:
        """Derived from flow and task only: the task's next owner fences this one's zombie."""
        return f"{self.group}-{self.flow.name}-{self.index}"

    async def _session(self) -> None:
        client = f"{self.flow.source}->{self.flow.target}|MirrorSourceConnector-{self.index}"
        isolation = self.flow.consumer.get("isolation.level", "read_committed")
        reader = Reader(self.source, f"{client}|replication-consumer", self.flow.consumer, isolation)
        txn_id = self.transactional_id if self.exactly_once else None
        writer = Writer(self.target, f"{client}|replication-producer", self.flow.producer, txn_id)
        syncs = self._syncs_writer(client)
        self._inflight: deque[_InFlight | None] = deque()  # None: end marker, the fetcher stopped
        self._inflight_bytes = 0
        self._inflight_changed = asyncio.Condition()
        stored = False
        try:
            await reader.start()
            await writer.start()
            # Progress as stored now (another worker may have advanced it since we last looked), read
            # here, in the task's own retried session, not in the rebalance callback that started it.
            # Exactly-once: the writer's start fenced every older producer of this task and let the
            # transaction coordinator finish what they had begun, so the stored progress is final. It,
            # not what this process believes, says what was committed (a commit that timed out may still
            # have succeeded).
            self._loaded = await self.progress.load()
            if self.exactly_once:
                self._acked.clear()
            if syncs is not None:
                await syncs.start()
            self.status.state = "running"
            self.status.last_error = None
            self._position = {}
            self._confirmed = {}
            self._partitions_changed.set()  # (re)assign from the acknowledged positions
            async with asyncio.TaskGroup() as tg:
                if self.exactly_once:
                    fetcher = tg.create_task(self._transaction_loop(reader, writer))
                    self._inflight.append(None)  # no pipelined acks: each transaction completes in place
                else:
                    fetcher = tg.create_task(self._fetch_loop(reader, writer))
                acker = tg.create_task(self._ack_loop())
                flusher = tg.create_task(self._flush_loop(reader))
                syncer = tg.create_task(self._sync_loop(syncs)) if syncs is not None else None
                await fetcher
                # stopping: let the acker drain what is in flight, then store the final progress
                deadline = time.monotonic() + DRAIN_TIMEOUT
                async with self._inflight_changed:
                    self._inflight.append(None)
                    self._inflight_changed.notify_all()
                try:
                    await asyncio.wait_for(asyncio.shield(acker), DRAIN_TIMEOUT)
                except TimeoutError:
                    acker.cancel()
                    log.warning(
                        "in-flight batches not acknowledged in time; they will be copied again",
                        flow=self.flow.name,
                        task=self.index,
                        timeout_s=DRAIN_TIMEOUT,
                    )
                flusher.cancel()
                if syncer is not None:
                    syncer.cancel()
            await asyncio.wait_for(self._store_progress(), max(1.0, deadline - time.monotonic()))
            stored = True
            if syncs is not None:
                self._syncs.promote_delayed()
                await self._send_syncs(syncs)
        finally:
            if not stored and self._dirty and not _cancelling():
                # the session failed (say, one batch was refused): what the target did acknowledge is
                # still stored, so the next session does not copy it again
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self._store_progress(), 3.0)
            await asyncio.gather(writer.close(), reader.close(), *([syncs.close()] if syncs else []))

    def _syncs_writer(self, client: str) -> Writer | None:
        if self.syncs_cluster is None:
            return None
        role = f"offset-syncs-{self.flow.offset_syncs_topic_location}-producer"
        return Writer(self.syncs_cluster, f"{client}|{role}", {"linger.ms": "0"})

    async def _sync_loop(self, syncs: Writer) -> None:
        while True:
            await self._syncs_ready.wait()
            self._syncs_ready.clear()
            await self._send_syncs(syncs)

    async def _send_syncs(self, syncs: Writer) -> None:
        """Send pending syncs, at most MAX_OUTSTANDING_OFFSET_SYNCS (10) in flight, as Java does."""
        while self._syncs.has_pending():
            batch: list[OffsetSync] = self._syncs.take_pending(MAX_OUTSTANDING_OFFSET_SYNCS)
            futures = [
                await syncs.send(self._syncs_topic, s.encode_key(), s.encode_value(), 0) for s in batch
            ]
            for fut in futures:
                await fut.ack()
            metrics.offset_syncs_total.labels(*self._labels).inc(len(batch))

    async def _assign(self, reader: Reader) -> None:
        positions: dict[TP, int | None] = {}
        for tp in self._partitions:
            if tp in self._position:
                positions[tp] = self._position[tp]
            elif tp in self._acked:
                positions[tp] = self._acked[tp] + 1
            else:
                positions[tp] = self._stored_next(tp)
        # A stored position below the log start offset means the source deleted records we never copied;
        # so does a log start offset above 0 in a partition created while we ran, not copied from yet.
        checked = [tp for tp, pos in positions.items() if pos is not None or tp in self.created_while_running]
        starts = await reader.beginning_offsets(checked)
        for tp, start in starts.items():
            pos = positions[tp]
            if pos is None:
                pos = positions[tp] = 0  # created while we ran: all of it is new, whatever auto.offset.reset
            if pos < start:
                self._report_lost(tp, pos, start)
                positions[tp] = start
        await self._resolve_latest(reader, positions)
        gone = [tp for tp in self._children if tp not in positions]
        self._remove_series(gone)
        self._syncs.remove_partitions(gone)
        for tp in [tp for tp in self.status.halted if tp not in positions]:
            self._unhalt(tp)
        await reader.assign(positions)
        if self.status.halted:
            reader.pause([tp for tp, h in self.status.halted.items() if (positions[tp] or 0) >= h.offset])
        log.info("task assigned", flow=self.flow.name, task=self.index, partitions=len(positions))

    def _stored_next(self, tp: TP) -> int | None:
        """Where stored progress (as last loaded, or committed since) says to resume; None: nothing stored."""
        last = self._loaded.get(tp)
        if last is not None:
            return last + 1
        return self._initial.get(tp)

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
            positions[tp] = self._initial[tp] = end
            if end > 0:
                if self.exactly_once:
                    self._initial_unstored[tp] = end - 1
                else:
                    self._acked[tp] = end - 1
                    self._dirty.add(tp)

    def _report_lost(self, tp: TP, first_missing: int, log_start: int) -> None:
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

    async def _out_of_range(self, reader: Reader, positions: dict[TP, int]) -> None:
        """The source no longer holds these positions: report the loss, read on from the log start."""
        positions = {tp: pos for tp, pos in positions.items() if tp in self._partitions}
        starts = await reader.beginning_offsets(list(positions))
        ends = await reader.end_offsets(list(positions))
        for tp, pos in positions.items():
            start, end = starts[tp], ends[tp]
            if pos < start:
                self._report_lost(tp, pos, start)
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
                continue  # back in range by now (say, a leader change): read on as we were
            self._position[tp] = start
            reader.seek({tp: start})

    def _unhalt(self, tp: TP) -> None:
        if self.status.halted.pop(tp, None) is not None:
            with contextlib.suppress(KeyError):
                metrics.partition_halted.remove(*self._labels, self._remote_topic(tp[0]), str(tp[1]))

    def _remove_series(self, partitions: Iterable[TP]) -> None:
        """Drop the per-partition series of partitions this task no longer copies (moved away)."""
        for tp in partitions:
            labels = (*self._labels, self._remote_topic(tp[0]), str(tp[1]))
            for metric in (
                metrics.lag_records,
                metrics.lag_seconds,
                metrics.records_total,
                metrics.bytes_total,
            ):
                with contextlib.suppress(KeyError):
                    metric.remove(*labels)
            self._children.pop(tp, None)

    def _remote_topic(self, topic: str) -> str:
        remote = self._remote.get(topic)
        if remote is None:
            remote = self._remote[topic] = self.policy.format_remote_topic(self.flow.source, topic)
        return remote

    async def _fetch(self, reader: Reader) -> list[SourceBatch]:
        """The next fetched batches, after (re)assigning partitions when they changed; [] when none."""
        if self._partitions_changed.is_set():
            self._partitions_changed.clear()
            if self._stopping.is_set():
                return []
            await self._assign(reader)
        if not self._partitions:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._partitions_changed.wait(), 1.0)
            return []
        try:
            batches = await reader.fetch(self.flow.consumer_poll_timeout_ms)
        except SourceOutOfRange as exc:
            await self._out_of_range(reader, exc.positions)
            return []
        if self._partitions_changed.is_set():
            return []  # the assignment changes: drop this fetch, positions are re-derived
        if self.status.halted:
            batches = self._cut_halted(reader, batches)
        for b in batches:
            hw = reader.highwater(b.topic, b.partition)
            if hw is not None:
                self._hw[(b.topic, b.partition)] = hw
        return batches

    def _cut_halted(self, reader: Reader, batches: list[SourceBatch]) -> list[SourceBatch]:
        """Drop the records of halted partitions from their halt offset on; stop fetching those."""
        out = []
        for b in batches:
            halt = self.status.halted.get((b.topic, b.partition))
            if halt is not None and b.last_offset >= halt.offset:
                reader.pause([(b.topic, b.partition)])
                kept = [r for r in b.records if r.offset < halt.offset]
                if kept:
                    out.append(SourceBatch(b.topic, b.partition, kept))
            else:
                out.append(b)
        return out

    async def _send_all(self, writer: Writer, batches: list[SourceBatch]) -> list[_InFlight]:
        """Queue every fetched batch on the writer. When one fails, the others are cancelled and awaited
        before this returns: nothing of this fetch may go on sending into the next session."""
        async with asyncio.TaskGroup() as tg:
            sends = [tg.create_task(self._send(writer, b)) for b in batches]
        return [s.result() for s in sends]

    def _observe_age(self, entries: list[_InFlight]) -> None:
        if not entries:
            return
        newest = max(e.newest_timestamp for e in entries)
        metrics.record_age.labels(*self._labels).observe(max(0.0, time.time() - newest / 1000))

    async def _fetch_loop(self, reader: Reader, writer: Writer) -> None:
        while not self._stopping.is_set():
            async with self._inflight_changed:
                await self._inflight_changed.wait_for(lambda: self._inflight_bytes < self.max_inflight_bytes)
            batches = await self._fetch(reader)
            if not batches:
                continue
            entries = await self._send_all(writer, batches)
            async with self._inflight_changed:
                for entry in entries:
                    self._inflight.append(entry)
                    self._inflight_bytes += entry.value_bytes
                self._inflight_changed.notify_all()
            self._observe_age(entries)

    async def _transaction_loop(self, reader: Reader, writer: Writer) -> None:
        """Exactly-once: each fetch becomes one transaction holding its records and their progress.

        A crash or a fenced zombie leaves an aborted transaction, which ``read_committed`` consumers of
        the target never see; the task's next owner resumes from the progress of the last commit. The
        commit is sent only once the target acknowledged every batch of the transaction: aiokafka fails
        a refused batch's future alone and would commit the rest, progress included, without it.
        """
        while not self._stopping.is_set():
            batches = await self._fetch(reader)
            # a start resolved with auto.offset.reset=latest is committed even when nothing is copied (a
            # halted partition): a restart must not move that start again, past the halted record
            initial = {tp: o for tp, o in self._initial_unstored.items() if tp in self._partitions}
            if not batches and not initial:
                continue
            progress = {**initial, **{(b.topic, b.partition): b.last_offset for b in batches}}
            await writer.begin_transaction()
            try:
                entries = await self._send_all(writer, batches)
                stored = await self.progress.send_with(writer, progress)
                for entry in entries:
                    await self._acks_of(entry)
                for fut in stored:
                    await fut.ack()
                await writer.commit_transaction()
            except BaseException:
                await writer.abort_transaction()
                raise
            self._loaded.update(progress)
            for tp in initial:
                self._initial_unstored.pop(tp, None)
            self._observe_age(entries)
            for entry in entries:
                await self._complete(entry)

    async def _send(self, writer: Writer, batch: SourceBatch) -> _InFlight:
        tp = (batch.topic, batch.partition)
        remote = self._remote_topic(batch.topic)
        per_batch = self._cap.get(tp, 0)
        probing = self._probing.get(tp)
        if probing is not None:
            if batch.first_offset <= probing[0]:
                per_batch = probing[1]  # narrowing down on the record the target refuses
            else:
                del self._probing[tp]  # past the refused batch, and nothing of it was refused this time
        records = batch.records
        confirmed = self._confirmed.get(tp)
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
            self._confirmed[tp] = time.monotonic()
            if n < len(records):
                rest = await writer.send_records(remote, batch.partition, records[n:], per_batch)
                futures += [(f, start + n, count) for f, start, count in rest]
        self._position[tp] = batch.last_offset + 1
        return _InFlight(
            tp,
            remote,
            batch.records,
            max(batch.records[-1].timestamp, batch.records[0].timestamp),
            batch.value_bytes(),
            futures,
        )

    async def _ack_loop(self) -> None:
        while True:
            async with self._inflight_changed:
                await self._inflight_changed.wait_for(lambda: bool(self._inflight))
                entry = self._inflight[0]
            if entry is None:
                return
            await self._complete(entry)
            self._dirty.add(entry.tp)
            async with self._inflight_changed:
                self._inflight.popleft()
                self._inflight_bytes -= entry.value_bytes
                self._inflight_changed.notify_all()

    async def _acks_of(self, entry: _InFlight) -> list[int]:
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

    async def _complete(self, entry: _InFlight) -> None:
        """The target acknowledged (or the transaction committed) ``entry``: account for it, per batch."""
        src, tgt = self._labels
        count = 0
        recs = entry.records
        try:
            for base, (_fut, start, n) in zip(await self._acks_of(entry), entry.futures, strict=True):
                count += n
                first_up, last_up = recs[start].offset, recs[start + n - 1].offset
                gaps = None if last_up - first_up + 1 == n else [r.offset for r in recs[start : start + n]]
                if base >= 0:  # -1: a duplicate the broker had already (no offset known), no sync
                    self._syncs.on_ack_batch(entry.tp, first_up, base, n, gaps)
        except RecordRejected:
            # the batches of this entry before the refused one were acknowledged: they count
            for fut, start, n in entry.futures:
                if not fut.acknowledged:
                    break
                self._acked[entry.tp] = recs[start + n - 1].offset
                self._dirty.add(entry.tp)
            raise
        if self._syncs.has_pending():
            self._syncs_ready.set()
        self._acked[entry.tp] = recs[-1].offset
        self._acked_ts[entry.tp] = recs[-1].timestamp
        if entry.tp in self._confirmed:
            self._confirmed[entry.tp] = time.monotonic()
        self.status.records += count
        partition = entry.tp[1]
        child = self._children.get(entry.tp)
        if child is None:
            labels = (src, tgt, entry.remote_topic, str(partition))
            child = self._children[entry.tp] = (
                metrics.records_total.labels(*labels),
                metrics.bytes_total.labels(*labels),
            )
        child[0].inc(count)
        child[1].inc(entry.value_bytes)
        self._batches.inc(len(entry.futures))
        metrics.replication_latency.labels(src, tgt).observe(
            max(0.0, time.time() - entry.newest_timestamp / 1000)
        )
        self._set_lag(entry.tp, entry.remote_topic)
        if self.policy.is_heartbeats_topic(entry.tp[0]):
            self._observe_heartbeat(recs[-1])

    async def _flush_loop(self, reader: Reader) -> None:
        interval = self.flow.offset_flush_interval_ms / 1000
        while True:
            await asyncio.sleep(interval)
            await self._store_progress()
            # like Java's commit(): idle partitions get an exact sync for their last record
            self._syncs.promote_delayed()
            self._syncs_ready.set()
            self._update_lag()

    def _update_lag(self) -> None:
        for tp in self._hw:
            if tp in self._partitions:
                self._set_lag(tp, self._remote_topic(tp[0]))

    def _lag_of(self, tp: TP) -> int | None:
        hw = self._hw.get(tp)
        if hw is None:
            return None
        acked = self._acked.get(tp)
        nxt = acked + 1 if acked is not None else self._stored_next(tp) or 0
        return max(0, hw - nxt)

    def _set_lag(self, tp: TP, remote_topic: str) -> None:
        lag = self._lag_of(tp)
        if lag is None:
            return
        labels = (*self._labels, remote_topic, str(tp[1]))
        metrics.lag_records.labels(*labels).set(lag)
        ts = self._acked_ts.get(tp)
        seconds = max(0.0, time.time() - ts / 1000) if lag and ts is not None else 0.0
        metrics.lag_seconds.labels(*labels).set(seconds)

    def _observe_heartbeat(self, record: Any) -> None:
        try:
            beat = Heartbeat.decode(record.key, record.value)
        except (RecordFormatError, TypeError):
            return
        upstream = beat.source_cluster_alias
        metrics.heartbeat_timestamp.labels(*self._labels, upstream).set(beat.timestamp / 1000)

    async def _store_progress(self) -> None:
        if not self._dirty:
            return
        dirty, self._dirty = self._dirty, set()
        try:
            await self.progress.store({tp: self._acked[tp] for tp in dirty})
        except BaseException:
            self._dirty |= dirty
            raise

    def lag(self) -> dict[TP, int]:
        """Records still to copy per source partition (those fetched at least once)."""
        lags = {tp: self._lag_of(tp) for tp in self._partitions}
        return {tp: lag for tp, lag in lags.items() if lag is not None}
