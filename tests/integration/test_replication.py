"""Replication against real brokers: every record, faithfully, in order, without loops or loss."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from mirror.config import ClusterSettings
from mirror.kafka import read_compacted
from mirror.local.kafka import LocalKafka, LocalKafkaCluster
from mirror.mm2 import records as mm2_records

from .support import (
    MirrorProcess,
    Rec,
    add_partitions,
    admin,
    consume,
    consume_all,
    create_topic,
    end_offsets,
    list_topics,
    make_records,
    mm2_properties,
    produce,
    running,
    settings_for,
    wait_for,
)
from .test_fetcher_on_broker import fetching, read_to


def spread(records: list[Rec], partitions: int) -> dict[int, list[Rec]]:
    return {p: records[p::partitions] for p in range(partitions)}


async def test_records_replicate_faithfully_with_every_codec(
    cluster_a: LocalKafkaCluster, cluster_b: LocalKafkaCluster, topic: str, tmp_path: Path
) -> None:
    a, b = cluster_a.bootstrap_servers, cluster_b.bootstrap_servers
    layout = {"gzip": 6, "snappy": 3, "lz4": 2, "zstd": 1}
    data: dict[str, dict[int, list[Rec]]] = {}
    for i, (codec, partitions) in enumerate(layout.items()):
        name = f"{topic}-{codec}"
        await create_topic(a, name, partitions, {"compression.type": codec})
        data[name] = spread(make_records(26_000, seed=i), partitions)
        await produce(a, name, data[name], compression=codec)
    settings = settings_for(tmp_path, {"A": a, "B": b}, ["A->B"], **{"A->B.topics": f"{topic}-.*"})
    async with running(settings):
        for name, parts in data.items():
            got = await consume(b, f"A.{name}", {p: len(r) for p, r in parts.items()}, timeout=180)
            for p, recs in parts.items():
                assert len(got[p]) == len(recs), f"A.{name}[{p}]: {len(got[p])} of {len(recs)} records"
                assert got[p] == recs, f"A.{name}[{p}] differs from the source"
    # and the source's batches went through as bytes: the same compressed records, batch for batch
    for name, parts in data.items():
        ends = {(name, p): len(recs) for p, recs in parts.items()}
        async with fetching(a) as fetcher:
            fetcher.assign({tp: 0 for tp in ends})
            source = await read_to(fetcher, ends)
        async with fetching(b) as fetcher:
            fetcher.assign({(f"A.{t}", p): 0 for t, p in ends})
            target = await read_to(fetcher, {(f"A.{t}", p): n for (t, p), n in ends.items()})
        for (t, p), batches in source.items():
            raw = [c.raw for sb in batches for c in sb.chunks]
            copied = [c.raw for sb in target[(f"A.{t}", p)] for c in sb.chunks]
            assert None not in raw and None not in copied
            # a partition's first batch goes alone, never merged (later small ones may be merged while they
            # queue behind a full window: docs/record-batches.md, "Coalescing")
            assert bytes(copied[0].data[61:]) == bytes(raw[0].data[61:]), f"{t}[{p}]"


async def test_bidirectional_never_loops_and_chain_prefixes(
    cluster_a: LocalKafkaCluster,
    cluster_b: LocalKafkaCluster,
    cluster_c: LocalKafkaCluster,
    topic: str,
    tmp_path: Path,
) -> None:
    a, b, c = cluster_a.bootstrap_servers, cluster_b.bootstrap_servers, cluster_c.bootstrap_servers
    x, y = f"{topic}-x", f"{topic}-y"
    await create_topic(a, x, 1)
    await create_topic(b, y, 1)
    recs = {0: make_records(100, seed=1)}
    await produce(a, x, recs)
    await produce(b, y, recs)
    settings = settings_for(
        tmp_path,
        {"A": a, "B": b, "C": c},
        ["A->B", "B->A", "B->C"],
        topics=f"(.*\\.)?{topic}-.*|(.*\\.)?heartbeats",
    )
    async with running(settings):
        assert (await consume(b, f"A.{x}", {0: 100}))[0] == recs[0]
        assert (await consume(a, f"B.{y}", {0: 100}))[0] == recs[0]
        assert (await consume(c, f"B.A.{x}", {0: 100}))[0] == recs[0]
        await wait_for(lambda: _has(c, "B.A.heartbeats"), timeout=30)
        # Markers created now, after every topic a loop would copy back existed: once each flow created
        # its marker's remote topic, a refresh of that flow that saw the loop candidates has run.
        await create_topic(a, f"{x}-marker", 1)  # A->B, then B->C: `B.A.{x}-marker` on C
        await create_topic(b, f"{y}-marker", 1)  # B->A: `B.{y}-marker` on A
        await wait_for(lambda: _has(c, f"B.A.{x}-marker"), timeout=30)
        await wait_for(lambda: _has(a, f"B.{y}-marker"), timeout=30)
        on_a, on_b, on_c = await list_topics(a), await list_topics(b), await list_topics(c)
    assert f"B.A.{x}" not in on_a and f"A.B.{y}" not in on_b
    assert f"A.B.{y}" not in on_a and f"B.A.{x}" not in on_b
    checkpoints = {"A.checkpoints.internal", "B.checkpoints.internal"}  # written (not replicated) there
    replicated_internal = {
        t
        for t in on_a | on_b | on_c
        if t.endswith(".internal") and t.startswith(("A.", "B.")) and t not in checkpoints
    }
    assert not replicated_internal
    assert "A.heartbeats" in on_b and "B.heartbeats" in on_a and "B.A.heartbeats" in on_c
    assert "A.B.heartbeats" not in on_a and "B.A.heartbeats" not in on_a


async def _has(bootstrap: str, name: str) -> bool:
    return name in await list_topics(bootstrap)


async def test_new_topics_follow_while_running(
    cluster_a: LocalKafkaCluster, cluster_b: LocalKafkaCluster, topic: str, tmp_path: Path
) -> None:
    a, b = cluster_a.bootstrap_servers, cluster_b.bootstrap_servers
    first = f"{topic}-1"
    await create_topic(a, first, 1, {"retention.ms": "123456789", "cleanup.policy": "compact,delete"})
    settings = settings_for(
        tmp_path, {"A": a, "B": b}, ["A->B"], **{"A->B.topics": f"{topic}-.*", "tasks.max": "3"}
    )
    async with running(settings):
        # compacted: keys required. Timestamps of now: this topic's retention.ms (synced to the remote
        # topic) would have the brokers delete the usual old-timestamped test records at any moment.
        now = int(time.time() * 1000)
        recs = [(k, v, h, now + i) for i, (k, v, h, _) in enumerate(make_records(60, seed=3)) if k][:50]
        await produce(a, first, {0: recs})
        assert (await consume(b, f"A.{first}", {0: 50}))[0] == recs
        # a topic created while running
        second = f"{topic}-2"
        await create_topic(a, second, 2)
        await produce(a, second, spread(recs, 2))
        assert await consume(b, f"A.{second}", {0: 25, 1: 25}) == spread(recs, 2)
    client = await admin(b)
    try:
        resp = await client.describe_configs([ConfigResource(ConfigResourceType.TOPIC, f"A.{first}")])
        configs = {e[0]: e[1] for e in resp[0].resources[0][4]}
    finally:
        await client.close()
    assert configs["retention.ms"] == "123456789"
    assert configs["cleanup.policy"] == "compact,delete"


async def test_partitions_added_while_running_follow(
    cluster_a: LocalKafkaCluster, cluster_b: LocalKafkaCluster, topic: str, tmp_path: Path
) -> None:
    a, b = cluster_a.bootstrap_servers, cluster_b.bootstrap_servers
    await create_topic(a, topic, 1)
    recs = make_records(50, seed=4)
    await produce(a, topic, {0: recs})
    settings = settings_for(tmp_path, {"A": a, "B": b}, ["A->B"], **{"A->B.topics": topic, "tasks.max": "3"})
    with structlog.testing.capture_logs() as logs:
        async with running(settings):
            assert (await consume(b, f"A.{topic}", {0: 50}))[0] == recs
            await add_partitions(a, topic, 3)
            await produce(a, topic, {2: recs})
            got = await consume(b, f"A.{topic}", {0: 50, 1: 0, 2: 50}, timeout=60)
    if got[2] != recs:
        ends = await _ends(b, f"A.{topic}", 3), await _ends(a, topic, 3)
        raise AssertionError(f"partition 2: {len(got[2])} of 50 copied; end offsets target/source {ends}")
    assert any(e["event"] == "added partitions to remote topic" for e in logs)
    assert not [e for e in logs if e["log_level"] == "error"]  # new partitions start at 0: nothing lost


async def _ends(bootstrap: str, name: str, partitions: int) -> dict[int, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        ends = await consumer.end_offsets([TopicPartition(name, p) for p in range(partitions)])
        return {tp.partition: off for tp, off in ends.items()}
    finally:
        await consumer.stop()


async def test_sigkill_mid_stream_then_restart_loses_nothing(
    cluster_a: LocalKafkaCluster, cluster_b: LocalKafkaCluster, topic: str, tmp_path: Path
) -> None:
    a, b = cluster_a.bootstrap_servers, cluster_b.bootstrap_servers
    partitions, total = 4, 120_000
    await create_topic(a, topic, partitions)
    records = spread(make_records(total, seed=7), partitions)
    chunk = 2_000
    await produce(a, topic, {p: r[:chunk] for p, r in records.items()})
    config = tmp_path / "mm2.properties"
    config.write_text(mm2_properties({"A": a, "B": b}, ["A->B"], **{"A->B.topics": topic}))
    mirror = MirrorProcess(config, tmp_path / "mirror.log")
    mirror.start()
    # once it stored progress for every partition, the rest arrives while it copies ...
    await wait_for(lambda: _progress_in_all(b, topic, partitions), timeout=120)

    async def rest() -> None:
        for i in range(chunk, total // partitions, chunk):
            await produce(a, topic, {p: r[i : i + chunk] for p, r in records.items()})

    load = asyncio.create_task(rest())
    # ... and it is killed mid-stream: the restart must resume at the progress stored by then
    await wait_for(lambda: _count(b, f"A.{topic}", partitions * chunk + 20_000), timeout=120)
    mirror.kill()
    # what the killed process left behind: its last stored progress and the target's end offsets
    stored = await _stored_progress(b, "A", topic)
    at_kill = await end_offsets(b, f"A.{topic}", partitions)
    await load
    mirror.start()
    try:
        got = await consume_all(b, f"A.{topic}", records, 180)
    finally:
        code, took = mirror.terminate()
    assert code == 0, (tmp_path / "mirror.log").read_text()[-3000:]
    assert took < 15
    report = {}
    for p, recs in records.items():
        seq = got[p]
        # nothing missing, in order: the target is the source sequence with a re-sent tail spliced in
        assert _dedupe_resent_tail(seq, recs) == recs, f"partition {p} lost or reordered records"
        duplicates = len(seq) - len(recs)
        # The bound: a restart re-copies at most the records after the last stored progress. Progress is
        # `Positions.acked`, moved only once the target acknowledged that record and every one before it
        # (`Delivery.complete`, in order per partition), so stored + 1 <= the target's end, and the
        # records beyond it are the acknowledged-but-not-stored ones (at most one flush interval, 500 ms
        # here) plus batches sent but not acknowledged yet. The restart resumes at stored + 1, so those,
        # and nothing before them, come twice. Allowance: produce requests already on the wire at the
        # SIGKILL may be appended after the end offsets were read; `first_run` (how many records the
        # killed process wrote, from the final sequence) counts them too.
        last = stored.get(p, -1)
        first_run = next((i for i, (x, y) in enumerate(zip(seq, recs, strict=False)) if x != y), len(recs))
        assert last + 1 <= at_kill[p] <= first_run, f"partition {p}: stored {last}, target end {at_kill}"
        beyond = at_kill[p] - (last + 1)
        late = first_run - at_kill[p]
        assert duplicates <= beyond + late, (
            f"partition {p}: {duplicates} duplicates, but only {beyond} records beyond the stored progress "
            f"{last} at the kill (+{late} landing after it): the restart resumed before the stored progress"
        )
        report[p] = (last, at_kill[p], late, duplicates)
    assert sum(at_kill.values()) < total, "the kill came after the last record: not mid-stream"
    print(f"\nSIGKILL test: {total} records; (stored, target end, landed late, duplicates): {report}")


async def _progress_in_all(bootstrap: str, topic: str, partitions: int) -> bool:
    if "mm2-offsets.A.internal" not in await list_topics(bootstrap):
        return False
    return len(await _stored_progress(bootstrap, "A", topic)) == partitions


async def _stored_progress(bootstrap: str, source: str, topic: str) -> dict[int, int]:
    """The last source offset stored per partition of ``topic`` in ``mm2-offsets.<source>.internal``."""
    cluster = ClusterSettings(alias="oracle", bootstrap_servers=bootstrap)
    state = await read_compacted(cluster, f"mm2-offsets.{source}.internal", "test-progress-oracle")
    out = {}
    for key, value in state.items():
        parsed = mm2_records.decode_source_offset_key(key)
        offset = mm2_records.decode_source_offset(value)
        if parsed is not None and parsed[1] == source and parsed[2] == topic and offset is not None:
            out[parsed[3]] = offset
    return out


def _dedupe_resent_tail(seq: list[Rec], source: list[Rec]) -> list[Rec]:
    """Undo at-least-once re-sends: whenever the target goes back to an earlier source record, skip ahead."""
    out: list[Rec] = []
    copied: set[Rec] = set()
    i = 0
    for rec in seq:
        if i < len(source) and rec == source[i]:
            out.append(rec)
            copied.add(rec)
            i += 1
        else:
            assert rec in copied, f"record {rec!r:.80} on the target is neither next nor a re-sent duplicate"
    return out


async def _count(bootstrap: str, name: str, at_least: int) -> bool:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        parts = consumer.partitions_for_topic(name)
        if not parts:
            await consumer._client.force_metadata_update()
            parts = consumer.partitions_for_topic(name)
        if not parts:
            return False
        ends = await consumer.end_offsets([TopicPartition(name, p) for p in parts])
        return sum(ends.values()) >= at_least
    finally:
        await consumer.stop()


async def test_clean_stop_stores_progress_and_restart_copies_nothing_twice(
    cluster_a: LocalKafkaCluster, cluster_b: LocalKafkaCluster, topic: str, tmp_path: Path
) -> None:
    a, b = cluster_a.bootstrap_servers, cluster_b.bootstrap_servers
    await create_topic(a, topic, 3)
    first = spread(make_records(3_000, seed=21), 3)
    await produce(a, topic, first)
    settings = settings_for(tmp_path, {"A": a, "B": b}, ["A->B"], **{"A->B.topics": topic})
    async with running(settings):
        await consume_all(b, f"A.{topic}", first, 60)
    second = spread(make_records(300, seed=22), 3)
    await produce(a, topic, second)
    async with running(settings):
        expected = {p: first[p] + second[p] for p in first}
        got = await consume_all(b, f"A.{topic}", expected, 60)
    assert got == expected  # exactly once across a clean restart: progress was stored on SIGTERM


@pytest.mark.parametrize("mode", ["disabled", "required"])
async def test_broker_restarts_mid_stream_lose_nothing(
    mode: str, cluster_a: LocalKafkaCluster, cluster_b: LocalKafkaCluster, topic: str, tmp_path: Path
) -> None:
    a, b = cluster_a.bootstrap_servers, cluster_b.bootstrap_servers
    await create_topic(a, topic, 2)
    first = spread(make_records(20_000, seed=11), 2)
    await produce(a, topic, first)
    flow = {"A->B.topics": topic, "A->B.exactly.once.support": mode}
    settings = settings_for(tmp_path, {"A": a, "B": b}, ["A->B"], **flow)
    async with running(settings):
        await wait_for(lambda: _count(b, f"A.{topic}", 1_000), timeout=60)
        await asyncio.to_thread(cluster_b.restart)  # target down and back
        await asyncio.to_thread(cluster_a.restart)  # source down and back
        second = spread(make_records(20_000, seed=12), 2)
        await produce(a, topic, second)
        expected = {p: first[p] + second[p] for p in (0, 1)}
        got = await consume_all(b, f"A.{topic}", expected, 180, isolation_level="read_committed")
    for p in (0, 1):
        assert _dedupe_resent_tail(got[p], expected[p]) == expected[p], f"partition {p} lost records"
    if mode == "required":  # exactly once, through both restarts
        assert got == expected


@pytest.mark.parametrize("mode", ["disabled", "required"])
async def test_sigterm_stops_promptly_even_when_the_clusters_are_gone(mode: str, tmp_path: Path) -> None:
    """Nothing to flush to, yet every task stops, in bounded time, exit 0, without a traceback."""
    with LocalKafka() as harness:  # its own cluster, as source and target: this test kills it
        harness.add("D")
        d = harness["D"].bootstrap_servers
        await create_topic(d, "t", 2)
        recs = make_records(200, seed=9)
        await produce(d, "t", {0: recs, 1: recs})
        config = tmp_path / "mm2.properties"
        flow = {"A->B.topics": "t", "tasks.max": "2", "A->B.exactly.once.support": mode}
        config.write_text(mm2_properties({"A": d, "B": d}, ["A->B"], **flow))
        mirror = MirrorProcess(config, tmp_path / "mirror.log")
        mirror.start()
        try:
            copied = await consume(d, "A.t", {0: 200, 1: 200}, 60)
            assert [len(copied[p]) for p in (0, 1)] == [200, 200], "not replicating before the stop"
            harness["D"].kill()
            await asyncio.sleep(3)
        finally:
            code, took = mirror.terminate()
    log = (tmp_path / "mirror.log").read_text()
    assert code == 0, log[-3000:]
    print(f"\nSIGTERM with the cluster gone ({mode}): stopped in {took:.1f}s")
    # README: "within 20 s" (acks and progress get 5 s each, then the closes); measured 4-12 s
    assert took < 20, f"stopping took {took:.1f}s"
    assert log.count('"event": "task stopped"') == 2, log[-3000:]
    assert "Traceback" not in log and "Unclosed" not in log, log[-3000:]
