"""mirror.service.http without Kafka: readiness reasons, the cluster probe, /status and the state metrics,
all read from the worker's status snapshot (`mirror.service.status`)."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from mirror.config import ClusterSettings, FlowSettings, Settings
from mirror.errors import KafkaUnavailable
from mirror.replication.task import TaskStatus
from mirror.service.http import ClusterProbe, HttpServer, not_ready_reasons, state_snapshot, status_of
from mirror.service.worker import FlowRunner, Worker

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


def runner(source: str, target: str, enabled: bool = True, *, src: str = "ok", tgt: str = "ok") -> Any:
    """A prepared, running flow (never started: no Kafka) whose admin clients answer as told."""
    flow = FlowRunner(SETTINGS, FlowSettings(source=source, target=target, enabled=enabled))
    flow.prepared.set()
    flow.status.state, flow.status.topics, flow.status.partitions, flow.status.task_count = "running", 1, 3, 2
    flow.source_admin, flow.target_admin = FakeAdmin(src), FakeAdmin(tgt)
    return flow


def worker(*runners: Any) -> Any:
    w = Worker(SETTINGS)
    w.flows, w.id = list(runners), "host:1"
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
        "orders": {"remote": "A.orders", "partitions": 3, "lag_records": 15},
        "pay": {"remote": "A.pay", "partitions": 1, "lag_records": 1},
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
