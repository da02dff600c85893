"""Source topics deleted, and deleted and created again, against real brokers (#14).

A deleted source topic is logged, counted and shown in /status; its remote topic is kept, or deleted after
a delay when ``remote.topics.delete.enabled`` says so. A topic deleted and created again (a new topic id,
fewer or more partitions) is logged, counted and copied from its start: no record of the new topic is
skipped, and nothing of the old topic's progress is applied to it — neither while the worker runs nor
when it starts again after the re-creation.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import structlog

from mirror import metrics
from mirror.local.kafka import LocalKafkaCluster
from mirror.service.worker import Worker

from .support import Rec, admin, consume, create_topic, list_topics, produce, running, settings_for, wait_for
from .test_replication import _stored_progress

DELETED_KEPT = "source topic deleted; its remote topic is kept"
DELETED_DROPPED = "source topic deleted; its remote topic will be deleted"
REMOTE_DELETED = "deleted the remote topic of a deleted source topic"
RECREATED = "source topic re-created; copying the new topic from its start"


def records(tag: str, partitions: int, n: int) -> dict[int, list[Rec]]:
    """``n`` records per partition whose values name their incarnation, partition and index."""
    now = int(time.time() * 1000)
    return {
        p: [(b"k%d" % i, f"{tag}-{p}-{i}".encode(), (), now + i) for i in range(n)] for p in range(partitions)
    }


def counter(name: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, {"source": "A", "target": "B"}) or 0.0


async def delete_topic(bootstrap: str, name: str) -> None:
    client = await admin(bootstrap)
    try:
        await client.delete_topics([name])
    finally:
        await client.close()
    await wait_for(lambda: _absent(bootstrap, name), timeout=30)


async def _absent(bootstrap: str, name: str) -> bool:
    return name not in await list_topics(bootstrap)


async def recreate_topic(bootstrap: str, name: str, partitions: int) -> None:
    """Create ``name`` again (the broker may still be finishing its deletion for a moment)."""

    async def created() -> bool:
        try:
            await create_topic(bootstrap, name, partitions)
        except AssertionError:
            return False
        return True

    await wait_for(created, timeout=30)


def event_of(worker: Worker, topic: str) -> str | None:
    flow = worker.status().flows[0]
    event = flow.topic_events.get(topic)
    return None if event is None else event.change


async def _change(worker: Worker, topic: str, change: str) -> bool:
    return event_of(worker, topic) == change


@pytest.mark.parametrize("delete_remote", [False, True], ids=["remote-kept", "remote-deleted-after-delay"])
async def test_a_deleted_source_topic_is_reported_and_its_remote_topic_kept_unless_opted_in(
    cluster_a: LocalKafkaCluster,
    cluster_b: LocalKafkaCluster,
    topic: str,
    tmp_path: Path,
    delete_remote: bool,
) -> None:
    a, b = cluster_a.bootstrap_servers, cluster_b.bootstrap_servers
    remote = f"A.{topic}"
    await create_topic(a, topic, 2)
    old = records("old", 2, 20)
    await produce(a, topic, old)
    extra = {"A->B.topics": topic}
    if delete_remote:
        extra |= {"remote.topics.delete.enabled": "true", "remote.topics.delete.delay.seconds": "3"}
    settings = settings_for(tmp_path, {"A": a, "B": b}, ["A->B"], **extra)
    deleted_before = counter("mirror_source_topics_deleted_total")
    with structlog.testing.capture_logs() as logs:
        async with running(settings) as worker:
            assert await consume(b, remote, {0: 20, 1: 20}) == old
            await delete_topic(a, topic)
            await wait_for(lambda: _change(worker, topic, "deleted"), timeout=30)
            seen = time.monotonic()
            event = worker.status().flows[0].topic_events[topic]
            assert event.remote == remote and event.topic_id
            if delete_remote:
                assert event.remote_delete_at is not None
                await wait_for(lambda: _absent(b, remote), timeout=30)
                took = time.monotonic() - seen
                assert took >= 2.0, f"the remote topic was deleted {took:.1f}s after the deletion was seen"
                assert event_of(worker, topic) == "remote deleted"
            else:
                assert event.remote_delete_at is None
                assert remote in await list_topics(b)
    assert counter("mirror_source_topics_deleted_total") == deleted_before + 1
    events = [e["event"] for e in logs if e.get("topic") == topic]
    if delete_remote:
        assert DELETED_DROPPED in events and REMOTE_DELETED in events
    else:
        assert DELETED_KEPT in events and REMOTE_DELETED not in events
        assert await consume(b, remote, {0: 20, 1: 20}) == old


@pytest.mark.parametrize("while_running", [True, False], ids=["while-running", "while-stopped"])
@pytest.mark.parametrize("new_partitions", [2, 4], ids=["fewer-partitions", "more-partitions"])
async def test_a_recreated_source_topic_is_copied_from_its_start(
    cluster_a: LocalKafkaCluster,
    cluster_b: LocalKafkaCluster,
    topic: str,
    tmp_path: Path,
    new_partitions: int,
    while_running: bool,
) -> None:
    """The old topic: 3 partitions of 30 records, copied, its progress stored (offset 29). The new one has
    more records per partition (60) than that progress: applying it would skip the first 30."""
    a, b = cluster_a.bootstrap_servers, cluster_b.bootstrap_servers
    remote = f"A.{topic}"
    await create_topic(a, topic, 3)
    old, new = records("old", 3, 30), records("new", new_partitions, 60)
    await produce(a, topic, old)
    settings = settings_for(tmp_path, {"A": a, "B": b}, ["A->B"], **{"A->B.topics": topic})
    recreated_before = counter("mirror_source_topics_recreated_total")
    try:
        with structlog.testing.capture_logs() as logs:
            async with running(settings) as worker:
                assert await consume(b, remote, dict.fromkeys(range(3), 30)) == old
                await wait_for(lambda: _progress_stored(b, topic), timeout=30)
                if while_running:
                    await delete_topic(a, topic)
                    await recreate_topic(a, topic, new_partitions)
                    await produce(a, topic, new)
                    got = await _copied(b, remote, old, new)
                    assert event_of(worker, topic) == "re-created"
            if not while_running:
                await delete_topic(a, topic)
                await recreate_topic(a, topic, new_partitions)
                await produce(a, topic, new)
                async with running(settings) as worker:
                    got = await _copied(b, remote, old, new)
                    assert event_of(worker, topic) == "re-created"
    finally:  # the source topic differs from its remote copy on purpose: gone, so that no later test of
        # the session (verify) looks at it
        await delete_topic(a, topic)
    for p in range(max(3, new_partitions)):
        before = old.get(p, [])
        assert got[p][: len(before)] == before, f"partition {p}: the old topic's records changed"
        tail = new.get(p, [])
        # every record of the new topic, in order, at the end (a live re-creation may have copied part of
        # the new topic before it was detected: duplicates, never a gap)
        assert got[p][len(got[p]) - len(tail) :] == tail, f"partition {p}: records of the new topic missing"
    assert counter("mirror_source_topics_recreated_total") == recreated_before + 1
    reported = [e for e in logs if e.get("event") == RECREATED and e.get("topic") == topic]
    assert len(reported) == 1, reported
    assert reported[0]["previous_topic_id"] != reported[0]["topic_id"]
    # a new topic starts at offset 0: nothing of it was deleted before it was copied
    assert not [e for e in logs if e["log_level"] == "error"], [e for e in logs if e["log_level"] == "error"]


async def _progress_stored(bootstrap: str, topic: str) -> bool:
    """The old topic's progress is stored: a restart would resume at offset 30 of each partition."""
    return await _stored_progress(bootstrap, "A", topic) == dict.fromkeys(range(3), 29)


async def _copied(
    bootstrap: str, remote: str, old: dict[int, list[Rec]], new: dict[int, list[Rec]]
) -> dict[int, list[Rec]]:
    """The remote topic once each partition ends with the new topic's records (old ones before them)."""
    partitions = range(max(len(old), len(new)))
    expected = {p: len(old.get(p, [])) + len(new.get(p, [])) for p in partitions}
    last = {p: recs[-1] for p, recs in new.items()}
    return await consume(bootstrap, remote, expected, timeout=90, last=last)


async def test_a_topic_recreated_while_stopped_with_more_partitions_is_copied_from_its_start_also_with_latest(
    cluster_a: LocalKafkaCluster, cluster_b: LocalKafkaCluster, topic: str, tmp_path: Path
) -> None:
    """Re-created while no worker ran, with a partition more, and ``auto.offset.reset = latest`` when the
    worker starts again: the new partition has no stored progress at all, yet it belongs to a re-created
    topic (its siblings' progress names the old id), so it too is copied from offset 0, not from its end."""
    a, b = cluster_a.bootstrap_servers, cluster_b.bootstrap_servers
    remote = f"A.{topic}"
    await create_topic(a, topic, 3)
    old, new = records("old", 3, 30), records("new", 4, 20)
    await produce(a, topic, old)
    base = {"A->B.topics": topic}
    try:
        async with running(settings_for(tmp_path, {"A": a, "B": b}, ["A->B"], **base)):
            assert await consume(b, remote, dict.fromkeys(range(3), 30)) == old
            await wait_for(lambda: _progress_stored(b, topic), timeout=30)
        await delete_topic(a, topic)
        await recreate_topic(a, topic, 4)
        await produce(a, topic, new)
        latest = base | {"A->B.consumer.auto.offset.reset": "latest"}
        async with running(settings_for(tmp_path, {"A": a, "B": b}, ["A->B"], **latest)) as worker:
            got = await consume(b, remote, {p: len(old.get(p, [])) + 20 for p in range(4)}, timeout=25)
            assert event_of(worker, topic) == "re-created"
    finally:
        await delete_topic(a, topic)
    for p in range(4):
        assert got[p] == old.get(p, []) + new[p], f"partition {p}: records of the new topic missing"


@pytest.mark.parametrize("exactly_once", [False, True], ids=["at-least-once", "exactly-once"])
async def test_a_topic_recreated_live_with_as_many_partitions_loses_none_of_its_first_records(
    cluster_a: LocalKafkaCluster, cluster_b: LocalKafkaCluster, topic: str, tmp_path: Path, exactly_once: bool
) -> None:
    """Same partition count, so no assignment changes: the task's consumer, reading by name, goes on at its
    old position (10) in the new topic, which soon holds more (40) records. Until a refresh (every 4 s here)
    sees the new id, records 10.. of the new topic are copied as if they followed the old ones; then the
    topic is read again from 0. Records 0..9 of the new topic must arrive (duplicates allowed, no gap)."""
    a, b = cluster_a.bootstrap_servers, cluster_b.bootstrap_servers
    remote = f"A.{topic}"
    await create_topic(a, topic, 2)
    old, new = records("old", 2, 10), records("new", 2, 40)
    await produce(a, topic, old)
    extra = {"A->B.topics": topic, "refresh.topics.interval.seconds": "4"}
    if exactly_once:
        extra |= {"A->B.exactly.once.support": "required"}
    isolation = "read_committed" if exactly_once else "read_uncommitted"
    settings = settings_for(tmp_path, {"A": a, "B": b}, ["A->B"], **extra)
    try:
        async with running(settings) as worker:
            assert await consume(b, remote, {0: 10, 1: 10}, isolation_level=isolation) == old
            await wait_for(lambda: _stored_at(b, topic, 9), timeout=30)
            await delete_topic(a, topic)
            await recreate_topic(a, topic, 2)
            await produce(a, topic, new)
            await wait_for(lambda: _change(worker, topic, "re-created"), timeout=20)
            got = await consume(
                b,
                remote,
                {0: 50, 1: 50},
                timeout=20,
                last={p: r[-1] for p, r in new.items()},
                isolation_level=isolation,
            )
    finally:
        await delete_topic(a, topic)
    for p in range(2):
        assert got[p][:10] == old[p], f"partition {p}: the old topic's records changed"
        copied_new = [r for r in got[p][10:]]
        assert copied_new[-40:] == new[p], (
            f"partition {p}: records of the new topic missing ({len(copied_new)})"
        )
        print(f"partition {p}: {len(copied_new)} copies of the new topic's 40 records")


async def _stored_at(bootstrap: str, topic: str, offset: int) -> bool:
    return await _stored_progress(bootstrap, "A", topic) == {0: offset, 1: offset}
