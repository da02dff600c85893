"""`mirror verify` against real brokers: a faithful copy passes, each planted defect is found by position."""

from __future__ import annotations

import argparse
import io
import json
import time
import uuid
from pathlib import Path

from aiokafka import AIOKafkaProducer

from mirror.cli.verify import run_verify
from mirror.config import Settings
from mirror.local.kafka import LocalKafkaCluster
from mirror.migration.digest import Difference
from mirror.migration.verify import verify
from mirror.replication.progress import ProgressStore
from tests.integration.support import (
    create_topic,
    end_offsets,
    make_records,
    produce,
    running,
    settings_for,
    store_progress,
    wait_for,
)


def args(**kw: object) -> argparse.Namespace:
    base: dict[str, object] = {
        "source": "A",
        "target": "B",
        "topic": [],
        "sample": None,
        "allow_duplicates": False,
        "json": True,
    }
    return argparse.Namespace(**{**base, **kw})


async def copied(settings: Settings, topics: dict[str, int], bootstrap: str, markers: int = 0) -> bool:
    """Every partition's stored progress is at its source end (before ``markers`` transaction markers)."""
    flow = settings.flows["A->B"]
    stored = await ProgressStore(flow, settings.cluster("B")).load()
    for topic, partitions in topics.items():
        ends = await end_offsets(bootstrap, topic, partitions)
        if any(ends[p] and stored.get((topic, p), -1) < ends[p] - 1 - markers for p in range(partitions)):
            return False
    return True


async def test_a_faithful_copy_of_100k_records_with_every_codec_is_identical(
    cluster_a: LocalKafkaCluster, cluster_b: LocalKafkaCluster, topic: str, tmp_path: Path
) -> None:
    a, b = cluster_a.bootstrap_servers, cluster_b.bootstrap_servers
    codecs = ("none", "gzip", "snappy", "lz4", "zstd")
    topics = {f"{topic}-{codec}": 2 for codec in codecs}
    for i, codec in enumerate(codecs):
        name = f"{topic}-{codec}"
        await create_topic(a, name, 2, {"compression.type": "producer"})
        records = make_records(20_000, seed=i)
        await produce(
            a, name, {0: records[::2], 1: records[1::2]}, compression=None if codec == "none" else codec
        )
    settings = settings_for(tmp_path, {"A": a, "B": b}, ["A->B"], **{"A->B.topics": f"{topic}-.*"})
    async with running(settings):
        await wait_for(lambda: copied(settings, topics, a), timeout=180)
        # while it runs: the stored progress bounds the range
        while_running = await verify(settings, settings.flows["A->B"], sorted(topics))
    assert while_running.identical and while_running.records == 100_000
    out = io.StringIO()
    t0 = time.monotonic()
    code = await run_verify(settings, args(topic=sorted(topics)), out)
    seconds = time.monotonic() - t0
    report = json.loads(out.getvalue())
    assert code == 0, report
    assert report["identical"] and report["records"] == 100_000
    assert {p["remote_topic"] for p in report["partitions"]} == {f"A.{t}" for t in topics}
    for p in report["partitions"]:
        assert p["state"] == "identical" and p["counts"] == {}
        assert p["first"] == {"source": 0, "target": 0}
        assert p["last"] == {"source": 9_999, "target": 9_999}
    print(f"\nverify: 100000 records (x2 sides) in {seconds:.2f} s: {100_000 / seconds:,.0f} records/s")

    # --sample: the last 500 records of each partition, from the offset sync before them
    sampled = await verify(settings, settings.flows["A->B"], sorted(topics), sample=500)
    assert sampled.identical
    for check in sampled.checks:
        assert check.sampled and 9_500 - 200 <= check.source_start <= 9_500, check
        assert check.outcome is not None and check.outcome.first is not None
        assert check.outcome.first[0] == check.source_start and check.outcome.last == (9_999, 9_999)
    assert sampled.records < 10 * 800


async def test_planted_defects_are_found_at_their_offsets(
    cluster_a: LocalKafkaCluster, cluster_b: LocalKafkaCluster, topic: str, tmp_path: Path
) -> None:
    """The remote topic is written by the test, each partition with one defect, beside stored progress."""
    a, b = cluster_a.bootstrap_servers, cluster_b.bootstrap_servers
    n = 300
    source = {p: make_records(n, seed=10 + p) for p in range(6)}
    await create_topic(a, topic, 6)
    await produce(a, topic, source)
    copy = {p: list(recs) for p, recs in source.items()}
    del copy[0][120]  # p0: a deleted record
    copy[1].insert(77, (b"planted", b"extra", (), 1_700_000_000_077))  # p1: an extra record
    key, value, headers, ts = copy[2][200]
    copy[2][200] = (key, value, (*headers, ("changed", b"1")), ts)  # p2: a changed header
    copy[3][150], copy[3][151] = copy[3][151], copy[3][150]  # p3: a reordered pair
    # p4: faithful
    copy[5][100:100] = copy[5][90:100]  # p5: a run copied twice (at-least-once after a crash)
    await create_topic(b, f"A.{topic}", 6)
    await produce(b, f"A.{topic}", copy)
    settings = settings_for(tmp_path, {"A": a, "B": b}, ["A->B"], **{"A->B.topics": topic})
    flow = settings.flows["A->B"]
    await store_progress(settings, "A->B", {(topic, p): n - 1 for p in source})

    report = await verify(settings, flow)
    by_partition = {c.partition: c for c in report.checks}
    assert not report.identical
    outcome = {p: by_partition[p].outcome for p in range(6)}
    assert all(o is not None for o in outcome.values())
    assert outcome[0] and outcome[0].differences == [Difference("missing", 120, None)]
    assert outcome[1] and outcome[1].differences == [Difference("extra", None, 77)]
    assert outcome[2] and outcome[2].differences == [Difference("differing", 200, 200)]
    assert outcome[3] and outcome[3].counts == {"reordered": 1}
    reordered = outcome[3].differences[0]
    assert {reordered.source_offset, reordered.target_offset} <= {150, 151}
    assert by_partition[4].state == "identical"
    assert [by_partition[p].state for p in range(4)] == ["different"] * 4
    assert by_partition[5].state == "duplicated" and by_partition[5].outcome is not None
    assert by_partition[5].outcome.differences == [Difference("duplicate", None, t) for t in range(100, 110)]
    assert [c.partition for c in report.failing] == [0, 1, 2, 3, 5]
    allowed = await verify(settings, flow, allow_duplicates=True)
    assert [c.partition for c in allowed.failing] == [0, 1, 2, 3]

    out = io.StringIO()
    assert await run_verify(settings, args(json=False), out) == 1
    text = out.getvalue()
    assert "missing    source offset 120" in text and "extra      target offset 77" in text
    assert "differing  source offset 200, target offset 200" in text and "DIFFERENT" in text


async def test_identity_naming_transactions_compaction_and_empty_partitions(
    cluster_a: LocalKafkaCluster, cluster_b: LocalKafkaCluster, topic: str, tmp_path: Path
) -> None:
    """IdentityReplicationPolicy (same names), a transactional source with an aborted transaction (markers
    take offsets, aborted records are not copied), an exactly-once target (its markers take offsets too),
    a compacted topic, an empty partition: identical. Then a record changed on the compacted copy is
    found."""
    a, b = cluster_a.bootstrap_servers, cluster_b.bootstrap_servers
    txn, compacted = f"{topic}-txn", f"{topic}-compacted"
    await create_topic(a, txn, 2)  # partition 1 stays empty
    await create_topic(a, compacted, 1, {"cleanup.policy": "compact"})
    producer = AIOKafkaProducer(bootstrap_servers=a, transactional_id=f"t-{uuid.uuid4().hex[:8]}")
    await producer.start()
    try:
        for round_ in range(6):
            await producer.begin_transaction()
            for i in range(50):
                await producer.send(txn, b"v%d-%d" % (round_, i), b"k%d" % i, partition=0)
            if round_ == 3:
                await producer.abort_transaction()
            else:
                await producer.commit_transaction()
    finally:
        await producer.stop()
    await produce(
        a, compacted, {0: [(b"k%d" % (i % 40), b"v%d" % i, (), 1_700_000_000_000 + i) for i in range(400)]}
    )
    settings = settings_for(
        tmp_path,
        {"A": a, "B": b},
        ["A->B"],
        **{
            "A->B.topics": f"{topic}-.*",
            "replication.policy.class": "org.apache.kafka.connect.mirror.IdentityReplicationPolicy",
            "A->B.exactly.once.support": "required",  # the target holds transaction markers too
        },
    )
    async with running(settings):
        await wait_for(lambda: copied(settings, {txn: 1}, a, markers=1), timeout=120)
        await wait_for(lambda: copied(settings, {compacted: 1}, a), timeout=60)
        report = await verify(settings, settings.flows["A->B"], [txn, compacted])
    checks = {(c.topic, c.partition): c for c in report.checks}
    assert report.identical, report
    assert checks[(txn, 0)].remote_topic == txn and checks[(txn, 0)].state == "identical"
    assert checks[(txn, 0)].outcome is not None and checks[(txn, 0)].outcome.matched == 250
    assert (await end_offsets(b, txn, 1))[0] > 250  # the copy's transaction markers take offsets
    assert checks[(txn, 1)].state == "empty"
    assert checks[(compacted, 0)].compacted and checks[(compacted, 0)].state == "identical"
    assert checks[(compacted, 0)].outcome is not None and checks[(compacted, 0)].outcome.matched == 40

    # a newer record for one key on the target only: the compacted copy now differs there
    await produce(b, compacted, {0: [(b"k5", b"changed", (), 1_700_000_009_999)]})
    report = await verify(settings, settings.flows["A->B"], [compacted])
    (check,) = report.checks
    assert check.state == "different" and check.outcome is not None
    assert check.outcome.counts == {"differing": 1} and check.outcome.differences[0].source_offset == 365
