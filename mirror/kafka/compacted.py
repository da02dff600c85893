"""`read_compacted`: the last value per key of a whole (compacted) topic."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer, TopicPartition

from mirror.config import ClusterSettings
from mirror.errors import KafkaUnavailable
from mirror.kafka import _internals
from mirror.kafka.client_args import client_kwargs
from mirror.kafka.closing import close_within
from mirror.kafka.errors import errors_translated


async def read_compacted(
    cluster: ClusterSettings, topic: str, client_id: str, timeout: float = 60.0
) -> dict[bytes, bytes | None]:
    """Read a whole (compacted) topic from the beginning to its current end: the last value per key.

    Committed records only, up to the high watermark, not merely to the last stable offset: a
    transaction still open (another task's, or a zombie's not fenced yet) holds the LSO back, and
    committed records behind it (say, this task's own last progress) would be missed. So this waits
    until every transaction open when it started has ended."""
    kwargs = client_kwargs(cluster, "consumer", client_id=client_id)
    # the cluster's consumer overrides must not change what this reader is (from the start, committed)
    kwargs.update(group_id=None, enable_auto_commit=False, auto_offset_reset="earliest")
    consumer = AIOKafkaConsumer(**{**kwargs, "isolation_level": "read_committed"})
    ends = AIOKafkaConsumer(**{**kwargs, "isolation_level": "read_uncommitted"})
    state: dict[bytes, bytes | None] = {}
    async with errors_translated(cluster):
        try:
            await consumer.start()
            await ends.start()
            parts = consumer.partitions_for_topic(topic)
            if parts is None:
                await _internals.kafka_client(consumer).force_metadata_update()
                parts = consumer.partitions_for_topic(topic) or set()
            tps = [TopicPartition(topic, p) for p in sorted(parts)]
            if not tps:
                return state
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            end = await asyncio.wait_for(ends.end_offsets(tps), timeout)  # high watermarks
            pending = {tp for tp in tps if end[tp] > 0}
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            while pending:
                if loop.time() > deadline:
                    raise KafkaUnavailable(
                        f"timed out reading {topic} to its end (a transaction on it stays open?)"
                    )
                data = await consumer.getmany(timeout_ms=500)
                for recs in data.values():
                    for r in recs:
                        if r.key is not None:
                            state[r.key] = r.value
                for tp in list(pending):
                    if await consumer.position(tp) >= end[tp]:
                        pending.discard(tp)
        finally:
            await close_within(ends.stop())
            await close_within(consumer.stop())
    return state
