"""The task that copies a share of a flow's source partitions to the target: its sessions and their loops.

The hot path works per fetched batch: records of one source partition become one (or a few) target
batches for the same partition of the remote topic (`mirror.replication.delivery`); acks are awaited in
order; progress and metrics are updated per batch. In-flight bytes are bounded per task
(`mirror.replication.inflight`), so a slow target slows the reads instead of growing memory. Guarantee
(at-least-once): a source offset is stored as progress only after the target acknowledged it and
everything before it in that partition, so a crash re-copies at most the tail since the last stored
progress and never skips a record. Exactly-once: a transaction commits only after the target
acknowledged every batch in it and its progress records; otherwise it is aborted and nothing of it counts.

A batch the target refuses for good (`RecordRejected`) halts its own partition, never the task, until a
retry finds the target taking the refused record, or, with the opt-in dead-letter policy, that record goes
to the flow's dead-letter topic (`mirror.replication.halting`). Records deleted on the source before
they were copied are reported as lost, at assignment and while running (`mirror.replication.positions`).
Which partitions a task copies: `mirror.replication.assignment`. The Kafka and aiokafka behaviours this
relies on are in docs/guarantees.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field

import structlog

from mirror import metrics
from mirror.config import ClusterSettings, FlowSettings
from mirror.errors import (
    MirrorError,
    ProducerFenced,
    RecordRejected,
    SourceOutOfRange,
    SourceTopicsRecreated,
)
from mirror.kafka import Reader, SourceBatch, as_mirror_error
from mirror.kafka.writer import BatchWriter
from mirror.mm2.policy import ReplicationPolicy
from mirror.replication.controls import Controls, Reset
from mirror.replication.delivery import Delivery
from mirror.replication.halting import Halting
from mirror.replication.inflight import InFlightQueue
from mirror.replication.observe import TaskMetrics
from mirror.replication.offset_syncs import OffsetSyncEmitter
from mirror.replication.pausing import PauseGate
from mirror.replication.positions import Positions
from mirror.replication.progress import ProgressStore
from mirror.replication.status import Halt, TaskState, TaskStatus
from mirror.replication.stuck import StuckWatch
from mirror.replication.throttle import TokenBucket
from mirror.replication.topology import dead_letter_topic
from mirror.retry import Backoff, retrying, woken
from mirror.types import TP

__all__ = ["DEFAULT_MAX_INFLIGHT_BYTES", "DRAIN_TIMEOUT", "Halt", "SourceTask", "TaskState", "TaskStatus"]

log = structlog.get_logger(__name__)


#: Bound on bytes fetched but not yet acknowledged by the target, per task.
DEFAULT_MAX_INFLIGHT_BYTES = 64 * 1024 * 1024
_BACKOFF_MIN, _BACKOFF_MAX = 0.5, 10.0
#: A fenced exactly-once task waits at least this long before re-initialising its producer: when the
#: task really moved to another worker, the group revokes it here meanwhile and it stops instead.
_FENCED_BACKOFF = 3.0
#: On stop, how long in-flight batches may take to be acknowledged and the progress to be stored,
#: together, before they are given up (their records are then copied again by the task's next run:
#: at-least-once, never lost).
DRAIN_TIMEOUT = 5.0  # as Java Connect's task.shutdown.graceful.timeout.ms


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
    #: The source topics' ids as the flow last listed them (shared with the flow).
    topic_ids: Mapping[str, str | None] = field(default_factory=dict)
    #: The flow's operator controls (pauses, progress resets), kept current by the flow; None: none.
    controls: Controls | None = None
    #: This task's share of the flow's byte-rate limit, bytes/s now (0: none; `mirror.replication.throttle`).
    throttle: Callable[[], float] = lambda: 0.0

    def __post_init__(self) -> None:
        self.name = f"{self.flow.name}|source-{self.index}"
        self._partitions: set[TP] = set()
        self._partitions_changed = asyncio.Event()
        self._stopping = asyncio.Event()
        self._labels = (self.flow.source, self.flow.target)
        self._backoff = Backoff(_BACKOFF_MIN, _BACKOFF_MAX)  # between failed sessions
        self._log = log.bind(flow=self.flow.name, task=self.index)
        self._inflight = InFlightQueue()  # a new one per session
        # the task's parts (each in its own module)
        self._positions = Positions(self.flow, self.created_while_running, self.exactly_once, self.topic_ids)
        self._positions.on_earlier_topic = self.progress.on_earlier_topic
        self._recreated: set[str] = set()  # re-created topics: the session ends, the next forgets them
        self._metrics = TaskMetrics(self.flow, self.policy, self._positions.next_offset)
        self._halting = Halting(self.status.halted, self._metrics, self.flow, self.index)
        self._syncs = OffsetSyncEmitter(self.flow, self.policy, self.syncs_cluster)
        self._delivery = Delivery(
            self._positions,
            self._halting,
            self._metrics,
            self._syncs,
            self.status,
            self.exactly_once,
            dead_letter_topic(self.flow),
        )
        self._gate = PauseGate(self.controls, self._metrics, self._positions, self.progress)
        self._stuck = StuckWatch(self.flow.task_stuck_timeout_seconds)
        self._bucket = TokenBucket(self.throttle)
        self._throttled = False  # the reader's fetch size is limited to the throttle

    # --- control ---------------------------------------------------------------------------------

    def set_partitions(self, partitions: set[TP]) -> None:
        if partitions != self._partitions:
            self._partitions = set(partitions)
            self.status.partitions = len(partitions)
            self._partitions_changed.set()

    def stop(self) -> None:
        self._stopping.set()
        self._partitions_changed.set()

    def restart_topics(self, topics: set[str]) -> None:
        """``topics`` were deleted and created again: end the session (its acknowledged progress is stored,
        under the old topic's id) and copy them from their start in the next one."""
        known = self._partitions | set(self._positions.acked) | set(self._positions.topic_ids)
        if any(topic in topics for topic, _partition in known):
            self._recreated |= topics
            self._partitions_changed.set()
        else:  # nothing of them here: only never apply their untagged progress
            self._positions.recreated_topics |= topics

    def reset_progress(self, reset: Reset) -> None:
        """The stored progress of ``reset.topics`` was rewritten: re-read it before the next fetch."""
        if self._gate.request_reload(reset):
            self._partitions_changed.set()

    def paused(self) -> set[TP]:
        """The partitions this task holds paused (operator controls) now."""
        return set(self._gate.paused)

    def lag(self) -> dict[TP, int]:
        """Records still to copy per source partition (those fetched at least once)."""
        return self._metrics.lag(self._partitions)

    def snapshot(self) -> TaskStatus:
        """A copy of this task's status (its halted partitions included) that later changes leave alone:
        what /status and /readyz show of it (`mirror.service.worker.FlowRunner.snapshot`)."""
        s = self.status
        halted, stuck = dict(s.halted), self._stuck.stuck
        return TaskStatus(
            s.state, s.last_error, s.restarts, s.records, s.partitions, halted, s.dead_lettered, stuck
        )

    async def run(self) -> None:
        """Run sessions until stopped; a failed session is retried with backoff from the acked positions."""
        await retrying(
            "task session",
            lambda: _unwrapped(self._session()),
            stopping=self._stopping,
            backoff=self._backoff,
            log=self._log,
            retry_on=(Exception,),  # a task must survive anything: report it and start a new session
            on_error=self._session_failed,
            every=0,  # a session ends without an error only when stopping
        )
        self.status.state = "stopped"
        self._metrics.remove(self._metrics.partitions)  # stopped here: the partitions move to another worker

    def _session_failed(self, exc: Exception) -> MirrorError | None:
        """A session failed: the error to report and back off on, or None to start a new session at once."""
        if isinstance(exc, SourceTopicsRecreated):
            return None  # a new session at once, reading those topics from their start
        if isinstance(exc, RecordRejected) and None not in (exc.topic, exc.partition, exc.offset):
            self._halting.rejected(exc)
            metrics.errors_total.labels(*self._labels, exc.kind).inc()
            return None  # a new session at once: the other partitions go on, this one is contained
        if isinstance(exc, ProducerFenced):
            # A newer producer took our transactional id (the task moved: the group revokes it here
            # soon, and it stops), or the coordinator aborted a transaction that outlived
            # transaction.timeout.ms. A new session re-initialises and reloads committed progress.
            self._backoff.floor(_FENCED_BACKOFF)
        err = as_mirror_error(exc)  # a MirrorError (fenced, refused...) is itself
        if not isinstance(exc, (MirrorError, OSError)):
            self._log.exception("unexpected error in task session", error=str(exc))
        if self._stopping.is_set():
            return None
        self.status.state = "retrying"
        self.status.last_error = str(err)
        self.status.restarts += 1
        metrics.errors_total.labels(*self._labels, err.kind).inc()
        metrics.task_restarts_total.labels(*self._labels).inc()
        return err

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
        fetched = metrics.FetchMeters(*self._labels)
        reader = Reader(self.source, f"{client}|replication-consumer", self.flow.consumer, isolation, fetched)
        txn_id = self.transactional_id if self.exactly_once else None
        produced = metrics.ProduceMeters(*self._labels)
        writer = BatchWriter(
            self.target, f"{client}|replication-producer", self.flow.producer, txn_id, produced
        )
        syncs = self._syncs.writer(client)
        self._inflight = InFlightQueue()
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
            if self._recreated:
                known = set(self._positions.topic_ids) | set(self._positions.acked)
                self._syncs.remove_partitions([tp for tp in known if tp[0] in self._recreated])
                self._positions.forget(self._recreated)
                self._recreated = set()
            self._positions.load(await self.progress.read())
            if self.exactly_once:
                self._positions.acked.clear()
            if syncs is not None:
                await syncs.start()
            self.status.state = "running"
            self.status.last_error = None
            self._positions.position = {}
            self._delivery.confirmed = {}
            self._partitions_changed.set()  # (re)assign from the acknowledged positions
            async with asyncio.TaskGroup() as tg:
                if self.exactly_once:
                    fetcher = tg.create_task(self._transaction_loop(reader, writer))
                    await self._inflight.end()  # no pipelined acks: each transaction completes in place
                else:
                    fetcher = tg.create_task(self._fetch_loop(reader, writer))
                acker = tg.create_task(self._ack_loop())
                flusher = tg.create_task(self._flush_loop())
                syncer = tg.create_task(self._syncs.loop(syncs)) if syncs is not None else None
                pauses = tg.create_task(self._gate.lag_loop(reader))
                self._stuck.session_started()
                watchdog = tg.create_task(self._stuck.loop(self._lags_that_count))
                await fetcher
                # stopping: let the acker drain what is in flight, then store the final progress
                deadline = time.monotonic() + DRAIN_TIMEOUT
                if not await self._inflight.drained(acker, DRAIN_TIMEOUT):
                    self._log.warning(
                        "in-flight batches not acknowledged in time; they will be copied again",
                        timeout_s=DRAIN_TIMEOUT,
                    )
                flusher.cancel()
                pauses.cancel()
                watchdog.cancel()
                if syncer is not None:
                    syncer.cancel()
            # (asyncio.timeout, not wait_for: on 3.11 wait_for can drop a cancellation)
            async with asyncio.timeout(max(1.0, deadline - time.monotonic())):
                await self._positions.store(self.progress)
            stored = True
            if syncs is not None:
                await self._syncs.final(syncs)
        finally:
            if not stored and self._positions.dirty and not _cancelling():
                # the session failed (say, one batch was refused): what the target did acknowledge is
                # still stored, so the next session does not copy it again
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(3.0):
                        await self._positions.store(self.progress)
            await asyncio.gather(writer.close(), reader.close(), *([syncs.close()] if syncs else []))

    async def _assign(self, reader: Reader) -> None:
        positions = await self._positions.assign(reader, self._partitions)
        gone = [tp for tp in self._metrics.partitions if tp not in positions]
        self._metrics.remove(gone)
        self._syncs.remove_partitions(gone)
        paused = self._halting.assigned(positions)
        await reader.assign(positions)
        if self.status.halted:
            reader.pause(paused)
        log.info("task assigned", flow=self.flow.name, task=self.index, partitions=len(positions))

    async def _out_of_range(self, reader: Reader, positions: dict[TP, int]) -> None:
        await self._positions.out_of_range(reader, positions, self._partitions)

    async def _fetch(self, reader: Reader) -> list[SourceBatch]:
        """The next fetched batches, after (re)assigning partitions when they changed; [] when none."""
        if self._partitions_changed.is_set():
            self._partitions_changed.clear()
            if self._stopping.is_set():
                return []
            if self._recreated:
                raise SourceTopicsRecreated(self._recreated)
            await self._gate.reload(self._partitions)
            await self._assign(reader)
            self._gate.assigned()
        # a halted partition stays paused on resume until its retry; one whose retry is under way goes on
        await self._gate.apply(reader, self._partitions, self.status.halted.keys() - self._halting.retrying)
        if not self._partitions:
            await woken(self._partitions_changed, 1.0)
            return []
        if self.status.halted and not self._partitions_changed.is_set():  # (else: assigned first)
            self._retry_halted(reader)
        try:
            limit, timeout = self._bucket.max_records(), self.flow.consumer_poll_timeout_ms
            if limit is not None or self._throttled:
                reader.limit_fetch(self._bucket.fetch_bytes())
                self._throttled = limit is not None
            batches = await (reader.fetch(timeout) if limit is None else reader.fetch(timeout, limit))
        except SourceOutOfRange as exc:
            await self._out_of_range(reader, exc.positions)
            return []
        if self._partitions_changed.is_set():
            return []  # the assignment changes: drop this fetch, positions are re-derived
        if self.status.halted:
            batches = self._halting.cut(reader, batches)
        self._metrics.fetched(reader, batches)
        with self._stuck.held():  # slow by choice, not stuck
            await self._bucket.take(sum(b.value_bytes() for b in batches), sum(b.count for b in batches))
        if self._partitions_changed.is_set():
            return []  # a reset (or a new assignment) came while the throttle held these: read them again
        return batches

    def _retry_halted(self, reader: Reader) -> None:
        """Halted partitions whose retry is due are read again from their halt record, which goes to the
        target alone (`mirror.replication.halting`). The seek happens before the next fetch: aiokafka
        drops fetched records that do not start at a partition's current position, so nothing read
        before the seek is handed out after it."""
        for tp in self._halting.due(self._partitions - self._gate.paused):  # paused: retried after resume
            rewind = self._halting.retry(tp)
            if rewind is not None:
                reader.seek({tp: rewind})
                self._positions.position[tp] = rewind
            reader.resume([tp])

    # --- the loops ---------------------------------------------------------------------------------

    async def _fetch_loop(self, reader: Reader, writer: BatchWriter) -> None:
        while not self._stopping.is_set():
            await self._inflight.room(self.max_inflight_bytes)
            batches = await self._fetch(reader)
            if not batches:
                continue
            entries = await self._delivery.send_all(writer, batches)
            await self._inflight.put(entries)
            self._metrics.record_age(entries)

    async def _transaction_loop(self, reader: Reader, writer: BatchWriter) -> None:
        """Exactly-once: each fetch becomes one transaction holding its records and their progress.

        A crash or a fenced zombie leaves an aborted transaction, which ``read_committed`` consumers of
        the target never see; the task's next owner resumes from the progress of the last commit. The
        commit is sent only once the target acknowledged every batch of the transaction: aiokafka fails
        a refused batch's future alone and would commit the rest, progress included, without it.
        """
        positions = self._positions
        while not self._stopping.is_set():
            batches = await self._fetch(reader)
            # a start resolved with auto.offset.reset=latest is committed even when nothing is copied (a
            # halted partition): a restart must not move that start again, past the halted record
            initial = {tp: o for tp, o in positions.initial_unstored.items() if tp in self._partitions}
            if not batches and not initial:
                continue
            progress = {**initial, **{(b.topic, b.partition): b.last_offset for b in batches}}
            await writer.begin_transaction()
            try:
                entries = await self._delivery.send_all(writer, batches)
                stored = await self.progress.send_with(writer, progress, positions.topic_ids)
                for entry in entries:
                    await self._delivery.acks_of(entry)
                for fut in stored:
                    await fut.ack()
                await writer.commit_transaction()
            except BaseException:
                await writer.abort_transaction()
                raise
            positions.loaded.update(progress)
            for tp in initial:
                positions.initial_unstored.pop(tp, None)
            self._metrics.record_age(entries)
            for entry in entries:
                await self._delivery.complete(entry)
                self._stuck.moved(entry.tp)

    def _lags_that_count(self) -> dict[TP, int]:
        """Lag of the partitions that should move: not paused by an operator, not halted."""
        skip = self._gate.paused | set(self.status.halted)
        return {tp: lag for tp, lag in self.lag().items() if tp not in skip}

    async def _ack_loop(self) -> None:
        while True:
            entry = await self._inflight.first()
            if entry is None:
                return
            await self._delivery.complete(entry)
            self._stuck.moved(entry.tp)
            if entry.resets == self._positions.resets.get(entry.tp, 0):  # else: sent before a reset
                self._positions.dirty.add(entry.tp)
            await self._inflight.done(entry)

    async def _flush_loop(self) -> None:
        interval = self.flow.offset_flush_interval_ms / 1000
        while True:
            await asyncio.sleep(interval)
            await self._positions.store(self.progress)
            self._syncs.tick()
            self._metrics.update_lag(self._partitions)
