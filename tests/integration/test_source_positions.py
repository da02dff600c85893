"""Where replication starts and resumes on the source, against real brokers.

Records deleted on the source ahead of a lagging task are reported as lost (never skipped silently), and
client overrides that `mirror` also sets itself (`auto.offset.reset`, `isolation.level`,
`session.timeout.ms`) are honoured where they belong instead of crashing the clients.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import RecordsToDelete

from mirror import metrics
from mirror.local.kafka import LocalKafkaCluster

from .support import (
    MirrorProcess,
    Rec,
    admin,
    consume,
    consume_all,
    create_topic,
    mm2_properties,
    produce,
    running,
    settings_for,
    wait_for,
)

TRUNCATED = "source truncated records before they were replicated: they are lost"


def numbered(first: int, n: int) -> list[Rec]:
    """Records whose value is their index (as the source assigns offsets, when produced to one partition)."""
    now = int(time.time() * 1000)  # not old timestamps: retention must not delete them on its own
    return [(b"k%d" % (i % 97), b"%08d" % i, (("i", b"%d" % i),), now + i) for i in range(first, first + n)]


async def produce_one_per_batch(bootstrap: str, topic: str, records: list[Rec]) -> None:
    """Each record in its own record batch (partition 0): a fetch capped at one byte returns one record."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    await producer.start()
    try:
        futures = []
        for key, value, headers, ts in records:
            batch = producer.create_batch()
            assert batch.append(key=key, value=value, timestamp=ts, headers=list(headers)) is not None
            batch.close()
            futures.append(await producer.send_batch(batch, topic, partition=0))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def delete_records(bootstrap: str, topic: str, before: int) -> int:
    """DeleteRecords on partition 0 up to ``before``: the new log start offset."""
    client = await admin(bootstrap)
    try:
        tp = TopicPartition(topic, 0)
        result = await client.delete_records({tp: RecordsToDelete(before)})
        return result[tp]
    finally:
        await client.close()


class EndOffset:
    """One consumer asking for a partition's end offset, quickly and repeatedly (0 while it is missing)."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.tp = TopicPartition(topic, 0)
        self.consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)

    async def __aenter__(self) -> EndOffset:
        await self.consumer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.consumer.stop()

    async def __call__(self) -> int:
        try:
            ends = await self.consumer.end_offsets([self.tp])
        except Exception:  # noqa: BLE001  (not created yet)
            await self.consumer._client.force_metadata_update()
            return 0
        return int(ends[self.tp])


def indices(seq: list[Rec]) -> list[int]:
    return [int(value) for _, value, _, _ in seq if value is not None]


def without_resent(seq: list[int]) -> list[int]:
    """Undo at-least-once re-sends: a record again, after later ones, is dropped (the first copy counts)."""
    out: list[int] = []
    for i in seq:
        if out and i <= out[-1]:
            assert i in set(out), f"record {i} arrives after {out[-1]} and was never copied before"
            continue
        out.append(i)
    return out


def truncated_counter(topic: str) -> float:
    value = metrics.REGISTRY.get_sample_value(
        "mirror_source_truncated_records_total",
        {"source": "A", "target": "B", "topic": topic, "partition": "0"},
    )
    return value or 0.0


# --- item 4: records deleted on the source ahead of a lagging task -----------------------------------------


async def test_records_deleted_ahead_of_a_lagging_task_are_counted_as_lost(
    cluster_a: LocalKafkaCluster, cluster_b: LocalKafkaCluster, topic: str, tmp_path: Path
) -> None:
    a, b = cluster_a.bootstrap_servers, cluster_b.bootstrap_servers
    total, deleted_before = 20_000, 15_000
    await create_topic(a, topic, 1)
    source = numbered(0, total)
    t0 = time.monotonic()
    await produce_one_per_batch(a, topic, source)
    print(f"\nproduced {total} one-record batches in {time.monotonic() - t0:.1f}s")
    slow = {
        "A->B.topics": topic,
        # one record per fetch and per poll: the task lags far behind the source
        "A->B.consumer.max.poll.records": "1",
        "A->B.consumer.max.partition.fetch.bytes": "1",
    }
    settings = settings_for(tmp_path, {"A": a, "B": b}, ["A->B"], **slow)
    remote = f"A.{topic}"
    with structlog.testing.capture_logs() as logs:
        async with running(settings), EndOffset(b, remote) as on_b:
            copied = await wait_for(lambda: _at_least(on_b, 100), timeout=120, interval=0.02)
            t1 = time.monotonic()
            start = await delete_records(a, topic, deleted_before)
            before_delete = copied
            after_delete = await on_b()
            print(f"B held {before_delete}..{after_delete} when the source was truncated")
            assert start == deleted_before
            got = await consume(b, remote, {0: total - deleted_before}, 180, last={0: source[-1]})
            print(f"tail copied in {time.monotonic() - t1:.1f}s")
    seq = without_resent(indices(got[0]))
    kept = [i for i in seq if i < deleted_before]
    k = len(kept)
    assert 0 < k < deleted_before, f"{k} records copied before the truncation: it lost nothing"
    # a prefix, then the records from the new log start, in order: nothing else missing
    assert seq == list(range(k)) + list(range(deleted_before, total)), "records missing besides the deleted"
    assert all(rec == source[int(rec[1] or b"-1")] for rec in got[0]), "a copy differs from its source"
    lost = deleted_before - k
    assert truncated_counter(topic) == lost, f"{lost} records lost, counted {truncated_counter(topic)}"
    errors = [e for e in logs if e.get("event") == TRUNCATED]
    assert errors, "the loss was not logged"
    assert all(e["log_level"] == "error" for e in errors)
    assert sum(e["records"] for e in errors) == lost
    first = errors[0]
    assert (first["topic"], first["partition"], first["first_missing"]) == (topic, 0, k)
    assert first["log_start_offset"] == deleted_before


async def _at_least(end: EndOffset, n: int) -> int | None:
    count = await end()
    return count if count >= n else None
