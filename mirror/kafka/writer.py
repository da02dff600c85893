"""`Writer`: a producer writing whole batches to fixed partitions (acknowledgements: `Pending`)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from typing import Any

import structlog
from aiokafka import AIOKafkaProducer

from mirror.config import ClusterSettings
from mirror.kafka import _internals
from mirror.kafka.client_args import client_kwargs
from mirror.kafka.closing import close_within
from mirror.kafka.errors import errors_translated
from mirror.kafka.producer import Pending, known_partition
from mirror.kafka.records import RecordData

log = structlog.get_logger(__name__)


class Writer:
    """A producer that writes whole batches to fixed partitions of the target (no per-record send)."""

    def __init__(
        self,
        cluster: ClusterSettings,
        client_id: str,
        overrides: Mapping[str, str],
        transactional_id: str | None = None,
    ) -> None:
        self.cluster = cluster
        kwargs = client_kwargs(cluster, "producer", overrides, client_id=client_id)
        kwargs.setdefault("max_batch_size", 1024 * 1024)
        kwargs.setdefault("max_request_size", 4 * 1024 * 1024)
        kwargs.setdefault("enable_idempotence", True)
        kwargs.setdefault("acks", "all")
        kwargs.setdefault("request_timeout_ms", 30000)
        if transactional_id is not None:
            kwargs["transactional_id"] = transactional_id
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

    async def send_records(
        self,
        topic: str,
        partition: int,
        records: Sequence[RecordData],
        per_batch: int = 0,
        max_batches: int = 0,
    ) -> list[tuple[Pending, int, int]]:
        """Copy records (key, value, headers, timestamp) into as few target batches as fit, in order;
        with ``per_batch`` > 0, at most that many records per batch; with ``max_batches`` > 0, only the
        records that fit in that many batches (the caller sends the rest later).

        Returns one (its acknowledgement to come, index of its first record, record count) per target
        batch.
        """
        futures: list[tuple[Pending, int, int]] = []
        i, n = 0, len(records)
        await known_partition(self._producer.client, self.cluster, topic, partition)
        async with errors_translated(self.cluster):
            while i < n and (max_batches <= 0 or len(futures) < max_batches):
                batch = self._producer.create_batch()
                start = i
                i = _internals.fill_batch(
                    batch, records, start, min(n, start + per_batch) if per_batch > 0 else n
                )
                fut = await self._producer.send_batch(batch, topic, partition=partition)
                futures.append((Pending(fut), start, i - start))
        return futures

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

    # Transactions (exactly-once mode; needs ``transactional_id``). Starting the producer already
    # fenced every older producer with the same transactional id.
    async def begin_transaction(self) -> None:
        async with errors_translated(self.cluster):
            await self._producer.begin_transaction()

    async def commit_transaction(self) -> None:
        async with errors_translated(self.cluster):
            await self._producer.commit_transaction()

    async def abort_transaction(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._producer.abort_transaction(), 10)
