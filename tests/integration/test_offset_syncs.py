"""Offset syncs written by the source task: Java's format and rules, pointing at the right records."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition

from mirror.local.kafka import LocalKafkaCluster
from mirror.mm2.records import OffsetSync
from mirror.mm2.sync_history import WRITER_HEADER

from .support import consume, create_topic, produce, running, settings_for
from .test_replication import make_records, spread


async def read_syncs(bootstrap: str, topic: str) -> list[OffsetSync]:
    return [s for s, _ in await read_syncs_with_writers(bootstrap, topic)]


async def read_syncs_with_writers(bootstrap: str, topic: str) -> list[tuple[OffsetSync, bytes | None]]:
    """The syncs of `topic` and the writer id each carries (`WRITER_HEADER`; None: none)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        end = (await consumer.end_offsets([tp]))[tp]
        out = []
        while await consumer.position(tp) < end:
            for recs in (await consumer.getmany(timeout_ms=1000)).values():
                out += [(OffsetSync.decode(r.key, r.value), dict(r.headers).get(WRITER_HEADER)) for r in recs]
        return out
    finally:
        await consumer.stop()


async def test_offset_syncs_map_upstream_to_downstream_records(
    cluster_a: LocalKafkaCluster, cluster_b: LocalKafkaCluster, topic: str, tmp_path: Path
) -> None:
    a, b = cluster_a.bootstrap_servers, cluster_b.bootstrap_servers
    # the target already holds a few records, so downstream offsets differ from upstream ones
    await create_topic(b, f"A.{topic}", 2)
    await produce(b, f"A.{topic}", {0: make_records(7, seed=1), 1: make_records(3, seed=2)})
    await create_topic(a, topic, 2)
    source = spread(make_records(1_000, seed=5), 2)
    await produce(a, topic, source)
    settings = settings_for(
        tmp_path, {"A": a, "B": b}, ["A->B"], **{"A->B.topics": topic, "offset.lag.max": "50"}
    )
    async with running(settings):
        got = await consume(b, f"A.{topic}", {0: 507, 1: 503}, 60, {p: r[-1] for p, r in source.items()})
    written = [
        w for w in await read_syncs_with_writers(a, "mm2-offset-syncs.B.internal") if w[0].topic == topic
    ]
    syncs = [s for s, _ in written]
    assert {s.partition for s in syncs} == {0, 1}
    # every sync names its writer (one task session per partition here): no link between writers is trusted
    assert all(w is not None and len(w) == 8 for _, w in written)
    assert all(len({w for s, w in written if s.partition == p}) == 1 for p in (0, 1))
    for s in syncs:
        # the synced downstream record is the copy of the synced upstream record
        assert got[s.partition][s.downstream_offset] == source[s.partition][s.upstream_offset]
    for p in (0, 1):
        mine = [s for s in syncs if s.partition == p]
        assert mine[0].upstream_offset == 0  # first record of the task's life
        assert mine[-1].upstream_offset == len(source[p]) - 1  # idle partition: exact sync of the last record
        # offset.lag.max=50: a record 50 past the last sync's downstream offset + 1 triggers a sync, so
        # consecutive syncs are at most 51 records apart (flushes add exact syncs in between, never fewer)
        steps = [later.upstream_offset - s.upstream_offset for s, later in pairwise(mine)]
        assert steps and max(steps) <= 51, f"partition {p}: syncs {[s.upstream_offset for s in mine]}"
