"""`mirror cutover` against real brokers: a migration end to end, and its refusals (nothing half done)."""

from __future__ import annotations

import argparse
import asyncio
import io
import json
from collections import defaultdict
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition

from mirror.cli.cutover import run_cutover
from mirror.client import remote_consumer_offsets
from mirror.local.kafka import LocalKafkaCluster
from mirror.migration.cutover import CutoverOptions, cutover
from tests.integration.support import (
    Rec,
    create_topic,
    produce,
    running,
    settings_for,
    steady_load,
    store_progress,
    wait_for,
)

GROUP = "orders-app"


async def commit(bootstrap: str, group: str, topic: str, offsets: dict[int, int]) -> None:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in offsets]
        consumer.assign(tps)
        await consumer.commit({TopicPartition(topic, p): o for p, o in offsets.items()})
    finally:
        await consumer.stop()


async def committed(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int | None]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        return {p: await consumer.committed(TopicPartition(topic, p)) for p in range(partitions)}
    finally:
        await consumer.stop()


async def read_from_committed(
    bootstrap: str, group: str, topic: str, partitions: int
) -> dict[int, list[Rec]]:
    """What a consumer of ``group`` reads on ``topic``: from the committed offsets (no reset: a partition
    without one fails) to the end."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False, auto_offset_reset="none"
    )
    await consumer.start()
    out: dict[int, list[Rec]] = defaultdict(list)
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        while True:
            positions = [await consumer.position(tp) for tp in tps]
            if all(pos >= ends[tp] for pos, tp in zip(positions, tps, strict=True)):
                break
            for tp, recs in (await consumer.getmany(timeout_ms=500)).items():
                out[tp.partition] += [(r.key, r.value, tuple(r.headers), r.timestamp) for r in recs]
    finally:
        await consumer.stop()
    return out


def args(**kw: object) -> argparse.Namespace:
    base: dict[str, object] = {
        "source": "A",
        "target": "B",
        "topic": [],
        "group": [GROUP],
        "max_lag": 1000,
        "quiet": 3.0,
        "timeout": 120.0,
        "dry_run": False,
        "sample": None,
        "json": True,
    }
    return argparse.Namespace(**{**base, **kw})


async def test_cutover_moves_a_migration_end_to_end(
    cluster_a: LocalKafkaCluster, cluster_b: LocalKafkaCluster, topic: str, tmp_path: Path
) -> None:
    """Producers write to A while mirror copies; the group consumed part of it on A. Cutover waits for the
    lag, for the producers to stop, for the tail; verifies; commits the group's offsets on B. A consumer of
    the group on B then reads every record it had not consumed on A, none skipped."""
    a, b = cluster_a.bootstrap_servers, cluster_b.bootstrap_servers
    partitions = 3
    await create_topic(a, topic, partitions)
    settings = settings_for(tmp_path, {"A": a, "B": b}, ["A->B"], **{"A->B.topics": topic})
    sent: dict[int, list[Rec]] = defaultdict(list)
    stop = asyncio.Event()
    async with running(settings):
        load = asyncio.create_task(steady_load(a, topic, partitions, stop, sent))

        async def enough() -> bool:
            return min(len(sent[p]) for p in range(partitions)) >= 1500

        await wait_for(enough, timeout=60)
        consumed = {0: 1000, 1: 1, 2: 1499}  # where the group stands on A (it stopped consuming there)
        await commit(a, GROUP, topic, consumed)

        # a member of the group still active on B: refused before anything is written
        member = AIOKafkaConsumer(bootstrap_servers=b, group_id=GROUP, enable_auto_commit=False)
        await member.start()
        member.subscribe([f"A.{topic}"])
        await member.getmany(timeout_ms=2000)
        out = io.StringIO()
        assert await run_cutover(settings, args(topic=[topic], timeout=30.0), out) == 1
        refused = json.loads(out.getvalue())
        assert refused["refused"].startswith("active group") and "on B" in refused["refused"]
        assert refused["group_offsets"] == []
        await member.stop()

        # a dry run while the producers still write: says what it would wait for and would set, writes nothing
        out = io.StringIO()
        assert await run_cutover(settings, args(topic=[topic], dry_run=True), out) == 0, out.getvalue()
        dry = json.loads(out.getvalue())
        assert [s["name"] for s in dry["steps"]] == [
            "groups idle",
            "lag",
            "source quiet",
            "tail copied",
            "verified",
            "dry run",
        ]
        assert {c["action"] for c in dry["group_offsets"]} == {"would set"}
        assert await committed(b, GROUP, f"A.{topic}", partitions) == dict.fromkeys(range(partitions))

        said: list[str] = []
        producers_may_stop = asyncio.Event()

        def say(line: str) -> None:
            said.append(line)
            if line.startswith("waiting for A to stop growing"):
                producers_may_stop.set()

        options = CutoverOptions([topic], [GROUP], max_lag=5000, quiet_seconds=3.0, timeout=120.0)
        run = asyncio.create_task(cutover(settings, settings.flows["A->B"], options, say))
        await asyncio.wait_for(producers_may_stop.wait(), 120)
        assert not run.done()  # still waiting for the producers
        stop.set()  # producers move to B
        await load
        report = await asyncio.wait_for(run, 240)
        assert report.completed, (report.refused, said)
        assert [s.name for s in report.steps] == [
            "groups idle",
            "lag",
            "source quiet",
            "tail copied",
            "verified",
            "groups still idle",
            "offsets committed",
        ]
        assert report.verify is not None and report.verify.records == sum(len(r) for r in sent.values())
        assert {c.action for c in report.changes} == {"set"} and len(report.changes) == partitions

        # run again (after an interruption, say): nothing moves, it completes
        out = io.StringIO()
        assert await run_cutover(settings, args(topic=[topic]), out) == 0, out.getvalue()
        again = json.loads(out.getvalue())
        assert {c["action"] for c in again["group_offsets"]} == {"keep (already there)"}

        # the final checkpoints on B say what was committed (or, written later by the running checkpoint
        # job from newer offset syncs, a position closer to the group's)
        checkpoints = await remote_consumer_offsets(settings.cluster("B"), GROUP, "A")
        for c in report.changes:
            assert checkpoints[(c.topic, c.partition)][0] >= c.downstream_offset

    on_b = await read_from_committed(b, GROUP, f"A.{topic}", partitions)
    for p in range(partitions):
        rest = sent[p][consumed[p] :]  # what the group had not consumed on A
        got = on_b[p]
        assert got[len(got) - len(rest) :] == rest, f"partition {p}: a record was skipped"
        reread = len(got) - len(rest)
        assert got == sent[p][consumed[p] - reread :], f"partition {p}: B resumed out of order"
        print(f"partition {p}: resumed {reread} record(s) before the group's position (re-read)")
        # translated from the nearest offset sync: syncs come every offset.lag.max (100) records at most
        assert reread <= 200, f"partition {p}: {reread} records re-read"


async def test_cutover_refuses_when_the_lag_is_not_reached_or_the_copy_differs(
    cluster_a: LocalKafkaCluster, cluster_b: LocalKafkaCluster, topic: str, tmp_path: Path
) -> None:
    """Nothing copies (no `mirror run`): the lag is never reached. Then a copy with a changed record and
    progress at its end: verification fails, and the group's offsets on B stay unset. Then producers that
    keep writing: the source never gets quiet."""
    a, b = cluster_a.bootstrap_servers, cluster_b.bootstrap_servers
    records = [(b"k%d" % i, b"v%d" % i, (), 1_700_000_000_000 + i) for i in range(500)]
    await create_topic(a, topic, 1)
    await produce(a, topic, {0: records})
    await commit(a, GROUP, topic, {0: 200})
    settings = settings_for(tmp_path, {"A": a, "B": b}, ["A->B"], **{"A->B.topics": topic})

    out = io.StringIO()
    assert await run_cutover(settings, args(topic=[topic], max_lag=0, timeout=2.0), out) == 1
    report = json.loads(out.getvalue())
    assert report["refused"].startswith("lag not reached") and "500 offset(s) behind" in report["refused"]

    copy = list(records)
    copy[300] = (b"k300", b"changed", (), copy[300][3])
    await create_topic(b, f"A.{topic}", 1)
    await produce(b, f"A.{topic}", {0: copy})
    await store_progress(settings, "A->B", {(topic, 0): 499})
    out = io.StringIO()
    assert await run_cutover(settings, args(topic=[topic], quiet=0.5), out) == 1
    report = json.loads(out.getvalue())
    assert report["refused"].startswith("verification failed"), report
    assert report["verify"]["partitions"][0]["differences"] == [
        {"kind": "differing", "source_offset": 300, "target_offset": 300}
    ]
    assert report["group_offsets"] == []
    assert await committed(b, GROUP, f"A.{topic}", 1) == {0: None}

    stop = asyncio.Event()
    load = asyncio.create_task(steady_load(a, topic, 1, stop, defaultdict(list), burst=10, gap=0.2))
    try:
        out = io.StringIO()
        code = await run_cutover(settings, args(topic=[topic], max_lag=10**9, quiet=2.0, timeout=5.0), out)
        report = json.loads(out.getvalue())
        assert code == 1 and report["refused"].startswith("source still growing"), report
    finally:
        stop.set()
        await load
    assert await committed(b, GROUP, f"A.{topic}", 1) == {0: None}
