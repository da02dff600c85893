"""`BatchFetcher` against real brokers (docs/record-batches.md, "Fetching"): every codec comes out as the
broker's own batch bytes and decodes to what was produced; read_committed hands out committed records
only; compaction gaps come decoded; a seek into a batch hands out nothing before it; pause drops what is
buffered; a deleted position is reported, never skipped; a record bigger than the partition fetch size
still comes; and on a slow link reading is pipelined."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Mapping, Sequence

import pytest
import structlog
from aiokafka import TopicPartition
from aiokafka.admin import RecordsToDelete

from bench.wan import Toxiproxy
from mirror.config import ClusterSettings
from mirror.errors import SourceOutOfRange
from mirror.kafka import Admin
from mirror.kafka.batches import SourceBatch
from mirror.kafka.fetcher import BatchFetcher
from mirror.local.kafka import LocalKafka, LocalKafkaCluster

from .support import Rec, admin, create_topic, end_offsets, make_records, produce, wait_for
from .test_batches_on_broker import READ_UNCOMMITTED, fetch_all, transactions
from .test_disaster_recovery import compacted_with_gaps, read_ids

TP = tuple[str, int]


@contextlib.asynccontextmanager
async def fetching(
    bootstrap: str, isolation: str = "read_committed", **overrides: str
) -> AsyncIterator[BatchFetcher]:
    fetcher = BatchFetcher(
        ClusterSettings(alias="src", bootstrap_servers=bootstrap), "test-fetcher", overrides, isolation
    )
    await fetcher.start()
    try:
        yield fetcher
    finally:
        await fetcher.close()


async def read_to(
    fetcher: BatchFetcher, ends: Mapping[TP, int], timeout: float = 60, **kw: int
) -> dict[TP, list[SourceBatch]]:
    """Fetch until every partition's position reached its end offset."""
    out: dict[TP, list[SourceBatch]] = {tp: [] for tp in ends}
    deadline = time.monotonic() + timeout
    while any(fetcher.position(tp) < end for tp, end in ends.items()):
        assert time.monotonic() < deadline, {tp: fetcher.position(tp) for tp in ends}
        for batch in await fetcher.fetch(500, **kw):
            out[(batch.topic, batch.partition)].append(batch)
    return out


def as_recs(batches: Sequence[SourceBatch]) -> list[Rec]:
    return [
        (r.key, r.value, tuple((k, v) for k, v in r.headers), r.timestamp) for b in batches for r in b.records
    ]


def offsets(batches: Sequence[SourceBatch]) -> list[int]:
    return [r.offset for b in batches for r in b.records]


async def test_every_codec_comes_as_the_brokers_batch_bytes_and_decodes_to_what_was_produced(
    cluster_a: LocalKafkaCluster, topic: str
) -> None:
    bootstrap = cluster_a.bootstrap_servers
    codecs = [None, "gzip", "snappy", "lz4", "zstd"]
    await create_topic(bootstrap, topic, len(codecs))
    records = make_records(400, seed=7)  # null keys and values, headers
    for partition, codec in enumerate(codecs):
        await produce(bootstrap, topic, {partition: records}, compression=codec)
    ends = {(topic, p): 400 for p in range(len(codecs))}
    async with fetching(bootstrap) as fetcher:
        fetcher.assign(dict.fromkeys(ends, 0))
        got = await read_to(fetcher, ends)
    settings = ClusterSettings(alias="src", bootstrap_servers=bootstrap)
    source = Admin(settings, "test-fetcher-raw")
    await source.start()
    try:
        for (_, partition), batches in got.items():
            assert as_recs(batches) == records, codecs[partition]
            assert offsets(batches) == list(range(400))
            chunks = [c for b in batches for c in b.chunks]
            assert all(c.raw is not None for c in chunks), "nothing to rebuild here: all pass through"
            broker = await fetch_all(source, topic, READ_UNCOMMITTED, partition)
            raw = {b.base_offset: bytes(b.data) for b in broker.batches}
            assert [bytes(c.raw.data) for c in chunks if c.raw] == [raw[c.first_offset] for c in chunks]
    finally:
        await source.close()


async def test_read_committed_hands_out_committed_records_only_and_moves_past_the_markers(
    cluster_a: LocalKafkaCluster, topic: str
) -> None:
    bootstrap = cluster_a.bootstrap_servers
    await create_topic(bootstrap, topic, 1)
    committed = await transactions(bootstrap, topic, [True, False, True, False, False, True], 7, "lz4")
    end = (await end_offsets(bootstrap, topic, 1))[0]
    assert end == 6 * 8  # 6 transactions of 7 records and a marker each
    tp = (topic, 0)
    async with fetching(bootstrap, "read_committed") as fetcher:
        fetcher.assign({tp: 0})
        got = (await read_to(fetcher, {tp: end}))[tp]
        assert fetcher.position(tp) == end, "past the last marker"
        assert await fetcher.fetch(300) == []
    assert as_recs(got) == committed
    for chunk in (c for b in got for c in b.chunks):
        assert chunk.raw is not None and chunk.raw.header is not None
        assert not chunk.raw.header.is_control
    async with fetching(bootstrap, "read_uncommitted") as fetcher:
        fetcher.assign({tp: 0})
        everything = (await read_to(fetcher, {tp: end}))[tp]
    assert len(as_recs(everything)) == 42, "read_uncommitted: aborted records too, markers never"


async def test_compaction_gaps_come_as_decoded_chunks_with_the_source_offsets(
    cluster_a: LocalKafkaCluster, topic: str
) -> None:
    bootstrap = cluster_a.bootstrap_servers
    await compacted_with_gaps(bootstrap, topic)
    expected = await read_ids(bootstrap, topic)
    end = (await end_offsets(bootstrap, topic, 1))[0]
    tp = (topic, 0)
    async with fetching(bootstrap) as fetcher:
        fetcher.assign({tp: 0})
        got = (await read_to(fetcher, {tp: end}))[tp]
    assert [(r.offset, r.value) for b in got for r in b.records] == expected
    chunks = [c for b in got for c in b.chunks]
    gapped = [c for c in chunks if not c.contiguous]
    assert gapped, "the log has compaction gaps"
    assert all(c.raw is None for c in gapped), "a batch with gaps is decoded, never passed through"


async def test_a_seek_into_a_batch_hands_out_nothing_before_the_position(
    cluster_a: LocalKafkaCluster, topic: str
) -> None:
    bootstrap = cluster_a.bootstrap_servers
    await create_topic(bootstrap, topic, 1)
    records = make_records(300, seed=8)
    await produce(bootstrap, topic, {0: records}, compression="zstd")
    tp = (topic, 0)
    async with fetching(bootstrap) as fetcher:
        fetcher.assign({tp: 0})
        first = (await read_to(fetcher, {tp: 300}))[tp]
        big = next(c for b in first for c in b.chunks if c.count > 10)
        middle = big.first_offset + big.count // 2
        fetcher.seek({tp: middle})
        assert fetcher.position(tp) == middle
        got = []
        while not got:  # at most 3 records (the throttle's limit): a batch is cut
            got = await fetcher.fetch(1000, max_records=3)
        assert offsets(got) == [middle, middle + 1, middle + 2]
        assert fetcher.position(tp) == middle + 3
        got += (await read_to(fetcher, {tp: 300}))[tp]
    assert offsets(got) == list(range(middle, 300))
    assert as_recs(got) == records[middle:]
    assert got[0].chunks[0].raw is None, "the batch cut at the position is decoded"


async def test_pause_drops_what_is_buffered_and_resume_reads_again_from_the_position(
    cluster_a: LocalKafkaCluster, topic: str
) -> None:
    bootstrap = cluster_a.bootstrap_servers
    await create_topic(bootstrap, topic, 2)
    records = make_records(500, seed=9)
    for i in range(0, 500, 100):  # five batches each
        await produce(bootstrap, topic, {0: records[i : i + 100], 1: records[i : i + 100]})
    a, b = (topic, 0), (topic, 1)
    async with fetching(bootstrap) as fetcher:
        fetcher.assign({a: 0, b: 0})
        first: list[SourceBatch] = []
        of_b: list[SourceBatch] = []
        while not first:
            for x in await fetcher.fetch(1000, max_bytes=1):
                (first if (x.topic, x.partition) == a else of_b).append(x)
        assert len(first) == 1 and len(first[0].chunks) == 1, "at most about max_bytes: one batch"
        handed = first[0].last_offset + 1
        assert handed < 500
        assert fetcher.position(a) == handed

        async def buffered() -> bool:
            return fetcher.buffered > 0

        await wait_for(buffered, timeout=10)
        fetcher.pause([a])
        of_b += (await read_to(fetcher, {b: 500}))[b]
        assert offsets(of_b) == list(range(500))
        assert fetcher.buffered == 0, "nothing of the paused partition is kept"
        assert all((x.topic, x.partition) != a for x in await fetcher.fetch(300))
        assert fetcher.position(a) == handed
        fetcher.resume([a])
        rest = (await read_to(fetcher, {a: 500}))[a]
    assert offsets(rest) == list(range(handed, 500))
    assert as_recs(first + rest) == records


async def test_a_deleted_position_raises_source_out_of_range_and_a_seek_reads_on(
    cluster_a: LocalKafkaCluster, topic: str
) -> None:
    bootstrap = cluster_a.bootstrap_servers
    await create_topic(bootstrap, topic, 1)
    await produce(bootstrap, topic, {0: make_records(100, seed=10)})
    client = await admin(bootstrap)
    try:
        await client.delete_records({TopicPartition(topic, 0): RecordsToDelete(60)})
    finally:
        await client.close()
    tp = (topic, 0)
    async with fetching(bootstrap) as fetcher:
        fetcher.assign({tp: 10})
        with pytest.raises(SourceOutOfRange) as raised:
            for _ in range(20):
                await fetcher.fetch(500)
        assert raised.value.positions == {tp: 10}
        assert fetcher.position(tp) == 10, "never jumps by itself"
        with pytest.raises(SourceOutOfRange):
            await fetcher.fetch(100)
        fetcher.seek({tp: 60})
        got = (await read_to(fetcher, {tp: 100}))[tp]
    assert offsets(got) == list(range(60, 100))


async def test_a_record_bigger_than_the_partition_fetch_size_still_comes(
    cluster_a: LocalKafkaCluster, topic: str
) -> None:
    bootstrap = cluster_a.bootstrap_servers
    await create_topic(bootstrap, topic, 3)
    small = make_records(20, seed=11)
    big: Rec = (b"big", bytes(range(256)) * 1200, (("h", b"1"),), 1_700_000_000_000)  # 300 KiB
    per_partition = {p: [*small[:10], big, *small[10:], big] for p in range(3)}
    await produce(bootstrap, topic, per_partition)
    ends = {(topic, p): 22 for p in range(3)}
    async with fetching(bootstrap, **{"max.partition.fetch.bytes": str(16 * 1024)}) as fetcher:
        fetcher.assign(dict.fromkeys(ends, 0))
        got = await read_to(fetcher, ends)
    for (_, partition), batches in got.items():
        assert as_recs(batches) == per_partition[partition]


# --- pipelining on a slow link -------------------------------------------------------------------------

RTT_MS = 80
MB = 1024 * 1024


@pytest.fixture(scope="module")
def proxied(kafka: LocalKafka, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LocalKafkaCluster]:
    proxy = Toxiproxy(tmp_path_factory.mktemp("toxiproxy") / "toxiproxy.log")
    try:
        cluster = kafka.add("FP", proxied=True)[0]
        proxy.proxy("FP", cluster.proxy_port, cluster.proxied_port, RTT_MS)
        yield cluster  # type: ignore[misc]
        cluster.stop()
    finally:
        proxy.close()


async def _timed_read(
    bootstrap: str, ends: Mapping[TP, int], consume_s: float = 0, take: int | None = None, **overrides: str
) -> tuple[float, int]:
    """Seconds to read everything when each fetch's batches take ``consume_s`` to handle (a produce
    round trip to the target), and how many fetch calls brought data."""
    async with fetching(bootstrap, "read_uncommitted", **overrides) as fetcher:
        fetcher.assign(dict.fromkeys(ends, 0))
        calls = 0
        start = time.monotonic()
        while any(fetcher.position(tp) < end for tp, end in ends.items()):
            if await fetcher.fetch(1000, max_bytes=take):
                calls += 1
                if consume_s:
                    await asyncio.sleep(consume_s)
        return time.monotonic() - start, calls


async def test_reading_over_a_slow_link_is_pipelined_not_gated_by_the_consumer(
    proxied: LocalKafkaCluster, topic: str
) -> None:
    direct, slow = proxied.bootstrap_servers, proxied.proxied_bootstrap_servers
    partitions, size, value = 8, 50 * MB, 64 * 1024
    await create_topic(direct, topic, partitions)
    per = size // value // partitions
    one: Rec = (None, bytes(range(256)) * (value // 256), (), 1_700_000_000_000)
    await produce(direct, topic, {p: [one] * per for p in range(partitions)})
    ends = {(topic, p): per for p in range(partitions)}
    rtt, mb = RTT_MS / 1000, size / MB

    loopback_s, _ = await _timed_read(direct, ends)
    proxied_s, _ = await _timed_read(slow, ends)  # responses of up to 8 x 4 MiB
    # 4 MiB responses (8 x 512 KiB): about 13 of them, so at least 13 round trips
    small = {"max.partition.fetch.bytes": str(512 * 1024)}
    responses = size / (4 * MB)
    small_s, _ = await _timed_read(slow, ends, **small)
    # ... with a consumer spending one RTT on each 4 MiB it takes (its produce round trip to the target)
    gated_s, calls = await _timed_read(slow, ends, rtt, 4 * MB, **small)
    consumer_s = calls * rtt
    numbers = (
        f"loopback {mb / loopback_s:.0f} MB/s ({loopback_s:.2f} s); over {RTT_MS} ms RTT: "
        f"{mb / proxied_s:.0f} MB/s ({proxied_s:.2f} s) with 32 MiB responses, "
        f"{mb / small_s:.0f} MB/s ({small_s:.2f} s; {responses:.1f} RTTs: {responses * rtt:.2f} s) "
        "with 4 MiB, "
        f"{mb / gated_s:.0f} MB/s ({gated_s:.2f} s) with a consumer spending {consumer_s:.2f} s"
    )
    structlog.get_logger("test").info("fetcher throughput", numbers=numbers)
    print("\n" + numbers)
    assert proxied_s < loopback_s + 4 * rtt + 1, numbers
    assert small_s < 2 * (responses * rtt + loopback_s) + 0.5, numbers
    # fetched while the consumer works: about the longer of the two, not their sum
    assert gated_s < small_s + consumer_s - 0.5 * min(small_s, consumer_s), numbers
