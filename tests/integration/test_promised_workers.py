"""README promises about several workers: the flow singletons run only where task 0 runs, and a partition's
metric series leave a worker with the partition."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from mirror.local.kafka import LocalKafkaCluster
from mirror.replication.remote_topics import TopicPlan
from mirror.service.status import FlowStatus
from mirror.service.worker import Worker

from .support import (
    MirrorProcess,
    Rec,
    create_topic,
    http_get,
    joined,
    mm2_properties,
    running,
    settings_for,
    steady_load,
    wait_for,
)


async def _until(check: Callable[[], bool], timeout: float = 60) -> None:
    async def holds() -> bool:
        return check()

    await wait_for(holds, timeout)


def _count_creations(worker: Worker) -> list[list[str]]:
    """From now on, the remote topics each call of the worker's A->B topic sync asked the target for."""
    (runner,) = [r for r in worker.flows if r.flow.name == "A->B"]
    calls: list[list[str]] = []
    apply = runner.topics.apply

    async def counted(plan: TopicPlan) -> dict[str, int]:
        calls.append([spec.name for spec in plan.create])
        return await apply(plan)

    runner.topics.apply = counted  # type: ignore[method-assign]
    return calls


def _flow(worker: Worker, name: str) -> FlowStatus:
    (flow,) = [f for f in worker.status().flows if f.flow == name]
    return flow


def _tasks(worker: Worker, name: str) -> set[int]:
    return {t.task for t in _flow(worker, name).tasks}


def _jobs(worker: Worker, name: str) -> set[str]:
    return {j.job for j in _flow(worker, name).jobs}


async def test_flow_singletons_run_only_on_the_worker_owning_task_0(
    cluster_a: LocalKafkaCluster, cluster_b: LocalKafkaCluster, topic: str, tmp_path: Path
) -> None:
    """Two workers split two tasks: heartbeats, checkpoints and config sync (the /status jobs) and remote
    topic creation run on the owner of task 0 only; once the second worker left, the first runs both tasks
    and the singletons."""
    a, b = cluster_a.bootstrap_servers, cluster_b.bootstrap_servers
    await create_topic(a, topic, 4)
    topics = {"A->B.topics": f"{topic}, {topic}-new", "tasks.max": "2"}
    settings = settings_for(tmp_path, {"A": a, "B": b}, ["A->B"], **topics)
    singletons = {"heartbeat", "checkpoint", "configsync"}
    async with running(settings) as first:
        await _until(lambda: _tasks(first, "A->B") == {0, 1})
        assert _jobs(first, "A->B") == singletons
        async with running(settings) as second:
            workers = (first, second)
            await _until(lambda: all(len(_tasks(w, "A->B")) == 1 for w in workers))
            (owner,) = [w for w in workers if _tasks(w, "A->B") == {0}]
            (other,) = [w for w in workers if w is not owner]
            assert _jobs(owner, "A->B") == singletons
            assert _jobs(other, "A->B") == set()
            # the heartbeat-only flow B->A: its one task, and its heartbeats, on exactly one worker
            assert sorted(len(_jobs(w, "B->A")) for w in workers) == [0, 1]
            # remote topics are created by the owner of task 0 only: a new source topic appears on B,
            # through the owner's topic sync; the other worker's never tried to create anything
            creating = {id(w): _count_creations(w) for w in workers}
            await create_topic(a, f"{topic}-new", 1)
            await _until(lambda: any(f"A.{topic}-new" in names for names in creating[id(owner)]), 30)
            assert creating[id(other)] == []
        # the second worker left: the first runs both tasks and, again, the singletons
        await _until(lambda: _tasks(first, "A->B") == {0, 1} and _jobs(first, "A->B") == singletons)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def _partitions_with_series(port: int, remote: str) -> set[int]:
    """The partitions of ``remote`` that have any series in the worker's /metrics."""
    status, body = await http_get(port, "/metrics")
    assert status == 200
    return {
        int(sample.labels["partition"])
        for family in text_string_to_metric_families(body)
        for sample in family.samples
        if sample.labels.get("topic") == remote and "partition" in sample.labels
    }


async def test_metric_series_of_a_partition_leave_the_worker_with_it(
    cluster_a: LocalKafkaCluster, cluster_b: LocalKafkaCluster, topic: str, tmp_path: Path
) -> None:
    """One worker copies all 4 partitions (2 tasks); a second one joins and takes a task: the partitions
    it took have no series left in the first worker's /metrics (records, bytes, lag), only in its own."""
    a, b = cluster_a.bootstrap_servers, cluster_b.bootstrap_servers
    partitions, remote = 4, f"A.{topic}"
    await create_topic(a, topic, partitions)
    properties = mm2_properties({"A": a, "B": b}, ["A->B"], **{"A->B.topics": topic, "tasks.max": "2"})
    ports = [_free_port(), _free_port()]
    workers = []
    for i, port in enumerate(ports):
        config = tmp_path / f"worker-{i}.properties"
        config.write_text(properties.replace("service.http.port = 0", f"service.http.port = {port}"))
        workers.append(MirrorProcess(config, tmp_path / f"worker-{i}.log"))
    sent: dict[int, list[Rec]] = {p: [] for p in range(partitions)}
    stop = asyncio.Event()
    load = asyncio.create_task(steady_load(a, topic, partitions, stop, sent, burst=20, gap=0.1))
    try:
        workers[0].start()

        async def first_has_all() -> bool:
            with contextlib.suppress(aiohttp.ClientError, OSError):  # its HTTP port may not be up yet
                return await _partitions_with_series(ports[0], remote) == set(range(partitions))
            return False

        await wait_for(first_has_all, 60)
        workers[1].start()
        await joined(workers[1], "mm2-tasks.A.internal")

        async def split() -> tuple[set[int], set[int]] | None:
            with contextlib.suppress(aiohttp.ClientError, OSError):  # the second's port may not be up yet
                first = await _partitions_with_series(ports[0], remote)
                second = await _partitions_with_series(ports[1], remote)
                if second and not first & second and first | second == set(range(partitions)):
                    return first, second
            return None

        first, second = await wait_for(split, 60)
        print(f"\nseries of partitions {sorted(first)} on the first worker, {sorted(second)} on the second")
    finally:
        stop.set()
        await load
        for worker in workers:
            if worker.proc is not None and worker.proc.poll() is None:
                code, _took = worker.terminate()
                assert code == 0
