"""`Writer`: the producer of the internal topics (aiokafka's); `BatchWriter`: the data path's, writing
fetched batches to fixed partitions."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from aiokafka import AIOKafkaProducer

from mirror.config import ClusterSettings
from mirror.kafka import _internals
from mirror.kafka.batches import Chunk, pieces
from mirror.kafka.client_args import client_kwargs
from mirror.kafka.closing import close_within
from mirror.kafka.errors import errors_translated
from mirror.kafka.producer import BatchProducer, Pending
from mirror.metrics import ProduceMeters

log = structlog.get_logger(__name__)


class Writer:
    """aiokafka's producer, for the internal topics (checkpoints, heartbeats, offset syncs, progress,
    controls): records one by one, acknowledged through `Pending`."""

    def __init__(self, cluster: ClusterSettings, client_id: str, overrides: Mapping[str, str]) -> None:
        self.cluster = cluster
        kwargs = client_kwargs(cluster, "producer", overrides, client_id=client_id)
        kwargs.setdefault("max_batch_size", 1024 * 1024)
        kwargs.setdefault("max_request_size", 4 * 1024 * 1024)
        kwargs.setdefault("enable_idempotence", True)
        kwargs.setdefault("acks", "all")
        kwargs.setdefault("request_timeout_ms", 30000)
        self._producer = AIOKafkaProducer(**kwargs)

    async def start(self) -> None:
        async with errors_translated(self.cluster):
            await self._producer.start()

    async def close(self, timeout: float = 3.0) -> None:
        """Stop, delivering what is queued for at most ``timeout`` seconds (then it is dropped).

        aiokafka's ``stop()`` cut short by the timeout leaves its sender running: it would go on
        retrying and deliver stale batches later, behind the back of the task's next session. So the
        sender and the connections are ended here, whatever happened to ``stop()``."""
        try:
            await close_within(self._producer.stop(), timeout)
        finally:  # also when the close itself is cancelled (a bounded task stop)
            task = _internals.sender_task(self._producer)
            if task is not None and not task.done():
                task.cancel()
                log.warning("producer not closed in time; its unsent batches are dropped", timeout_s=timeout)
                await close_within(self._producer.client.close(), 1.0)

    async def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
        *,
        headers: Sequence[tuple[str, bytes]] | None = None,
    ) -> Pending:
        """Queue one record (for internal topics, not the data path); returns its acknowledgement to come."""
        async with errors_translated(self.cluster):
            fut: asyncio.Future[Any] = await self._producer.send(
                topic,
                value=value,
                key=key,
                partition=partition,
                timestamp_ms=timestamp_ms,
                headers=list(headers) if headers else None,
            )
        return Pending(fut)

    async def flush(self) -> None:
        async with errors_translated(self.cluster):
            await self._producer.flush()


@dataclass(frozen=True, slots=True)
class _Record:
    """One record an internal topic's ``send`` writes through the data path's producer."""

    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes | None]]


class BatchWriter:
    """The data path's writer: fetched chunks go to fixed partitions of the target as batches, through
    `mirror.kafka.producer.BatchProducer` — a pass-through chunk as the source batch's own bytes, decoded
    records in batches of their own (`batches.pieces` cuts them). ``meters``: where its producer counts
    (`mirror.metrics.ProduceMeters`; none: nowhere)."""

    def __init__(
        self,
        cluster: ClusterSettings,
        client_id: str,
        overrides: Mapping[str, str],
        transactional_id: str | None = None,
        meters: ProduceMeters | None = None,
    ) -> None:
        self.cluster = cluster
        self._producer = BatchProducer(cluster, client_id, overrides, transactional_id, meters)

    async def start(self) -> None:
        async with errors_translated(self.cluster):
            await self._producer.start()

    async def close(self, timeout: float = 3.0) -> None:
        """Stop, delivering what is queued for at most ``timeout`` seconds; nothing is sent after."""
        await self._producer.close(timeout)

    def pieces(self, chunks: Sequence[Chunk], per_batch: int = 0) -> list[Chunk]:
        """The target batches ``chunks`` go as (`batches.pieces`, at most this producer's batch size)."""
        return pieces(chunks, per_batch, self._producer.max_batch_bytes)

    async def send_chunk(
        self, topic: str, partition: int, chunk: Chunk, *, mergeable: bool = True, linger: bool = True
    ) -> Pending:
        """Queue one target batch (a piece from `pieces`); its acknowledgement to come. Not ``mergeable``:
        the producer never merges it with its neighbours; not ``linger``: it goes at once, the caller
        waits for it (`BatchProducer.send`)."""
        data = chunk.raw if chunk.raw is not None else chunk.records
        async with errors_translated(self.cluster):
            return await self._producer.send(topic, partition, data, mergeable=mergeable, linger=linger)

    async def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        partition: int,
        timestamp_ms: int | None = None,
        *,
        headers: Sequence[tuple[str, bytes | None]] | None = None,
        mergeable: bool = True,
    ) -> Pending:
        """Queue one record in a batch of its own (progress records in exactly-once mode, dead letters).
        Not ``mergeable``: the producer never merges it with its neighbours (`BatchProducer.send`)."""
        stamp = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
        record = [_Record(stamp, key, value, headers or [])]
        async with errors_translated(self.cluster):
            return await self._producer.send(topic, partition, record, mergeable=mergeable)

    async def flush(self) -> None:
        async with errors_translated(self.cluster):
            await self._producer.flush()

    async def begin_transaction(self) -> None:
        async with errors_translated(self.cluster):
            await self._producer.begin_transaction()

    async def commit_transaction(self) -> None:
        async with errors_translated(self.cluster):
            await self._producer.commit_transaction()

    async def abort_transaction(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._producer.abort_transaction(), 10)
