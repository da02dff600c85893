"""Record batches as bytes against real brokers (docs/record-batches.md): batches fetched raw from the
source, re-stamped for an idempotent producer of the target (its id from InitProducerId) and produced
as they are, are accepted and read back as the source's records; the broker checks what we stamp.

Requests go through `mirror.kafka.Admin.raw_request` with aiokafka's protocol classes, as the byte data
path will."""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.protocol.fetch import FetchRequest
from aiokafka.protocol.produce import ProduceRequest
from aiokafka.protocol.transaction import InitProducerIdRequest
from aiokafka.record.default_records import DefaultRecordBatchBuilder

from mirror.config import ClusterSettings
from mirror.kafka import Admin, batches
from mirror.kafka.batches import Action, Codec, RawBatch
from mirror.local.kafka import LocalKafkaCluster

from .support import Rec, consume_all, create_topic, produce, wait_for

READ_UNCOMMITTED, READ_COMMITTED = 0, 1
NONE, CORRUPT_MESSAGE, OUT_OF_ORDER_SEQUENCE, INVALID_RECORD = 0, 2, 45, 87
#: COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE, NOT_COORDINATOR
RETRIABLE_INIT = (14, 15, 16)


@dataclass
class Fetched:
    batches: list[RawBatch]
    aborted: list[tuple[int, int]]


async def _admin(cluster: LocalKafkaCluster) -> AsyncIterator[Admin]:
    admin = Admin(ClusterSettings(alias="x", bootstrap_servers=cluster.bootstrap_servers), "test-batches")
    await admin.start()
    try:
        yield admin
    finally:
        await admin.close()


@pytest.fixture
async def source(cluster_a: LocalKafkaCluster, topic: str) -> AsyncIterator[Admin]:
    """An admin of cluster A, where ``topic`` (one partition) exists."""
    await create_topic(cluster_a.bootstrap_servers, topic, 1)
    async for admin in _admin(cluster_a):
        yield admin


@pytest.fixture
async def target(cluster_b: LocalKafkaCluster, topic: str) -> AsyncIterator[Admin]:
    """An admin of cluster B, where ``topic`` (one partition) exists."""
    await create_topic(cluster_b.bootstrap_servers, topic, 1)
    async for admin in _admin(cluster_b):
        yield admin


async def fetch_all(admin: Admin, topic: str, isolation: int, partition: int = 0) -> Fetched:
    """Every whole batch of a partition up to its end (the last stable offset for read_committed)."""
    out = Fetched([], [])
    offset = 0
    while True:
        resp = await admin.raw_request(
            FetchRequest(100, 1, 1 << 20, isolation, [(topic, [(partition, offset, 1 << 20)])])
        )
        _, error, high_water, last_stable, _, aborted, _, records = resp.topics[0][1][0]
        assert error == NONE, error
        out.aborted.extend((pid, first) for pid, first in aborted or ())
        for batch in batches.split(records or b""):
            after = batch.header.next_offset if batch.header else batch.base_offset + 1
            if after > offset:
                out.batches.append(batch)
                offset = after
        end = last_stable if isolation == READ_COMMITTED else high_water
        if offset >= end:
            return out


class IdempotentSender:
    """The target side of the byte data path, reduced to its core: a producer id, sequences."""

    def __init__(self, admin: Admin, topic: str) -> None:
        self.admin, self.topic = admin, topic
        self.producer_id, self.epoch, self.sequence = -1, -1, 0

    async def init(self) -> None:
        async def answered() -> object:
            resp = await self.admin.raw_request(InitProducerIdRequest(None, 60000))  # type: ignore[arg-type]
            # the first request on a cluster may find the transaction coordinator still loading
            return None if resp.error_code in RETRIABLE_INIT else resp

        resp = await wait_for(answered, timeout=60)
        assert resp.error_code == NONE, resp
        self.producer_id, self.epoch = resp.producer_id, resp.producer_epoch
        assert self.producer_id >= 0

    async def send(self, data: bytes | bytearray) -> int:
        """Produce one batch to partition 0 with acks=all; the broker's error code (0: appended)."""
        resp = await self.admin.raw_request(
            ProduceRequest(None, -1, 30000, [(self.topic, [(0, bytes(data))])])
        )
        _partition, error, *_ = resp.topics[0][1][0]
        return int(error)

    def stamp(self, batch: RawBatch) -> bytearray:
        return batches.restamp(
            batch,
            producer_id=self.producer_id,
            producer_epoch=self.epoch,
            base_sequence=self.sequence,
            transactional=False,
        )

    async def pass_through(self, batch: RawBatch) -> None:
        assert batch.header is not None
        assert await self.send(self.stamp(batch)) == NONE
        self.sequence = batches.next_sequence(self.sequence, batch.header.record_count)


def _records(n: int, tag: bytes) -> list[Rec]:
    return [
        (
            None if i % 7 == 0 else b"k%d" % i,
            None if i % 11 == 0 and i % 7 else tag + b"-value-%d-" % i + b"x" * (i % 50),
            (("h", b"%d" % i), ("empty", b"")) if i % 3 else (),
            1_700_000_000_000 + i,
        )
        for i in range(n)
    ]


async def test_re_stamped_source_batches_are_accepted_and_read_back_equal(
    cluster_a: LocalKafkaCluster, cluster_b: LocalKafkaCluster, source: Admin, target: Admin, topic: str
) -> None:
    records = _records(300, b"zstd")
    await produce(cluster_a.bootstrap_servers, topic, {0: records[:150]}, compression="zstd")
    await produce(cluster_a.bootstrap_servers, topic, {0: records[150:]}, compression="lz4")
    fetched = await fetch_all(source, topic, READ_UNCOMMITTED)
    assert {batches.plan(b) for b in fetched.batches} == {Action.PASS}
    codecs = {b.header.codec for b in fetched.batches if b.header}
    assert codecs == {Codec.ZSTD, Codec.LZ4}

    sender = IdempotentSender(target, topic)
    await sender.init()
    first, rest = fetched.batches[0], fetched.batches[1:]
    await sender.pass_through(first)

    # The broker checks what we stamp: a CRC not recomputed, a sequence out of order.
    stale = sender.stamp(rest[0])
    struct.pack_into(">i", stale, 53, sender.sequence + 1)  # sequence changed after the CRC
    assert await sender.send(stale) == CORRUPT_MESSAGE
    sender.sequence += 1
    assert await sender.send(sender.stamp(rest[0])) == OUT_OF_ORDER_SEQUENCE
    sender.sequence -= 1

    for batch in rest:
        await sender.pass_through(batch)
    got = await consume_all(cluster_b.bootstrap_servers, topic, {0: records}, timeout=60)
    assert got == {0: records}


async def test_a_batch_with_offset_gaps_is_refused_passed_through_and_accepted_rebuilt(
    cluster_b: LocalKafkaCluster, target: Admin, topic: str
) -> None:
    builder = DefaultRecordBatchBuilder(2, int(Codec.ZSTD), 0, -1, -1, -1, 1 << 20)
    for delta in (0, 2, 3):  # compaction removed offset 1
        builder.append(delta, 1_700_000_000_000 + delta, b"k%d" % delta, b"v%d" % delta, [("h", b"x")])
    [gapped] = batches.split(bytes(builder.build()))
    assert batches.plan(gapped) is Action.REBUILD

    sender = IdempotentSender(target, topic)
    await sender.init()
    assert await sender.send(sender.stamp(gapped)) == INVALID_RECORD
    rebuilt = batches.rebuild(
        batches.decode(gapped),
        codec=Codec.ZSTD,
        producer_id=sender.producer_id,
        producer_epoch=sender.epoch,
        base_sequence=sender.sequence,
        transactional=False,
    )
    assert await sender.send(rebuilt) == NONE
    expected = [(b"k%d" % d, b"v%d" % d, (("h", b"x"),), 1_700_000_000_000 + d) for d in (0, 2, 3)]
    assert await consume_all(cluster_b.bootstrap_servers, topic, {0: expected}, timeout=60) == {0: expected}


async def test_read_committed_keeps_committed_transactions_and_drops_aborted_ones_and_markers(
    cluster_a: LocalKafkaCluster, cluster_b: LocalKafkaCluster, source: Admin, target: Admin, topic: str
) -> None:
    committed = await transactions(cluster_a.bootstrap_servers, topic, [True, False, True, False, True], 5)

    fetched = await fetch_all(source, topic, READ_COMMITTED)
    assert fetched.aborted, "the broker lists the aborted transactions"
    txns = batches.AbortedTransactions(fetched.aborted)
    plans = [txns.plan(b) for b in fetched.batches]
    assert plans.count(Action.DROP) > 0

    sender = IdempotentSender(target, topic)
    await sender.init()
    for batch, action in zip(fetched.batches, plans, strict=True):
        if action is Action.PASS:
            await sender.pass_through(batch)
    got = await consume_all(cluster_b.bootstrap_servers, topic, {0: committed}, timeout=60)
    assert got == {0: committed}


async def transactions(
    bootstrap: str, topic: str, commits: list[bool], size: int, compression: str = "gzip"
) -> list[Rec]:
    """One transaction of ``size`` records to partition 0 per item of ``commits``: committed when it is
    True, else aborted; the committed records."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, transactional_id=f"{topic}-txn", compression_type=compression
    )
    await producer.start()
    committed: list[Rec] = []
    try:
        for n, commit in enumerate(commits):
            async with producer.transaction() if commit else _aborting(producer):
                for i in range(size):
                    rec: Rec = (b"t%d" % n, b"txn-%d-%d" % (n, i), (), 1_700_000_000_000 + 10 * n + i)
                    await producer.send(topic, key=rec[0], value=rec[1], partition=0, timestamp_ms=rec[3])
                    if commit:
                        committed.append(rec)
                await producer.flush()
    finally:
        await producer.stop()
    return committed


class _aborting:
    """A transaction that is aborted at the end."""

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self.producer = producer

    async def __aenter__(self) -> None:
        await self.producer.begin_transaction()

    async def __aexit__(self, *exc: object) -> None:
        await self.producer.abort_transaction()
