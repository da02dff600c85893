"""README promises against real brokers: aborted source transactions are never copied, a remote topic the
target refuses leaves the others flowing, and a replication factor above the broker count refuses to
start."""

from __future__ import annotations

import uuid
from pathlib import Path

from aiokafka import AIOKafkaProducer

from mirror.local.kafka import LocalKafkaCluster

from .support import Rec, consume, consume_all, create_topic, running, settings_for

PARTITIONS = 2


async def test_aborted_source_transactions_are_never_copied(
    cluster_a: LocalKafkaCluster, cluster_b: LocalKafkaCluster, topic: str, tmp_path: Path
) -> None:
    """A transactional producer on A commits some records and aborts others (written to the log, then
    aborted); B gets exactly the committed ones, in order, even for a read_uncommitted consumer."""
    a, b = cluster_a.bootstrap_servers, cluster_b.bootstrap_servers
    await create_topic(a, topic, PARTITIONS)
    producer = AIOKafkaProducer(bootstrap_servers=a, transactional_id=f"t-{uuid.uuid4().hex[:8]}")
    await producer.start()
    committed: dict[int, list[Rec]] = {p: [] for p in range(PARTITIONS)}
    written: dict[int, int] = dict.fromkeys(range(PARTITIONS), 0)
    try:
        for round_ in range(4):
            for outcome in ("abort", "commit"):  # the last transaction commits
                await producer.begin_transaction()
                for i in range(10):
                    p, ts = i % PARTITIONS, 1_700_000_000_000 + round_ * 100 + i
                    rec: Rec = (f"{outcome}-{round_}-{i}".encode(), b"v", (), ts)
                    await producer.send_and_wait(topic, rec[1], rec[0], p, ts)  # in the log before the end
                    written[p] += 1
                    if outcome == "commit":
                        committed[p].append(rec)
                if outcome == "commit":
                    await producer.commit_transaction()
                else:
                    await producer.abort_transaction()
    finally:
        await producer.stop()
    # the aborted records are in A's log (a read_uncommitted consumer sees them): the test is not vacuous
    on_a = await consume(a, topic, written, timeout=30)
    assert {p: len(r) for p, r in on_a.items()} == written

    settings = settings_for(tmp_path, {"A": a, "B": b}, ["A->B"], **{"A->B.topics": topic})
    async with running(settings):
        got = await consume_all(b, f"A.{topic}", committed, timeout=60)
    assert got == committed
