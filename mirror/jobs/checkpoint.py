"""The checkpoint job of a flow: consumer-group offsets of the source, translated for the target.

Java MM2's MirrorCheckpointConnector + MirrorCheckpointTask (docs/mm2-compat.md §5) in one job:

1. create ``<source>.checkpoints.internal`` on the target (compacted, one partition);
2. load the latest checkpoint per (group, partition) from it (the CheckpointStore), so checkpoints stay
   monotonic across restarts;
3. read the offset-syncs topic from its beginning into a `SyncHistory` (Java's `OffsetSyncStore` plus
   the syncs precise translation needs, docs/mm2-compat.md §5.1), and keep tailing it; nothing is
   translated before that first read reached the end. The known groups' committed offsets are pinned in
   it, so the syncs around them are kept whatever its memory cap;
4. discover the source's consumer groups (``groups``/``groups.exclude``; only groups with a committed
   offset on a topic that passes the topic filter), again every ``refresh.groups.interval.seconds``;
5. every ``emit.checkpoints.interval.seconds``, translate each group's committed offsets and write the
   checkpoints that move forward (`checkpoint_is_more_recent`); a group whose every partition translated
   is *current* (``mirror_checkpoint_timestamp_seconds``);
6. with ``sync.group.offsets.enabled``, every ``sync.group.offsets.interval.seconds`` write the latest
   checkpoints into target groups that are empty or absent there: never into a group with active members,
   never moving a partition backwards.

Errors never stop the job: a failed round is logged, kept in ``last_error`` and retried next interval;
a failed session (e.g. the offset-syncs reader) restarts with backoff (`mirror.retry`). Checkpoint records
are written by `mirror.jobs.checkpoint_records`, group offsets (step 6) by `mirror.jobs.group_sync`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from mirror import metrics
from mirror.config import ClusterSettings, FlowSettings
from mirror.errors import MirrorError
from mirror.jobs.checkpoint_records import CheckpointRecords
from mirror.jobs.group_sync import GroupOffsetSync, bounded, plan_group_sync
from mirror.kafka import Admin, Writer, as_mirror_error
from mirror.kafka.groups import CommittedOffset, Groups, PartitionTail, TailRecord, read_partition
from mirror.mm2.filters import GroupFilter, TopicFilter
from mirror.mm2.offset_translation import OffsetSyncStore, checkpoint_is_more_recent
from mirror.mm2.policy import ReplicationPolicy, checkpoint_topic_name
from mirror.mm2.records import Checkpoint, OffsetSync, RecordFormatError
from mirror.mm2.sync_history import WRITER_HEADER, SyncHistory
from mirror.replication import malformed
from mirror.replication.malformed import MalformedRecord
from mirror.replication.topology import checkpoints_topic, offset_syncs_location
from mirror.retry import Backoff, pause, retrying
from mirror.types import TP

__all__ = [
    "CheckpointJob",
    "CheckpointStore",
    "Translated",
    "apply_offset_syncs",
    "eligible",
    "offset_syncs_location",
    "pin_groups",
    "plan_group_sync",
    "reread_bound",
    "translate_group",
]

log = structlog.get_logger(__name__)


_BACKOFF_MIN, _BACKOFF_MAX = 1.0, 30.0
#: What replaces an unreadable offset sync (docs/guarantees.md, "Unreadable records in internal topics").
SYNC_FALLBACK = "offsets are translated with the readable syncs around it"
_POLL_MS = 500
_STOP_GRACE = 5.0
_PIN_WAIT = 10.0  # seconds the first read of the offset syncs waits for the groups to pin


# --- pure logic ----------------------------------------------------------------------------------------


class CheckpointStore:
    """The latest checkpoint per group and target partition (Java `CheckpointStore`)."""

    def __init__(self) -> None:
        self._checkpoints: dict[str, dict[TP, Checkpoint]] = {}

    def load(self, records: Iterable[TailRecord], cluster: str = "", topic: str = "") -> int:
        """Apply the records of the checkpoints topic in order; returns how many could not be read (each
        reported and passed over: the group's partition keeps its last readable checkpoint)."""
        bad: list[MalformedRecord] = []
        for found in malformed.decoded(
            records,
            malformed.checkpoint,
            cluster=cluster,
            topic=topic,
            fallback="the group's partition keeps its last readable checkpoint",
            errors=bad,
        ):
            self._checkpoints.setdefault(found.group, {})[found.topic_partition] = found
        return len(bad)

    async def start(self, cluster: ClusterSettings, topic: str, client: str, log: Any) -> bool:
        """Load ``topic`` (Java `CheckpointStore.start`): a failed load is not fatal (False); the offset
        syncs are then read keeping only the newest during their initial load."""
        try:
            records = await read_partition(cluster, topic, client)
        except MirrorError as exc:
            log.warning("cannot load existing checkpoints", topic=topic, error=str(exc))
            return False
        self.load(records or [], cluster.alias, topic)
        log.info("checkpoints loaded", topic=topic, groups=len(self.groups()))
        return True

    def get(self, group: str, tp: TP) -> Checkpoint | None:
        return self._checkpoints.get(group, {}).get(tp)

    def update(self, checkpoint: Checkpoint) -> None:
        self._checkpoints.setdefault(checkpoint.group, {})[checkpoint.topic_partition] = checkpoint

    def groups(self) -> list[str]:
        return list(self._checkpoints)

    def checkpoints(self, group: str) -> dict[TP, Checkpoint]:
        return dict(self._checkpoints.get(group, {}))


@dataclass(frozen=True, slots=True)
class Translated:
    """A checkpoint and its re-read bound (see `reread_bound`)."""

    checkpoint: Checkpoint
    reread_bound: int


def reread_bound(sync: OffsetSync, upstream_offset: int) -> int:
    """Java's rule's bound: records a consumer failing over at the translated offset may see twice: 0 when
    the group sits on the sync (translated exactly), else the group's upstream offset minus the sync's
    (translated to the record after the sync, so the records between the sync and the group are read
    again). Precise translation reports its own (`mirror.mm2.sync_history.Translation`)."""
    return max(upstream_offset - sync.upstream_offset, 0)


def translate_group(
    syncs: SyncHistory | OffsetSyncStore,
    group: str,
    offsets: Mapping[TP, CommittedOffset],
    *,
    policy: ReplicationPolicy,
    source_alias: str,
    target_alias: str,
    topic_filter: TopicFilter,
) -> list[Translated]:
    """Checkpoints for a group's committed offsets (Java `MirrorCheckpointTask.checkpointsForGroup`).

    Partitions whose topic fails the filter, that have no sync, or whose offset is older than every sync
    kept give none. A `SyncHistory` translates precisely where its syncs allow it (docs/mm2-compat.md
    §5.1); a bare `OffsetSyncStore` translates as Java does, with `reread_bound`.
    """
    out: list[Translated] = []
    for tp, committed in offsets.items():
        upstream = committed.offset
        if not eligible(tp, committed, topic_filter):
            continue
        if isinstance(syncs, SyncHistory):
            translated = syncs.translate(tp, upstream)
            if translated is None or translated.offset < 0:
                continue
            downstream, bound = translated.offset, translated.reread_bound
        else:
            java = syncs.translate_downstream(group, tp, upstream)
            sync = syncs.lookup(tp, upstream)
            if java is None or java < 0 or sync is None:
                continue
            downstream, bound = java, reread_bound(sync, upstream)
        topic = checkpoint_topic_name(policy, source_alias, target_alias, tp[0])
        checkpoint = Checkpoint(group, topic, tp[1], upstream, downstream, committed.metadata)
        out.append(Translated(checkpoint, bound))
    return out


def eligible(tp: TP, committed: CommittedOffset, topic_filter: TopicFilter) -> bool:
    """A committed offset that gets a checkpoint when it can be translated."""
    return committed.offset >= 0 and topic_filter.matches(tp[0])


def pin_groups(syncs: SyncHistory, offsets: Iterable[Mapping[TP, CommittedOffset]]) -> None:
    """Pin every group's committed offsets in the history (replacing the pins before)."""
    pins: dict[TP, list[int]] = {}
    for group_offsets in offsets:
        for tp, committed in group_offsets.items():
            if committed.offset >= 0:
                pins.setdefault(tp, []).append(committed.offset)
    syncs.unpin_all()
    for tp, values in pins.items():
        syncs.pin(tp, values)


def apply_offset_syncs(
    syncs: SyncHistory,
    records: Sequence[TailRecord],
    previous: int = -1,
    cluster: str = "",
    topic: str = "",
) -> tuple[int, int]:
    """Apply the records of the offset-syncs topic in order, after the record at offset `previous` (-1:
    none yet); a jump in the records' offsets (compaction removed some) is a `SyncHistory.gap`, and so is
    a record that cannot be read (reported and passed over: translation uses the readable syncs around
    it, trusting no link across it). Returns how many could not be read and the offset of the last one."""
    bad = 0
    for record in records:
        if previous >= 0 and record.offset != previous + 1:
            syncs.gap()
        previous = record.offset
        if record.key is None or record.value is None:
            continue
        try:
            sync = malformed.offset_sync(record.key, record.value)
        except RecordFormatError as exc:
            bad += 1
            malformed.report(cluster, MalformedRecord(topic, 0, record.offset, str(exc)), SYNC_FALLBACK)
            syncs.gap()
            continue
        syncs.update(sync, record.header(WRITER_HEADER))
    return bad, previous


# --- the job -------------------------------------------------------------------------------------------


class CheckpointJob:
    """Emits checkpoints (and optionally syncs idle target groups) for one flow until `stop()`."""

    def __init__(  # noqa: PLR0917 (the job's agreed constructor)
        self,
        flow: FlowSettings,
        source: ClusterSettings,
        target: ClusterSettings,
        source_admin: Admin,
        target_admin: Admin,
        policy: ReplicationPolicy,
    ) -> None:
        self.flow = flow
        self.source = source
        self.target = target
        self.policy = policy
        self.source_groups = Groups(source_admin)
        self.target_groups = Groups(target_admin)
        self.target_admin = target_admin
        self.topic = checkpoints_topic(flow, policy)
        location, self.offset_syncs_topic = offset_syncs_location(flow, policy)
        self._syncs_cluster = source if location == flow.source else target
        self.group_filter = GroupFilter(flow.groups, flow.groups_exclude)
        self.topic_filter = TopicFilter(flow.topics, flow.topics_exclude)
        self.last_error: str | None = None
        self.groups = 0
        self.ready = False  # the offset syncs were read to the end: checkpoints can be emitted
        self._group_ids: list[str] = []
        self._groups_loaded = asyncio.Event()
        self._syncs_read = asyncio.Event()
        self._stopping = asyncio.Event()
        self._labels = (flow.source, flow.target)
        self._log = log.bind(flow=flow.name, job="checkpoint")
        self._records = CheckpointRecords(self.topic, self._labels, self._log)
        self._group_sync = GroupOffsetSync(self._labels, self._log, self._note_error)
        self._client_id = f"{flow.source}->{flow.target}|MirrorCheckpointConnector"
        self._syncs: SyncHistory | None = None  # the session's, once it reads the offset syncs

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        """Run sessions until stopped; a failed session is retried with backoff."""
        if not self.flow.emit_checkpoints_enabled:
            return
        await retrying(
            "checkpoint job",
            self._guarded_session,
            stopping=self._stopping,
            backoff=Backoff(_BACKOFF_MIN, _BACKOFF_MAX),
            log=self._log,
            retry_on=(MirrorError, ExceptionGroup),
            on_error=self._session_failed,
            every=0,  # a session ends without an error only when stopping
        )

    async def _guarded_session(self) -> None:
        async with asyncio.TaskGroup() as tg:
            session = tg.create_task(self._session())
            tg.create_task(self._cancel_on_stop(session))

    def _session_failed(self, exc: Exception) -> MirrorError:
        """Count every error of a failed session; the last one is reported. Anything else is a bug: raised."""
        errors = _leaves(exc)
        if not all(isinstance(e, MirrorError) for e in errors):
            raise exc
        failed = [as_mirror_error(e) for e in errors]
        for err in failed:
            self._failed(err)
        return failed[-1]

    async def _cancel_on_stop(self, session: asyncio.Task[None]) -> None:
        """On stop, the loops finish their round and return; a session still starting up (creating the
        topic, loading checkpoints) or stuck in a request is cancelled after a short grace."""
        await self._stopping.wait()
        await asyncio.wait({session}, timeout=_STOP_GRACE)
        session.cancel()

    def _failed(self, err: MirrorError) -> None:
        self.last_error = str(err)
        metrics.errors_total.labels(*self._labels, err.kind).inc()

    async def _sleep(self, seconds: float) -> bool:
        """Wait `seconds` or until stopped; True when stopping."""
        return await pause(self._stopping, seconds)

    async def _until(self, event: asyncio.Event) -> bool:
        """Wait for `event` or stop; True when the event is set."""
        while not event.is_set():
            if await self._sleep(0.2):
                return False
        return True

    # --- one session -----------------------------------------------------------------------------

    async def _session(self) -> None:
        self.ready = False
        self._syncs_read.clear()
        await self.target_admin.ensure_topic(
            self.topic, 1, self.flow.checkpoints_topic_replication_factor, {"cleanup.policy": "compact"}
        )
        store = CheckpointStore()
        client = f"{self._client_id}|checkpoints-target-consumer"
        loaded = await store.start(self.target, self.topic, client, self._log)
        syncs = SyncHistory(initialization_must_read_to_end=not loaded)
        writer = Writer(self.target, f"{self._client_id}|checkpoints-target-producer", {})
        role = f"offset-syncs-{self.flow.offset_syncs_topic_location}-consumer"
        tail = PartitionTail(self._syncs_cluster, self.offset_syncs_topic, f"{self._client_id}|{role}")
        try:
            await writer.start()
            await tail.start()
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._read_syncs(tail, syncs))
                tg.create_task(self._groups_loop())
                tg.create_task(self._emit_loop(writer, syncs, store))
                if self.flow.sync_group_offsets_enabled:
                    tg.create_task(self._sync_loop(store))
        finally:
            await asyncio.gather(tail.close(), writer.close())

    async def _read_syncs(self, tail: PartitionTail, syncs: SyncHistory) -> None:
        """Read the offset syncs to the end (then translation may start) and keep tailing. The first read
        waits a little for the groups, whose offsets are pinned so the syncs around them are kept."""
        self._syncs = syncs
        with contextlib.suppress(TimeoutError):  # not wait_for: it can drop a cancellation (3.11)
            async with asyncio.timeout(_PIN_WAIT):
                await self._until(self._groups_loaded)
        where = (self._syncs_cluster.alias, self.offset_syncs_topic)
        _, last = apply_offset_syncs(syncs, await tail.read_to_end(), -1, *where)
        syncs.mark_read_to_end()
        self.ready = True
        self._syncs_read.set()
        if not tail.exists:
            self._log.info("offset-syncs topic does not exist yet", topic=self.offset_syncs_topic)
        while not self._stopping.is_set():
            _, last = apply_offset_syncs(syncs, await tail.poll(_POLL_MS), last, *where)

    # --- groups ----------------------------------------------------------------------------------

    async def _groups_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.refresh_groups()
            except MirrorError as exc:
                self._failed(exc)
                self._log.warning("group discovery failed, retrying", error=str(exc))
                if await self._sleep(_BACKOFF_MAX if self._groups_loaded.is_set() else _BACKOFF_MIN):
                    return
                continue
            if not self.flow.refresh_groups_enabled:
                await self._stopping.wait()
                return
            if await self._sleep(self.flow.refresh_groups_interval_seconds):
                return

    async def refresh_groups(self) -> list[str]:
        """List the source's consumer groups, keep those the group filter accepts and that have a committed
        offset on a topic the topic filter accepts (Java `MirrorCheckpointConnector.findConsumerGroups`)."""
        listed = [g for g in await self.source_groups.list_consumer_groups() if self.group_filter.matches(g)]
        offsets = await bounded(listed, self.source_groups.fetch_offsets)
        found = []
        pinned = []
        for group, result in zip(listed, offsets, strict=True):
            if isinstance(result, MirrorError):
                self._log.warning("cannot read offsets of group", group=group, error=str(result))
            elif any(self.topic_filter.matches(topic) for topic, _ in result.offsets):
                found.append(group)
                pinned.append(result.offsets)
        if self._syncs is not None:
            pin_groups(self._syncs, pinned)
        if found != self._group_ids:
            self._log.info("consumer groups to checkpoint", groups=len(found))
        gone = set(self._group_ids) - set(found)
        self._group_ids = found
        self.groups = len(found)
        metrics.checkpoint_groups.labels(*self._labels).set(len(found))
        self._records.forget(gone)
        self._groups_loaded.set()
        return found

    # --- checkpoints -----------------------------------------------------------------------------

    async def _emit_loop(self, writer: Writer, syncs: SyncHistory, store: CheckpointStore) -> None:
        if not await self._until(self._syncs_read) or not await self._until(self._groups_loaded):
            return
        while not self._stopping.is_set():
            try:
                await self.emit_checkpoints(writer, syncs, store)
            except MirrorError as exc:
                self._failed(exc)
                self._log.warning("checkpoint round failed, retrying next interval", error=str(exc))
            if await self._sleep(self.flow.emit_checkpoints_interval_seconds):
                return

    async def emit_checkpoints(self, writer: Writer, syncs: SyncHistory, store: CheckpointStore) -> int:
        """One round: translate every group's offsets and write the checkpoints that move forward."""
        groups = list(self._group_ids)
        results = await bounded(groups, self.source_groups.fetch_offsets)
        pin_groups(syncs, [r.offsets for r in results if not isinstance(r, MirrorError)])
        new: list[Translated] = []
        failed: list[str] = []
        current: list[str] = []
        for group, result in zip(groups, results, strict=True):
            if isinstance(result, MirrorError):
                failed.append(group)
                self.last_error = str(result)
                continue
            translated = translate_group(
                syncs,
                group,
                result.offsets,
                policy=self.policy,
                source_alias=self.flow.source,
                target_alias=self.flow.target,
                topic_filter=self.topic_filter,
            )
            new += [
                item
                for item in translated
                if checkpoint_is_more_recent(
                    store.get(group, item.checkpoint.topic_partition), item.checkpoint
                )
            ]
            if len(translated) == sum(eligible(tp, c, self.topic_filter) for tp, c in result.offsets.items()):
                current.append(group)  # every partition has a checkpoint for its committed offset
        if failed:
            self._log.warning("cannot read offsets of some groups", groups=failed[:10], count=len(failed))
        written = await self._records.write(writer, new, store)
        self._records.current(current)
        if not failed:
            self.last_error = None
        return written

    # --- group offset sync -----------------------------------------------------------------------

    async def _sync_loop(self, store: CheckpointStore) -> None:
        if not await self._until(self._syncs_read):
            return
        while not await self._sleep(self.flow.sync_group_offsets_interval_seconds):
            try:
                await self.sync_group_offsets(store)
            except MirrorError as exc:
                self._failed(exc)
                self._log.warning("group offset sync failed, retrying next interval", error=str(exc))

    async def sync_group_offsets(self, store: CheckpointStore) -> dict[str, str]:
        """Write the latest checkpoints into target groups that are idle (empty) or absent there.

        Returns what happened per group: "synced", "up-to-date", "active" (left alone) or an error.
        """
        groups = [g for g in store.groups() if self.group_filter.matches(g)]
        return await self._group_sync.sync(self.target_groups, groups, store.checkpoints)

    @property
    def checkpoints_emitted(self) -> int:
        return self._records.emitted

    @property
    def group_offsets_synced(self) -> int:
        return self._group_sync.synced

    def _note_error(self, text: str) -> None:
        self.last_error = text


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]
