"""Worker membership through Kafka's own group coordinator (DESIGN.md §5: tasks as partitions).

Every worker joins one consumer group on a target cluster, subscribed to the tasks topics of the flows
that write to that cluster (``mm2-tasks.<source>.internal``, one partition per task). The group
coordinator gives membership, failure detection and rebalancing; the partitions assigned to a worker
are the tasks it runs. The consumer never reads data: it polls only so the group sees it alive.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence

import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition

from mirror.config import ClusterSettings
from mirror.kafka import client_kwargs, closed, translated

log = structlog.get_logger(__name__)

TaskRef = tuple[str, int]  # (tasks topic, task index)
Handler = Callable[[set[TaskRef]], Awaitable[None]]


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, on_assigned: Handler, on_revoked: Handler) -> None:
        self._on_assigned = on_assigned
        self._on_revoked = on_revoked

    async def on_partitions_revoked(self, revoked: Sequence[TopicPartition]) -> None:
        await self._call(self._on_revoked, revoked, "revoked")

    async def on_partitions_assigned(self, assigned: Sequence[TopicPartition]) -> None:
        await self._call(self._on_assigned, assigned, "assigned")

    @staticmethod
    async def _call(handler: Handler, tps: Sequence[TopicPartition], what: str) -> None:
        # aiokafka logs and swallows listener errors; log ours with context instead.
        try:
            await handler({(tp.topic, tp.partition) for tp in tps})
        except Exception:
            log.exception("task rebalance handler failed", event=what)


class GroupMembership:
    def __init__(
        self,
        cluster: ClusterSettings,
        group_id: str,
        topics: Sequence[str],
        *,
        on_assigned: Handler,
        on_revoked: Handler,
        client_id: str,
        session_timeout_ms: int = 10_000,
    ) -> None:
        kwargs = client_kwargs(cluster, "consumer", client_id=client_id)
        self._consumer = AIOKafkaConsumer(
            **kwargs,
            group_id=group_id,
            enable_auto_commit=False,
            auto_offset_reset="latest",
            session_timeout_ms=session_timeout_ms,
            heartbeat_interval_ms=max(500, session_timeout_ms // 5),
            rebalance_timeout_ms=60_000,
            max_poll_interval_ms=300_000,
            # New tasks topics (and tasks.max growth) must show up quickly: a subscription only
            # rebalances when metadata shows the change.
            metadata_max_age_ms=5_000,
        )
        self._topics = list(topics)
        self._listener = _Listener(on_assigned, on_revoked)

    @property
    def member_id(self) -> str | None:
        """This worker's id in the group, as the coordinator last assigned it (None before joining)."""
        member: str | None = getattr(self._consumer._coordinator, "member_id", None)
        return member or None

    async def run(self, stopping: asyncio.Event, before_leaving: Callable[[], Awaitable[None]]) -> None:
        """Stay in the group until ``stopping`` is set, then leave it (the others rebalance at once)."""
        try:
            async with translated():
                await self._consumer.start()
                await self._consumer._client.force_metadata_update()
            self._consumer.subscribe(topics=self._topics, listener=self._listener)
            while not stopping.is_set():
                # getmany's own timeout does not hold while a rebalance waits for a coordinator that
                # cannot be reached: bound it here, or a stop would wait for the cluster to come back
                async with translated():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._consumer.getmany(timeout_ms=500), 1.0)
            await before_leaving()
        finally:
            await closed(self._consumer.stop(), 5)
