"""Progress reads in exactly-once mode: committed records only, never cut short by an open transaction."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from mirror.config import ClusterSettings
from mirror.errors import KafkaUnavailable
from mirror.kafka import read_compacted
from mirror.local.kafka import LocalKafkaCluster

from .support import create_topic, wait_for


async def _transactional(bootstrap: str) -> AIOKafkaProducer:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"t-{uuid.uuid4().hex[:8]}")
    await producer.start()
    return producer


async def _true(value: bool) -> bool:
    return value


async def test_read_compacted_waits_for_open_transactions_and_skips_aborted_ones(
    cluster_b: LocalKafkaCluster, topic: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    b = cluster_b.bootstrap_servers
    rounds: Counter[str] = Counter()  # fetch rounds entered, per client id
    getmany = AIOKafkaConsumer.getmany

    async def counted(self: AIOKafkaConsumer, *args: Any, **kwargs: Any) -> Any:
        rounds[self._client._client_id] += 1
        return await getmany(self, *args, **kwargs)

    monkeypatch.setattr(AIOKafkaConsumer, "getmany", counted)
    await create_topic(b, topic, 1, {"cleanup.policy": "compact"})
    other, own, zombie = await _transactional(b), await _transactional(b), await _transactional(b)
    try:
        # another task's transaction opens first and holds the last stable offset back ...
        await other.begin_transaction()
        await (await other.send(topic, key=b"other", value=b"o1", partition=0))
        # ... while this task's progress commits behind it, and a later attempt is aborted
        async with own.transaction():
            await (await own.send(topic, key=b"own", value=b"committed", partition=0))
        await zombie.begin_transaction()
        await (await zombie.send(topic, key=b"own", value=b"aborted", partition=0))
        await zombie.abort_transaction()

        cluster = ClusterSettings(alias="B", bootstrap_servers=b)
        reading = asyncio.create_task(read_compacted(cluster, topic, "test"))
        # The open transaction holds the last stable offset at 0, where `reading` starts: a read that took
        # the LSO for the end would return after its first fetch round. Once `reading` entered its fetch
        # a third time it looked at its position twice and went on: it had its chance to return early.
        await wait_for(lambda: _true(rounds["test"] >= 3 or reading.done()), timeout=30, interval=0.05)
        assert not reading.done(), "returned before the open transaction ended: it may miss committed records"
        # a read that cannot finish gives up naming the open transaction
        with pytest.raises(KafkaUnavailable, match=r"a transaction on it stays open"):
            await read_compacted(cluster, topic, "probe", timeout=3)
        assert not reading.done(), "returned before the open transaction ended: it may miss committed records"
        await other.commit_transaction()
        t0 = time.monotonic()
        state = await asyncio.wait_for(reading, 30)
        took = time.monotonic() - t0
    finally:
        for producer in (other, own, zombie):
            await producer.stop()
    assert state == {b"other": b"o1", b"own": b"committed"}
    assert took < 10, f"took {took:.1f}s after the transaction ended"
