"""Unreadable records planted in the internal topics mirror reads, against real brokers (#14).

Progress, offset syncs, checkpoints and heartbeats each get a record no reader can decode (as a buggy
tool, an older version or an operator's mistake would write it). Each is reported once (topic, partition,
offset, what is wrong), counted in ``mirror_internal_records_malformed_total``, and passed over with the
fallback of its kind, while the flow goes on: no task restarts, records keep being copied. (The tasks
topic, ``mm2-tasks.<source>.internal``, is never read: it only carries the coordination group.)
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import structlog
from aiokafka import AIOKafkaProducer

from mirror import metrics
from mirror.local.kafka import LocalKafkaCluster
from mirror.mm2 import records as mm2
from mirror.service.worker import Worker

from .support import (
    Rec,
    consume,
    create_topic,
    list_topics,
    own_cluster_fixtures,
    produce,
    running,
    settings_for,
    wait_for,
)
from .test_checkpoints import FAST_CHECKPOINTS, _commit, checkpoints_on
from .test_topic_lifecycle import delete_topic

REPORTED = "unreadable record in an internal topic; passed over"
PROGRESS_PARTITIONS = 5  # offset.storage.partitions of the test settings


# the planted records stay in the internal topics, where later tests reading the shared clusters'
# internal topics would meet them
own_clusters, cluster_a, cluster_b = own_cluster_fixtures("MA", "MB")


def numbered(tag: str, n: int) -> list[Rec]:
    now = int(time.time() * 1000)
    return [(b"k%d" % i, f"{tag}-{i}".encode(), (), now + i) for i in range(n)]


async def plant(bootstrap: str, topic: str, key: bytes, value: bytes, partition: int = 0) -> int:
    """Write one record as a foreign tool would; its offset."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        meta = await (await producer.send(topic, value=value, key=key, partition=partition))
        return int(meta.offset)
    finally:
        await producer.stop()


async def ensure_compacted(bootstrap: str, topic: str, partitions: int) -> None:
    if topic not in await list_topics(bootstrap):
        await create_topic(bootstrap, topic, partitions, {"cleanup.policy": "compact"})


def malformed_total(cluster: str, topic: str) -> float:
    labels = {"cluster": cluster, "topic": topic}
    return metrics.REGISTRY.get_sample_value("mirror_internal_records_malformed_total", labels) or 0.0


def restarts() -> float:
    labels = {"source": "A", "target": "B"}
    return metrics.REGISTRY.get_sample_value("mirror_task_restarts_total", labels) or 0.0


def progress_record(topic: str, partition: int, value: bytes) -> tuple[bytes, bytes, int]:
    key = mm2.source_offset_key("A", topic, partition)
    return key, value, mm2.java_default_partition(key, PROGRESS_PARTITIONS)


@pytest.mark.parametrize("kind", ["progress", "offset-syncs", "checkpoints", "heartbeats"])
async def test_an_unreadable_internal_record_is_reported_counted_and_passed_over(
    cluster_a: LocalKafkaCluster, cluster_b: LocalKafkaCluster, topic: str, tmp_path: Path, kind: str
) -> None:
    a, b = cluster_a.bootstrap_servers, cluster_b.bootstrap_servers
    group = f"g-{topic}"
    await create_topic(a, topic, 2)
    first = {0: numbered("p0", 10), 1: numbered("p1", 10)}
    await produce(a, topic, first)
    extra = {
        "A->B.topics": topic,
        "A->B.groups": group,
        # partitions without readable progress would start at their end: the fallback must not
        "A->B.consumer.auto.offset.reset": "latest",
        **FAST_CHECKPOINTS,
    }
    settings = settings_for(tmp_path, {"A": a, "B": b}, ["A->B"], **extra)
    planted: list[tuple[str, str, int, int]] = []  # (cluster alias, topic, partition, offset)
    heartbeats = f"{topic}.heartbeats"

    if kind == "progress":
        progress = "mm2-offsets.A.internal"
        await ensure_compacted(b, progress, PROGRESS_PARTITIONS)
        # partition 0: readable progress (offset 4), then an unreadable one: resume at 5
        key, value, part = progress_record(topic, 0, mm2.encode_source_offset(4))
        await plant(b, progress, key, value, part)
        key, value, part = progress_record(topic, 0, b'{"offset":"four"}')
        planted.append(("B", progress, part, await plant(b, progress, key, value, part)))
        # partition 1: only unreadable progress: read from the log start (despite auto.offset.reset=latest)
        key, value, part = progress_record(topic, 1, b"not json")
        planted.append(("B", progress, part, await plant(b, progress, key, value, part)))
        # a key that is no Connect offset key at all
        planted.append(("B", progress, 0, await plant(b, progress, b"\x00garbage", b'{"offset":1}', 0)))
    elif kind == "offset-syncs":
        syncs = "mm2-offset-syncs.B.internal"
        await ensure_compacted(a, syncs, 1)
        planted.append(("A", syncs, 0, await plant(a, syncs, b"\x00\x05", b"\x01")))  # truncated key
        bad = mm2.OffsetSync(topic, 0, -3, 7)  # decodes, but a negative offset would poison translation
        planted.append(("A", syncs, 0, await plant(a, syncs, bad.encode_key(), bad.encode_value())))
    elif kind == "checkpoints":
        checkpoints = "A.checkpoints.internal"
        await ensure_compacted(b, checkpoints, 1)
        key = mm2.Checkpoint(group, f"A.{topic}", 0, 0, 0).encode_key()
        planted.append(("B", checkpoints, 0, await plant(b, checkpoints, key, b"\x00\x07")))  # version 7
    else:
        # a heartbeats topic of an upstream cluster named after this test (`<topic>.heartbeats`, replicated
        # by A->B as any heartbeats topic is): mirror reads the newest record of each batch it copies. Not
        # A's own `heartbeats`, which other tests share; removed at the end.
        await ensure_compacted(a, heartbeats, 1)

    before = {(c, t): malformed_total(c, t) for c, t, _, _ in planted}
    restarts_before = restarts()
    try:
        with structlog.testing.capture_logs() as logs:
            async with running(settings) as worker:
                await _copies_go_on(worker, a, b, topic, kind, first)
                if kind in ("offset-syncs", "checkpoints"):
                    # the checkpoint job read the bad record and goes on: the group is checkpointed
                    # (an offset this run copied: it started at the end, offset 10, with syncs from there)
                    await _commit(a, group, {(topic, 0): 12})
                    await wait_for(lambda: checkpoints_on(settings, group, {0: 12}, topic), timeout=60)
                    assert all(job.last_error is None for job in worker.flows[0].singletons)
                if kind == "heartbeats":  # written once its partition started (at its end: latest)
                    await wait_for(lambda: _assigned(worker, {(heartbeats, 0)}), timeout=60)
                    bad = await plant(a, heartbeats, b"\x00\x01A", b"\x00\x00\x00")  # truncated key
                    planted.append(("A", heartbeats, 0, bad))
                    before[("A", heartbeats)] = malformed_total("A", heartbeats)
                    await wait_for(lambda: _reported(logs, planted), timeout=60)
    finally:  # gone from the source, so that no later test of the session (verify) looks at them
        await delete_topic(a, topic)
        if kind == "heartbeats":
            await delete_topic(a, heartbeats)
            await delete_topic(b, f"A.{heartbeats}")
    assert restarts() == restarts_before, "a task session restarted"
    reports = [e for e in logs if e.get("event") == REPORTED]
    for cluster, name, partition, offset in planted:
        mine = [e for e in reports if (e["cluster"], e["topic"], e["partition"], e["offset"]) == (
            cluster, name, partition, offset)]  # fmt: skip
        assert len(mine) == 1, f"{name}-{partition}@{offset}: reported {len(mine)} times"
        assert mine[0]["log_level"] == "error" and mine[0]["reason"] and mine[0]["fallback"]
    for (cluster, name), was in before.items():
        count = sum(1 for c, t, _, _ in planted if (c, t) == (cluster, name))
        assert malformed_total(cluster, name) == was + count


async def _copies_go_on(
    worker: Worker, a: str, b: str, topic: str, kind: str, first: dict[int, list[Rec]]
) -> None:
    """The flow copies: what was there at the start (by its fallback), and what is written now."""
    # progress: partition 0 resumes after its last readable progress (offset 4), partition 1 from its
    # start; else no stored progress and auto.offset.reset=latest: only what is written from now on
    expected = {0: first[0][5:], 1: first[1]} if kind == "progress" else {0: [], 1: []}
    await wait_for(lambda: _running(worker), timeout=60)
    later = {0: numbered("later0", 5), 1: numbered("later1", 5)}
    if kind != "progress":
        # a partition starting at its end starts once assigned: write only after that
        await wait_for(lambda: _assigned(worker, {(topic, 0), (topic, 1)}), timeout=60)
    await produce(a, topic, later)
    want = {p: expected[p] + later[p] for p in later}
    last = {p: recs[-1] for p, recs in later.items()}
    got = await consume(b, f"A.{topic}", {p: len(r) for p, r in want.items()}, last=last)
    assert got == want


async def _running(worker: Worker) -> bool:
    flow = worker.status().flows[0]
    return flow.state == "running" and bool(flow.tasks) and all(t.state == "running" for t in flow.tasks)


async def _assigned(worker: Worker, partitions: set[tuple[str, int]]) -> bool:
    """Whether these partitions' start is known: stored progress, else auto.offset.reset=latest resolved
    (their end then)."""
    started = {
        tp
        for task in worker.flows[0].tasks.values()
        for tp in (*task._positions.initial, *task._positions.loaded)
    }
    return partitions <= started


async def _reported(logs: list[dict[str, object]], planted: list[tuple[str, str, int, int]]) -> bool:
    keys = {(e.get("cluster"), e.get("topic"), e.get("partition"), e.get("offset")) for e in logs}
    return all(p in keys for p in planted)
