"""Java MM2's client (RemoteClusterUtils, connect-mirror-client) reads our heartbeats and checkpoints and
answers what `mirror.client` answers."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import OffsetAndMetadata

from mirror import client
from mirror.local.kafka import Distribution, LocalKafkaCluster
from mirror.service.worker import make_policy
from tests.integration.support import create_topic, produce, running, settings_for, wait_for

JAVA_SOURCE = Path(__file__).parent / "java" / "MirrorClientProbe.java"


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"'{name}' is not on PATH: the interop tests need a JDK 17+ (javac and java)", pytrace=False
        )
    return path


def compile_probe(mm2: Distribution, out: Path) -> None:
    proc = subprocess.run(
        [tool("javac"), "-cp", mm2.classpath, "-d", str(out), str(JAVA_SOURCE)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, f"javac failed:\n{proc.stderr}"


def run_probe(mm2: Distribution, classes: Path, *args: str) -> dict[str, Any]:
    proc = subprocess.run(
        [tool("java"), "-cp", f"{classes}:{mm2.classpath}", "MirrorClientProbe", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, f"MirrorClientProbe failed:\n{proc.stderr[-3000:]}"
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


async def commit_with_metadata(
    bootstrap: str, group: str, offsets: dict[tuple[str, int], tuple[int, str]]
) -> None:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = {TopicPartition(*tp): OffsetAndMetadata(off, meta) for tp, (off, meta) in offsets.items()}
        consumer.assign(list(tps))
        await consumer.commit(tps)
    finally:
        await consumer.stop()


async def test_java_remote_cluster_utils_agree_with_mirror_client(
    cluster_a: LocalKafkaCluster,
    cluster_b: LocalKafkaCluster,
    mirrormaker: Distribution,
    topic: str,
    tmp_path: Path,
) -> None:
    a, b = cluster_a.bootstrap_servers, cluster_b.bootstrap_servers
    classes = tmp_path / "classes"
    compile_job = asyncio.create_task(asyncio.to_thread(compile_probe, mirrormaker, classes))
    group = f"{topic}-app"
    await create_topic(a, topic, 2)
    await produce(
        a, topic, {p: [(None, b"%d" % i, (), 1_700_000_000_000 + i) for i in range(400)] for p in (0, 1)}
    )
    settings = settings_for(
        tmp_path,
        {"A": a, "B": b},
        ["A->B"],
        **{
            "A->B.topics": topic,
            "A->B.groups": f"{topic}-.*",
            "emit.checkpoints.interval.seconds": "1",
            "refresh.groups.interval.seconds": "1",
        },
    )
    b_cluster, policy = settings.cluster("B"), make_policy(settings.flows["A->B"])
    committed = {(topic, 0): (250, "meta-0"), (topic, 1): (399, "")}

    async def ready() -> bool:
        heartbeats = await client.heartbeat_topics(b_cluster, policy)
        offsets = await client.remote_checkpoints(b_cluster, group, "A", 10, policy)
        ups = {(tp[0].removeprefix("A."), tp[1]): cp.upstream_offset for tp, cp in offsets.items()}
        return "A.heartbeats" in heartbeats and ups == {tp: off for tp, (off, _) in committed.items()}

    async with running(settings):
        await commit_with_metadata(a, group, committed)
        await wait_for(ready, timeout=45, interval=0.5)
    await compile_job

    java = await asyncio.to_thread(run_probe, mirrormaker, classes, b, "A", group, "B", "Z")
    ours = {
        "translate_offsets": [
            {"topic": t, "partition": p, "offset": off, "metadata": meta}
            for (t, p), (off, meta) in sorted(
                (await client.translate_offsets(b_cluster, "A", group, 30, policy)).items()
            )
        ],
        "replication_hops": {
            alias: await client.replication_hops(b_cluster, alias, policy) for alias in ("A", "B", "Z")
        },
        "upstream_clusters": sorted(await client.upstream_clusters(b_cluster, policy)),
        "heartbeat_topics": sorted(await client.heartbeat_topics(b_cluster, policy)),
        "checkpoint_topics": sorted(await client.checkpoint_topics(b_cluster, policy)),
    }
    assert java == ours
    assert java["replication_hops"]["A"] == 1
    # B is shared by the session: earlier tests may have left heartbeats topics of any alias on it (a
    # `B.heartbeats` too), so only A's presence is asserted; Java and mirror agree on the whole list above
    assert "A" in java["upstream_clusters"]
    assert {r["metadata"] for r in java["translate_offsets"]} == {"meta-0", ""}
    assert len(java["translate_offsets"]) == 2
    # the checkpoints are mirror's precise ones (docs/mm2-compat.md §5.1): B's copies started empty and
    # have no gaps, so both groups resume exactly where they stopped (Java's "+1" rule lands one past the
    # sync below 250), and Java's client reads the same numbers from them
    assert {r["partition"]: r["offset"] for r in java["translate_offsets"]} == {0: 250, 1: 399}
