"""STUB (replaced by the dp-producer branch): `BatchProducer` and `Pending`."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import aiokafka.errors as ke

from mirror.config import ClusterSettings
from mirror.kafka.batches import RawBatch
from mirror.kafka.errors import delivery_error
from mirror.kafka.records import Ack, RecordData


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Mark a failed delivery future's error as seen (asyncio would log it as never retrieved)."""
    if not future.cancelled():
        future.exception()


class Pending:
    """The target's answer to come for one produced batch (or record), from `Writer.send_records` or
    `Writer.send`: `ack` waits for it."""

    __slots__ = ("_future",)

    def __init__(self, future: asyncio.Future[Any]) -> None:
        self._future = future

    async def ack(self, *, shield: bool = False) -> Ack:
        """Wait for the target's answer. Errors are translated: a batch the target refuses for good is a
        `RecordRejected`, one it does not let us write an `AuthorizationFailed` naming the topic. With
        ``shield``, cancelling the caller leaves the delivery itself alone."""
        future = asyncio.shield(self._future) if shield else self._future
        try:
            meta = await future
        except (ke.KafkaError, OSError, TimeoutError) as exc:
            raise delivery_error(exc) from exc
        return Ack(int(meta.offset), 0)

    @property
    def acknowledged(self) -> bool:
        """The target has acknowledged it already (an error it ended with counts as seen)."""
        future = self._future
        return future.done() and not future.cancelled() and future.exception() is None

    def ignore_failure(self) -> None:
        """Its failure is expected and needs no report (refused too, or out of sequence behind a refused
        batch): asyncio must not log its error as never retrieved."""
        self._future.add_done_callback(_retrieve)


class BatchProducer:
    def __init__(
        self,
        cluster: ClusterSettings,
        client_id: str,
        overrides: Mapping[str, str],
        transactional_id: str | None = None,
    ) -> None:
        self.max_batch_bytes = 1 << 20

    async def start(self) -> None: ...
    async def close(self, timeout: float = 3.0) -> None: ...
    async def send(self, topic: str, partition: int, batch: RawBatch | Sequence[RecordData]) -> Pending:
        raise NotImplementedError

    async def flush(self) -> None: ...
    async def begin_transaction(self) -> None: ...
    async def commit_transaction(self) -> None: ...
    async def abort_transaction(self) -> None: ...
