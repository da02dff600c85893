"""The other direction of test_java_mm2.py: the real Java MirrorMaker 2 works from what `mirror` wrote.

(1) Java MM2 takes a flow over from the progress `mirror` stored in `mm2-offsets.A.internal`: it copies
exactly the records `mirror` had not copied. Java's Connect runtime looks a partition's offset up by the
exact key bytes and resumes at N+1 of `{"offset":N}`: with other key bytes (another field order, say) it
finds nothing and starts from the beginning (Java MM2's consumers reset to earliest), copying everything a
second time; with a wrong N it copies records twice or skips some. The test fails on either.

(2) Java MM2's checkpoint connector translates a consumer group's offsets through the offset syncs
`mirror` wrote to `mm2-offset-syncs.B.internal` on A. Upstream and downstream offsets differ on purpose
(records deleted on A in one partition, filler records on B in the other), so a sync Java decoded wrongly
would point at other records. The checkpoints are checked against record ids read from both clusters.

Both judge what Java did from the records on the clusters (checkpoint bytes decoded here), not with `mirror`'s
decoders; (2) then checks that `mirror`'s own translation of the same syncs agrees with Java's.
"""

from __future__ import annotations

import asyncio
import os
import signal
import struct
import subprocess
import time
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import RecordsToDelete

from mirror.local.kafka import Distribution, LocalKafkaCluster
from mirror.mm2.offset_translation import OffsetSyncStore
from mirror.mm2.records import OffsetSync
from tests.integration.support import (
    Rec,
    admin,
    commit_offsets,
    consume_all,
    create_topic,
    end_offsets,
    list_topics,
    produce,
    running,
    settings_for,
    wait_for,
)

from .test_java_mm2 import java_mm2_properties, start_java_mm2


def ids(partition: int, start: int, stop: int) -> list[Rec]:
    """Records whose value names them: partition and index in the source partition."""
    return [(None, b"p%d-%06d" % (partition, i), (), 1_700_000_000_000 + i) for i in range(start, stop)]


KV = tuple[bytes | None, bytes | None]


async def read_topic(bootstrap: str, topic: str, partitions: int, start: int = 0) -> dict[int, list[KV]]:
    """(key, value) of every record from offset ``start`` to the current end, per partition."""
    ends = await end_offsets(bootstrap, topic, partitions)
    out: dict[int, list[KV]] = {p: [] for p in range(partitions)}
    tps = [TopicPartition(topic, p) for p in range(partitions) if ends[p] > start]
    if not tps:
        return out
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, start)
        deadline = time.monotonic() + 30
        while any(len(out[tp.partition]) < ends[tp.partition] - start for tp in tps):
            assert time.monotonic() < deadline, f"{topic}: could not read to the end"
            for tp, recs in (await consumer.getmany(timeout_ms=500)).items():
                out[tp.partition].extend((r.key, r.value) for r in recs if r.offset < ends[tp.partition])
    finally:
        await consumer.stop()
    return out


def java_string(buf: bytes, pos: int) -> tuple[str, int]:
    (n,) = struct.unpack_from(">h", buf, pos)
    return buf[pos + 2 : pos + 2 + n].decode(), pos + 2 + n


def stop_java(java: subprocess.Popen[bytes]) -> None:
    os.killpg(java.pid, signal.SIGTERM)
    java.wait(60)


async def test_java_mm2_resumes_from_mirror_progress(
    mirrormaker: Distribution,
    cluster_a: LocalKafkaCluster,
    cluster_b: LocalKafkaCluster,
    topic: str,
    tmp_path: Path,
) -> None:
    a, b = cluster_a.bootstrap_servers, cluster_b.bootstrap_servers
    partitions, remote = 3, f"A.{topic}"
    await create_topic(a, topic, partitions)
    first = {p: ids(p, 0, 300 + 50 * p) for p in range(partitions)}
    await produce(a, topic, first)
    settings = settings_for(tmp_path, {"A": a, "B": b}, ["A->B"], **{"A->B.topics": topic})
    async with running(settings):
        copied = await consume_all(b, remote, first, 90)
        assert copied == first, "mirror did not copy the first part faithfully"
    # mirror stopped cleanly: its progress is in mm2-offsets.A.internal on B; Java MM2 takes over
    second = {p: ids(p, len(first[p]), len(first[p]) + 200) for p in range(partitions)}
    await produce(a, topic, second)
    expected = {p: first[p] + second[p] for p in range(partitions)}
    config = tmp_path / "java-mm2.properties"
    config.write_text(java_mm2_properties(a, b, topic, f"{topic}-unused"))
    java = start_java_mm2(mirrormaker, config, tmp_path / "java-mm2.log")
    try:
        got = await consume_all(b, remote, expected, 75)
        await asyncio.sleep(2)  # a Java MM2 that started over would go on copying: give it time to show
    finally:
        await asyncio.to_thread(stop_java, java)
    ends = await end_offsets(b, remote, partitions)
    extra = {p: ends[p] - len(expected[p]) for p in range(partitions)}
    assert not any(extra.values()), (
        f"records on B beyond the expected, per partition: {extra}; more: Java MM2 copied records twice"
        " (it did not resume from mirror's progress), fewer: it skipped records"
    )
    assert got == expected, "Java MM2 left a gap or reordered records where it took over from mirror"


def checkpoint(key: bytes, value: bytes) -> tuple[str, str, int, int, int]:
    """A Java checkpoint record (docs/mm2-compat.md §1.3): group, topic, partition, upstream, downstream."""
    group, pos = java_string(key, 0)
    remote, pos = java_string(key, pos)
    (partition,) = struct.unpack_from(">i", key, pos)
    version, upstream, downstream = struct.unpack_from(">hqq", value, 0)
    assert version == 0
    return group, remote, partition, upstream, downstream


async def test_java_checkpoints_translate_through_mirror_offset_syncs(
    mirrormaker: Distribution,
    cluster_a: LocalKafkaCluster,
    cluster_b: LocalKafkaCluster,
    topic: str,
    tmp_path: Path,
) -> None:
    a, b = cluster_a.bootstrap_servers, cluster_b.bootstrap_servers
    remote, group, syncs_topic = f"A.{topic}", f"{topic}-group", "mm2-offset-syncs.B.internal"
    source = {p: ids(p, 0, 400) for p in (0, 1)}
    await create_topic(a, topic, 2)
    await produce(a, topic, source)
    # p0: upstream = downstream + 100 (the first 100 records deleted on A before anything is copied)
    client = await admin(a)
    try:
        await client.delete_records({TopicPartition(topic, 0): RecordsToDelete(100)})
    finally:
        await client.close()
    # p1: downstream = upstream + 50 (filler records on B's remote topic before mirror copies into it)
    await create_topic(b, remote, 2)
    filler: list[Rec] = [(None, b"filler-%d" % i, (), 1_600_000_000_000 + i) for i in range(50)]
    await produce(b, remote, {1: filler})
    settings = settings_for(
        tmp_path,
        {"A": a, "B": b},
        ["A->B"],
        **{"A->B.topics": topic, "A->B.emit.checkpoints.enabled": "false", "A->B.offset.lag.max": "20"},
    )
    expected = {0: source[0][100:], 1: filler + source[1]}
    async with running(settings):
        assert await consume_all(b, remote, expected, 90) == expected
    # mirror stopped cleanly: its last syncs are out. Nothing below writes syncs for this topic but mirror:
    # Java MM2's source task resumes from mirror's progress at the end of the topic and copies nothing.
    (syncs_end,) = (await end_offsets(a, syncs_topic, 1)).values()
    committed = {0: 330, 1: 400}  # p0: 70 records not consumed yet; p1: the group is at the end
    await commit_offsets(a, group, {(topic, p): off for p, off in committed.items()})
    config = tmp_path / "java-mm2.properties"
    config.write_text(java_mm2_properties(a, b, topic, group))
    java = start_java_mm2(mirrormaker, config, tmp_path / "java-mm2.log")
    try:

        async def java_checkpoints() -> dict[int, tuple[int, int]] | None:
            if "A.checkpoints.internal" not in await list_topics(b):
                return None
            found: dict[int, tuple[int, int]] = {}
            for key, value in (await read_topic(b, "A.checkpoints.internal", 1))[0]:
                assert key is not None and value is not None
                g, t, p, upstream, downstream = checkpoint(key, value)
                if g == group and t == remote:
                    found[p] = (upstream, downstream)
            return found if set(found) == {0, 1} else None

        try:
            checkpoints = await wait_for(java_checkpoints, timeout=75, interval=1)
        except AssertionError:
            raise AssertionError(
                f"no checkpoints of {group} for both partitions from Java MM2 within 75 s: "
                "did Java decode mirror's offset syncs? (java-mm2.log in the test's tmp_path)"
            ) from None
    finally:
        await asyncio.to_thread(stop_java, java)
    syncs = (await read_topic(a, syncs_topic, 1))[0]
    for key, _ in syncs[syncs_end:]:
        assert key is None or java_string(key, 0)[0] != topic, "Java MM2 wrote offset syncs of its own"
    on_b = await read_topic(b, remote, 2)
    print(f"\nJava's checkpoints through mirror's syncs, partition: (upstream, downstream): {checkpoints}")
    for p, (upstream, downstream) in checkpoints.items():
        assert upstream == committed[p]
        if committed[p] == 400:  # at the end: the translation is exact
            assert downstream == len(on_b[p]), f"p{p}: caught-up group translated to {downstream}"
            continue
        # the group's next record, found on B by its id: the translation may go back (re-reads; how far
        # depends on mirror's batches and on which syncs Java's 64-slot store keeps) but never past it
        next_id = source[p][committed[p]][1]
        at = [v for _, v in on_b[p]].index(next_id)
        assert 0 <= downstream <= at, f"p{p}: Java's checkpoint {downstream} skips records from {at}"
    # and mirror's own translation (its OffsetSyncStore, as Java's checkpoint task runs it) agrees
    store = OffsetSyncStore(initialization_must_read_to_end=False)
    for key, value in syncs:
        if key is not None and value is not None and java_string(key, 0)[0] == topic:
            store.update(OffsetSync.decode(key, value))
    store.mark_read_to_end()
    ours = {p: store.translate_downstream(group, (topic, p), committed[p]) for p in committed}
    assert ours == {p: downstream for p, (_, downstream) in checkpoints.items()}
