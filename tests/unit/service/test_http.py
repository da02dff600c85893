"""mirror.service.http without Kafka: readiness reasons, the cluster probe, /status and the state metrics,
all read from the worker's status snapshot (`mirror.service.status`)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from mirror import __version__
from mirror.config import ClusterSettings, FlowSettings, Settings
from mirror.errors import KafkaUnavailable
from mirror.jobs.checkpoint import CheckpointJob
from mirror.jobs.heartbeat import HeartbeatJob
from mirror.metrics import StateSnapshot
from mirror.replication.controls import pause_key, stamp
from mirror.replication.lifecycle import TopicChange
from mirror.replication.task import Halt, SourceTask, TaskStatus
from mirror.service import http
from mirror.service.http import ClusterProbe, HttpServer, not_ready_reasons, state_snapshot, status_of
from mirror.service.status import HaltedPartition, WorkerStatus
from mirror.service.worker import FlowRunner, Worker
from tests.unit.cancelling import ends_cancelled

SETTINGS = Settings(
    clusters={alias: ClusterSettings(alias=alias, bootstrap_servers=["localhost:1"]) for alias in "ABCD"},
    flows={},
)


class FakeAdmin:
    def __init__(self, outcome: str = "ok") -> None:
        self.outcome = outcome

    async def broker_count(self) -> int:
        if self.outcome == "down":
            raise KafkaUnavailable("KafkaConnectionError: connection refused")
        if self.outcome == "hang":
            await asyncio.sleep(60)
        return 1


class FakeTask:
    """What a flow runner reads of a `SourceTask`: its status snapshot and its lag."""

    def __init__(self, state: Any, lag: dict[tuple[str, int], int], error: str | None = None) -> None:
        self.status = TaskStatus(
            state=state,
            partitions=len(lag),
            records=5,
            restarts=0 if error is None else 2,
            last_error=error,
            halted={},
        )
        self._lag = lag

    def lag(self) -> dict[tuple[str, int], int]:
        return self._lag

    def snapshot(self) -> TaskStatus:
        return self.status

    def paused(self) -> set[tuple[str, int]]:
        return set()


def runner(source: str, target: str, enabled: bool = True, *, src: str = "ok", tgt: str = "ok") -> Any:
    """A prepared, running flow (never started: no Kafka) whose admin clients answer as told."""
    flow = FlowRunner(SETTINGS, FlowSettings(source=source, target=target, enabled=enabled))
    flow.prepared.set()
    flow.status.state, flow.status.topics, flow.status.partitions, flow.status.task_count = "running", 1, 3, 2
    flow.source_admin, flow.target_admin = FakeAdmin(src), FakeAdmin(tgt)
    return flow


def worker(*runners: Any) -> Any:
    w = Worker(SETTINGS)
    w.flows, w.id, w.config_digest = list(runners), "host:1", "c0ffee123456"
    return w


async def test_probe_reports_an_unreachable_cluster_with_its_reason() -> None:
    """A failing or silent cluster makes the flow not ready, naming the cluster and why."""
    ab = runner("A", "B", tgt="down")
    ba = runner("B", "A", enabled=False, src="down")  # heartbeats only: needs its target only
    w = worker(ab, ba)
    probe = ClusterProbe(w, timeout=0.2)
    await probe.check()
    assert not_ready_reasons(w, probe) == [
        "flow A->B: cluster B unreachable: KafkaConnectionError: connection refused"
    ]
    ab.target_admin.outcome = "hang"
    await probe.check()
    assert not_ready_reasons(w, probe) == ["flow A->B: cluster B unreachable: no answer within 0s"]
    ab.target_admin.outcome = "ok"
    await probe.check()
    assert not_ready_reasons(w, probe) == []


async def test_tasks_and_flows_that_do_not_run_are_reasons() -> None:
    """A retrying task or a flow still starting is named with its last error."""
    ab = runner("A", "B")
    ab.tasks = {0: FakeTask("running", {}), 1: FakeTask("retrying", {}, "KafkaTimeoutError")}
    cd = runner("C", "D")
    cd.status.state, cd.status.last_error = "retrying", "cannot connect"
    assert not_ready_reasons(worker(ab, cd)) == [
        "flow A->B task 1 is retrying: KafkaTimeoutError",
        "flow C->D is retrying: cannot connect",
    ]


async def test_status_sums_lag_per_topic_over_partitions_and_tasks() -> None:
    """/status gives the lag per source topic (with its remote name) summed over every task's partitions."""
    ab = runner("A", "B")
    ab.tasks = {
        1: FakeTask("running", {("orders", 1): 5, ("pay", 0): 1}),
        0: FakeTask("running", {("orders", 0): 10, ("orders", 2): 0}),
    }
    status = status_of(worker(ab))
    (flow,) = status["flows"]
    assert flow["lag"] == {
        "orders": {"remote": "A.orders", "partitions": 3, "lag_records": 15, "paused": False},
        "pay": {"remote": "A.pay", "partitions": 1, "lag_records": 1, "paused": False},
    }
    assert flow["lag_records"] == 16
    assert [t["task"] for t in flow["tasks"]] == [0, 1]
    assert [t["lag_records"] for t in flow["tasks"]] == [10, 6]
    assert status["ready"] is True and status["reasons"] == []


async def test_metrics_endpoint_exports_live_states() -> None:
    """/metrics carries task states, cluster reachability and readiness taken at scrape time."""
    ab = runner("A", "B", tgt="down")
    ab.tasks = {0: FakeTask("retrying", {}, "boom")}
    w = worker(ab)
    server = HttpServer(w, "127.0.0.1", 0)
    await server.start()
    try:
        await server.probe.check()
        snap = state_snapshot(w, server.probe)
        assert snap.ready is False and ("A", "B", "B", False) in snap.clusters
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{server.port}/metrics") as response:
                text = await response.text()
            async with session.get(f"http://127.0.0.1:{server.port}/readyz") as response:
                assert response.status == 503
                assert "cluster B unreachable" in (await response.json())["reasons"][0]
    finally:
        await server.close()
    values = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    task = (("source", "A"), ("state", "retrying"), ("target", "B"), ("task", "0"))
    assert values[("mirror_task_state", task)] == 1
    running = (("source", "A"), ("state", "running"), ("target", "B"), ("task", "0"))
    assert values[("mirror_task_state", running)] == 0
    assert values[("mirror_cluster_reachable", (("cluster", "B"), ("source", "A"), ("target", "B")))] == 0
    assert values[("mirror_ready", ())] == 0


def halting_task(flow: FlowRunner, index: int) -> SourceTask:
    """A real (never started) task of ``flow``, running, that halted partition orders-2 at offset 41."""
    task = SourceTask(flow.flow, index, flow.source, flow.target, flow.policy, flow.progress)
    task.status.state = "running"
    task.status.halted[("orders", 2)] = Halt(41, "InvalidTimestampError: timestamp out of range")
    return task


async def test_a_halted_partition_is_in_the_snapshot_and_in_status() -> None:
    """A task that halted a partition: the worker's snapshot names it (a copy: later halts do not change
    it), and /status shows it on the task; the task still runs, so the worker stays ready."""
    ab = runner("A", "B")
    task = halting_task(ab, 0)
    ab.tasks = {0: task}
    w = worker(ab)
    snapshot = w.status()
    halted = HaltedPartition("orders", 2, 41, "InvalidTimestampError: timestamp out of range")
    assert snapshot.flows[0].tasks[0].halted == (halted,)
    assert snapshot.ready is True and snapshot.reasons == ()
    task.status.halted[("orders", 0)] = Halt(7, "later")
    assert snapshot.flows[0].tasks[0].halted == (halted,)
    (flow,) = status_of(w)["flows"]
    assert flow["tasks"][0]["halted"] == [
        {"topic": "orders", "partition": 0, "offset": 7, "reason": "later"},
        {"topic": "orders", "partition": 2, "offset": 41, "reason": halted.reason},
    ]


async def test_readiness_and_state_metrics_come_from_the_snapshot() -> None:
    """/readyz, the reasons in /status and the state metrics all say what `Worker.status` says."""
    ab = runner("A", "B", tgt="down")
    ab.tasks = {0: FakeTask("running", {}), 1: FakeTask("retrying", {}, "KafkaTimeoutError")}
    w = worker(ab)
    server = HttpServer(w, "127.0.0.1", 0)
    await server.start()
    try:
        await server.probe.check()
        snapshot = w.status(server.probe.results)
        assert snapshot.reasons == (
            "flow A->B: cluster B unreachable: KafkaConnectionError: connection refused",
            "flow A->B task 1 is retrying: KafkaTimeoutError",
        )
        assert snapshot.ready is False
        assert snapshot.flows[0].clusters["B"].reachable is False
        url = f"http://127.0.0.1:{server.port}/readyz"
        async with aiohttp.ClientSession() as session, session.get(url) as response:
            assert response.status == 503
            assert await response.json() == {"ready": False, "reasons": list(snapshot.reasons), "halted": []}
        assert not_ready_reasons(w, server.probe) == list(snapshot.reasons)
        assert status_of(w, server.probe)["reasons"] == list(snapshot.reasons)
        assert state_snapshot(w, server.probe) == StateSnapshot(
            tasks=(("A", "B", "0", "running"), ("A", "B", "1", "retrying")),
            flows=(("A", "B", "running"),),
            clusters=(("A", "B", "A", True), ("A", "B", "B", False)),
            ready=False,
        )
    finally:
        await server.close()


async def test_readyz_names_halted_partitions_and_stays_ready() -> None:
    """A partition halted on a record the target refuses is named in /readyz, but does not make it fail:
    the worker is doing its job (the other partitions flow, the halted one is retried by itself), and
    neither a restart nor taking it out of service would fix the record."""
    ab = runner("A", "B")
    task = FakeTask("running", {("orders", 2): 3})
    task.status.halted[("orders", 2)] = Halt(41, "RecordTooLargeError: too large")
    ab.tasks = {0: task}
    w = worker(ab)
    server = HttpServer(w, "127.0.0.1", 0)
    await server.start()
    try:
        await server.probe.check()
        url = f"http://127.0.0.1:{server.port}/readyz"
        async with aiohttp.ClientSession() as session, session.get(url) as response:
            assert response.status == 200
            assert await response.json() == {
                "ready": True,
                "reasons": [],
                "halted": ["flow A->B task 0: orders-2 halted at offset 41: RecordTooLargeError: too large"],
            }
    finally:
        await server.close()


async def test_the_status_document_keeps_its_shape() -> None:
    """/status is a public interface (`mirror status` reads it): every field, its name and its value."""
    ab = runner("A", "B", tgt="down")
    halted = FakeTask("running", {("orders", 1): 5, ("pay", 0): 1})
    halted.status.halted.update(
        {("pay", 0): Halt(7, "InvalidTimestampError"), ("orders", 1): Halt(3, "Corrupt")}
    )
    halted.status.stuck = "no progress for 300 s in orders-1 (5 records behind)"
    halted.status.dead_lettered = 3
    ab.tasks = {1: halted, 0: FakeTask("retrying", {("orders", 0): 10}, "KafkaTimeoutError")}
    ab.status.topic_errors = {"bad": "TopicAuthorizationFailedError"}
    ab.lifecycle.changes = {
        "gone": TopicChange("deleted", 1700000000.0, "id1", 1700086400.0),
        "again": TopicChange("re-created", 1700000001.0, "id2"),
    }
    checkpoints = CheckpointJob(ab.flow, ab.source, ab.target, ab.source_admin, ab.target_admin, ab.policy)
    checkpoints.last_error = "timed out"
    ab.singletons = [HeartbeatJob(ab.flow, ab.target, ab.target_admin), checkpoints]
    ba = runner("B", "A", enabled=False, src="down")  # heartbeats only: its source is not checked
    cd = runner("C", "D")
    cd.status.state, cd.status.last_error = "retrying", "cannot connect"
    ab.control.controls.apply(pause_key("A->B", "pa.*"), stamp("alice via cli", 1.5))
    w = worker(ab, ba, cd)
    probe = ClusterProbe(w, timeout=0.2)
    await probe.check()
    doc = status_of(w, probe)
    checked = {f["flow"]: {a: c.pop("checked_at") for a, c in f["clusters"].items()} for f in doc["flows"]}
    assert all(isinstance(at, float) for flow in checked.values() for at in flow.values())
    up: dict[str, Any] = {"reachable": True, "error": None}
    flow_defaults = {
        "last_error": None, "topics": 1, "partitions": 3, "task_count": 2, "topic_errors": {},
        "topic_events": {},
    }  # fmt: skip
    assert doc == {
        "version": __version__,
        "worker": "host:1",
        "ready": False,
        "reasons": [
            "flow A->B: cluster B unreachable: KafkaConnectionError: connection refused",
            "flow A->B task 0 is retrying: KafkaTimeoutError",
            "flow A->B task 1 is stuck: no progress for 300 s in orders-1 (5 records behind)",
            "flow C->D is retrying: cannot connect",
        ],
        "flows": [
            {
                "flow": "A->B",
                "replicating": True,
                "state": "running",
                **flow_defaults,
                "topic_errors": {"bad": "TopicAuthorizationFailedError"},
                "topic_events": {
                    "again": {"change": "re-created", "at": 1700000001.0, "remote": "A.again",
                              "topic_id": "id2", "remote_delete_at": None},
                    "gone": {"change": "deleted", "at": 1700000000.0, "remote": "A.gone", "topic_id": "id1",
                             "remote_delete_at": 1700086400.0},
                },
                "lag_records": 16,
                "lag": {
                    "orders": {"remote": "A.orders", "partitions": 2, "lag_records": 15, "paused": False},
                    "pay": {"remote": "A.pay", "partitions": 1, "lag_records": 1, "paused": True},
                },
                "clusters": {
                    "A": up,
                    "B": {"reachable": False, "error": "KafkaConnectionError: connection refused"},
                },
                "jobs": {"heartbeat": {"last_error": None}, "checkpoint": {"last_error": "timed out"}},
                "tasks": [
                    {"task": 0, "state": "retrying", "partitions": 1, "records": 5, "restarts": 2,
                     "lag_records": 10, "last_error": "KafkaTimeoutError", "halted": [],
                     "dead_lettered": 0, "paused_partitions": 0, "stuck": None},
                    {"task": 1, "state": "running", "partitions": 2, "records": 5, "restarts": 0,
                     "lag_records": 6, "last_error": None, "halted": [
                         {"topic": "orders", "partition": 1, "offset": 3, "reason": "Corrupt"},
                         {"topic": "pay", "partition": 0, "offset": 7, "reason": "InvalidTimestampError"},
                     ], "dead_lettered": 3, "paused_partitions": 0,
                     "stuck": "no progress for 300 s in orders-1 (5 records behind)"},
                ],
                "paused": [{"topics": "pa.*", "by": "alice via cli", "at": 1.5}],
                "throttle_bytes_per_second": 0,
            },
            {"flow": "B->A", "replicating": False, "state": "running", **flow_defaults, "lag_records": 0,
             "lag": {}, "clusters": {"A": up}, "jobs": {}, "tasks": [], "paused": [],
             "throttle_bytes_per_second": 0},
            {"flow": "C->D", "replicating": True, "state": "retrying", **flow_defaults,
             "last_error": "cannot connect", "lag_records": 0, "lag": {}, "clusters": {"C": up, "D": up},
             "jobs": {}, "tasks": [], "paused": [],
             "throttle_bytes_per_second": 0},
        ],
        "config": "c0ffee123456",
    }  # fmt: skip
    assert list(doc) == ["version", "worker", "ready", "reasons", "flows", "config"]
    assert list(doc["flows"][0]) == [
        "flow", "replicating", "state", "last_error", "topics", "partitions", "task_count", "topic_errors",
        "topic_events", "lag_records", "lag", "clusters", "jobs", "tasks", "paused",
        "throttle_bytes_per_second",
    ]  # fmt: skip
    assert WorkerStatus.from_json(status_of(w, probe)) == w.status(probe.results)


@pytest.mark.parametrize("turns", range(6))
async def test_the_probe_ends_when_cancelled_as_the_group_description_comes_in(
    turns: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The HTTP server closes (the worker stops) in the turn of the loop in which the probe's description
    of the coordination group comes in: the probe ends. (On Python 3.11 ``asyncio.wait_for`` returned the
    description and dropped the cancellation: the probe went on probing, and the close waited for it
    for ever.)"""
    asked, answer = asyncio.Event(), asyncio.Event()

    class SlowGroups:
        def __init__(self, admin: Any) -> None: ...

        async def describe(self, group: str) -> Any:
            asked.set()
            await answer.wait()
            return SimpleNamespace(state="Stable", members=[])

    monkeypatch.setattr(http, "Groups", SlowGroups)
    flow = SimpleNamespace(name="A->B", target="B")
    prepared = asyncio.Event()
    prepared.set()
    running: Any = SimpleNamespace(flow=flow, prepared=prepared, clusters_needed=dict, target_admin=None)
    w: Any = SimpleNamespace(flows=[running], settings=SETTINGS, memberships={})
    probing = asyncio.create_task(ClusterProbe(w, interval=0.01).run())
    await asyncio.wait_for(asked.wait(), 1)
    assert await ends_cancelled(probing, answer, turns), "the cancelled probe probes on"
