"""Source topics deleted or re-created, and unreadable progress: the decisions, without brokers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import structlog

from mirror import metrics
from mirror.config import load_settings
from mirror.kafka import CompactedRecord
from mirror.mm2 import records as mm2
from mirror.replication import malformed
from mirror.replication import progress as progress_module
from mirror.replication.lifecycle import TopicLifecycle
from mirror.replication.positions import Positions
from mirror.replication.progress import ProgressStore, StoredProgress
from mirror.types import TP

from .test_source_truncation import FakeReader


def counter(name: str, flow: str) -> float:
    source, target = flow.split("->")
    return metrics.REGISTRY.get_sample_value(name, {"source": source, "target": target}) or 0.0


def test_a_deleted_topic_is_reported_once_and_its_remote_deletion_waits_for_the_delay() -> None:
    life = TopicLifecycle("X->Y", "X", "Y", delete_remote=True, delay=60)
    before = counter("mirror_source_topics_deleted_total", "X->Y")
    with structlog.testing.capture_logs() as logs:
        assert life.observe({"a": "id-a", "b": "id-b"}, 1000).deleted == []  # the first listing: no news
        changes = life.observe({"b": "id-b"}, 1010, existing={"b"})
        assert changes.deleted == ["a"] and changes.remote_deletions_due == []
        assert life.observe({"b": "id-b"}, 1069, existing={"b"}).remote_deletions_due == []
        assert life.observe({"b": "id-b"}, 1070, existing={"b"}).remote_deletions_due == ["a"]
        life.remote_deleted("a", "X.a")
        assert life.observe({"b": "id-b"}, 1200, existing={"b"}).remote_deletions_due == []
    assert counter("mirror_source_topics_deleted_total", "X->Y") == before + 1
    assert life.changes["a"].change == "remote deleted"
    assert [e["event"] for e in logs] == [
        "source topic deleted; its remote topic will be deleted",
        "deleted the remote topic of a deleted source topic",
    ]
    assert logs[0]["topic"] == "a" and logs[0]["topic_id"] == "id-a"


def test_a_topic_no_longer_replicated_but_still_there_is_not_deleted_and_remotes_are_kept_by_default() -> (
    None
):
    life = TopicLifecycle("X->Y", "X", "Y")
    life.observe({"a": "id-a", "b": "id-b"}, 0)
    assert life.observe({"b": "id-b"}, 1, existing={"a", "b"}).deleted == []
    changes = life.observe({}, 2, existing=set())
    assert changes.deleted == ["b"]
    assert life.observe({}, 10**9, existing=set()).remote_deletions_due == []  # kept: not opted in
    assert life.changes["b"].remote_delete_at is None


def test_a_new_topic_id_is_a_recreation_reported_once() -> None:
    life = TopicLifecycle("X->Y", "X", "Y", delete_remote=True, delay=60)
    before = counter("mirror_source_topics_recreated_total", "X->Y")
    with structlog.testing.capture_logs() as logs:
        life.observe({"a": "id-1"}, 0)
        assert life.observe({"a": "id-2"}, 1).recreated == ["a"]  # between two refreshes
        assert life.observe({"a": "id-2"}, 2).recreated == []
        # stored progress of the old id, found by a task afterwards: the same re-creation, not reported again
        assert not life.recreated("a", "id-1", "id-2", 3)
        # deleted in one listing, back under a new id in the next; its remote deletion is off then
        assert life.observe({}, 4, existing=set()).deleted == ["a"]
        changes = life.observe({"a": "id-3"}, 5)
        assert changes.recreated == ["a"] and changes.remote_deletions_due == []
        assert life.observe({"a": "id-3"}, 100).remote_deletions_due == []
        # re-created while no worker looked: only stored progress tells
        assert life.recreated("b", "id-old", "id-new", 6)
    assert counter("mirror_source_topics_recreated_total", "X->Y") == before + 3
    recreations = [
        e for e in logs if e["event"] == "source topic re-created; copying the new topic from its start"
    ]
    assert [(e["topic"], e["previous_topic_id"], e["topic_id"]) for e in recreations] == [
        ("a", "id-1", "id-2"),
        ("a", "id-2", "id-3"),
        ("b", "id-old", "id-new"),
    ]
    assert life.changes["a"].change == "re-created" and life.changes["a"].topic_id == "id-3"


def test_a_topic_listed_again_under_its_id_was_not_deleted_after_all() -> None:
    life = TopicLifecycle("X->Y", "X", "Y", delete_remote=True, delay=60)
    life.observe({"a": "id-1"}, 0)
    life.observe({}, 1, existing=set())  # a listing that missed it
    changes = life.observe({"a": "id-1"}, 2)
    assert changes.recreated == [] and "a" not in life.changes
    assert life.observe({"a": "id-1"}, 100).remote_deletions_due == []


# --- progress ------------------------------------------------------------------------------------------


def _store(tmp_path: Path) -> ProgressStore:
    config = tmp_path / "mm2.properties"
    config.write_text(
        "clusters = A, B\nA.bootstrap.servers = a:9092\nB.bootstrap.servers = b:9092\nA->B.enabled = true\n"
    )
    settings = load_settings(config, env={}).settings
    return ProgressStore(settings.flows["A->B"], settings.cluster("B"))


def _fake_topic(monkeypatch: pytest.MonkeyPatch, planted: list[tuple[bytes, bytes | None]]) -> None:
    """The progress topic holds ``planted`` (key, value) in this order, at offsets 0, 1, ..."""

    async def read_compacted(*_args: Any, keep: Any = None, **_kwargs: Any) -> dict[bytes, bytes | None]:
        state: dict[bytes, bytes | None] = {}
        for offset, (key, value) in enumerate(planted):
            if keep is None or keep(CompactedRecord(0, offset, key, value)):
                state[key] = value
        return state

    monkeypatch.setattr(progress_module, "read_compacted", read_compacted)


async def test_unreadable_progress_falls_back_to_the_last_readable_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = {p: mm2.source_offset_key("A", "t", p) for p in range(4)}
    _fake_topic(
        monkeypatch,
        [
            (key[0], mm2.encode_source_offset(41, "id-t")),
            (key[0], b'{"offset":"x"}'),  # unreadable: 41 stands
            (key[1], b"[1,2]"),  # unreadable, nothing readable before: from the log start
            (key[2], mm2.encode_source_offset(7, "id-gone")),  # an earlier topic's
            (key[3], mm2.encode_source_offset(3)),  # Java's, no id
            (b"\xff not json", b"{}"),  # unreadable key
            (mm2.heartbeat_offset_key("B", "A"), mm2.encode_source_offset(0)),  # another connector's
        ],
    )
    store = _store(tmp_path)
    # reports are remembered per process: an earlier test (a broker test planting unreadable progress on a
    # cluster also named B) may have reported the same (cluster, topic, partition, offset) already
    malformed._reported.clear()
    before = metrics.REGISTRY.get_sample_value(
        "mirror_internal_records_malformed_total", {"cluster": "B", "topic": store.topic}
    )
    with structlog.testing.capture_logs() as logs:
        stored = await store.read()
        again = await store.read()  # a later session reads the same records
    assert stored == again
    assert stored.offsets == {("t", 0): 41, ("t", 2): 7, ("t", 3): 3}
    assert stored.topic_ids == {("t", 0): "id-t", ("t", 2): "id-gone", ("t", 3): None}
    assert stored.unreadable == {("t", 1)}
    reports = [e for e in logs if e["event"] == "unreadable record in an internal topic; passed over"]
    assert [(e["topic"], e["partition"], e["offset"]) for e in reports] == [
        (store.topic, 0, 1),
        (store.topic, 0, 2),
        (store.topic, 0, 5),
    ], "each unreadable record reported once, however often it is read"
    assert all(e["reason"] and e["fallback"] and e["log_level"] == "error" for e in reports)
    after = metrics.REGISTRY.get_sample_value(
        "mirror_internal_records_malformed_total", {"cluster": "B", "topic": store.topic}
    )
    assert (after or 0) - (before or 0) == 3


async def test_positions_of_unreadable_and_earlier_topic_progress(tmp_path: Path) -> None:
    """Unreadable: from the log start, no loss reported. An earlier topic id's: from 0, a later log start
    reported as lost, the re-creation told. After a re-creation seen here, progress without an id is not
    applied either; elsewhere it is (Java's progress)."""
    flow = _store(tmp_path).flow
    ids = {"t": "id-new", "u": "id-u", "v": "id-v"}
    positions = Positions(flow, set(), exactly_once=False, flow_topic_ids=ids)
    earlier: list[tuple[str, str, str]] = []
    positions.on_earlier_topic = lambda *args: earlier.append(args)
    positions.acked[("t", 0)] = 99  # the old topic's
    positions.forget({"t"})
    assert positions.acked == {}
    positions.load(
        StoredProgress(
            offsets={("t", 0): 50, ("t", 2): 7, ("u", 0): 5, ("v", 0): 8},
            topic_ids={("t", 0): None, ("t", 2): "id-old", ("u", 0): None, ("v", 0): "id-v"},
            unreadable={("t", 1)},
        )
    )
    parts: list[TP] = [("t", 0), ("t", 1), ("t", 2), ("u", 0), ("v", 0)]
    reader = FakeReader({("t", 0): 0, ("t", 1): 30, ("t", 2): 10, ("u", 0): 0, ("v", 0): 0})
    with structlog.testing.capture_logs() as logs:
        got = await positions.assign(reader, parts)  # type: ignore[arg-type]
    expected: dict[TP, int | None] = {("t", 0): 0, ("t", 1): 30, ("t", 2): 10, ("u", 0): 6, ("v", 0): 9}
    assert got == expected
    lost = [(e["topic"], e["partition"], e["records"]) for e in logs if e["log_level"] == "error"]
    assert lost == [("t", 2, 10)]
    assert earlier == [("t", "id-old", "id-new")]
    assert positions.topic_ids[("t", 0)] == "id-new"


async def test_a_partition_without_progress_of_a_topic_recreated_while_stopped_starts_at_zero(
    tmp_path: Path,
) -> None:
    """The new topic has a partition more than the old one: that partition has no progress at all, yet its
    siblings' progress names the old id, so it is part of a re-created topic too: offset 0, not the end that
    auto.offset.reset=latest would give. A topic whose progress names its current id keeps latest."""
    flow = _store(tmp_path).flow
    positions = Positions(flow, set(), exactly_once=False, flow_topic_ids={"t": "id-new", "u": "id-u"})
    positions.load(
        StoredProgress(
            offsets={("t", 0): 29, ("u", 0): 4},
            topic_ids={("t", 0): "id-old", ("u", 0): "id-u"},
            unreadable={("u", 2)},
        )
    )
    reader = FakeReader({("t", 1): 0, ("u", 1): 0, ("u", 2): 3})
    reader.start_at = "latest"
    got = await positions.assign(reader, [("t", 1), ("u", 1), ("u", 2)])  # type: ignore[arg-type]
    # unreadable progress: the log start, not the end either
    assert got == {("t", 1): 0, ("u", 1): 1000, ("u", 2): 3}
