"""`BatchProducer` against real brokers (docs/record-batches.md, "Producing"): source batches of every
codec pass through as bytes, many batches go pipelined with the right offsets in order, a broker restart
loses and duplicates nothing, a refused batch stops its partition only, transactions commit, abort and
fence, nothing is written after `close`, and batches queued behind a slow link are coalesced."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from bench.wan import Toxiproxy
from mirror.config import ClusterSettings
from mirror.errors import KafkaRequestFailed, ProducerFenced, RecordRejected
from mirror.kafka import Admin, BatchProducer, Pending, batches
from mirror.kafka.batches import Codec, RawBatch
from mirror.local.kafka import LocalKafka, LocalKafkaCluster

from .support import Rec, consume_all, create_topic, end_offsets, make_records, produce, wait_for
from .test_batches_on_broker import READ_UNCOMMITTED, fetch_all

RTT_MS = 80


@dataclass(frozen=True)
class R:
    """A record as `BatchProducer.send` takes it."""

    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    timestamp: int


def as_data(records: Sequence[Rec]) -> list[R]:
    return [R(k, v, tuple(h), ts) for k, v, h, ts in records]


@contextlib.asynccontextmanager
async def producing(
    bootstrap: str, overrides: Mapping[str, str] | None = None, transactional_id: str | None = None
) -> AsyncIterator[BatchProducer]:
    producer = BatchProducer(
        ClusterSettings(alias="target", bootstrap_servers=bootstrap),
        "test-batch-producer",
        dict(overrides or {}),
        transactional_id,
    )
    await producer.start()
    try:
        yield producer
    finally:
        await producer.close()


@pytest.fixture(scope="module")
def slow(kafka: LocalKafka, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafkaCluster]:
    """A cluster of this module (restarted, stopped by its tests), with a listener behind an 80 ms
    round-trip latency proxy."""
    [cluster] = kafka.add("PRODUCER", proxied=True)
    proxy = Toxiproxy(Path(tmp_path_factory.mktemp("toxiproxy")) / "toxiproxy.log")
    try:
        proxy.proxy("PRODUCER", cluster.proxy_port, cluster.proxied_port, RTT_MS)
        yield cluster
    finally:
        proxy.close()
        cluster.stop()


async def topic_to_fill(
    cluster: LocalKafkaCluster, topic: str, partitions: int, records: int, seed: int
) -> dict[int, list[Rec]]:
    """Create ``topic``; the records to write to each of its partitions."""
    await create_topic(cluster.bootstrap_servers, topic, partitions)
    return {p: make_records(records, seed=seed + p) for p in range(partitions)}


async def send_paced(
    producer: BatchProducer,
    topic: str,
    expected: Mapping[int, Sequence[Rec]],
    size: int,
    pendings: dict[int, list[Pending]],
    ahead: int = 5,
) -> None:
    """Send each partition's records in batches of ``size``, round robin, with at most ``ahead`` batches of
    a partition unacknowledged (as the data path's in-flight bound keeps them): a stream, not a heap of
    queued batches (which would be coalesced)."""
    batches_each = max(len(records) for records in expected.values()) // size
    for i in range(batches_each):
        for p, records in expected.items():
            if len(pendings[p]) >= ahead:
                await pendings[p][-ahead].ack()
            pendings[p].append(await producer.send(topic, p, as_data(records[i * size : (i + 1) * size])))


async def acked_offsets(pendings: Sequence[Pending]) -> list[int]:
    return [(await p.ack()).base_offset for p in pendings]


def consecutive(counts: Sequence[int]) -> list[int]:
    """The base offsets of batches of these record counts, written one after the other from 0."""
    out, at = [], 0
    for n in counts:
        out.append(at)
        at += n
    return out


async def test_source_batches_of_every_codec_pass_through_unchanged(
    cluster_a: LocalKafkaCluster, cluster_b: LocalKafkaCluster, topic: str
) -> None:
    await create_topic(cluster_a.bootstrap_servers, topic, 1)
    await create_topic(cluster_b.bootstrap_servers, topic, 1)
    records: list[Rec] = []
    for n, codec in enumerate(["gzip", "snappy", "lz4", "zstd", None]):
        part = make_records(120, seed=n)
        records += part
        await produce(cluster_a.bootstrap_servers, topic, {0: part}, compression=codec)
    source = Admin(ClusterSettings(alias="source", bootstrap_servers=cluster_a.bootstrap_servers), "test-src")
    await source.start()
    try:
        fetched = (await fetch_all(source, topic, READ_UNCOMMITTED)).batches
    finally:
        await source.close()
    assert {b.header.codec for b in fetched if b.header} == set(Codec)

    async with producing(cluster_b.bootstrap_servers) as producer:
        pendings = [await producer.send(topic, 0, batch) for batch in fetched]
        offsets = await acked_offsets(pendings)
    counts = [b.header.record_count for b in fetched if b.header]
    assert offsets == consecutive(counts)
    got = await consume_all(cluster_b.bootstrap_servers, topic, {0: records}, timeout=60)
    assert got == {0: records}


async def test_many_batches_pipelined_over_partitions_are_acked_in_order(
    cluster_b: LocalKafkaCluster, topic: str
) -> None:
    partitions, per_partition, size = 4, 60, 25
    expected = await topic_to_fill(cluster_b, topic, partitions, per_partition * size, seed=100)
    # no linger: each small batch goes as it came (lingering merges them: docs/record-batches.md); two
    # connections: two partitions on each
    overrides = {"linger.ms": "0", "connections.per.broker": "2"}
    async with producing(cluster_b.bootstrap_servers, overrides) as producer:
        pendings: dict[int, list[Pending]] = {p: [] for p in range(partitions)}
        await send_paced(producer, topic, expected, size, pendings)
        for p in range(partitions):
            assert await acked_offsets(pendings[p]) == [i * size for i in range(per_partition)]
        assert producer.batches_sent >= 0.9 * partitions * per_partition  # hardly any coalescing
        assert producer.requests_sent < producer.batches_sent  # several partitions per request
        assert producer.most_in_flight > 1  # requests pipelined on the connection
    got = await consume_all(cluster_b.bootstrap_servers, topic, expected, timeout=60)
    assert got == expected


async def test_a_broker_restart_with_batches_in_flight_loses_and_duplicates_nothing(
    slow: LocalKafkaCluster, topic: str
) -> None:
    partitions, batches_each, size = 2, 150, 20
    # Record times of now: a broker reloading its logs forgets producers whose newest record time is older
    # than producer.id.expiration.ms (1 day) and would append their retried batches again
    # (docs/record-batches.md, "Producing").
    now = int(time.time() * 1000)
    old = await topic_to_fill(slow, topic, partitions, batches_each * size, seed=200)
    expected = {p: [(k, v, h, now + i) for i, (k, v, h, _) in enumerate(rs)] for p, rs in old.items()}
    async with producing(slow.bootstrap_servers, {"request.timeout.ms": "5000"}) as producer:
        pendings: dict[int, list[Pending]] = {p: [] for p in range(partitions)}
        sending = asyncio.create_task(send_paced(producer, topic, expected, size, pendings))
        await wait_for(lambda: _acked(pendings, 10), timeout=30, interval=0.01)
        await asyncio.to_thread(slow.restart)
        await sending
        for p in range(partitions):
            assert await acked_offsets(pendings[p]) == [i * size for i in range(batches_each)]
        assert producer.retries > 0, "the restart met batches in flight"
    got = await consume_all(slow.bootstrap_servers, topic, expected, timeout=60)
    assert got == expected


async def _acked(pendings: dict[int, list[Pending]], n: int) -> bool:
    """Every partition has ``n`` batches acknowledged."""
    return all(sum(p.acknowledged for p in batches) >= n for batches in pendings.values())


async def test_a_refused_batch_fails_its_partition_from_there_and_spares_the_others(
    cluster_b: LocalKafkaCluster, topic: str
) -> None:
    await create_topic(cluster_b.bootstrap_servers, topic, 2, {"max.message.bytes": "2000"})
    small = [R(b"k", b"small", (), 1_700_000_000_000)]
    big = [R(b"k", bytes(range(256)) * 20, (), 1_700_000_000_001)]  # 5 KB, incompressible enough
    # no linger: the refused batch goes alone (lingering would merge it with the small ones behind it)
    async with producing(cluster_b.bootstrap_servers, {"linger.ms": "0"}) as producer:
        first = await producer.send(topic, 0, small)
        assert (await first.ack()).base_offset == 0  # the window is open: no coalescing of what follows
        refused = await producer.send(topic, 0, big)
        later = [await producer.send(topic, 0, small) for _ in range(3)]
        other = [await producer.send(topic, 1, small) for _ in range(5)]
        with pytest.raises(RecordRejected) as rejected:
            await refused.ack()
        assert rejected.value.too_large
        for pending in later:
            with pytest.raises(KafkaRequestFailed):
                await pending.ack()
        with pytest.raises(KafkaRequestFailed):  # the partition stays stopped: the session restarts
            await (await producer.send(topic, 0, small)).ack()
        assert await acked_offsets(other) == [0, 1, 2, 3, 4]
    assert await end_offsets(cluster_b.bootstrap_servers, topic, 2) == {0: 1, 1: 5}


async def test_transactions_commit_abort_and_fence(cluster_b: LocalKafkaCluster, topic: str) -> None:
    await create_topic(cluster_b.bootstrap_servers, topic, 2)
    records = make_records(60, seed=7)
    txn_id = f"{topic}-txn"
    committed: dict[int, list[Rec]] = {0: [], 1: []}
    async with producing(cluster_b.bootstrap_servers, transactional_id=txn_id) as producer:
        for n, commit in enumerate([True, False, True]):
            await producer.begin_transaction()
            pendings = []
            for p in (0, 1):
                chunk = records[20 * n + 10 * p : 20 * n + 10 * p + 10]
                pendings.append(await producer.send(topic, p, as_data(chunk)))
                if commit:
                    committed[p] += chunk
            if commit:
                await producer.commit_transaction()
                assert all(p.acknowledged for p in pendings)
            else:
                await producer.flush()
                await producer.abort_transaction()
        got = await consume_all(
            cluster_b.bootstrap_servers, topic, committed, timeout=60, isolation_level="read_committed"
        )
        assert got == committed

        async with producing(cluster_b.bootstrap_servers, transactional_id=txn_id):
            await producer.begin_transaction()  # the older producer, fenced by the newer one
            pending = await producer.send(topic, 0, as_data(records[:1]))
            with pytest.raises(ProducerFenced):
                await pending.ack()
            with pytest.raises(ProducerFenced):
                await producer.commit_transaction()
            with pytest.raises(ProducerFenced):
                await producer.send(topic, 0, as_data(records[:1]))


async def test_nothing_is_written_after_close(slow: LocalKafkaCluster, topic: str) -> None:
    await create_topic(slow.bootstrap_servers, topic, 1)
    async with producing(slow.bootstrap_servers, {"retry.backoff.ms": "50"}) as producer:
        assert (await (await producer.send(topic, 0, [R(None, b"before", (), 1)])).ack()).base_offset == 0
        await asyncio.to_thread(slow.stop)
        try:
            pendings = [await producer.send(topic, 0, [R(None, b"late-%d" % i, (), 2)]) for i in range(20)]
            started = time.monotonic()
            await producer.close(timeout=1.0)
            assert time.monotonic() - started < 5
            left = [t for t in asyncio.all_tasks() if t.get_name() == "batch-producer"]
        finally:
            await asyncio.to_thread(slow.start)
    for pending in pendings:
        with pytest.raises(KafkaRequestFailed):
            await pending.ack()
    await asyncio.sleep(3)  # long enough for a zombie sender's retries (50 ms backoff) to land
    assert await end_offsets(slow.bootstrap_servers, topic, 1) == {0: 1}
    assert left == []


async def test_batches_queued_behind_a_slow_link_are_coalesced_with_their_own_offsets(
    slow: LocalKafkaCluster, topic: str
) -> None:
    await create_topic(slow.bootstrap_servers, topic, 1)
    records = make_records(500, seed=9)
    async with producing(slow.proxied_bootstrap_servers) as producer:
        pendings = [await producer.send(topic, 0, as_data(records[5 * i : 5 * i + 5])) for i in range(100)]
        assert await acked_offsets(pendings) == [5 * i for i in range(100)]
        assert producer.batches_sent < 100, producer.batches_sent
        assert producer.requests_sent < 100
    got = await consume_all(slow.bootstrap_servers, topic, {0: records}, timeout=60)
    assert got == {0: records}


_DELETE_HORIZON = 0x40  # batch attribute bit 6: the log cleaner set a delete horizon (the base timestamp)


async def test_a_batch_the_source_cleaner_gave_a_delete_horizon_reaches_the_target_without_it(
    cluster_a: LocalKafkaCluster, cluster_b: LocalKafkaCluster, topic: str
) -> None:
    # A compacted source's cleaner rewrites a batch holding a tombstone with a delete horizon (attribute
    # bit 6; the base timestamp is then the horizon, the records' times are relative to it), even when it
    # removes nothing. Passed through as it is, the target's cleaner would read the source's horizon and
    # drop the tombstone by the source's clock, not its own delete.retention.ms.
    bootstrap = cluster_a.bootstrap_servers
    configs = {
        "cleanup.policy": "compact",
        "segment.ms": "100",
        "min.cleanable.dirty.ratio": "0.01",
        "min.compaction.lag.ms": "0",
        "delete.retention.ms": "86400000",
    }
    await create_topic(bootstrap, topic, 1, configs)
    await create_topic(cluster_b.bootstrap_servers, topic, 1)
    now = int(time.time() * 1000)
    # every key its own: the cleaner removes nothing, a batch keeps its offsets without gaps
    records: list[Rec] = [(b"k%d" % i, None if i % 5 == 4 else b"v%d" % i, (), now + i) for i in range(20)]
    await produce(bootstrap, topic, {0: records})
    source = Admin(ClusterSettings(alias="source", bootstrap_servers=bootstrap), "test-src")
    await source.start()
    try:

        async def horizon_set() -> list[RawBatch]:
            await asyncio.sleep(0.12)
            roll = b"roll-%d" % time.monotonic_ns()  # a new segment: the old one can be cleaned
            await produce(bootstrap, topic, {0: [(roll, roll, (), int(time.time() * 1000))]})
            fetched = (await fetch_all(source, topic, READ_UNCOMMITTED)).batches
            marked = [b for b in fetched if b.header and b.header.attributes & _DELETE_HORIZON]
            return [b for b in marked if b.header and not b.header.has_gaps]

        [cleaned, *_] = await wait_for(horizon_set, timeout=90, interval=2)
    finally:
        await source.close()
    expected = [(r.key, r.value, r.timestamp) for r in batches.decode(cleaned)]
    assert cleaned.header is not None and expected[0][2] < cleaned.header.first_timestamp  # the horizon
    produced = {k: (k, v, ts) for k, v, _, ts in records}
    assert expected == [produced[k] for k, _, _ in expected], "decoded with the records' own times"

    async with producing(cluster_b.bootstrap_servers) as producer:
        await (await producer.send(topic, 0, cleaned)).ack()
    target = Admin(ClusterSettings(alias="target", bootstrap_servers=cluster_b.bootstrap_servers), "test-dst")
    await target.start()
    try:
        [written] = (await fetch_all(target, topic, READ_UNCOMMITTED)).batches
    finally:
        await target.close()
    assert written.header is not None
    assert not written.header.attributes & _DELETE_HORIZON
    assert [(r.key, r.value, r.timestamp) for r in batches.decode(written)] == expected


async def test_records_without_a_timestamp_are_stored_and_read_back_with_it(
    cluster_b: LocalKafkaCluster, topic: str
) -> None:
    # A record without a timestamp (-1: every magic 0 record, up-converted or copied) in a v2 batch: the
    # broker takes it under CreateTime without a range check and keeps -1, also when it rebuilds the
    # batch for a topic codec of its own (gzip). A batch that starts with such records and holds others is
    # the one aiokafka's C builder got wrong (docs/record-batches.md, "Records without a timestamp").
    now = int(time.time() * 1000)
    times = [-1, -1, now, -1, now + 5]
    records: list[Rec] = [(b"k%d" % i, b"v%d" % i, (), t) for i, t in enumerate(times)]
    target = Admin(ClusterSettings(alias="target", bootstrap_servers=cluster_b.bootstrap_servers), "test-dst")
    await target.start()
    try:
        for name, configs in ((topic, {}), (f"{topic}-gzip", {"compression.type": "gzip"})):
            await create_topic(cluster_b.bootstrap_servers, name, 1, configs)
            async with producing(cluster_b.bootstrap_servers) as producer:
                assert (await (await producer.send(name, 0, as_data(records))).ack()).base_offset == 0
            [stored] = (await fetch_all(target, name, READ_UNCOMMITTED)).batches
            assert stored.header is not None
            assert stored.header.codec is (Codec.GZIP if configs else Codec.NONE)
            assert (stored.header.first_timestamp, stored.header.max_timestamp) == (-1, now + 5)
            assert [r.timestamp for r in batches.decode(stored)] == times
            assert await consume_all(cluster_b.bootstrap_servers, name, {0: records}, timeout=60) == {
                0: records
            }
    finally:
        await target.close()
