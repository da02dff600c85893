"""Replication progress in Kafka: ``mm2-offsets.<source>.internal`` on the target, Connect's JSON format.

One record per source partition: key ``["MirrorSourceConnector",{"cluster":"A","partition":0,"topic":"t"}]``,
value ``{"offset": N}`` where N is the last source offset whose copy the target acknowledged. A task resumes
at N+1. The same bytes as Java MirrorMaker 2, so either can take over from the other without re-copying.
"""

from __future__ import annotations

from collections.abc import Mapping

import structlog

from mirror.config import ClusterSettings, FlowSettings
from mirror.kafka import Admin, Pending, Writer, read_compacted
from mirror.mm2 import records
from mirror.replication.topology import progress_topic
from mirror.types import TP

log = structlog.get_logger(__name__)


class ProgressStore:
    """Reads a flow's stored progress (each task keeps what its session read), writes new progress."""

    def __init__(self, flow: FlowSettings, target: ClusterSettings) -> None:
        self.flow = flow
        self.target = target
        self.topic = progress_topic(flow)
        self._writer: Writer | None = None
        self._partitions = flow.offset_storage_partitions

    async def ensure_topic(self, admin: Admin) -> None:
        await admin.ensure_topic(
            self.topic,
            self.flow.offset_storage_partitions,
            self.flow.offset_storage_replication_factor,
            {"cleanup.policy": "compact"},
        )
        # An existing topic (e.g. created by Java MirrorMaker 2) keeps its own partition count.
        self._partitions = (await admin.list_topics()).get(self.topic, self._partitions)

    async def load(self) -> dict[TP, int]:
        """Read the flow's stored progress: the last copied offset per source partition (a fresh dict,
        the caller's own: tasks of one flow load at different times)."""
        state = await read_compacted(self.target, self.topic, client_id=f"{self.flow.name}|progress-reader")
        stored: dict[TP, int] = {}
        for key, value in state.items():
            parsed = records.decode_source_offset_key(key)
            if parsed is None:
                continue
            _connector, cluster, topic, partition = parsed
            offset = records.decode_source_offset(value)
            if cluster == self.flow.source and offset is not None and offset >= 0:
                stored[(topic, partition)] = offset
        log.info("progress loaded", flow=self.flow.name, topic=self.topic, partitions=len(stored))
        return stored

    async def start(self) -> None:
        self._writer = Writer(
            self.target,
            client_id=f"{self.flow.name}|progress-producer",
            overrides={"linger.ms": "5"},
        )
        await self._writer.start()

    async def close(self) -> None:
        if self._writer is not None:
            await self._writer.close()
            self._writer = None

    async def store(self, last_offsets: Mapping[TP, int]) -> None:
        """Write the last acknowledged source offset of each partition; returns once the target has it."""
        if not last_offsets:
            return
        assert self._writer is not None, "ProgressStore.start() first"
        futures = await self.send_with(self._writer, last_offsets)
        await self._writer.flush()
        for fut in futures:
            await fut.ack()

    async def send_with(self, writer: Writer, last_offsets: Mapping[TP, int]) -> list[Pending]:
        """Queue progress records on ``writer`` (in exactly-once mode: the task's transactional producer,
        so records and their progress commit together); returns their acknowledgements to come."""
        futures = []
        for (topic, partition), offset in last_offsets.items():
            key = records.source_offset_key(self.flow.source, topic, partition)
            target_partition = records.java_default_partition(key, self._partitions)
            value = records.encode_source_offset(offset)
            futures.append(await writer.send(self.topic, key, value, partition=target_partition))
        return futures
