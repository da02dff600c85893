"""Worker membership through Kafka's own group coordinator (tasks as partitions; docs/guarantees.md).

Every worker joins one consumer group on a target cluster, subscribed to the tasks topics of the flows
that write to that cluster (``mm2-tasks.<source>.internal``, one partition per task). The group
coordinator gives membership, failure detection and rebalancing; the partitions assigned to a worker
are the tasks it runs. The consumer never reads data: it polls only so the group sees it alive.

The task count of a flow is the partition count of its tasks topic *as the group's leader saw it when it
computed the assignment*, capped by the leader's ``tasks.max`` (the tasks topic never shrinks: a lower
``tasks.max`` leaves its surplus partitions unassigned, those tasks idle). The leader writes the count into
every member's assignment (user data), so all members of one generation split source partitions over the
same number of tasks, even while their own metadata disagree about a tasks topic that just grew.
Rebalances are eager (every task is stopped before a new generation starts), so two generations'
mappings never run side by side in the group.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment

from mirror.config import ClusterSettings
from mirror.kafka import _internals
from mirror.kafka.client_args import client_kwargs
from mirror.kafka.closing import close_within
from mirror.kafka.errors import errors_translated

log = structlog.get_logger(__name__)

TaskRef = tuple[str, int]  # (tasks topic, task index)
#: Called with the tasks assigned to this worker and, per tasks topic, the generation's task count
#: (empty when the leader did not say).
AssignedHandler = Callable[[set[TaskRef], dict[str, int]], Awaitable[None]]
RevokedHandler = Callable[[set[TaskRef]], Awaitable[None]]


class _Capped:
    """The cluster metadata the assignor sees: a tasks topic's partitions up to its task limit only."""

    def __init__(self, cluster: Any, limits: Mapping[str, int]) -> None:
        self._cluster = cluster
        self._limits = limits

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        partitions: set[int] | None = self._cluster.partitions_for_topic(topic)
        limit = self._limits.get(topic)
        if partitions is None or limit is None:
            return partitions
        return {p for p in partitions if p < limit}


class TaskAssignor(RoundRobinPartitionAssignor):  # type: ignore[misc]
    """Round-robin over the tasks topics' partitions below each flow's task limit (``tasks.max``), plus
    the task counts the leader used."""

    name = "mirror-tasks"

    def __init__(self, limits: Mapping[str, int] | None = None) -> None:
        self.limits = dict(limits or {})
        self.task_counts: dict[str, int] = {}

    def assign(self, cluster: Any, members: Mapping[str, Any]) -> dict[str, Any]:
        capped = _Capped(cluster, self.limits)
        assignments: dict[str, Any] = super().assign(capped, members)
        topics = sorted({t for meta in members.values() for t in meta.subscription})
        counts = {t: len(capped.partitions_for_topic(t) or ()) for t in topics}
        user_data = json.dumps(counts, sort_keys=True).encode()
        return {
            member: ConsumerProtocolMemberAssignment(a.version, a.assignment, user_data)
            for member, a in assignments.items()
        }

    def on_assignment(self, assignment: Any) -> None:
        self.task_counts = decode_task_counts(assignment.user_data)


def decode_task_counts(user_data: bytes | None) -> dict[str, int]:
    """The leader's task counts from an assignment's user data ({} when absent or unreadable)."""
    try:
        counts = json.loads(user_data or b"{}")
    except ValueError:
        return {}
    if not isinstance(counts, dict):
        return {}
    return {str(t): int(n) for t, n in counts.items() if isinstance(n, int) and n > 0}


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, assignor: TaskAssignor, on_assigned: AssignedHandler, on_revoked: RevokedHandler):
        self._assignor = assignor
        self._on_assigned = on_assigned
        self._on_revoked = on_revoked

    async def on_partitions_revoked(self, revoked: Sequence[TopicPartition]) -> None:
        # a generation ends: its task counts must not outlive it (a next one under plain round-robin,
        # whose assignor says nothing, would otherwise reuse them)
        self._assignor.task_counts = {}
        await self._call("revoked", self._on_revoked(_refs(revoked)))

    async def on_partitions_assigned(self, assigned: Sequence[TopicPartition]) -> None:
        await self._call("assigned", self._on_assigned(_refs(assigned), dict(self._assignor.task_counts)))

    @staticmethod
    async def _call(what: str, handler: Awaitable[None]) -> None:
        # aiokafka logs and swallows listener errors; log ours with context instead.
        try:
            await handler
        except Exception:
            log.exception("task rebalance handler failed", event=what)


def _refs(tps: Sequence[TopicPartition]) -> set[TaskRef]:
    return {(tp.topic, tp.partition) for tp in tps}


class GroupMembership:
    """Membership in the workers' group; `run` may be called again after it failed (a new consumer)."""

    def __init__(
        self,
        cluster: ClusterSettings,
        group_id: str,
        topics: Sequence[str],
        *,
        on_assigned: AssignedHandler,
        on_revoked: RevokedHandler,
        client_id: str,
        task_limits: Mapping[str, int] | None = None,
        session_timeout_ms: int = 10_000,
    ) -> None:
        self._cluster = cluster
        self._task_limits = dict(task_limits or {})
        self._group_id = group_id
        self._client_id = client_id
        self._session_timeout_ms = session_timeout_ms
        self._topics = list(topics)
        self._on_assigned = on_assigned
        self._on_revoked = on_revoked
        self._consumer: AIOKafkaConsumer | None = None

    def _new_consumer(self, assignor: TaskAssignor) -> AIOKafkaConsumer:
        kwargs = client_kwargs(self._cluster, "consumer", client_id=self._client_id)
        # The cluster's own consumer overrides may tune failure detection (session.timeout.ms,
        # heartbeat.interval.ms); what makes this consumer a membership, not a reader, is fixed here.
        session = int(kwargs.pop("session_timeout_ms", self._session_timeout_ms))
        kwargs.setdefault("heartbeat_interval_ms", max(500, session // 5))
        kwargs.update(
            group_id=self._group_id,
            enable_auto_commit=False,
            auto_offset_reset="latest",
            session_timeout_ms=session,
            rebalance_timeout_ms=60_000,
            max_poll_interval_ms=300_000,
            # New tasks topics (and tasks.max growth) must show up quickly: a subscription only
            # rebalances when metadata shows the change.
            metadata_max_age_ms=5_000,
            # the leader tells every member the task counts it assigned with. Only this protocol: with
            # plain round-robin listed too (for groups still holding older workers), two members joining
            # at once were seen to take turns in the group forever. An older worker therefore cannot
            # share the group: a newer one retries joining until the older ones have left.
            partition_assignment_strategy=(assignor,),
        )
        return AIOKafkaConsumer(**kwargs)

    @property
    def member_id(self) -> str | None:
        """This worker's id in the group, as the coordinator last assigned it (None before joining)."""
        if self._consumer is None:
            return None
        return _internals.group_member_id(self._consumer)

    async def run(self, stopping: asyncio.Event, before_leaving: Callable[[], Awaitable[None]]) -> None:
        """Stay in the group until ``stopping`` is set, then leave it (the others rebalance at once).

        Each call uses a new consumer: an aiokafka consumer cannot be started again once stopped."""
        assignor = TaskAssignor(self._task_limits)
        consumer = self._consumer = self._new_consumer(assignor)
        try:
            async with errors_translated():
                await consumer.start()
                await _internals.kafka_client(consumer).force_metadata_update()
            consumer.subscribe(
                topics=self._topics, listener=_Listener(assignor, self._on_assigned, self._on_revoked)
            )
            while not stopping.is_set():
                # getmany's own timeout does not hold while a rebalance waits for a coordinator that
                # cannot be reached: bound it here, or a stop would wait for the cluster to come back
                async with errors_translated():
                    with contextlib.suppress(TimeoutError):  # (not wait_for: it can drop a cancellation)
                        async with asyncio.timeout(1.0):
                            await consumer.getmany(timeout_ms=500)
            await before_leaving()
        finally:
            await close_within(consumer.stop(), 5)
