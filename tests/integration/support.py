"""Test support: an independent Kafka oracle (plain aiokafka clients) and ways to run `mirror`."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic
from aiokafka.structs import OffsetAndMetadata

from mirror.config import Settings, load_settings
from mirror.kafka import Admin
from mirror.local.kafka import LocalKafka, LocalKafkaCluster
from mirror.replication.progress import ProgressStore
from mirror.service.http import HttpServer
from mirror.service.worker import Worker

# (key, value, headers, timestamp) as the target must hold it
Rec = tuple[bytes | None, bytes | None, tuple[tuple[str, bytes], ...], int]

FAST = {
    "replication.factor": "1",
    "heartbeats.topic.replication.factor": "1",
    "checkpoints.topic.replication.factor": "1",
    "offset-syncs.topic.replication.factor": "1",
    "offset.storage.replication.factor": "1",
    "status.storage.replication.factor": "1",
    "config.storage.replication.factor": "1",
    "refresh.topics.interval.seconds": "1",
    "offset.storage.partitions": "5",
    "service.http.port": "0",
}


def mm2_properties(clusters: Mapping[str, str], flows: Iterable[str], **extra: str) -> str:
    lines = [f"clusters = {', '.join(clusters)}"]
    lines += [f"{alias}.bootstrap.servers = {bs}" for alias, bs in clusters.items()]
    lines += [f"{alias}.offset.flush.interval.ms = 500" for alias in clusters]
    lines += [f"{flow}.enabled = true" for flow in flows]
    # each test its own coordination group, so workers of earlier tests (even killed ones) never join it
    group = {"service.group": f"mirror-test-{uuid.uuid4().hex[:8]}"}
    lines += [f"{k} = {v}" for k, v in {**FAST, **group, **extra}.items()]
    return "\n".join(lines) + "\n"


def settings_for(tmp_path: Path, clusters: Mapping[str, str], flows: Iterable[str], **extra: str) -> Settings:
    path = tmp_path / "mm2.properties"
    path.write_text(mm2_properties(clusters, flows, **extra))
    return load_settings(path, env={}).settings


@contextlib.asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[Worker]:
    """Run a worker in this event loop; stop it cleanly on exit (and fail the test if it crashed)."""
    worker = Worker(settings)
    task = asyncio.create_task(worker.run())
    try:
        yield worker
    finally:
        worker.stop()
        await asyncio.wait_for(task, 60)


@contextlib.asynccontextmanager
async def serving(worker: Worker) -> AsyncIterator[HttpServer]:
    """The worker's HTTP endpoints on a free loopback port."""
    server = HttpServer(worker, "127.0.0.1", 0)
    await server.start()
    try:
        yield server
    finally:
        await server.close()


class MirrorProcess:
    """`python -m mirror run` as a real process, for SIGKILL/SIGTERM tests."""

    def __init__(self, config: Path, log: Path) -> None:
        self.config, self.log = config, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "mirror", "run", "--config", str(self.config), "--log-format", "json"],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def terminate(self, timeout: float = 30) -> tuple[int, float]:
        assert self.proc is not None
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()  # fail the test, but leave no stray process behind
            self.proc.wait()
            raise
        return code, time.monotonic() - t0


async def joined(worker: MirrorProcess, tasks_topic: str, since: int = 0, timeout: float = 60) -> None:
    """Until the worker's log (after byte ``since``) says the group assigned it tasks of ``tasks_topic``:
    it runs and is a member. (Started is not enough: on a busy machine Python alone may take seconds to
    start, and a SIGTERM before the worker's handlers are in place kills it outright.)"""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with worker.log.open(errors="replace") as f:
            f.seek(since)
            if any('"tasks assigned"' in line and f"{tasks_topic}/" in line for line in f):
                return
        await asyncio.sleep(0.25)
    raise AssertionError(f"{worker.log.name}: no tasks of {tasks_topic} assigned within {timeout}s")


async def steady_load(
    bootstrap: str,
    topic: str,
    partitions: int,
    stop: asyncio.Event,
    sent: dict[int, list[Rec]],
    burst: int = 100,
    gap: float = 0.05,
) -> None:
    """Records round-robin over the partitions until stopped, ``burst`` at a time ``gap`` seconds apart
    (about 2000/s by default); remembers what was sent."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        seq = 0
        while not stop.is_set():
            futures = []
            for _ in range(burst):
                p = seq % partitions
                rec: Rec = (
                    b"k%d" % seq,
                    b"v%d" % seq,
                    (("seq", str(seq).encode()),),
                    1_700_000_000_000 + seq,
                )
                futures.append((p, rec, await producer.send(topic, rec[1], rec[0], p, rec[3], list(rec[2]))))
                seq += 1
            for p, rec, fut in futures:
                await fut
                sent[p].append(rec)
            await asyncio.sleep(gap)
    finally:
        await producer.stop()


async def end_offsets(bootstrap: str, topic: str, partitions: int) -> dict[int, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        ends = await consumer.end_offsets([TopicPartition(topic, p) for p in range(partitions)])
        return {tp.partition: off for tp, off in ends.items()}
    finally:
        await consumer.stop()


async def all_partitions_advance(bootstrap: str, topic: str, partitions: int, timeout: float) -> float:
    """Seconds until every partition of the (remote) topic grew: each is copied by some running task."""
    t0 = time.monotonic()
    deadline = t0 + timeout
    start: dict[int, int] | None = None
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):  # the remote topic may not exist yet
            now = await end_offsets(bootstrap, topic, partitions)
            if start is None:
                start = now
            elif all(now[p] > start[p] for p in range(partitions)):
                return time.monotonic() - t0
        await asyncio.sleep(0.25)
    raise AssertionError(f"not every partition of {topic} advanced within {timeout}s")


async def admin(bootstrap: str) -> AIOKafkaAdminClient:
    client = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await client.start()
    return client


async def create_topic(
    bootstrap: str, name: str, partitions: int, configs: Mapping[str, str] | None = None
) -> None:
    client = await admin(bootstrap)
    try:
        resp = await client.create_topics([NewTopic(name, partitions, 1, topic_configs=dict(configs or {}))])
        assert resp.topic_errors[0][1] == 0, resp
    finally:
        await client.close()


async def commit_offsets(bootstrap: str, group: str, offsets: Mapping[tuple[str, int], int]) -> None:
    """Commit offsets for a group without joining it (as a consumer that stopped would have left them)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = {TopicPartition(*tp): OffsetAndMetadata(off, "") for tp, off in offsets.items()}
        consumer.assign(list(tps))
        await consumer.commit(tps)
    finally:
        await consumer.stop()


async def committed_offsets(bootstrap: str, group: str) -> dict[tuple[str, int], int]:
    """A group's committed offsets, as an admin lists them."""
    client = await admin(bootstrap)
    try:
        offsets = await client.list_consumer_group_offsets(group)
        return {(tp.topic, tp.partition): om.offset for tp, om in offsets.items()}
    finally:
        await client.close()


async def add_partitions(bootstrap: str, name: str, total: int) -> None:
    client = await admin(bootstrap)
    try:
        await client.create_partitions({name: NewPartitions(total)})
    finally:
        await client.close()


async def list_topics(bootstrap: str) -> set[str]:
    client = await admin(bootstrap)
    try:
        return set(await client.list_topics())
    finally:
        await client.close()


async def produce(
    bootstrap: str, topic: str, records: Mapping[int, Sequence[Rec]], compression: str | None = None
) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, compression_type=compression, linger_ms=5, max_batch_size=256 * 1024
    )
    await producer.start()
    try:
        futures = []
        for partition, recs in records.items():
            for key, value, headers, ts in recs:
                futures.append(
                    await producer.send(
                        topic,
                        value=value,
                        key=key,
                        partition=partition,
                        timestamp_ms=ts,
                        headers=list(headers),
                    )
                )
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def consume(
    bootstrap: str,
    topic: str,
    expected: Mapping[int, int],
    timeout: float = 120,
    last: Mapping[int, Rec] | None = None,
    isolation_level: str = "read_uncommitted",
) -> dict[int, list[Rec]]:
    """Read partitions from the start until each holds at least the expected count (or time runs out).

    With ``last``, also until each partition's newest record is that one: with duplicates (at-least-once)
    a count alone can be reached before every record arrived.
    """
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        isolation_level=isolation_level,
    )
    await consumer.start()
    out: dict[int, list[Rec]] = {p: [] for p in expected}
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                if not consumer.assignment():
                    parts = await _partitions(consumer, topic)
                    if parts is not None and set(expected) <= parts:
                        tps = [TopicPartition(topic, p) for p in expected]
                        consumer.assign(tps)
                        await consumer.seek_to_beginning(*tps)
            if consumer.assignment():
                data = await consumer.getmany(timeout_ms=500)
                for tp, recs in data.items():
                    out[tp.partition].extend((r.key, r.value, tuple(r.headers), r.timestamp) for r in recs)
                if all(len(out[p]) >= n for p, n in expected.items()) and all(
                    out[p] and out[p][-1] == rec for p, rec in (last or {}).items()
                ):
                    # linger briefly to catch duplicates beyond the expected count
                    data = await consumer.getmany(timeout_ms=300)
                    for tp, recs in data.items():
                        out[tp.partition].extend(
                            (r.key, r.value, tuple(r.headers), r.timestamp) for r in recs
                        )
                    return out
            else:
                await asyncio.sleep(0.2)
        return out
    finally:
        await consumer.stop()


async def consume_all(
    bootstrap: str, topic: str, expected: Mapping[int, Sequence[Rec]], timeout: float = 120, **kwargs: Any
) -> dict[int, list[Rec]]:
    """`consume` until every partition holds (at least) its expected records, the last one included."""
    counts = {p: len(r) for p, r in expected.items()}
    return await consume(bootstrap, topic, counts, timeout, {p: r[-1] for p, r in expected.items()}, **kwargs)


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> set[int] | None:
    await consumer._client.force_metadata_update()
    parts: Any = consumer.partitions_for_topic(topic)
    return set(parts) if parts else None


async def wait_for(predicate: Any, timeout: float = 60, interval: float = 0.25) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await predicate()
        if value:
            return value
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


async def http_get(port: int, path: str) -> tuple[int, str]:
    """GET a path of a `mirror` HTTP server on loopback: (status, body)."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}{path}", timeout=aiohttp.ClientTimeout(total=10)) as r,
    ):
        return r.status, await r.text()


async def store_progress(settings: Settings, flow: str, last_offsets: Mapping[tuple[str, int], int]) -> None:
    """Write a flow's stored progress as a task would (the last copied source offset per partition)."""
    store = ProgressStore(settings.flows[flow], settings.cluster(settings.flows[flow].target))
    client = Admin(settings.cluster(settings.flows[flow].target), "test|progress-admin")
    await client.start()
    try:
        await store.ensure_topic(client)
    finally:
        await client.close()
    await store.start()
    try:
        await store.store(last_offsets)
    finally:
        await store.close()


def make_records(n: int, seed: int) -> list[Rec]:
    """Keys, null keys, tombstones, binary and duplicate header keys, explicit old timestamps."""
    rnd = random.Random(seed)
    out: list[Rec] = []
    for i in range(n):
        key = None if i % 7 == 0 else b"key-%d" % (i % 500)
        value = None if (key is not None and i % 11 == 0) else rnd.randbytes(rnd.randint(0, 300))
        headers: tuple[tuple[str, bytes], ...] = ()
        if i % 3 == 0:
            headers = (("dup", b"1"), ("bin", bytes([0, 255, i % 256])), ("dup", b"2"), ("empty", b""))
        out.append((key, value, headers, 1_000_000_000_000 + i * 37))
    return out


def own_cluster_fixtures(first: str, second: str) -> tuple[Any, Any, Any]:
    """Fixtures giving a test module two clusters of its own in place of the session's shared ones,
    started for the module and stopped after it: for modules that leave state in a flow's internal topics
    (planted records, operator controls) that later tests of the session would otherwise meet. In the
    module: ``own_clusters, cluster_a, cluster_b = own_cluster_fixtures("XA", "XB")``."""

    @pytest.fixture(scope="module")
    def own_clusters(kafka: LocalKafka) -> Iterator[list[LocalKafkaCluster]]:
        own = kafka.add(first, second)
        try:
            yield own
        finally:
            for cluster in own:
                cluster.stop()

    @pytest.fixture
    def cluster_a(own_clusters: list[LocalKafkaCluster]) -> LocalKafkaCluster:
        return own_clusters[0]

    @pytest.fixture
    def cluster_b(own_clusters: list[LocalKafkaCluster]) -> LocalKafkaCluster:
        return own_clusters[1]

    return own_clusters, cluster_a, cluster_b
