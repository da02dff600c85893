"""The real Java MirrorMaker 2 replicates a flow; `mirror` reads its checkpoints and takes over its progress.

Java MM2 (connect-mirror from Maven Central) runs in dedicated mode against the session's clusters A and B.
Then `mirror` (1) translates a consumer group's offsets from the checkpoints Java wrote, and (2) takes
over the flow from the `mm2-offsets.A.internal` records Java's Connect runtime stored: it resumes where
Java stopped instead of copying the topic again.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from pathlib import Path

from mirror.client import translate_offsets
from mirror.local.kafka import Distribution, LocalKafkaCluster
from tests.integration.support import (
    FAST,
    commit_offsets,
    consume,
    create_topic,
    list_topics,
    produce,
    running,
    settings_for,
    wait_for,
)
from tests.integration.test_replication import _dedupe_resent_tail, make_records, spread

from .test_java_client import tool


def java_mm2_properties(a: str, b: str, topic: str, group: str) -> str:
    rf = {k: v for k, v in FAST.items() if k.endswith("replication.factor")}
    lines = [
        "clusters = A, B",
        f"A.bootstrap.servers = {a}",
        f"B.bootstrap.servers = {b}",
        "A->B.enabled = true",
        f"A->B.topics = {topic}",
        f"A->B.groups = {group}",
        "B->A.enabled = false",
        "A->B.emit.checkpoints.interval.seconds = 1",
        "A->B.refresh.groups.interval.seconds = 1",
        "A->B.sync.group.offsets.enabled = false",
        "B.offset.flush.interval.ms = 500",
        "A.offset.flush.interval.ms = 500",
        "offset.storage.partitions = 5",
        *(f"{k} = {v}" for k, v in rf.items()),
    ]
    return "\n".join(lines) + "\n"


def start_java_mm2(mm2: Distribution, config: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [
                tool("java"),
                "-Xmx512m",
                "-cp",
                mm2.classpath,
                "org.apache.kafka.connect.mirror.MirrorMaker",
                str(config),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


async def test_mirror_reads_java_checkpoints_and_takes_over_java_progress(
    mirrormaker: Distribution,
    cluster_a: LocalKafkaCluster,
    cluster_b: LocalKafkaCluster,
    topic: str,
    tmp_path: Path,
) -> None:
    a, b = cluster_a.bootstrap_servers, cluster_b.bootstrap_servers
    group = f"{topic}-group"
    await create_topic(a, topic, 2)
    first = spread(make_records(2_000, seed=31), 2)
    await produce(a, topic, first)
    await commit_offsets(a, group, {(topic, 0): 600, (topic, 1): 1000})  # p1: the group is at the end
    config = tmp_path / "java-mm2.properties"
    config.write_text(java_mm2_properties(a, b, topic, group))
    java = start_java_mm2(mirrormaker, config, tmp_path / "java-mm2.log")
    try:
        remote = f"A.{topic}"
        copied = await consume(b, remote, {0: 1000, 1: 1000}, 120, {p: r[-1] for p, r in first.items()})
        assert copied == first, "Java MM2 did not copy the topic faithfully"
        # (1) our client translates the group from the checkpoints Java MM2 wrote
        settings = settings_for(tmp_path, {"A": a, "B": b}, ["A->B"], **{"A->B.topics": topic})

        async def translated() -> dict[tuple[str, int], tuple[int, str]] | None:
            if "A.checkpoints.internal" not in await list_topics(b):
                return None
            offsets = await translate_offsets(settings.cluster("B"), "A", group, timeout=10)
            # the caught-up partition becomes exact once Java's offset flush promoted its last sync
            return offsets if offsets.get((remote, 1), (0, ""))[0] == 1000 else None

        offsets = await wait_for(translated, timeout=90, interval=1)
        assert set(offsets) == {(remote, 0), (remote, 1)}
        # never past the group's position (no record skipped on failover); how far before it depends on
        # which offset syncs Java's 64-slot store kept
        assert 0 < offsets[(remote, 0)][0] <= 600
        assert offsets[(remote, 1)][0] == 1000  # caught-up group: exact
    finally:
        os.killpg(java.pid, signal.SIGTERM)
        await asyncio.to_thread(java.wait, 60)
    # (2) mirror takes the flow over from Java's stored progress: it does not copy the topic again
    second = spread(make_records(400, seed=32), 2)
    await produce(a, topic, second)
    expected = {p: first[p] + second[p] for p in first}
    async with running(settings):
        got = await consume(
            b, remote, {p: len(r) for p, r in expected.items()}, 120, {p: r[-1] for p, r in expected.items()}
        )
    duplicates = sum(len(got[p]) - len(expected[p]) for p in expected)
    for p, recs in expected.items():
        assert _dedupe_resent_tail(got[p], recs) == recs, f"partition {p} lost records"
    print(f"\ntakeover from Java MM2: {duplicates} records copied twice (of {sum(map(len, first.values()))})")
    assert duplicates < 100  # resumed from Java's progress, not from the beginning
