"""README promises about several workers: the flow singletons run only where task 0 runs, and a partition's
metric series leave a worker with the partition."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from mirror.local.kafka import LocalKafkaCluster
from mirror.service.status import FlowStatus
from mirror.service.worker import Worker

from .support import create_topic, running, settings_for, wait_for


async def _until(check: Callable[[], bool], timeout: float = 60) -> None:
    async def holds() -> bool:
        return check()

    await wait_for(holds, timeout)


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
    """Two workers split two tasks: heartbeats, checkpoints and config sync (the /status jobs) run on the
    owner of task 0 only; once the second worker left, the first runs both tasks and the singletons."""
    a, b = cluster_a.bootstrap_servers, cluster_b.bootstrap_servers
    await create_topic(a, topic, 4)
    settings = settings_for(tmp_path, {"A": a, "B": b}, ["A->B"], **{"A->B.topics": topic, "tasks.max": "2"})
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
        # the second worker left: the first runs both tasks and, again, the singletons
        await _until(lambda: _tasks(first, "A->B") == {0, 1} and _jobs(first, "A->B") == singletons)
