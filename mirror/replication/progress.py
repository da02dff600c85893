"""Replication progress in Kafka: ``mm2-offsets.<source>.internal`` on the target, Connect's JSON format.

One record per source partition: key ``["MirrorSourceConnector",{"cluster":"A","partition":0,"topic":"t"}]``,
value ``{"offset":N,"topicId":"..."}`` where N is the last source offset whose copy the target acknowledged
and ``topicId`` the id of the source topic it was read from. A task resumes at N+1. The same bytes as Java
MirrorMaker 2 but for ``topicId``, which Java ignores (docs/mm2-compat.md §1.5), so either can take over
from the other without re-copying. Progress naming an earlier topic id than the topic has now belongs to
a topic since deleted and created again: `mirror.replication.positions` does not apply it, the new topic
is copied from its start (docs/guarantees.md, "Topics deleted and re-created"). Progress that cannot be
read is reported and passed over (`mirror.replication.malformed`): the partition resumes from its last
readable progress, else from the log start.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import structlog

from mirror.config import ClusterSettings, FlowSettings
from mirror.errors import MalformedRecord
from mirror.kafka import Admin, CompactedRecord, Pending, Writer, read_compacted
from mirror.kafka.writer import BatchWriter
from mirror.mm2 import records
from mirror.replication import malformed
from mirror.replication.topology import progress_topic
from mirror.types import TP

log = structlog.get_logger(__name__)

#: Called when stored progress names an earlier id of a topic: (topic, stored id, current id).
EarlierTopic = Callable[[str, str, str], None]


@dataclass
class StoredProgress:
    """A flow's stored progress as one read found it."""

    offsets: dict[TP, int] = field(default_factory=dict)  # the last copied offset per source partition
    topic_ids: dict[TP, str | None] = field(default_factory=dict)  # the topic id stored with each offset
    #: partitions whose last progress record cannot be read, with no readable one before it: read from
    #: the log start (duplicates, never a gap)
    unreadable: set[TP] = field(default_factory=set)


class ProgressStore:
    """Reads a flow's stored progress (each task keeps what its session read), writes new progress."""

    def __init__(self, flow: FlowSettings, target: ClusterSettings) -> None:
        self.flow = flow
        self.target = target
        self.topic = progress_topic(flow)
        self._writer: Writer | None = None
        self._partitions = flow.offset_storage_partitions
        #: told when stored progress belongs to an earlier topic of the same name (the flow reports it)
        self.on_earlier_topic: EarlierTopic | None = None

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
        """The last copied offset per source partition, as stored now (`read` tells more)."""
        return (await self.read()).offsets

    async def read(self) -> StoredProgress:
        """Read the flow's stored progress, with the topic id of each offset and the partitions whose
        progress cannot be read (a fresh value, the caller's own: tasks of one flow read at different
        times)."""
        reader = _ProgressReader(self.flow.source, self.topic, self.target.alias)
        state = await read_compacted(
            self.target, self.topic, client_id=f"{self.flow.name}|progress-reader", keep=reader.keep
        )
        stored = StoredProgress()
        for key, value in state.items():
            parsed = records.decode_source_offset_key(key)
            if parsed is None or parsed.cluster != self.flow.source:
                continue
            tp = (parsed.topic, parsed.partition)
            offset, stored_id = records.decode_source_offset_value(value)  # kept: readable
            # -1: nothing copied yet but the start is set (a reset to offset 0, a `latest` start of an empty
            # partition): resume at 0, never where auto.offset.reset would say
            if offset is not None and offset >= -1:
                stored.offsets[tp] = offset
                stored.topic_ids[tp] = stored_id
        stored.unreadable = {tp for tp in reader.last_unreadable if tp not in stored.offsets}
        log.info(
            "progress loaded",
            flow=self.flow.name,
            topic=self.topic,
            partitions=len(stored.offsets),
            **({"unreadable": len(stored.unreadable)} if stored.unreadable else {}),
        )
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

    async def store(
        self, last_offsets: Mapping[TP, int], topic_ids: Mapping[TP, str | None] | None = None
    ) -> None:
        """Write the last acknowledged source offset of each partition (with the id of the topic it was
        read from, when known); returns once the target has it."""
        if not last_offsets:
            return
        assert self._writer is not None, "ProgressStore.start() first"
        futures = await self.send_with(self._writer, last_offsets, topic_ids)
        await self._writer.flush()
        for fut in futures:
            await fut.ack()

    async def send_with(
        self,
        writer: Writer | BatchWriter,
        last_offsets: Mapping[TP, int],
        topic_ids: Mapping[TP, str | None] | None = None,
    ) -> list[Pending]:
        """Queue progress records on ``writer`` (in exactly-once mode: the task's transactional producer,
        so records and their progress commit together); returns their acknowledgements to come."""
        futures = []
        ids = topic_ids or {}
        for (topic, partition), offset in last_offsets.items():
            key = records.source_offset_key(self.flow.source, topic, partition)
            target_partition = records.java_default_partition(key, self._partitions)
            value = records.encode_source_offset(offset, ids.get((topic, partition)))
            futures.append(await writer.send(self.topic, key, value, partition=target_partition))
        return futures


class _ProgressReader:
    """Passes over the progress records that cannot be read (each reported once), remembering which
    partitions' last record was one of them."""

    def __init__(self, source: str, topic: str, cluster: str) -> None:
        self.source, self.topic, self.cluster = source, topic, cluster
        self.last_unreadable: set[TP] = set()

    def keep(self, record: CompactedRecord) -> bool:
        parsed = records.decode_source_offset_key(record.key)
        if parsed is None:
            problem = records.offset_key_problem(record.key)
            if problem is not None:
                self._report(record, problem, "the record is ignored")
            return problem is None
        if parsed.cluster != self.source:
            return True
        tp = (parsed.topic, parsed.partition)
        try:
            records.decode_source_offset_value(record.value)
        except records.RecordFormatError as exc:
            self.last_unreadable.add(tp)
            fallback = (
                f"{parsed.topic}-{parsed.partition} resumes from its last readable progress, else from "
                "the log start"
            )
            self._report(record, str(exc), fallback)
            return False
        self.last_unreadable.discard(tp)
        return True

    def _report(self, record: CompactedRecord, reason: str, fallback: str) -> None:
        malformed.report(
            self.cluster, MalformedRecord(self.topic, record.partition, record.offset, reason), fallback
        )
