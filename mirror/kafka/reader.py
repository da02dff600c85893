"""`Reader`: the replication consumer, reading source partitions in batches through `BatchFetcher`.

Offset lookups (beginning, end, by time) go through a group-less aiokafka consumer that is never
assigned anything."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Final

from aiokafka import AIOKafkaConsumer, TopicPartition

from mirror.config import ClusterSettings
from mirror.kafka.batches import SourceBatch
from mirror.kafka.client_args import client_kwargs
from mirror.kafka.closing import close_within
from mirror.kafka.errors import errors_translated
from mirror.kafka.fetcher import BatchFetcher
from mirror.metrics import FetchMeters

#: Seconds an offset lookup may take. Not ``asyncio.wait_for``: on Python 3.11 it drops a cancellation
#: that comes as the answer does, and a loop looking offsets up (the lag of paused partitions) ran on.
_LOOKUP_TIMEOUT: Final = 30.0


class Reader:
    """A group-less reader with manual assignment, reading source partitions in batches; ``meters``: where
    its fetcher counts (`mirror.metrics.FetchMeters`; none: nowhere)."""

    def __init__(
        self,
        cluster: ClusterSettings,
        client_id: str,
        overrides: Mapping[str, str],
        isolation_level: str,
        meters: FetchMeters | None = None,
    ) -> None:
        self.cluster = cluster
        kwargs = client_kwargs(cluster, "consumer", overrides, client_id=client_id)
        kwargs.setdefault("isolation_level", isolation_level)
        #: Where a partition without stored progress starts (``auto.offset.reset``, as Java's consumer).
        self.start_at: str = str(kwargs.pop("auto_offset_reset", "earliest"))
        kwargs["auto_offset_reset"] = "none"
        kwargs["enable_auto_commit"] = False
        kwargs["group_id"] = None
        # offset lookups only: it is never assigned anything and fetches nothing
        self._offsets = AIOKafkaConsumer(**kwargs)
        # Never jump by itself when a position is out of range: records deleted ahead of us would be
        # skipped silently. `fetch` raises SourceOutOfRange; the task reports and re-seeks.
        self._fetcher = BatchFetcher(cluster, client_id, overrides, str(kwargs["isolation_level"]), meters)

    async def start(self) -> None:
        async with errors_translated(self.cluster):
            await self._offsets.start()
        await self._fetcher.start()

    async def close(self) -> None:
        await asyncio.gather(self._fetcher.close(), close_within(self._offsets.stop()))

    async def assign(self, positions: Mapping[tuple[str, int], int | None]) -> None:
        """Assign exactly these partitions; seek each to its position (None: where ``start_at`` says,
        the earliest offset by default)."""
        unknown = [tp for tp, pos in positions.items() if pos is None]
        if not unknown:
            resolved: dict[tuple[str, int], int] = {}
        elif self.start_at == "latest":
            resolved = await self.end_offsets(unknown)
        else:
            resolved = await self.beginning_offsets(unknown)
        self._fetcher.assign({tp: resolved[tp] if pos is None else pos for tp, pos in positions.items()})

    def seek(self, positions: Mapping[tuple[str, int], int]) -> None:
        """Move assigned partitions to these offsets: nothing fetched before is handed out after."""
        self._fetcher.seek(positions)

    def pause(self, partitions: Sequence[tuple[str, int]]) -> None:
        """Stop fetching these assigned partitions (until `resume` or the next `assign`)."""
        self._fetcher.pause(partitions)

    def limit_fetch(self, bytes_per_partition: int | None) -> None:
        """Fetch at most about this much per partition and request (None: as configured), so a throttled
        task's fetches hold about its share of a second, from each partition in turn."""
        self._fetcher.limit(bytes_per_partition)

    def resume(self, partitions: Sequence[tuple[str, int]]) -> None:
        """Fetch these paused partitions again (from their position: `seek` first to move it)."""
        self._fetcher.resume(partitions)

    async def beginning_offsets(self, partitions: Sequence[tuple[str, int]]) -> dict[tuple[str, int], int]:
        if not partitions:
            return {}
        async with errors_translated(self.cluster):
            async with asyncio.timeout(_LOOKUP_TIMEOUT):
                result = await self._offsets.beginning_offsets([TopicPartition(t, p) for t, p in partitions])
        return {(tp.topic, tp.partition): off for tp, off in result.items()}

    async def end_offsets(self, partitions: Sequence[tuple[str, int]]) -> dict[tuple[str, int], int]:
        if not partitions:
            return {}
        async with errors_translated(self.cluster):
            async with asyncio.timeout(_LOOKUP_TIMEOUT):
                result = await self._offsets.end_offsets([TopicPartition(t, p) for t, p in partitions])
        return {(tp.topic, tp.partition): off for tp, off in result.items()}

    async def offsets_for_time(
        self, partitions: Sequence[tuple[str, int]], timestamp_ms: int
    ) -> dict[tuple[str, int], int | None]:
        """Per partition the first offset whose timestamp is at or after ``timestamp_ms`` (None: none is)."""
        if not partitions:
            return {}
        asked = {TopicPartition(t, p): timestamp_ms for t, p in partitions}
        async with errors_translated(self.cluster):
            async with asyncio.timeout(_LOOKUP_TIMEOUT):
                result = await self._offsets.offsets_for_times(asked)
        return {(tp.topic, tp.partition): (None if off is None else off.offset) for tp, off in result.items()}

    async def position(self, topic: str, partition: int) -> int:
        """The offset the next fetch of this assigned partition hands out from."""
        return self._fetcher.position((topic, partition))

    def highwater(self, topic: str, partition: int) -> int | None:
        return self._fetcher.highwater((topic, partition))

    async def fetch(self, timeout_ms: int, max_records: int | None = None) -> list[SourceBatch]:
        """The batches fetched: at most ``max_records`` records (a source batch is cut, decoded, to keep
        to it); the rest stay buffered for the next call. `SourceOutOfRange` for a position the source no
        longer holds."""
        return await self._fetcher.fetch(timeout_ms, max_records=max_records)
