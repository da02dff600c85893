"""`mirror.kafka.Pending`: a produced batch's acknowledgement to come, with the target's errors translated."""

from __future__ import annotations

import asyncio
import gc
from types import SimpleNamespace
from typing import Any

import aiokafka.errors as ke
import pytest
from aiokafka.structs import RecordMetadata

from mirror.errors import KafkaUnavailable, RecordRejected
from mirror.kafka import Ack, Pending
from mirror.kafka.producer import Delivered


def _future(result: Any = None, error: BaseException | None = None) -> asyncio.Future[Any]:
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    if error is not None:
        future.set_exception(error)
    elif result is not None:
        future.set_result(result)
    return future


async def test_an_acknowledged_batch_gives_its_base_offset() -> None:
    pending = Pending(_future(SimpleNamespace(offset=42)))
    assert pending.acknowledged
    assert await pending.ack() == Ack(42, 0)


async def test_the_writers_record_metadata_and_the_batch_producers_answer_both_give_offsets() -> None:
    metadata = RecordMetadata(  # a named tuple: its count is tuple.count
        "t", 0, None, 7, -1, 0, None
    )
    assert await Pending(_future(metadata)).ack() == Ack(7, 0)
    assert await Pending(_future(Delivered(9, 3))).ack() == Ack(9, 3)


async def test_a_batch_refused_for_good_is_a_record_rejected() -> None:
    refused = Pending(_future(error=ke.InvalidTimestampError()))
    with pytest.raises(RecordRejected) as info:
        await refused.ack()
    assert not info.value.too_large and "InvalidTimestampError" in info.value.reason
    with pytest.raises(RecordRejected) as info:
        await Pending(_future(error=ke.MessageSizeTooLargeError())).ack()
    assert info.value.too_large


async def test_other_errors_are_translated() -> None:
    with pytest.raises(KafkaUnavailable):
        await Pending(_future(error=ke.KafkaConnectionError("gone"))).ack()


async def test_not_yet_acknowledged_or_failed_is_not_acknowledged() -> None:
    assert not Pending(_future()).acknowledged
    assert not Pending(_future(error=ke.InvalidTimestampError())).acknowledged


async def test_a_shielded_wait_cancelled_leaves_the_delivery_alone() -> None:
    future = _future()
    waiting = asyncio.create_task(Pending(future).ack(shield=True))
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert not future.cancelled()
    future.set_result(SimpleNamespace(offset=1))


async def test_an_ignored_failure_is_not_logged_as_never_retrieved(caplog: pytest.LogCaptureFixture) -> None:
    future = _future()
    Pending(future).ignore_failure()
    future.set_exception(ke.OutOfOrderSequenceNumber())
    await asyncio.sleep(0)
    del future
    gc.collect()
    assert "never retrieved" not in caplog.text
