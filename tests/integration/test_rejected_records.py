"""Records the target refuses for good (a timestamp older than the remote topic allows, a record larger than
its max.message.bytes, a record without a key for a compacted remote topic) halt their own partition, by
name, and are never skipped silently; batches refused only for their size are sent smaller, not halted.

The oracles are independent of `mirror`: plain aiokafka clients read the target, and the stored progress
(``mm2-offsets.A.internal`` on B, Connect's JSON) is decoded here with ``json``.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import struct
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from mirror.config import ClusterSettings, Settings
from mirror.kafka import Reader
from mirror.local.kafka import LocalKafkaCluster
from mirror.service.http import HttpServer

from .support import (
    Rec,
    consume_all,
    create_topic,
    http_get,
    produce,
    running,
    serving,
    settings_for,
    wait_for,
)
from .test_configsync import set_overrides

HOUR_MS = 3_600_000
PROGRESS_TOPIC = "mm2-offsets.A.internal"


def now_ms() -> int:
    return int(time.time() * 1000)


def records(partition: int, first: int, n: int, ts: int, old: int | None = None) -> list[Rec]:
    """``n`` records of ``partition`` numbered from ``first``, each unique; the one numbered ``old`` is
    stamped two hours before ``ts``."""
    return [
        (
            b"k%d-%d" % (partition, i),
            b"p%d-record-%d" % (partition, i),
            (("n", b"%d" % i),),
            ts - 2 * HOUR_MS if i == old else ts,
        )
        for i in range(first, first + n)
    ]


# --- independent oracles ----------------------------------------------------------------------------


async def read_to_end(bootstrap: str, topic: str, isolation: str) -> dict[int, list[Any]]:
    """Every record of every partition of ``topic``, from the beginning to the current end (the last
    stable offset under read_committed). {} when the topic does not exist."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level=isolation,
    )
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        parts: Any = consumer.partitions_for_topic(topic)
        if not parts:
            return {}
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        out: dict[int, list[Any]] = {tp.partition: [] for tp in tps}
        deadline = time.monotonic() + 60
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            assert time.monotonic() < deadline, f"could not read {topic} to its end {ends}"
            for tp, recs in (await consumer.getmany(*tps, timeout_ms=500)).items():
                out[tp.partition].extend(recs)
        return out
    finally:
        await consumer.stop()


async def on_target(bootstrap: str, topic: str, isolation: str) -> dict[int, list[Rec]]:
    got = await read_to_end(bootstrap, topic, isolation)
    return {p: [(r.key, r.value, tuple(r.headers), r.timestamp) for r in recs] for p, recs in got.items()}


async def stored_progress(bootstrap: str, topic: str) -> dict[int, int]:
    """The last stored source offset per partition of ``topic`` of flow A->B, as committed on B."""
    progress: dict[int, int] = {}
    for recs in (await read_to_end(bootstrap, PROGRESS_TOPIC, "read_committed")).values():
        for r in recs:
            try:
                connector, part = json.loads(r.key)
            except (TypeError, ValueError):
                continue
            if connector != "MirrorSourceConnector" or not isinstance(part, dict):
                continue
            if part.get("cluster") != "A" or part.get("topic") != topic:
                continue
            if r.value is None:  # a tombstone: no progress
                progress.pop(part["partition"], None)
            else:
                progress[part["partition"]] = json.loads(r.value)["offset"]
    return progress


async def settled_progress(
    bootstrap: str, topic: str, want: Mapping[int, int], timeout: float = 60
) -> dict[int, int]:
    """Stored progress once it is ``want``, or as soon as any partition's passed it (records lost), or
    whatever it is when time runs out: the caller compares."""
    deadline = time.monotonic() + timeout
    while True:
        seen = await stored_progress(bootstrap, topic)
        past = any(p in want and off > want[p] for p, off in seen.items())
        if seen == want or past or time.monotonic() > deadline:
            return seen
        await asyncio.sleep(0.5)


async def offset_syncs(bootstrap: str, topic: str, partition: int) -> list[tuple[int, int]]:
    """(upstream, downstream) of every offset sync of ``topic``'s ``partition`` in flow A->B's
    ``mm2-offset-syncs.B.internal`` on A (Java's format: key = int16 length, topic, int32 partition;
    value = int64 upstream, int64 downstream)."""
    out = []
    for recs in (await read_to_end(bootstrap, "mm2-offset-syncs.B.internal", "read_uncommitted")).values():
        for r in recs:
            (n,) = struct.unpack_from(">h", r.key)
            name, (part,) = r.key[2 : 2 + n].decode(), struct.unpack_from(">i", r.key, 2 + n)
            if name == topic and part == partition and r.value is not None:
                out.append(struct.unpack(">qq", r.value))
    return out


def assert_copied(got: Sequence[Rec], want: Sequence[Rec], exactly_once: bool, what: str) -> None:
    """Exactly once: the target holds ``want``, nothing else. At least once: the same records in the same
    order, re-sent ones allowed, and nothing else."""
    ok = (list(got) if exactly_once else list(dict.fromkeys(got))) == list(want)
    if not ok:
        numbers = [int(r[2][0][1]) if r[2] else r[1] for r in got]
        raise AssertionError(f"{what}: {len(got)} records on B, numbered {numbers}; expected {len(want)}")


# --- what the worker says ---------------------------------------------------------------------------


async def scrape(server: HttpServer, name: str, **labels: str) -> list[tuple[dict[str, str], float]]:
    status, body = await http_get(server.port, "/metrics")
    assert status == 200
    return [
        (dict(s.labels), s.value)
        for family in text_string_to_metric_families(body)
        for s in family.samples
        if s.name == name and labels.items() <= s.labels.items()
    ]


async def tasks_of(server: HttpServer) -> list[dict[str, Any]]:
    status, body = await http_get(server.port, "/status")
    assert status == 200
    doc = json.loads(body)
    return [t for f in doc["flows"] if f["flow"] == "A->B" for t in f["tasks"]]


async def halted_of(server: HttpServer, topic: str) -> list[dict[str, Any]]:
    return [h for t in await tasks_of(server) for h in t.get("halted", []) if h.get("topic") == topic]


async def assert_halted(server: HttpServer, topic: str, partition: int, offset: int, reason: str) -> None:
    """The partition is named halted at ``offset`` in /status (reason matching ``reason``) and by the
    ``mirror_partition_halted`` gauge; no other partition of the topic is."""

    async def named() -> list[dict[str, Any]]:
        return await halted_of(server, topic)

    try:
        halted = await wait_for(named, timeout=60, interval=0.5)
    except AssertionError as exc:
        raise AssertionError(
            f"/status names no halted partition of {topic}: {await tasks_of(server)}"
        ) from exc
    assert [(h["partition"], h["offset"]) for h in halted] == [(partition, offset)], halted
    assert re.search(reason, str(halted[0].get("reason"))), halted
    gauge = await scrape(server, "mirror_partition_halted", source="A", target="B", topic=f"A.{topic}")
    assert {(lbl["partition"], v) for lbl, v in gauge if v} == {(str(partition), 1.0)}, gauge


def stored_batches(cluster: LocalKafkaCluster, topic: str, partition: int) -> list[int]:
    """Records per data batch of a partition as the broker stored them, read from its segment files
    (record batch format v2; transaction markers left out)."""
    sizes = []
    for segment in sorted((cluster.workdir / "data" / f"{topic}-{partition}").glob("*.log")):
        data = segment.read_bytes()
        pos = 0
        while pos + 61 <= len(data):  # the batch header: 61 bytes
            (length,) = struct.unpack_from(">i", data, pos + 8)
            if length <= 0 or pos + 12 + length > len(data):
                break
            (attributes,) = struct.unpack_from(">h", data, pos + 21)
            (count,) = struct.unpack_from(">i", data, pos + 57)
            if not attributes & 0x20:  # not a control batch
                sizes.append(count)
            pos += 12 + length
    return sizes


async def restarts(server: HttpServer) -> int:
    return sum(int(t["restarts"]) for t in await tasks_of(server))


def flow_settings(tmp_path: Path, a: str, b: str, topic: str, mode: str, **more: str) -> Settings:
    extra = {
        "A->B.topics": topic,
        "A->B.exactly.once.support": mode,
        "sync.topic.configs.enabled": "false",  # the remote topic keeps the limits this test gave it
        **more,
    }
    return settings_for(tmp_path, {"A": a, "B": b}, ["A->B"], **extra)


def assert_resent_tails(got: Sequence[Rec], want: Sequence[Rec], what: str) -> int:
    """At least once: ``want`` in order, where records appear again only as re-sent runs. ``got`` is runs
    of consecutive records of ``want``, each starting at most one past the furthest record so far (no
    gap), together reaching ``want``'s last record. Returns the number of duplicates."""
    index = {r: i for i, r in enumerate(want)}
    furthest, prev = -1, -2
    for n, rec in enumerate(got):
        i = index.get(rec)
        if i is None:
            raise AssertionError(f"{what}: record {n} on B is not one of the source's: {rec[:2]!r}")
        if i != prev + 1 and i > furthest + 1:
            raise AssertionError(f"{what}: record {n} on B is source record {i}, after {furthest}: a gap")
        furthest, prev = max(furthest, i), i
    if furthest != len(want) - 1:
        raise AssertionError(f"{what}: {len(got)} records on B reach source record {furthest} of {len(want)}")
    return len(got) - len(want)


async def task_assigned(server: HttpServer, logs: Sequence[Mapping[str, Any]]) -> None:
    """Until the flow's task runs and has applied its current partitions (logged "task assigned" with as
    many): their start positions are resolved, so records written from now on come after them."""

    async def done() -> bool:
        # the tasks topic of the session's cluster B may hold more tasks than this test asks for (earlier
        # tests grew it): the topic's partitions may be spread over several tasks
        tasks = [t for t in await tasks_of(server) if t["partitions"]]
        if sum(t["partitions"] for t in tasks) < 2 or any(t["state"] != "running" for t in tasks):
            return False
        applied = {
            e.get("task"): e.get("partitions")
            for e in logs
            if e.get("event") == "task assigned" and e.get("flow") == "A->B"
        }
        return all(applied.get(t["task"]) == t["partitions"] for t in tasks)

    await wait_for(done, timeout=90, interval=0.5)


# --- the tests --------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["required", "disabled"])
async def test_a_record_too_old_for_the_target_halts_its_partition_only(
    mode: str, cluster_a: LocalKafkaCluster, cluster_b: LocalKafkaCluster, topic: str, tmp_path: Path
) -> None:
    """Partition 0's record 4 is older than B's remote topic accepts: records 0..3 are copied, 4 and later
    are not (order is kept), progress stays at 3, partition 1 is copied completely and keeps flowing; the
    partition is named halted, and stays so (nothing copied twice) across a restart."""
    a, b = cluster_a.bootstrap_servers, cluster_b.bootstrap_servers
    remote, bad = f"A.{topic}", 4
    exactly_once = mode == "required"
    isolation = "read_committed" if exactly_once else "read_uncommitted"
    await create_topic(a, topic, 2)
    await create_topic(b, remote, 2, {"message.timestamp.before.max.ms": str(HOUR_MS)})
    now = now_ms()
    p0, p1 = records(0, 0, 10, now, old=bad), records(1, 0, 10, now)
    await produce(a, topic, {0: p0, 1: p1})
    settings = flow_settings(tmp_path, a, b, topic, mode)

    with structlog.testing.capture_logs() as logs:
        async with running(settings) as worker, serving(worker) as server:
            got = await consume_all(b, remote, {0: p0[:bad], 1: p1}, 90, isolation_level=isolation)
            progress = await settled_progress(b, topic, {0: bad - 1, 1: 9})
            seen = f"(stored progress {progress})"
            assert_copied(got[0], p0[:bad], exactly_once, f"partition 0 {seen}")
            assert_copied(got[1], p1, exactly_once, f"partition 1 {seen}")
            assert progress == {0: bad - 1, 1: 9}, "stored progress passed the refused record"

            await assert_halted(server, topic, 0, bad, r"(?i)timestamp")
            # the task is not restarted over and over: partition 1 keeps flowing, partition 0 stays put
            before = await restarts(server)
            more0, more1 = records(0, 10, 3, now_ms()), records(1, 10, 5, now_ms())
            await produce(a, topic, {0: more0, 1: more1})
            p1 += more1
            got = await consume_all(b, remote, {0: p0[:bad], 1: p1}, 60, isolation_level=isolation)
            assert_copied(got[1], p1, exactly_once, "partition 1, while partition 0 is halted")
            await asyncio.sleep(3)  # several flush intervals
            assert await restarts(server) == before, "the task restarts over and over"
            assert {t["state"] for t in await tasks_of(server)} == {"running"}
            assert_copied((await on_target(b, remote, isolation))[0], p0[:bad], exactly_once, "partition 0")
        assert await stored_progress(b, topic) == {0: bad - 1, 1: len(p1) - 1}

    errors = [e for e in logs if e["log_level"] == "error" and topic in repr(e)]
    assert errors, "no error logged for the halted partition"

    # a restart: the partition halts again at the same record, nothing is copied twice (exactly once)
    async with running(settings) as worker, serving(worker) as server:
        await assert_halted(server, topic, 0, bad, r"(?i)timestamp")
        await asyncio.sleep(3)
        after = await on_target(b, remote, isolation)
    assert_copied(after[0], p0[:bad], exactly_once, "partition 0 after a restart")
    assert_copied(after[1], p1, exactly_once, "partition 1 after a restart")
    assert await stored_progress(b, topic) == {0: bad - 1, 1: len(p1) - 1}


async def test_a_record_too_large_for_the_target_halts_its_partition(
    cluster_a: LocalKafkaCluster, cluster_b: LocalKafkaCluster, topic: str, tmp_path: Path
) -> None:
    """A 10 KB record at offset 2 and a remote topic taking at most 2000 bytes: records 0 and 1 are
    copied exactly once, progress stays at 1, the partition is named halted at 2 for its size."""
    a, b = cluster_a.bootstrap_servers, cluster_b.bootstrap_servers
    remote, bad = f"A.{topic}", 2
    await create_topic(a, topic, 1)
    await create_topic(b, remote, 1, {"max.message.bytes": "2000"})
    recs = records(0, 0, 5, now_ms())
    key, _, headers, ts = recs[bad]
    recs[bad] = (key, os.urandom(10_000), headers, ts)  # random: no codec shrinks it below the limit
    await produce(a, topic, {0: recs})
    settings = flow_settings(tmp_path, a, b, topic, "required")

    async with running(settings) as worker, serving(worker) as server:
        got = await consume_all(b, remote, {0: recs[:bad]}, 90, isolation_level="read_committed")
        progress = await settled_progress(b, topic, {0: bad - 1})
        assert_copied(got[0], recs[:bad], True, f"partition 0 (stored progress {progress})")
        assert progress == {0: bad - 1}, "stored progress passed the refused record"
        await assert_halted(server, topic, 0, bad, r"(?i)too.?large|MessageSize|RecordTooLarge")
        await asyncio.sleep(2)
        after = await on_target(b, remote, "read_committed")
    assert_copied(after[0], recs[:bad], True, "partition 0")
    assert await stored_progress(b, topic) == {0: bad - 1}


@pytest.mark.parametrize("mode", ["required", "disabled"])
async def test_a_latest_start_is_kept_when_a_session_fails_on_another_partition(
    mode: str, cluster_a: LocalKafkaCluster, cluster_b: LocalKafkaCluster, topic: str, tmp_path: Path
) -> None:
    """``auto.offset.reset = latest``: records written before the start are skipped. Then, in one go,
    partition 0 gets a record too old for B and partition 1 its first 50 records: the session fails for
    partition 0 (exactly once: the transaction holding partition 1's records is aborted), and the next
    one must resume partition 1 where the task first started it, not at its end again. B holds exactly
    those 50 records, partition 0 is halted at the refused record, and each start is stored as progress."""
    a, b = cluster_a.bootstrap_servers, cluster_b.bootstrap_servers
    remote, start = f"A.{topic}", 3
    exactly_once = mode == "required"
    isolation = "read_committed" if exactly_once else "read_uncommitted"
    await create_topic(a, topic, 2)
    await create_topic(b, remote, 2, {"message.timestamp.before.max.ms": str(HOUR_MS)})
    now = now_ms()
    await produce(a, topic, {0: records(0, 0, start, now), 1: records(1, 0, start, now)})  # skipped
    # two tasks or more: partitions 0 and 1 of a topic always go to different tasks, so the task holding
    # partition 0 copies nothing at all and must still store where it started
    latest = {"A.consumer.auto.offset.reset": "latest", "tasks.max": "2"}
    settings = flow_settings(tmp_path, a, b, topic, mode, **latest)
    want_progress = {0: start - 1, 1: start + 49}

    with structlog.testing.capture_logs() as logs:
        async with running(settings) as worker, serving(worker) as server:
            await task_assigned(server, logs)
            await asyncio.sleep(2)  # a few fetches at the end of both partitions
            now = now_ms()
            p1 = records(1, start, 50, now)
            await produce(a, topic, {0: records(0, start, 1, now, old=start), 1: p1})
            got = await consume_all(b, remote, {1: p1}, 60, isolation_level=isolation)
            await assert_halted(server, topic, 0, start, r"(?i)timestamp")
            progress = await settled_progress(b, topic, want_progress)
            await asyncio.sleep(2)  # several flush intervals: a late copy would show by now
            after = await on_target(b, remote, isolation)
    seen = f"(stored progress {progress})"
    assert_copied(got[1], p1, exactly_once, f"partition 1 {seen}")
    assert after[0] == [], f"partition 0: {len(after[0])} records on B, expected none {seen}"
    assert_copied(after[1], p1, exactly_once, f"partition 1 {seen}")
    assert progress == want_progress, "stored progress is not where the task started (or passed a record)"


@pytest.mark.parametrize("mode", ["required", "disabled"])
async def test_a_record_without_a_key_for_a_compacted_target_halts_its_partition(
    mode: str, cluster_a: LocalKafkaCluster, cluster_b: LocalKafkaCluster, topic: str, tmp_path: Path
) -> None:
    """The remote topic is compacted, the source topic is not: partition 0's record 4 has no key and B
    refuses it (INVALID_RECORD). That is a refusal, not an error to retry: records 0..3 are copied,
    progress stays at 3, the partition is named halted at 4 for that reason, the task does not restart
    over and over, and partition 1 is copied completely and keeps flowing."""
    a, b = cluster_a.bootstrap_servers, cluster_b.bootstrap_servers
    remote, bad = f"A.{topic}", 4
    exactly_once = mode == "required"
    isolation = "read_committed" if exactly_once else "read_uncommitted"
    await create_topic(a, topic, 2)
    await create_topic(b, remote, 2, {"cleanup.policy": "compact"})
    now = now_ms()
    p0, p1 = records(0, 0, 10, now), records(1, 0, 10, now)
    _, value, headers, ts = p0[bad]
    p0[bad] = (None, value, headers, ts)
    await produce(a, topic, {0: p0, 1: p1})
    settings = flow_settings(tmp_path, a, b, topic, mode)

    async with running(settings) as worker, serving(worker) as server:
        got = await consume_all(b, remote, {0: p0[:bad], 1: p1}, 90, isolation_level=isolation)
        progress = await settled_progress(b, topic, {0: bad - 1, 1: 9})
        seen = f"(stored progress {progress})"
        assert_copied(got[0], p0[:bad], exactly_once, f"partition 0 {seen}")
        assert_copied(got[1], p1, exactly_once, f"partition 1 {seen}")
        assert progress == {0: bad - 1, 1: 9}, "stored progress passed the refused record"
        await assert_halted(server, topic, 0, bad, r"INVALID_RECORD|InvalidRecordError")

        before = await restarts(server)
        more1 = records(1, 10, 5, now_ms())
        await produce(a, topic, {0: records(0, 10, 3, now_ms()), 1: more1})
        p1 += more1
        got = await consume_all(b, remote, {1: p1}, 60, isolation_level=isolation)
        assert_copied(got[1], p1, exactly_once, "partition 1, while partition 0 is halted")
        await asyncio.sleep(3)  # several flush intervals
        tasks = await tasks_of(server)
        assert await restarts(server) == before, f"the task restarts over and over: {tasks}"
        assert {t["state"] for t in tasks} == {"running"}, tasks
        assert_copied((await on_target(b, remote, isolation))[0], p0[:bad], exactly_once, "partition 0")
    assert await stored_progress(b, topic) == {0: bad - 1, 1: len(p1) - 1}


@pytest.mark.parametrize("mode", ["required", "disabled"])
async def test_batches_too_large_for_the_target_are_sent_smaller_not_halted(
    mode: str,
    cluster_a: LocalKafkaCluster,
    cluster_b: LocalKafkaCluster,
    topic: str,
    tmp_path: Path,
) -> None:
    """The remote topic takes at most 20,000 bytes per batch; the source holds 20,000 records of ~1 KB,
    so the ~1 MB batches the task builds are refused for their size. They are sent again, halved until
    they fit, and later batches stay that small: every record arrives in order (exactly once in
    exactly-once mode; at least once, duplicates only as re-sent runs, otherwise) within 60 s, nothing
    halts, only a handful of batches is refused, and B stores batches of many records, not one record
    per batch (the broker's segment files say so)."""
    a, b = cluster_a.bootstrap_servers, cluster_b.bootstrap_servers
    remote, n = f"A.{topic}", 20_000
    exactly_once = mode == "required"
    isolation = "read_committed" if exactly_once else "read_uncommitted"
    await create_topic(a, topic, 1)
    await create_topic(b, remote, 1, {"max.message.bytes": "20000"})
    now = now_ms()
    # random values: no codec shrinks a batch below the limit
    recs: list[Rec] = [(b"k%d" % i, os.urandom(1000), (("n", b"%d" % i),), now) for i in range(n)]
    await produce(a, topic, {0: recs})
    settings = flow_settings(tmp_path, a, b, topic, mode)

    with structlog.testing.capture_logs() as logs:
        t0 = time.monotonic()
        async with running(settings) as worker, serving(worker) as server:
            got = (await consume_all(b, remote, {0: recs}, 60, isolation_level=isolation))[0]
            elapsed = time.monotonic() - t0
            arrived = len(set(got) & set(recs))
            assert arrived == n, f"{arrived} of {n} records on B after {elapsed:.0f}s"
            progress = await settled_progress(b, topic, {0: n - 1})
            halted = await halted_of(server, topic)
            after = (await on_target(b, remote, isolation))[0]
    assert halted == [], halted
    assert progress == {0: n - 1}, progress
    if exactly_once:
        assert_copied(after, recs, True, "partition 0")
        duplicates = 0
    else:
        duplicates = assert_resent_tails(after, recs, "partition 0")
    ours = [e for e in logs if e.get("topic") == topic and str(e.get("event")).startswith("target refused")]
    refused = [e.get("records") for e in ours if str(e["event"]).startswith("target refused a batch")]
    batches = stored_batches(cluster_b, remote, 0)
    print(
        f"{n} records copied in {elapsed:.1f}s, {duplicates} duplicates, refused batches of {refused} "
        f"records; B stored {sum(batches)} records in {len(batches)} batches of at most {max(batches)}"
    )
    assert len(refused) == len(ours), f"a record was refused: {ours}"
    assert len(refused) <= 12, f"{len(refused)} batches refused (records per batch: {refused})"
    singles = batches.count(1)
    assert len(batches) <= n // 8, f"{len(batches)} batches on B for {n} records, {singles} of one record"


# --- a halted partition resumes by itself; the opt-in dead-letter policy; large records ------------------

TOO_LARGE = r"(?i)too.?large|MessageSize|RecordTooLarge"
FAST_RETRY = {"rejected.records.retry.backoff.ms": "500", "rejected.records.retry.backoff.max.ms": "2000"}


async def too_large_at(a: str, b: str, topic: str, bad: int, n: int) -> tuple[list[Rec], list[Rec]]:
    """``topic`` on A (2 partitions, max.message.bytes 100000) holds ``n`` records per partition;
    partition 0's record ``bad`` is 10 KB, too large for the remote topic made on B (max.message.bytes
    2000). Returns the records of partitions 0 and 1."""
    await create_topic(a, topic, 2, {"max.message.bytes": "100000"})
    await create_topic(b, f"A.{topic}", 2, {"max.message.bytes": "2000"})
    now = now_ms()
    p0, p1 = records(0, 0, n, now), records(1, 0, n, now)
    key, _, headers, ts = p0[bad]
    p0[bad] = (key, os.urandom(10_000), headers, ts)  # random: no codec shrinks it below the limit
    await produce(a, topic, {0: p0, 1: p1})
    return p0, p1


async def readyz(server: HttpServer) -> tuple[int, dict[str, Any]]:
    status, body = await http_get(server.port, "/readyz")
    return status, json.loads(body)


@pytest.mark.parametrize(("mode", "fix"), [("disabled", "target"), ("required", "source")])
async def test_a_halted_partition_resumes_by_itself_once_the_remote_topic_takes_the_record(
    mode: str,
    fix: str,
    cluster_a: LocalKafkaCluster,
    cluster_b: LocalKafkaCluster,
    topic: str,
    tmp_path: Path,
) -> None:
    """Partition 0's record 2 (10 KB) is too large for the remote topic (max.message.bytes 2000): the
    partition halts there, named in /status, the gauge and /readyz (which stays 200: the worker is doing
    its job), while partition 1 keeps flowing. Then the remote topic's limit is raised — on the target
    directly, or on the source (config sync carries it over) — and, with no restart, the partition resumes
    by itself: every record of both partitions is on the target, in order (exactly once in exactly-once
    mode), the halt is gone and the gauge is 0."""
    a, b = cluster_a.bootstrap_servers, cluster_b.bootstrap_servers
    remote, bad = f"A.{topic}", 2
    exactly_once = mode == "required"
    isolation = "read_committed" if exactly_once else "read_uncommitted"
    p0, p1 = await too_large_at(a, b, topic, bad, 6)
    more: dict[str, str] = dict(FAST_RETRY)
    if fix == "source":
        # the source takes no such record any more (the one it holds stays): config sync keeps B's at 2000
        await set_overrides(a, topic, {"max.message.bytes": "2000"})
        more |= {"sync.topic.configs.enabled": "true", "sync.topic.configs.interval.seconds": "2"}
    settings = flow_settings(tmp_path, a, b, topic, mode, **more)

    with structlog.testing.capture_logs() as logs:
        async with running(settings) as worker, serving(worker) as server:
            got = await consume_all(b, remote, {0: p0[:bad], 1: p1}, 90, isolation_level=isolation)
            assert_copied(got[0], p0[:bad], exactly_once, "partition 0 before the fix")
            await assert_halted(server, topic, 0, bad, TOO_LARGE)

            async def named() -> bool:
                status, doc = await readyz(server)
                return (
                    status == 200
                    and doc["ready"]
                    and any(f"{topic}-0 halted at offset 2" in h for h in doc["halted"])
                )

            await wait_for(named, timeout=30, interval=0.5)
            # partition 1 goes on meanwhile; partition 0 gets more records, after the halted one
            more0, more1 = records(0, 6, 3, now_ms()), records(1, 6, 3, now_ms())
            await produce(a, topic, {0: more0, 1: more1})
            p0, p1 = p0 + more0, p1 + more1
            got = await consume_all(b, remote, {1: p1}, 60, isolation_level=isolation)
            assert_copied(got[1], p1, exactly_once, "partition 1 while partition 0 is halted")
            assert await halted_of(server, topic), "partition 0 resumed before the fix"

            fixed_at = time.monotonic()
            if fix == "target":
                await set_overrides(b, remote, {"max.message.bytes": "100000"})
            else:
                await set_overrides(a, topic, {"max.message.bytes": "100000"})
            got = await consume_all(b, remote, {0: p0, 1: p1}, 90, isolation_level=isolation)
            took = time.monotonic() - fixed_at
            progress = await settled_progress(b, topic, {0: len(p0) - 1, 1: len(p1) - 1})

            async def resumed() -> bool:
                return not await halted_of(server, topic)

            await wait_for(resumed, timeout=30, interval=0.5)
            gauge = await scrape(server, "mirror_partition_halted", source="A", target="B", topic=remote)
            after = await on_target(b, remote, isolation)
    seen = f"(stored progress {progress})"
    assert_copied(after[0], p0, exactly_once, f"partition 0 {seen}")
    assert_copied(after[1], p1, exactly_once, f"partition 1 {seen}")
    assert progress == {0: len(p0) - 1, 1: len(p1) - 1}
    assert {(lbl["partition"], v) for lbl, v in gauge} <= {("0", 0.0)}, gauge
    # retries every 0.5 s .. 2 s here (config sync every 2 s): copied within a few retries of the fix
    print(f"partition 0 copied to its end {took:.1f}s after the fix ({fix}, {mode})")
    assert took < 20, f"{took:.1f}s from the fix to the copy"
    events = [e["event"] for e in logs if e.get("topic") == topic and e.get("offset") == bad]
    assert "target refused a record; partition halted" in events, events
    assert "target took the refused record; partition resumed" in events, events


@pytest.mark.parametrize("mode", ["required", "disabled"])
async def test_with_the_dead_letter_policy_a_refused_record_goes_to_the_dead_letter_topic(
    mode: str, cluster_a: LocalKafkaCluster, cluster_b: LocalKafkaCluster, topic: str, tmp_path: Path
) -> None:
    """``A->B.rejected.records.policy = dead-letter``: partition 0's record 2 is too large for the remote
    topic. It lands in ``mm2-dead-letter.A.internal`` on B with its key, value, headers and timestamp,
    plus headers naming its source topic, partition and offset and the reason; it is counted (metric and
    /status); nothing halts; the records after it are copied, in order; progress reaches the end; and
    every offset sync (read from A's offset-syncs topic) maps a source offset to that record's copy on B,
    across the gap too."""
    a, b = cluster_a.bootstrap_servers, cluster_b.bootstrap_servers
    remote, bad, dead_topic = f"A.{topic}", 2, "mm2-dead-letter.A.internal"
    exactly_once = mode == "required"
    isolation = "read_committed" if exactly_once else "read_uncommitted"
    p0, p1 = await too_large_at(a, b, topic, bad, 8)
    key, _, headers, ts = p0[bad]
    settings = flow_settings(tmp_path, a, b, topic, mode, **{"A->B.rejected.records.policy": "dead-letter"})
    want0 = p0[:bad] + p0[bad + 1 :]

    async with running(settings) as worker, serving(worker) as server:
        got = await consume_all(b, remote, {0: want0, 1: p1}, 90, isolation_level=isolation)
        progress = await settled_progress(b, topic, {0: len(p0) - 1, 1: len(p1) - 1})
        counted = await scrape(
            server, "mirror_dead_lettered_records_total", source="A", target="B", topic=remote
        )
        halted = await halted_of(server, topic)
        dead_lettered = sum(int(t.get("dead_lettered", 0)) for t in await tasks_of(server))

        async def synced_past_the_gap() -> list[tuple[int, int]]:
            syncs = await offset_syncs(a, topic, 0)
            return syncs if any(up > bad for up, _ in syncs) else []

        syncs = await wait_for(synced_past_the_gap, timeout=30, interval=0.5)
    # every offset sync maps a source offset to that record's copy (its "n" header is its source offset):
    # none to the dead-lettered record, none across the gap
    copies = {r.offset: int(dict(r.headers)["n"]) for r in (await read_to_end(b, remote, isolation))[0]}
    assert all(copies.get(down) == up for up, down in syncs), (syncs, sorted(copies.items()))
    seen = f"(stored progress {progress})"
    assert_copied(got[0], want0, exactly_once, f"partition 0 {seen}")
    assert_copied(got[1], p1, exactly_once, f"partition 1 {seen}")
    assert progress == {0: len(p0) - 1, 1: len(p1) - 1}
    assert halted == []
    # (the session's cluster B is shared: earlier tests may have dead-lettered records of their topics)
    letters = [
        r
        for recs in (await read_to_end(b, dead_topic, isolation)).values()
        for r in recs
        if ("mirror.dead-letter.source.topic", topic.encode()) in r.headers
    ]
    assert letters, f"nothing in {dead_topic}"
    if exactly_once:
        assert len(letters) == 1, f"{len(letters)} records in {dead_topic}"
    letter = letters[0]
    assert (letter.key, letter.value, letter.timestamp) == (key, p0[bad][1], ts)
    extra = dict(letter.headers[len(headers) :])
    assert list(letter.headers[: len(headers)]) == list(headers)
    assert extra["mirror.dead-letter.source.topic"] == topic.encode()
    assert extra["mirror.dead-letter.source.partition"] == b"0"
    assert extra["mirror.dead-letter.source.offset"] == b"2"
    assert extra["mirror.dead-letter.remote.topic"] == remote.encode()
    assert re.search(TOO_LARGE, extra["mirror.dead-letter.reason"].decode()), extra
    assert {(lbl["partition"], v) for lbl, v in counted} == {("0", float(len(letters)))}, counted
    assert dead_lettered == len(letters)


@pytest.mark.parametrize("mode", ["required", "disabled"])
async def test_a_record_larger_than_every_client_default_is_copied_without_an_override(
    mode: str, cluster_a: LocalKafkaCluster, cluster_b: LocalKafkaCluster, topic: str, tmp_path: Path
) -> None:
    """A 6 MB record on a topic with max.message.bytes = 8 MB (more than the producer's default request
    size, the consumer's default partition fetch size and the batch size): copied, with the records around
    it, in order, with no client key set (the remote topic takes the source's limit)."""
    a, b = cluster_a.bootstrap_servers, cluster_b.bootstrap_servers
    remote = f"A.{topic}"
    exactly_once = mode == "required"
    isolation = "read_committed" if exactly_once else "read_uncommitted"
    limit = 8 * 1024 * 1024
    await create_topic(a, topic, 1, {"max.message.bytes": str(limit)})
    recs = records(0, 0, 5, now_ms())
    key, _, headers, ts = recs[2]
    recs[2] = (key, os.urandom(6 * 1024 * 1024), headers, ts)
    producer = AIOKafkaProducer(bootstrap_servers=a, max_request_size=limit)  # the test's own producer
    await producer.start()
    try:
        for k, v, h, t in recs:
            await (await producer.send(topic, v, key=k, partition=0, timestamp_ms=t, headers=list(h)))
    finally:
        await producer.stop()
    settings = flow_settings(tmp_path, a, b, topic, mode, **{"sync.topic.configs.enabled": "true"})

    async with running(settings) as worker, serving(worker) as server:
        got = await consume_all(b, remote, {0: recs}, 90, isolation_level=isolation)
        halted = await halted_of(server, topic)
    assert halted == []
    assert_copied(got[0], recs, exactly_once, "partition 0")


async def test_a_retry_seek_hands_out_nothing_read_before_it(
    cluster_a: LocalKafkaCluster, topic: str
) -> None:
    """What the retry of a halted partition relies on in aiokafka (docs/guarantees.md, "Refused records"):
    the reader read past offset 10 (its fetcher goes on prefetching in the background), the partition is
    paused while more records arrive, then sought back to 10 and resumed: the next records handed out
    start at 10 and follow one another, nothing prefetched before the seek comes out after it."""
    a = cluster_a.bootstrap_servers
    await create_topic(a, topic, 1)
    await produce(a, topic, {0: records(0, 0, 200, now_ms())})
    small_fetches = {"max.partition.fetch.bytes": "1000"}  # many fetches, prefetched in the background
    reader = Reader(
        ClusterSettings(alias="A", bootstrap_servers=a), "seek-test", small_fetches, "read_uncommitted"
    )
    tp = (topic, 0)
    await reader.start()
    try:
        await reader.assign({tp: 0})
        seen: list[int] = []
        while not seen or seen[-1] < 30:
            seen += [r.offset for b in await reader.fetch(500) for r in b.records]
        reader.pause([tp])
        await produce(a, topic, {0: records(0, 200, 50, now_ms())})
        paused = [r.offset for b in await reader.fetch(500) for r in b.records]
        reader.seek({tp: 10})
        reader.resume([tp])
        again: list[int] = []
        while not again or again[-1] < 249:
            again += [r.offset for b in await reader.fetch(500) for r in b.records]
    finally:
        await reader.close()
    assert seen == list(range(len(seen))), seen
    assert paused == [], paused
    assert again == list(range(10, 250)), again[:20]


@pytest.mark.parametrize("mode", ["required", "disabled"])
async def test_with_the_dead_letter_policy_several_refused_records_of_a_partition_all_go_there(
    mode: str, cluster_a: LocalKafkaCluster, cluster_b: LocalKafkaCluster, topic: str, tmp_path: Path
) -> None:
    """Partition 0's records 2, 3 and 6 are older than the remote topic accepts, all fetched together:
    each goes to the dead-letter topic (exactly once in exactly-once mode, at least once otherwise), the
    others are copied in order, progress reaches the end, and every offset sync maps a source offset to
    its copy. A refusal of a later record before the
    earlier one's dead-letter write counted must not make the task forget the earlier one (it would then
    go to the remote topic again, be refused again, and the two would displace each other for ever)."""
    a, b = cluster_a.bootstrap_servers, cluster_b.bootstrap_servers
    remote, dead_topic, bad = f"A.{topic}", "mm2-dead-letter.A.internal", (2, 3, 6)
    exactly_once = mode == "required"
    isolation = "read_committed" if exactly_once else "read_uncommitted"
    await create_topic(a, topic, 1)
    await create_topic(b, remote, 1, {"message.timestamp.before.max.ms": str(HOUR_MS)})
    now = now_ms()
    p0 = [records(0, i, 1, now, old=i if i in bad else None)[0] for i in range(10)]
    await produce(a, topic, {0: p0})
    settings = flow_settings(tmp_path, a, b, topic, mode, **{"A->B.rejected.records.policy": "dead-letter"})
    want0 = [r for i, r in enumerate(p0) if i not in bad]

    async with running(settings) as worker, serving(worker) as server:
        got = await consume_all(b, remote, {0: want0}, 30, isolation_level=isolation)
        progress = await settled_progress(b, topic, {0: len(p0) - 1}, timeout=15)
        halted = await halted_of(server, topic)

        async def synced_past_the_gaps() -> list[tuple[int, int]]:
            syncs = await offset_syncs(a, topic, 0)
            return syncs if any(up > bad[-1] for up, _ in syncs) else []

        syncs = await wait_for(synced_past_the_gaps, timeout=30, interval=0.5)
    # every offset sync maps a source offset to that record's copy, across the gaps too
    copies = {r.offset: int(dict(r.headers)["n"]) for r in (await read_to_end(b, remote, isolation))[0]}
    assert all(copies.get(down) == up for up, down in syncs), (syncs, sorted(copies.items()))
    letters = [
        int(dict(r.headers)["mirror.dead-letter.source.offset"])
        for recs in (await read_to_end(b, dead_topic, isolation)).values()
        for r in recs
        if ("mirror.dead-letter.source.topic", topic.encode()) in r.headers
    ]
    seen = f"(stored progress {progress}, dead letters {letters})"
    assert_copied(got[0], want0, exactly_once, f"partition 0 {seen}")
    assert progress == {0: len(p0) - 1}, seen
    assert halted == []
    if exactly_once:
        assert letters == list(bad), seen
    else:
        # at least once, a letter is written again by each session that fails before it counted (one per
        # halving step finding the next refused record): a few times, not over and over
        assert sorted(set(letters)) == list(bad), seen
        assert len(letters) <= 20, f"the same records dead-lettered over and over {seen}"
