"""Checkpoint job logic, group admin parsing and the client's topology rules, with fakes (no broker)."""

from __future__ import annotations

import asyncio
import types
from collections.abc import Callable
from typing import Any

import pytest
from aiokafka.protocol.admin import DescribeGroupsResponse_v3

from mirror import metrics
from mirror.cli.offsets import reread_bounds, upstream_partition
from mirror.client import MirrorClient
from mirror.config import ClusterSettings, FlowSettings
from mirror.errors import AuthorizationFailed, KafkaRequestFailed
from mirror.jobs.checkpoint import (
    CheckpointJob,
    CheckpointStore,
    apply_offset_syncs,
    offset_syncs_location,
    plan_group_sync,
    reread_bound,
    translate_group,
)
from mirror.kafka import Pending
from mirror.kafka.groups import (
    CommittedOffset,
    GroupDescription,
    GroupOffsets,
    Groups,
    TailRecord,
    _DescribeGroupsRequestV3,
)
from mirror.mm2.filters import TopicFilter
from mirror.mm2.policy import DefaultReplicationPolicy, IdentityReplicationPolicy
from mirror.mm2.records import Checkpoint, OffsetSync
from mirror.mm2.sync_history import WRITER_HEADER, SyncHistory
from tests.unit.cancelling import ends_cancelled

POLICY = DefaultReplicationPolicy()
ALL_TOPICS = TopicFilter()


def store_with(*syncs: OffsetSync, read: bool = True) -> SyncHistory:
    store = SyncHistory(initialization_must_read_to_end=False)
    for sync in syncs:
        store.update(sync)
    if read:
        store.mark_read_to_end()
    return store


def translate(store: SyncHistory, group: str, offsets: dict[tuple[str, int], CommittedOffset]) -> Any:
    return translate_group(
        store, group, offsets, policy=POLICY, source_alias="A", target_alias="B", topic_filter=ALL_TOPICS
    )


# --- translation and re-read bound -------------------------------------------------------------------


def test_group_on_a_sync_translates_exactly_with_bound_zero() -> None:
    syncs = store_with(OffsetSync("orders", 0, 100, 40))
    [item] = translate(syncs, "g", {("orders", 0): CommittedOffset(100, "meta")})
    assert item.checkpoint == Checkpoint("g", "A.orders", 0, 100, 40, "meta")
    assert item.reread_bound == 0


def test_group_past_a_sync_lands_one_past_it_and_bounds_the_rereads() -> None:
    syncs = store_with(OffsetSync("orders", 0, 100, 40), OffsetSync("orders", 0, 200, 140))
    [item] = translate(syncs, "g", {("orders", 0): CommittedOffset(180)})
    assert item.checkpoint.downstream_offset == 41  # the record after upstream 100
    assert item.reread_bound == 79  # upstream 101..179 are read again (Java's rule: no marker, no line)
    assert reread_bound(OffsetSync("t", 0, 100, 40), 100) == 0


def test_no_checkpoint_before_read_to_end_without_sync_or_too_old() -> None:
    offsets = {("orders", 0): CommittedOffset(150)}
    assert translate(store_with(OffsetSync("orders", 0, 100, 40), read=False), "g", offsets) == []
    assert translate(store_with(OffsetSync("other", 0, 100, 40)), "g", offsets) == []
    assert translate(store_with(OffsetSync("orders", 0, 200, 40)), "g", offsets) == []  # -1: dropped


def test_topic_filter_and_fail_back_rename() -> None:
    syncs = store_with(OffsetSync("B.orders", 0, 5, 5), OffsetSync("secret", 0, 5, 5))
    offsets = {("B.orders", 0): CommittedOffset(5), ("secret", 0): CommittedOffset(5)}
    items = translate_group(
        syncs,
        "g",
        offsets,
        policy=POLICY,
        source_alias="A",
        target_alias="B",
        topic_filter=TopicFilter(exclude=["secret"]),
    )
    assert [i.checkpoint.topic for i in items] == ["orders"]  # came from B: back to its original name


def test_offset_syncs_location_names_the_other_cluster() -> None:
    flow = FlowSettings(source="A", target="B")
    assert offset_syncs_location(flow, POLICY) == ("A", "mm2-offset-syncs.B.internal")
    flow = FlowSettings(source="A", target="B", offset_syncs_topic_location="target")
    assert offset_syncs_location(flow, POLICY) == ("B", "mm2-offset-syncs.A.internal")


# --- checkpoint store ----------------------------------------------------------------------------------


def test_checkpoint_store_keeps_the_latest_and_skips_garbage() -> None:
    first = Checkpoint("g", "A.t", 0, 10, 5)
    later = Checkpoint("g", "A.t", 0, 20, 15)
    other = Checkpoint("h", "A.t", 1, 1, 1)
    records = [
        TailRecord(c.encode_key(), c.encode_value(), i, 0) for i, c in enumerate((first, other, later))
    ]
    records += [TailRecord(b"\x00", b"\x00", 9, 0), TailRecord(b"k", None, 10, 0)]
    store = CheckpointStore()
    assert store.load(records) == 1
    assert store.get("g", ("A.t", 0)) == later
    assert sorted(store.groups()) == ["g", "h"]
    assert store.checkpoints("h") == {("A.t", 1): other}


# --- group offset sync plan ------------------------------------------------------------------------


def test_plan_never_moves_a_group_backwards_and_skips_unknown_partitions() -> None:
    cps = {
        ("A.t", 0): Checkpoint("g", "A.t", 0, 50, 40, "m"),
        ("A.t", 1): Checkpoint("g", "A.t", 1, 50, 40),
        ("A.t", 2): Checkpoint("g", "A.t", 2, 50, 40),
        ("A.t", 3): Checkpoint("g", "A.t", 3, 50, 40),
    }
    target = {
        ("A.t", 1): CommittedOffset(40),
        ("A.t", 2): CommittedOffset(99),
        ("A.t", 3): CommittedOffset(7),
    }
    plan = plan_group_sync(cps, target, unknown=[("A.t", 3)])
    assert plan == {("A.t", 0): (40, "m")}
    assert plan_group_sync(cps, {("A.t", 0): CommittedOffset(39)})[("A.t", 0)] == (40, "m")


# --- the job with fakes ----------------------------------------------------------------------------


class FakeGroups:
    def __init__(self) -> None:
        self.offsets: dict[str, GroupOffsets | Exception] = {}
        self.descriptions: dict[str, GroupDescription] = {}
        self.altered: list[tuple[str, dict[Any, Any]]] = []
        self.refuse: set[str] = set()

    async def list_consumer_groups(self) -> list[str]:
        return sorted(self.offsets)

    async def fetch_offsets(self, group: str, partitions: Any = None) -> GroupOffsets:
        result = self.offsets.get(group, GroupOffsets())
        if isinstance(result, Exception):
            raise result
        return result

    async def describe(self, group: str) -> GroupDescription:
        return self.descriptions.get(group, GroupDescription(group, "Dead", ""))

    async def alter_offsets(self, group: str, offsets: dict[Any, Any]) -> Any:
        from mirror.kafka.groups import AlterResult  # noqa: PLC0415

        if group in self.refuse:
            return AlterResult(group_active=True)
        self.altered.append((group, dict(offsets)))
        return AlterResult(committed={tp: o for tp, (o, _) in offsets.items()})


class FakeWriter:
    def __init__(self) -> None:
        self.sent: list[Checkpoint] = []

    async def send(self, topic: str, key: bytes, value: bytes, partition: int, ts: int) -> Any:
        self.sent.append(Checkpoint.decode(key, value))
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        future.set_result(types.SimpleNamespace(offset=len(self.sent) - 1))
        return Pending(future)


def make_job(**flow: Any) -> tuple[CheckpointJob, FakeGroups, FakeGroups]:
    cluster_a = ClusterSettings(alias="A", bootstrap_servers=["localhost:1"])
    cluster_b = ClusterSettings(alias="B", bootstrap_servers=["localhost:2"])
    settings = FlowSettings(source="A", target="B", **flow)
    fake: Any = types.SimpleNamespace(_client=None, _timeout_ms=1000)
    job = CheckpointJob(settings, cluster_a, cluster_b, fake, fake, POLICY)
    source, target = FakeGroups(), FakeGroups()
    job.source_groups = source  # type: ignore[assignment]
    job.target_groups = target  # type: ignore[assignment]
    return job, source, target


async def test_discovery_keeps_filtered_groups_with_offsets_on_filtered_topics() -> None:
    job, source, _ = make_job(groups_exclude=["skip-.*"], topics_exclude=["private"])
    source.offsets = {
        "app": GroupOffsets({("orders", 0): CommittedOffset(1)}),
        "skip-me": GroupOffsets({("orders", 0): CommittedOffset(1)}),
        "private-only": GroupOffsets({("private", 0): CommittedOffset(1)}),
        "nothing": GroupOffsets(),
        "broken": AuthorizationFailed("no"),
    }
    assert await job.refresh_groups() == ["app"]
    assert job.groups == 1


async def test_emission_is_monotonic_and_survives_a_broken_group() -> None:
    job, source, _ = make_job()
    source.offsets = {
        "app": GroupOffsets({("orders", 0): CommittedOffset(150, "m")}),
        "broken": KafkaRequestFailed("boom"),
    }
    job._group_ids = ["app", "broken"]
    syncs = store_with(OffsetSync("orders", 0, 100, 40), OffsetSync("orders", 0, 150, 90))
    store, writer = CheckpointStore(), FakeWriter()
    assert await job.emit_checkpoints(writer, syncs, store) == 1  # type: ignore[arg-type]
    assert writer.sent == [Checkpoint("app", "A.orders", 0, 150, 90, "m")]
    assert job.last_error is not None and "boom" in job.last_error
    bound = metrics.checkpoint_reread_bound.labels("A", "B", "app", "A.orders", "0")._value.get()
    assert bound == 0
    # same offsets again: nothing new; the group moving on within the same sync's reach: nothing either
    assert await job.emit_checkpoints(writer, syncs, store) == 0  # type: ignore[arg-type]
    source.offsets["app"] = GroupOffsets({("orders", 0): CommittedOffset(170)})
    assert await job.emit_checkpoints(writer, syncs, store) == 1  # type: ignore[arg-type]
    assert writer.sent[-1].downstream_offset == 91
    assert metrics.checkpoint_reread_bound.labels("A", "B", "app", "A.orders", "0")._value.get() == 19
    assert await job.emit_checkpoints(writer, syncs, store) == 0  # type: ignore[arg-type]
    # a rewind upstream is emitted even though downstream goes back (Java's rule)
    source.offsets["app"] = GroupOffsets({("orders", 0): CommittedOffset(100)})
    assert await job.emit_checkpoints(writer, syncs, store) == 1  # type: ignore[arg-type]
    assert writer.sent[-1].downstream_offset == 40
    assert job.checkpoints_emitted == 3


async def test_a_group_is_current_when_every_partition_translates() -> None:
    """``mirror_checkpoint_timestamp_seconds`` moves for a group whose every partition has a checkpoint for
    its committed offset (written now or still right), not for one with a partition that has no sync yet;
    the groups' offsets are pinned in the history."""
    job, source, _ = make_job()
    source.offsets = {
        "done": GroupOffsets({("orders", 0): CommittedOffset(150)}),
        "waiting": GroupOffsets({("orders", 0): CommittedOffset(150), ("orders", 1): CommittedOffset(3)}),
    }
    job._group_ids = ["done", "waiting"]
    syncs = store_with(OffsetSync("orders", 0, 100, 40), OffsetSync("orders", 0, 150, 90))
    gauge = metrics.checkpoint_timestamp
    assert await job.emit_checkpoints(FakeWriter(), syncs, CheckpointStore()) == 2  # type: ignore[arg-type]
    assert gauge.labels("A", "B", "done")._value.get() > 0
    assert ("A", "B", "waiting") not in {tuple(k) for k in gauge._metrics}
    job._records.forget({"done"})
    assert ("A", "B", "done") not in {tuple(k) for k in gauge._metrics}


def test_a_jump_in_the_offset_syncs_topic_is_a_gap() -> None:
    """Records compacted away from the offset-syncs topic: no link across the hole is trusted."""
    history = SyncHistory(initialization_must_read_to_end=False)
    syncs = [OffsetSync("orders", 0, u, u) for u in (0, 0, 101, 202, 303, 404)]
    writer = ((WRITER_HEADER, b"w"),)
    records = [
        TailRecord(s.encode_key(), s.encode_value(), offset, 0, writer) for offset, s in enumerate(syncs)
    ]
    del records[3]  # (202, 202) compacted away
    bad, last = apply_offset_syncs(history, records)
    history.mark_read_to_end()
    assert (bad, last) == (0, 5)
    assert history.translate(("orders", 0), 50).method == "line"  # type: ignore[union-attr]
    assert history.translate(("orders", 0), 250).method == "+1"  # type: ignore[union-attr]


def test_syncs_without_the_writer_header_are_never_interpolated() -> None:
    """Java MM2's (or an older mirror's) syncs carry no writer id: the +1 rule, even after a marker."""
    history = SyncHistory(initialization_must_read_to_end=False)
    syncs = [OffsetSync("orders", 0, u, u) for u in (0, 0, 101, 202, 303)]
    records = [TailRecord(s.encode_key(), s.encode_value(), offset, 0) for offset, s in enumerate(syncs)]
    apply_offset_syncs(history, records)
    history.mark_read_to_end()
    assert history.translate(("orders", 0), 150).method == "+1"  # type: ignore[union-attr]


async def test_group_offset_sync_fills_idle_groups_and_leaves_active_ones_alone() -> None:
    job, _, target = make_job(sync_group_offsets_enabled=True)
    store = CheckpointStore()
    for group in ("idle", "absent", "active", "ahead", "racing"):
        store.update(Checkpoint(group, "A.orders", 0, 150, 90))
    target.descriptions = {
        "idle": GroupDescription("idle", "Empty", "consumer"),
        "active": GroupDescription("active", "Stable", "consumer"),
        "ahead": GroupDescription("ahead", "Empty", "consumer"),
    }
    target.offsets = {
        "idle": GroupOffsets({("A.orders", 0): CommittedOffset(10)}),
        "ahead": GroupOffsets({("A.orders", 0): CommittedOffset(95)}),
    }
    target.refuse = {"racing"}
    outcome = await job.sync_group_offsets(store)
    assert outcome == {
        "idle": "synced",
        "absent": "synced",
        "active": "active",
        "ahead": "up-to-date",
        "racing": "active",
    }
    assert sorted(target.altered) == [
        ("absent", {("A.orders", 0): (90, "")}),
        ("idle", {("A.orders", 0): (90, "")}),
    ]


async def test_job_stops_promptly_when_told() -> None:
    job, _, _ = make_job(emit_checkpoints_enabled=False)
    await asyncio.wait_for(job.run(), 1)  # disabled: returns at once
    job, _, _ = make_job()

    async def failing_session() -> None:
        raise KafkaRequestFailed("cannot create topic")

    job._session = failing_session  # type: ignore[method-assign]
    task = asyncio.create_task(job.run())
    await asyncio.sleep(0.1)
    job.stop()
    await asyncio.wait_for(task, 2)
    assert job.last_error == "cannot create topic"


# --- Groups: raw responses ------------------------------------------------------------------------------


class FakeAdminClient:
    def __init__(self, respond: Callable[[Any], Any]) -> None:
        self.respond = respond
        self.requests: list[Any] = []
        self.coordinator_lookups = 0

    async def find_coordinator(self, group: str) -> int:
        self.coordinator_lookups += 1
        return 1

    async def raw_request(self, request: Any, node_id: int | None = None) -> Any:
        self.requests.append(request)
        return self.respond(request)


def groups_over(respond: Callable[[Any], Any]) -> tuple[Groups, FakeAdminClient]:
    client = FakeAdminClient(respond)
    admin: Any = client  # Admin's raw-request door and coordinator lookup
    return Groups(admin), client


def test_describe_groups_v3_response_decodes_with_the_fixed_schema() -> None:
    """aiokafka's v3 request decodes with the v2 schema and breaks on two groups; ours does not."""
    groups = [
        (0, name, "Stable", "consumer", "range", [("m-1", "c", "/h", b"", b"")], -2147483648)
        for name in ("g1", "g2")
    ]
    raw = DescribeGroupsResponse_v3(throttle_time_ms=0, groups=groups).encode()
    decoded = _DescribeGroupsRequestV3.RESPONSE_TYPE.decode(raw)
    assert [g[1] for g in decoded.groups] == ["g1", "g2"]


async def test_describe_maps_states_and_missing_groups() -> None:
    def respond(request: Any) -> Any:
        name = request._groups[0]
        if name == "gone":
            return types.SimpleNamespace(groups=[(69, "gone", "", "", "", [], 0)])
        members = [("m-1", "client", "/10.0.0.1", b"", b"")] if name == "busy" else []
        state = "Stable" if members else "Empty"
        return types.SimpleNamespace(groups=[(0, name, state, "consumer", "range", members, 0)])

    groups, _ = groups_over(respond)
    busy = await groups.describe("busy")
    assert busy.is_active and busy.members[0].client_id == "client"
    idle = await groups.describe("idle")
    assert idle.is_empty and idle.exists and not idle.is_active
    gone = await groups.describe("gone")
    assert not gone.exists and not gone.is_active


async def test_fetch_offsets_surfaces_partition_errors_and_retries_coordinator_moves() -> None:
    calls = {"n": 0}

    def respond(request: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            return types.SimpleNamespace(error_code=16, topics=[])  # NOT_COORDINATOR
        return types.SimpleNamespace(
            error_code=0,
            topics=[("t", [(0, 42, "meta", 0), (1, -1, "", 0), (2, -1, None, 29)])],
        )

    groups, client = groups_over(respond)
    result = await groups.fetch_offsets("g")
    assert result.offsets == {("t", 0): CommittedOffset(42, "meta")}
    assert isinstance(result.errors[("t", 2)], AuthorizationFailed)
    assert client.coordinator_lookups == 2


async def test_alter_offsets_reports_an_active_group_as_a_result() -> None:
    def active(request: Any) -> Any:
        assert request._consumer_group_generation_id == -1 and request._consumer_id == ""
        return types.SimpleNamespace(topics=[("t", [(0, 25), (1, 25)])])  # UNKNOWN_MEMBER_ID

    groups, _ = groups_over(active)
    result = await groups.alter_offsets("g", {("t", 0): (5, ""), ("t", 1): (6, "")})
    assert result.group_active and not result.committed

    groups, _ = groups_over(lambda r: types.SimpleNamespace(topics=[("t", [(0, 0), (1, 3)])]))
    result = await groups.alter_offsets("g", {("t", 0): (5, ""), ("t", 1): (6, "")})
    assert not result.group_active
    assert result.committed == {("t", 0): 5}
    assert isinstance(result.errors[("t", 1)], KafkaRequestFailed)


# --- offsets CLI helpers -------------------------------------------------------------------------------


def test_reread_bounds_from_the_syncs_of_the_checkpoint() -> None:
    syncs = store_with(OffsetSync("orders", 0, 100, 40), OffsetSync("orders", 0, 200, 140))
    cps = {
        ("A.orders", 0): Checkpoint("g", "A.orders", 0, 180, 41),
        ("A.orders", 1): Checkpoint("g", "A.orders", 1, 180, 41),
    }
    assert upstream_partition(POLICY, "A", "B", cps[("A.orders", 0)]) == ("orders", 0)
    assert upstream_partition(POLICY, "A", "B", Checkpoint("g", "orders", 0, 1, 1)) == ("B.orders", 0)
    bounds = reread_bounds(cps, syncs, POLICY, "A", "B")
    assert bounds == {("A.orders", 0): 79, ("A.orders", 1): None}
    exact = {("A.orders", 0): Checkpoint("g", "A.orders", 0, 200, 140)}
    assert reread_bounds(exact, syncs, POLICY, "A", "B") == {("A.orders", 0): 0}
    assert reread_bounds(exact, None, POLICY, "A", "B") == {("A.orders", 0): None}
    # translated from sync 202 -> 202, which the store dropped since: the older sync 0 still bounds it
    evicted = store_with(OffsetSync("orders", 0, 0, 0), OffsetSync("orders", 0, 404, 404))
    late = {("A.orders", 0): Checkpoint("g", "A.orders", 0, 345, 203)}
    assert reread_bounds(late, evicted, POLICY, "A", "B") == {("A.orders", 0): 345}


# --- client topology rules (Java MirrorClient) ---------------------------------------------------------


@pytest.mark.parametrize(
    ("topics", "alias", "hops"),
    [
        ({"heartbeats", "A.heartbeats", "B.A.heartbeats"}, "A", 1),
        ({"heartbeats", "B.A.heartbeats"}, "A", 2),
        ({"heartbeats", "B.A.heartbeats"}, "B", 1),
        ({"heartbeats"}, "A", -1),
        ({"C.B.heartbeats", "orders"}, "A", -1),
    ],
)
async def test_replication_hops(topics: set[str], alias: str, hops: int) -> None:
    client = MirrorClient(ClusterSettings(alias="X", bootstrap_servers=["localhost:1"]))

    async def list_topics() -> set[str]:
        return topics

    client.list_topics = list_topics  # type: ignore[method-assign]
    assert await client.replication_hops(alias) == hops


async def test_upstream_clusters_remote_topics_and_identity_loops() -> None:
    client = MirrorClient(ClusterSettings(alias="C", bootstrap_servers=["localhost:1"]))
    topics = {"heartbeats", "B.A.heartbeats", "B.heartbeats", "B.orders", "A.x", "B.checkpoints.internal"}

    async def list_topics() -> set[str]:
        return topics

    client.list_topics = list_topics  # type: ignore[method-assign]
    assert await client.upstream_clusters() == {"A", "B"}
    assert await client.remote_topics() == {"B.A.heartbeats", "B.heartbeats", "B.orders", "A.x"}
    assert await client.remote_topics("B") == {"B.A.heartbeats", "B.heartbeats", "B.orders"}
    assert await client.checkpoint_topics() == {"B.checkpoints.internal"}
    identity = MirrorClient(client.cluster, IdentityReplicationPolicy("A"))
    assert identity._count_hops("orders", "Z") == -1  # upstream of "orders" is itself: loop guard
    assert identity._all_sources("orders") == {"A"}


async def test_a_checkpoint_the_target_refused_is_retried_next_round() -> None:
    job, source, _ = make_job()
    source.offsets = {
        "app": GroupOffsets({("orders", 0): CommittedOffset(150), ("orders", 1): CommittedOffset(150)})
    }
    job._group_ids = ["app"]
    syncs = store_with(OffsetSync("orders", 0, 150, 90), OffsetSync("orders", 1, 150, 90))
    store = CheckpointStore()

    class FlakyWriter(FakeWriter):
        async def send(self, topic: str, key: bytes, value: bytes, partition: int, ts: int) -> Any:
            future = await super().send(topic, key, value, partition, ts)
            if self.sent[-1].partition == 1 and len(self.sent) == 2:
                failing: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
                failing.set_exception(KafkaRequestFailed("not enough replicas"))
                return Pending(failing)
            return future

    writer = FlakyWriter()
    with pytest.raises(KafkaRequestFailed):
        await job.emit_checkpoints(writer, syncs, store)  # type: ignore[arg-type]
    assert store.get("app", ("A.orders", 0)) is not None
    assert store.get("app", ("A.orders", 1)) is None
    assert await job.emit_checkpoints(writer, syncs, store) == 1  # type: ignore[arg-type]
    assert store.get("app", ("A.orders", 1)) is not None


@pytest.mark.parametrize("turns", range(6))
async def test_reading_the_syncs_keeps_a_cancellation_that_comes_as_the_groups_load(turns: int) -> None:
    """The session's task group cancels the syncs reader (a sibling loop failed) in the turn of the loop in
    which the wait for the groups ends: the reader ends cancelled. (On Python 3.11 ``asyncio.wait_for``
    returned instead and dropped the cancellation: the reader tailed on until a stop, and the task group,
    waiting for it, kept the session from ending and restarting.)"""
    job, _, _ = make_job()
    loaded = asyncio.Event()

    async def until(event: asyncio.Event) -> bool:
        await loaded.wait()
        return True

    async def poll(timeout_ms: int = 1000) -> list[Any]:
        await asyncio.sleep(0.01)
        return []

    async def nothing() -> list[Any]:
        return []

    job._until = until  # type: ignore[method-assign]
    tail: Any = types.SimpleNamespace(read_to_end=nothing, poll=poll, exists=True)
    reading = asyncio.create_task(job._read_syncs(tail, store_with()))
    await asyncio.sleep(0.05)
    try:
        assert await ends_cancelled(reading, loaded, turns), "the cancelled reader tails on"
    finally:
        job.stop()
        await asyncio.wait({reading})
