"""`Reader`: the replication consumer, reading source partitions in batches of `SourceRecord`s."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

import aiokafka.errors as ke
from aiokafka import AIOKafkaConsumer, TopicPartition

from mirror.config import ClusterSettings
from mirror.errors import AuthorizationFailed, KafkaRequestFailed, SourceOutOfRange
from mirror.kafka import _internals
from mirror.kafka.batches import SourceBatch
from mirror.kafka.client_args import client_kwargs
from mirror.kafka.closing import close_within
from mirror.kafka.errors import denied_error, errors_translated, named_resources


class Reader:
    """A group-less consumer with manual assignment, reading source partitions in batches."""

    def __init__(
        self, cluster: ClusterSettings, client_id: str, overrides: Mapping[str, str], isolation_level: str
    ) -> None:
        self.cluster = cluster
        kwargs = client_kwargs(cluster, "consumer", overrides, client_id=client_id)
        kwargs.setdefault("isolation_level", isolation_level)
        kwargs.setdefault("max_partition_fetch_bytes", 4 * 1024 * 1024)
        self._fetch_bytes = int(kwargs["max_partition_fetch_bytes"])
        kwargs.setdefault("fetch_max_bytes", 64 * 1024 * 1024)
        kwargs["enable_auto_commit"] = False
        #: Where a partition without stored progress starts (``auto.offset.reset``, as Java's consumer).
        self.start_at: str = str(kwargs.pop("auto_offset_reset", "earliest"))
        # Never let aiokafka jump by itself when a position is out of range: records deleted ahead of
        # us would be skipped silently. `fetch` raises SourceOutOfRange; the task reports and re-seeks.
        kwargs["auto_offset_reset"] = "none"
        kwargs["group_id"] = None
        kwargs["key_deserializer"] = _internals.raw_records  # records as `SourceRecord`s, see there
        self._consumer = AIOKafkaConsumer(**kwargs)

    async def start(self) -> None:
        async with errors_translated(self.cluster):
            await self._consumer.start()

    async def close(self) -> None:
        await close_within(self._consumer.stop())

    async def assign(self, positions: Mapping[tuple[str, int], int | None]) -> None:
        """Assign exactly these partitions; seek each to its position (None: where ``start_at`` says,
        the earliest offset by default)."""
        tps = {TopicPartition(t, p): pos for (t, p), pos in positions.items()}
        client = _internals.kafka_client(self._consumer)
        cluster = client.cluster
        if any(tp.partition not in (cluster.partitions_for_topic(tp.topic) or ()) for tp in tps):
            # new topics or partitions: without this the consumer may not fetch them before its next
            # periodic metadata refresh (5 minutes by default)
            async with errors_translated(self.cluster):
                await client.force_metadata_update()
        self._consumer.assign(list(tps))
        unknown = [tp for tp, pos in tps.items() if pos is None]
        for tp, pos in tps.items():
            if pos is not None:
                self._consumer.seek(tp, pos)
        if unknown:
            async with errors_translated(self.cluster):
                if self.start_at == "latest":
                    await self._consumer.seek_to_end(*unknown)
                else:
                    await self._consumer.seek_to_beginning(*unknown)

    def seek(self, positions: Mapping[tuple[str, int], int]) -> None:
        """Move assigned partitions to these offsets (the next fetch reads from there)."""
        for (topic, partition), offset in positions.items():
            self._consumer.seek(TopicPartition(topic, partition), offset)

    def pause(self, partitions: Sequence[tuple[str, int]]) -> None:
        """Stop fetching these assigned partitions (until the next `assign`)."""
        self._consumer.pause(*(TopicPartition(t, p) for t, p in partitions))

    def limit_fetch(self, bytes_per_partition: int | None) -> None:
        """Fetch at most about this much per partition and request (None: as configured), so a throttled
        task's fetches hold about its share of a second, from each partition in turn."""
        limit = (
            self._fetch_bytes if bytes_per_partition is None else min(self._fetch_bytes, bytes_per_partition)
        )
        _internals.partition_fetch_bytes(self._consumer, max(1, limit))

    def resume(self, partitions: Sequence[tuple[str, int]]) -> None:
        """Fetch these paused partitions again (from their position: `seek` first to move it)."""
        self._consumer.resume(*(TopicPartition(t, p) for t, p in partitions))

    async def beginning_offsets(self, partitions: Sequence[tuple[str, int]]) -> dict[tuple[str, int], int]:
        if not partitions:
            return {}
        async with errors_translated(self.cluster):
            result = await asyncio.wait_for(
                self._consumer.beginning_offsets([TopicPartition(t, p) for t, p in partitions]), 30
            )
        return {(tp.topic, tp.partition): off for tp, off in result.items()}

    async def end_offsets(self, partitions: Sequence[tuple[str, int]]) -> dict[tuple[str, int], int]:
        if not partitions:
            return {}
        async with errors_translated(self.cluster):
            result = await asyncio.wait_for(
                self._consumer.end_offsets([TopicPartition(t, p) for t, p in partitions]), 30
            )
        return {(tp.topic, tp.partition): off for tp, off in result.items()}

    async def offsets_for_time(
        self, partitions: Sequence[tuple[str, int]], timestamp_ms: int
    ) -> dict[tuple[str, int], int | None]:
        """Per partition the first offset whose timestamp is at or after ``timestamp_ms`` (None: none is)."""
        if not partitions:
            return {}
        async with errors_translated(self.cluster):
            result = await asyncio.wait_for(
                self._consumer.offsets_for_times({TopicPartition(t, p): timestamp_ms for t, p in partitions}),
                30,
            )
        return {(tp.topic, tp.partition): (None if off is None else off.offset) for tp, off in result.items()}

    async def position(self, topic: str, partition: int) -> int:
        """The offset the next fetch of this assigned partition reads from."""
        async with errors_translated(self.cluster):
            return int(await asyncio.wait_for(self._consumer.position(TopicPartition(topic, partition)), 30))

    def highwater(self, topic: str, partition: int) -> int | None:
        hw: int | None = self._consumer.highwater(TopicPartition(topic, partition))
        return hw

    async def fetch(self, timeout_ms: int, max_records: int | None = None) -> list[SourceBatch]:
        """The records fetched (at most ``max_records``; the rest stay buffered for the next call)."""
        try:
            async with errors_translated(self.cluster):
                data = await self._consumer.getmany(timeout_ms=timeout_ms, max_records=max_records)
        except KafkaRequestFailed as exc:
            cause = exc.__cause__
            if isinstance(cause, ke.OffsetOutOfRangeError) and cause.args and isinstance(cause.args[0], dict):
                positions = {(tp.topic, tp.partition): int(off) for tp, off in cause.args[0].items()}
                raise SourceOutOfRange(positions) from cause
            if not isinstance(exc, AuthorizationFailed):
                raise

            if isinstance(cause, ke.TopicAuthorizationFailedError) and named_resources(cause) is not None:
                raise denied_error(self.cluster, "READ", f"topic {named_resources(cause)}", cause) from cause
            raise
        return [SourceBatch(tp.topic, tp.partition, recs) for tp, recs in data.items() if recs]
