"""Checkpoints against real brokers: a group fails over from A to B without skipping a record, idle target
groups get their offsets synced (active ones never), and the `mirror offsets` commands."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from mirror import metrics
from mirror.cli import main
from mirror.client import MirrorClient
from mirror.config import Settings
from mirror.local.kafka import LocalKafkaCluster
from mirror.mm2.records import Checkpoint
from mirror.service.worker import make_policy

from .support import (
    committed_offsets,
    create_topic,
    end_offsets,
    produce,
    running,
    settings_for,
    wait_for,
)

PARTITIONS = 3
PER_PARTITION = 1000
FAST_CHECKPOINTS = {
    "emit.checkpoints.interval.seconds": "1",
    "refresh.groups.interval.seconds": "1",
}


def records(partition: int, n: int) -> list[tuple[bytes, bytes, tuple[()], int]]:
    """Values say where they came from: b"<partition>-<upstream offset>" (the topic starts empty)."""
    return [(b"k%d" % i, b"%d-%d" % (partition, i), (), 1_700_000_000_000 + i) for i in range(n)]


async def consume_and_commit(bootstrap: str, topic: str, group: str, stop_at: dict[int, int]) -> None:
    """A real group member on `topic`: reads each partition up to `stop_at[p]` (exclusive), commits that."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=50,
    )
    await consumer.start()
    try:
        positions: dict[int, int] = {}
        deadline = time.monotonic() + 30
        while any(positions.get(p, 0) < n for p, n in stop_at.items()):
            assert time.monotonic() < deadline, f"consumed only {positions}"
            for tp, recs in (await consumer.getmany(timeout_ms=500)).items():
                for r in recs:
                    if r.offset < stop_at[tp.partition]:
                        positions[tp.partition] = r.offset + 1
                done = [
                    t for t in consumer.assignment() if positions.get(t.partition, 0) >= stop_at[t.partition]
                ]
                consumer.pause(*done)
        await consumer.commit({TopicPartition(topic, p): n for p, n in stop_at.items()})
    finally:
        await consumer.stop()


async def checkpoints_on(
    b: Settings, group: str, upstream: dict[int, int], topic: str
) -> dict[tuple[str, int], Checkpoint] | None:
    """The group's checkpoints on B once they cover `upstream` (partition -> committed offset)."""
    async with MirrorClient(b.cluster("B"), make_policy(b.flows["A->B"])) as client:
        cps = await client.remote_checkpoints(group, "A", timeout=10)
    want = {(f"A.{topic}", p): off for p, off in upstream.items()}
    if {tp: cp.upstream_offset for tp, cp in cps.items()} == want:
        return cps
    return None


async def read_from(
    bootstrap: str, topic: str, start: dict[int, int], ends: dict[int, int]
) -> dict[int, list[bytes]]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    out: dict[int, list[bytes]] = {p: [] for p in start}
    try:
        tps = {p: TopicPartition(topic, p) for p in start}
        consumer.assign(list(tps.values()))
        for p, offset in start.items():
            consumer.seek(tps[p], offset)
        deadline = time.monotonic() + 30
        while [p for p in start if await consumer.position(tps[p]) < ends[p]]:
            assert time.monotonic() < deadline
            for tp, recs in (await consumer.getmany(timeout_ms=500)).items():
                out[tp.partition] += [r.value for r in recs]
        return out
    finally:
        await consumer.stop()


def bound_metric(group: str, topic: str, partition: int) -> float | None:
    return metrics.REGISTRY.get_sample_value(
        "mirror_checkpoint_reread_bound_records",
        {"source": "A", "target": "B", "group": group, "topic": topic, "partition": str(partition)},
    )


async def test_failover_resumes_on_b_without_skipping(
    cluster_a: LocalKafkaCluster, cluster_b: LocalKafkaCluster, topic: str, tmp_path: Path
) -> None:
    a, b = cluster_a.bootstrap_servers, cluster_b.bootstrap_servers
    group = f"{topic}-app"
    await create_topic(a, topic, PARTITIONS)
    await produce(a, topic, {p: records(p, PER_PARTITION) for p in range(PARTITIONS)})
    settings = settings_for(
        tmp_path,
        {"A": a, "B": b},
        ["A->B"],
        **{"A->B.topics": topic, "A->B.groups": f"{topic}-.*", **FAST_CHECKPOINTS},
    )
    # mid-way, exactly on an offset sync (offset.lag.max=100 syncs 0, 101, ..., 808, 909), at the end
    stop_at = {0: 345, 1: 808, 2: PER_PARTITION}
    remote = f"A.{topic}"

    async def settled() -> Any:
        """Checkpoints of the committed offsets, once the sync of the last record arrived."""
        cps = await checkpoints_on(settings, group, stop_at, topic)
        return cps if cps and cps[(remote, 2)].downstream_offset == PER_PARTITION else None

    async with running(settings):
        await consume_and_commit(a, topic, group, stop_at)
        await wait_for(settled, timeout=45, interval=0.5)
        # A canary group committed at the end of every partition now: its checkpoints translate exactly
        # (downstream == PER_PARTITION) only from the sync of the last record of each partition, and syncs
        # are read in order per partition, so the round that wrote them held every sync. That round
        # translated `group` too (a round takes every known group), and the stop lets it finish.
        canary = f"{topic}-canary"
        await _commit(a, canary, {(topic, p): PER_PARTITION for p in range(PARTITIONS)})

        async def canary_exact() -> bool:
            ends = dict.fromkeys(range(PARTITIONS), PER_PARTITION)
            cps = await checkpoints_on(settings, canary, ends, topic)
            return cps is not None and all(cp.downstream_offset == PER_PARTITION for cp in cps.values())

        await wait_for(canary_exact, timeout=45, interval=0.5)
    # the mirror stopped: the last checkpoints and their bounds are final
    cps = await checkpoints_on(settings, group, stop_at, topic)
    assert cps is not None
    ends = await end_offsets(b, remote, PARTITIONS)
    start = {p: cps[(remote, p)].downstream_offset for p in range(PARTITIONS)}
    got = await read_from(b, remote, start, ends)
    report = {}
    for p in range(PARTITIONS):
        seen = {int(v.split(b"-")[1]) for v in got[p]}
        missing = set(range(stop_at[p], PER_PARTITION)) - seen
        assert not missing, f"partition {p}: records {sorted(missing)[:5]}... skipped on failover"
        rereads = len([o for o in seen if o < stop_at[p]])
        bound = bound_metric(group, remote, p)
        assert bound is not None, "no re-read bound reported"
        assert rereads <= bound, f"partition {p}: {rereads} re-reads > bound {bound}"
        report[p] = (stop_at[p], start[p], rereads, int(bound))
    print(f"failover (committed, translated, re-read, bound) per partition: {report}")
    assert report[1][3] == 0  # the group sits exactly on a sync: translated exactly, no re-reads


async def test_group_offset_sync_fills_idle_groups_only_and_never_rewinds(
    cluster_a: LocalKafkaCluster, cluster_b: LocalKafkaCluster, topic: str, tmp_path: Path
) -> None:
    a, b = cluster_a.bootstrap_servers, cluster_b.bootstrap_servers
    idle, active, ahead = f"{topic}-idle", f"{topic}-active", f"{topic}-ahead"
    await create_topic(a, topic, 1)
    await produce(a, topic, {0: records(0, 500)})
    settings = settings_for(
        tmp_path,
        {"A": a, "B": b},
        ["A->B"],
        **{
            "A->B.topics": topic,
            "A->B.groups": f"{topic}-.*",
            "sync.group.offsets.enabled": "true",
            "sync.group.offsets.interval.seconds": "1",
            **FAST_CHECKPOINTS,
        },
    )
    remote_tp = (f"A.{topic}", 0)
    async with running(settings):
        for group in (idle, active, ahead):
            await consume_and_commit(a, topic, group, {0: 400})
        # on B: `active` has a live member that committed 5; `ahead` is idle but already past the checkpoint
        await wait_for(lambda: _has_topic(b, remote_tp[0]))
        member = AIOKafkaConsumer(
            remote_tp[0], bootstrap_servers=b, group_id=active, enable_auto_commit=False
        )
        await member.start()
        try:
            await wait_for(lambda: _assigned(member), timeout=20)
            await member.commit({TopicPartition(*remote_tp): 5})
            await _commit(b, ahead, {remote_tp: 450})

            # the idle group follows its checkpoint (which may first be less precise: a sync link is
            # trusted once a later sync confirms it; the group then moves forward with it, never back)
            async def synced_to_checkpoint() -> int | None:
                cps = await checkpoints_on(settings, idle, {0: 400}, topic)
                if cps is None:
                    return None
                want = cps[remote_tp].downstream_offset
                return await _offset_is(b, idle, remote_tp, lambda o: o == want)

            synced = await wait_for(synced_to_checkpoint, timeout=30)
            # the group rewinds on A: the checkpoint follows, the idle group on B never moves back
            await _commit(a, idle, {(topic, 0): 100})
            await wait_for(lambda: checkpoints_on(settings, idle, {0: 100}, topic), timeout=20)
            # a sync round with the rewound checkpoint in hand, run to its end, before looking
            await sync_round_done(a, b, topic, f"{topic}-canary-1", remote_tp)
            await sync_round_done(a, b, topic, f"{topic}-canary-2", remote_tp)
            assert (await committed_offsets(b, idle))[remote_tp] == synced
            assert (await committed_offsets(b, active))[remote_tp] == 5
            assert (await committed_offsets(b, ahead))[remote_tp] == 450
        finally:
            await member.stop()


async def sync_round_done(a: str, b: str, topic: str, canary: str, remote_tp: tuple[str, int]) -> None:
    """Wait until a group committed on A now is synced into B.

    Checkpoints are emitted round after round, and a sync round takes every checkpoint emitted before
    it: so the round that brings the canary to B held every checkpoint already on B when the canary was
    committed. Two canaries, one after the other: the round of the first ended (all its groups
    handled, whatever it would commit committed) before the round of the second began."""
    await _commit(a, canary, {(topic, 0): 400})
    await wait_for(lambda: _offset_is(b, canary, remote_tp, lambda o: o is not None), timeout=30)


async def _has_topic(bootstrap: str, topic: str) -> bool:
    client = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await client.start()
    try:
        return topic in await client.list_topics()
    finally:
        await client.close()


async def _assigned(consumer: AIOKafkaConsumer) -> bool:
    with contextlib.suppress(Exception):
        await consumer.getmany(timeout_ms=200)
    return bool(consumer.assignment())


async def _commit(bootstrap: str, group: str, offsets: dict[tuple[str, int], int]) -> None:
    """A standalone commit (assign, never join), as tools do."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = {TopicPartition(*tp): off for tp, off in offsets.items()}
        consumer.assign(list(tps))
        await consumer.commit(tps)
    finally:
        await consumer.stop()


async def _offset_is(bootstrap: str, group: str, tp: tuple[str, int], ok: Any) -> int | None:
    offset = (await committed_offsets(bootstrap, group)).get(tp)
    return offset if ok(offset) else None


async def test_offsets_translate_and_failover_commands(
    cluster_a: LocalKafkaCluster,
    cluster_b: LocalKafkaCluster,
    topic: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    a, b = cluster_a.bootstrap_servers, cluster_b.bootstrap_servers
    group = f"{topic}-cli"
    await create_topic(a, topic, 2)
    await produce(a, topic, {p: records(p, 300) for p in range(2)})
    settings = settings_for(
        tmp_path,
        {"A": a, "B": b},
        ["A->B"],
        **{"A->B.topics": topic, "A->B.groups": f"{topic}-.*", **FAST_CHECKPOINTS},
    )
    config = str(tmp_path / "mm2.properties")
    stop_at = {0: 120, 1: 300}

    async def settled() -> dict[tuple[str, int], Any] | None:
        # the group read partition 1 to its end: once the task's sync for its last record is out (a
        # caught-up task sends it within a second), the checkpoint is the end of B exactly
        cps = await checkpoints_on(settings, group, stop_at, topic)
        return cps if cps is not None and cps[(f"A.{topic}", 1)].downstream_offset == 300 else None

    async with running(settings):
        await consume_and_commit(a, topic, group, stop_at)
        await wait_for(lambda: checkpoints_on(settings, group, stop_at, topic), timeout=45, interval=0.5)
        await wait_for(settled, timeout=15, interval=0.5)
    cps = await checkpoints_on(settings, group, stop_at, topic)
    assert cps is not None
    common = ["--group", group, "--from", "A", "--to", "B", "--config", config, "--log-level", "WARNING"]
    capsys.readouterr()

    assert await asyncio.to_thread(main, ["offsets", "translate", *common, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {(r["topic"], r["partition"]): r["downstream_offset"] for r in rows} == {
        tp: cp.downstream_offset for tp, cp in cps.items()
    }
    # An oracle that does not read through mirror's decoders: the records themselves. Read B's remote
    # partition from the translated offset: the group's next record (value "<p>-<stop_at[p]>") must come
    # at or after it (nothing skipped), no more than the stated re-read bound records later.
    remote = f"A.{topic}"
    translated = {r["partition"]: r["downstream_offset"] for r in rows}
    bounds = {r["partition"]: r["reread_bound"] for r in rows}
    ends = await end_offsets(b, remote, 2)
    tail = await read_from(b, remote, translated, ends)
    for p, values in tail.items():
        upstream = [int(v.split(b"-")[1]) for v in values]
        if stop_at[p] == 300:  # consumed to the end: the translation is the end of B, nothing re-read
            assert (translated[p], upstream) == (ends[p], []), p
            continue
        assert upstream and upstream[0] <= stop_at[p], f"partition {p} skips records: {upstream[:3]}"
        assert stop_at[p] in upstream, (
            f"partition {p}: the group's next record is not on B after {translated[p]}"
        )
        reread = upstream.index(stop_at[p])
        assert reread <= bounds[p] <= stop_at[p], (
            f"partition {p}: {reread} records re-read, bound {bounds[p]}"
        )
    # partition 1 committed at its end, translated through the exact sync of its last record (299)
    assert bounds[1] == 0

    assert await asyncio.to_thread(main, ["offsets", "translate", *common]) == 0
    table = capsys.readouterr().out
    assert "RE-READ BOUND" in table and f"A.{topic}" in table

    assert await asyncio.to_thread(main, ["offsets", "failover", *common, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "dry run: nothing was changed" in out and "set" in out
    assert await committed_offsets(b, group) == {}

    # a live member on B: refused, exit 1, nothing changed
    member = AIOKafkaConsumer(f"A.{topic}", bootstrap_servers=b, group_id=group, enable_auto_commit=False)
    await member.start()
    try:
        await wait_for(lambda: _assigned(member), timeout=20)
        assert await asyncio.to_thread(main, ["offsets", "failover", *common]) == 1
        assert "active member" in capsys.readouterr().err
    finally:
        await member.stop()
    assert await committed_offsets(b, group) == {}

    assert await asyncio.to_thread(main, ["offsets", "failover", *common]) == 0
    assert "committed 2 partition(s)" in capsys.readouterr().out
    assert await committed_offsets(b, group) == {tp: cp.downstream_offset for tp, cp in cps.items()}
    # again: everything is already there, nothing moves
    assert await asyncio.to_thread(main, ["offsets", "failover", *common, "--json"]) == 0
    assert {r["action"] for r in json.loads(capsys.readouterr().out)} == {"keep (already there)"}
