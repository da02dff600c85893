"""Where replication starts and resumes on the source, against real brokers.

Records deleted on the source ahead of a lagging task are reported as lost (never skipped silently), and
client overrides that `mirror` also sets itself (`auto.offset.reset`, `isolation.level`,
`session.timeout.ms`) are honoured where they belong instead of crashing the clients that set them.
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
from .test_replication import _stored_progress

TRUNCATED = "source truncated records before they were replicated: they are lost"


def numbered(first: int, n: int) -> list[Rec]:
    """Records whose value is their index: their source offset, when produced in order to one partition."""
    now = int(time.time() * 1000)  # recent timestamps: retention must not delete anything on its own
    return [(b"k%d" % (i % 97), b"%08d" % i, (("i", b"%d" % i),), now + i) for i in range(first, first + n)]


async def produce_batches(bootstrap: str, topic: str, records: list[Rec], per_batch: int) -> None:
    """Records to partition 0, in order, ``per_batch`` to a record batch (a fetch returns at least one
    whole batch, so with ``max.partition.fetch.bytes = 1`` exactly one)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0, max_batch_size=1024 * 1024)
    await producer.start()
    try:
        futures = []
        for i in range(0, len(records), per_batch):
            batch = producer.create_batch()
            for key, value, headers, ts in records[i : i + per_batch]:
                appended = batch.append(key=key, value=value, timestamp=ts, headers=list(headers))
                assert appended is not None, "record batch full"
            batch.close()
            futures.append(await producer.send_batch(batch, topic, partition=0))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


class EndOffset:
    """The end offset of partition 0 of a topic, asked quickly and repeatedly."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.tp = TopicPartition(topic, 0)
        self.consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)

    async def __aenter__(self) -> EndOffset:
        await self.consumer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.consumer.stop()

    async def at_least(self, n: int) -> int | None:
        """The end offset once it is ``n`` or more, else None."""
        if not self.consumer.partitions_for_topic(self.tp.topic):
            await self.consumer._client.force_metadata_update()
            return None
        end = int((await self.consumer.end_offsets([self.tp]))[self.tp])
        return end if end >= n else None


def without_resent(seq: list[int]) -> list[int]:
    """Undo at-least-once re-sends: a record that comes again after later ones counts once."""
    out: list[int] = []
    seen: set[int] = set()
    for i in seq:
        if out and i <= out[-1]:
            assert i in seen, f"record {i} arrives after {out[-1]} but was never copied before"
            continue
        out.append(i)
        seen.add(i)
    return out


def truncated_total(topic: str) -> float:
    value = metrics.REGISTRY.get_sample_value(
        "mirror_source_truncated_records_total",
        {"source": "A", "target": "B", "topic": topic, "partition": "0"},
    )
    return value or 0.0


# --- records deleted on the source ahead of a lagging task ---------------------------------------------


async def test_records_deleted_ahead_of_a_lagging_task_are_counted_as_lost(
    cluster_a: LocalKafkaCluster, cluster_b: LocalKafkaCluster, topic: str, tmp_path: Path
) -> None:
    """DeleteRecords on the source while the task is far behind: what was not copied yet is reported lost
    (an error and the truncation counter, exactly), and copying goes on from the new log start."""
    a, b = cluster_a.bootstrap_servers, cluster_b.bootstrap_servers
    total, slow, deleted_before = 20_000, 3_000, 15_000
    await create_topic(a, topic, 1)
    source = numbered(0, total)
    # The first records one per batch: one per fetch, the task crawls through them. The rest in batches
    # of 500 (quick to write and to copy; 15,000 is a batch boundary).
    t0 = time.monotonic()
    await produce_batches(a, topic, source[:slow], 1)
    await produce_batches(a, topic, source[slow:], 500)
    produced = time.monotonic() - t0
    flow = {"A->B.topics": topic, "A->B.consumer.max.partition.fetch.bytes": "1"}
    settings = settings_for(tmp_path, {"A": a, "B": b}, ["A->B"], **flow)
    remote = f"A.{topic}"
    source_admin = await admin(a)
    try:
        with structlog.testing.capture_logs() as logs:
            async with running(settings), EndOffset(b, remote) as on_b:
                seen = await wait_for(lambda: on_b.at_least(100), timeout=120, interval=0.02)
                t1 = time.monotonic()
                tp = TopicPartition(topic, 0)
                start = await source_admin.delete_records({tp: RecordsToDelete(deleted_before)})
                assert start[tp] == deleted_before
                got = (await consume(b, remote, {0: total - deleted_before}, 180, last={0: source[-1]}))[0]
                tail = time.monotonic() - t1
    finally:
        await source_admin.close()
    print(f"\nproduced in {produced:.1f}s; {seen} on B at the truncation; the tail took {tail:.1f}s")
    copied = without_resent([int(value or b"-1") for _, value, _, _ in got])
    k = sum(1 for i in copied if i < deleted_before)
    assert 0 < k < slow, f"{k} records copied before the truncation: the task was not lagging"
    # a prefix, then every record from the new log start, in order: nothing missing besides what was deleted
    assert copied == list(range(k)) + list(range(deleted_before, total)), "records missing on the target"
    assert all(rec == source[int(rec[1] or b"-1")] for rec in got), "a copy differs from its source"
    lost = deleted_before - k
    assert truncated_total(topic) == lost, f"{lost} records lost, the counter says {truncated_total(topic)}"
    reported = [e for e in logs if e.get("event") == TRUNCATED]
    assert reported, "the loss was not logged"
    assert all(e["log_level"] == "error" for e in reported)
    first_report = reported[0]
    assert (first_report["topic"], first_report["partition"]) == (topic, 0)
    assert (first_report["first_missing"], first_report["log_start_offset"]) == (k, deleted_before)
    assert sum(e["records"] for e in reported) == lost


# --- client overrides that mirror sets itself ----------------------------------------------------------


def log_events(path: Path) -> list[dict[str, Any]]:
    events = []
    for line in path.read_text().splitlines():
        if line.startswith("{"):
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return events


async def test_auto_offset_reset_latest_copies_only_records_written_after_the_start(
    cluster_a: LocalKafkaCluster, cluster_b: LocalKafkaCluster, topic: str, tmp_path: Path
) -> None:
    """`A.consumer.auto.offset.reset = latest` (as Java MM2's own integration tests set it): partitions
    without stored progress start at their end, like Java's source consumer; `mirror run` keeps running."""
    a, b = cluster_a.bootstrap_servers, cluster_b.bootstrap_servers
    await create_topic(a, topic, 1)
    before, after = numbered(0, 100), numbered(100, 50)
    await produce(a, topic, {0: before})
    config = tmp_path / "mm2.properties"
    flow = {"A->B.topics": topic, "A.consumer.auto.offset.reset": "latest"}
    config.write_text(mm2_properties({"A": a, "B": b}, ["A->B"], **flow))
    log = tmp_path / "mirror.log"
    mirror = MirrorProcess(config, log)
    mirror.start()
    assert mirror.proc is not None
    proc = mirror.proc

    async def task_assigned() -> bool:
        assert proc.poll() is None, f"mirror exited {proc.returncode}:\n{log.read_text()[-3000:]}"
        return any(
            e.get("event") == "task assigned" and e.get("flow") == "A->B" and e.get("partitions", 0) > 0
            for e in log_events(log)
        )

    try:
        await wait_for(task_assigned, timeout=90)

        async def start_stored() -> bool:  # the start, resolved at the end (99), is stored as progress
            assert proc.poll() is None, f"mirror exited {proc.returncode}:\n{log.read_text()[-3000:]}"
            return (await _stored_progress(b, "A", topic)).get(0) == len(before) - 1

        await wait_for(start_stored, timeout=60)
        await produce(a, topic, {0: after})
        # a marker after them: once it is copied, anything the task copied before it (a late copy of
        # the older records included) is on the target before it, in order per partition
        marker = numbered(150, 1)
        await produce(a, topic, {0: marker})
        got = (await consume_all(b, f"A.{topic}", {0: after + marker}, 60))[0]
        assert proc.poll() is None, f"mirror exited {proc.returncode}:\n{log.read_text()[-3000:]}"
    finally:
        code, _ = mirror.terminate()
    assert got == after + marker, f"{len(got)} records on the target, expected the 51 written after the start"
    assert code == 0, log.read_text()[-3000:]


async def test_target_consumer_overrides_leave_progress_and_membership_working(
    cluster_a: LocalKafkaCluster, cluster_b: LocalKafkaCluster, topic: str, tmp_path: Path
) -> None:
    """Consumer keys of the target cluster that mirror's own consumers on it (the progress reader, the
    group membership) also pass: records replicate from the start of the source, and a clean restart
    resumes from the stored progress without copying anything twice."""
    a, b = cluster_a.bootstrap_servers, cluster_b.bootstrap_servers
    await create_topic(a, topic, 2)
    first = {0: numbered(0, 200), 1: numbered(1_000, 200)}
    await produce(a, topic, first)
    overrides = {
        "A->B.topics": topic,
        "B.consumer.isolation.level": "read_uncommitted",
        "B.consumer.session.timeout.ms": "12000",
        "B.consumer.auto.offset.reset": "latest",
    }
    settings = settings_for(tmp_path, {"A": a, "B": b}, ["A->B"], **overrides)
    async with running(settings):
        got = await consume_all(b, f"A.{topic}", first, 60)
    for p, recs in first.items():
        assert len(got[p]) == len(recs), f"partition {p}: {len(got[p])} of {len(recs)} records copied"
    assert got == first, "the records written before the start were not all copied, in order, once"
    second = {0: numbered(500, 50), 1: numbered(1_500, 50)}
    await produce(a, topic, second)
    expected = {p: first[p] + second[p] for p in first}
    async with running(settings):
        got = await consume_all(b, f"A.{topic}", expected, 60)
    assert got == expected, "the restart copied records again (or lost some): progress was not resumed"
