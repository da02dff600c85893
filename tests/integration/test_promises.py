"""README promises against real brokers: aborted source transactions are never copied, a remote topic the
target refuses leaves the others flowing, and a replication factor above the broker count refuses to
start."""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from pathlib import Path

from aiokafka import AIOKafkaProducer

from mirror.local.kafka import LocalKafkaCluster

from .support import (
    Rec,
    consume,
    consume_all,
    create_topic,
    http_get,
    list_topics,
    mm2_properties,
    produce,
    running,
    serving,
    settings_for,
    wait_for,
)

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


async def test_a_replication_factor_above_the_brokers_refuses_to_start_naming_the_key(
    cluster_a: LocalKafkaCluster, cluster_b: LocalKafkaCluster, tmp_path: Path
) -> None:
    """B has one broker: `replication.factor = 3` exits 2 at start with a message naming the key."""
    a, b = cluster_a.bootstrap_servers, cluster_b.bootstrap_servers
    config = tmp_path / "mm2.properties"
    config.write_text(mm2_properties({"A": a, "B": b}, ["A->B"], **{"replication.factor": "3"}))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mirror", "run", "--config", str(config),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 2, (out.decode()[-2000:], err.decode()[-2000:])
    assert err.decode().strip().splitlines()[-1] == (
        "mirror: replication.factor=3 but cluster B has 1 broker(s): "
        "set replication.factor (or A->B.replication.factor) to at most 1"
    )


async def test_a_remote_topic_the_target_refuses_leaves_the_others_flowing(
    cluster_a: LocalKafkaCluster, cluster_b: LocalKafkaCluster, topic: str, tmp_path: Path
) -> None:
    """B refuses to create `A.<t>_bad`: its name collides with B's own `A.<t>.bad` ('.' and '_' collide in
    Kafka's metric names). The refusal is in /status `topic_errors`, and `<t>-ok` keeps flowing meanwhile."""
    a, b = cluster_a.bootstrap_servers, cluster_b.bootstrap_servers
    bad, ok = f"{topic}_bad", f"{topic}-ok"
    await create_topic(b, f"A.{topic}.bad", 1)
    await create_topic(a, bad, 1)
    await create_topic(a, ok, 1)
    first: list[Rec] = [(b"k%d" % i, b"first", (), 1_700_000_000_000 + i) for i in range(50)]
    later: list[Rec] = [(b"k%d" % i, b"later", (), 1_700_000_001_000 + i) for i in range(50)]
    await produce(a, bad, {0: first})
    await produce(a, ok, {0: first})
    settings = settings_for(tmp_path, {"A": a, "B": b}, ["A->B"], **{"A->B.topics": f"{topic}.*"})
    async with running(settings) as worker, serving(worker) as http:

        async def refused() -> dict[str, str]:
            status, body = await http_get(http.port, "/status")
            assert status == 200
            (flow,) = [f for f in json.loads(body)["flows"] if f["flow"] == "A->B"]
            errors: dict[str, str] = flow["topic_errors"]
            return errors

        errors = await wait_for(refused, 30)
        assert list(errors) == [bad] and "collides" in errors[bad], errors
        await produce(a, ok, {0: later})  # written after the refusal: the other topic still flows
        got = await consume_all(b, f"A.{ok}", {0: first + later}, timeout=30)
        assert got == {0: first + later}
        assert (await refused()) == errors  # still refused, still shown
    assert f"A.{bad}" not in await list_topics(b)
