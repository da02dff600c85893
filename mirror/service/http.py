"""HTTP endpoints on one port: ``/metrics``, ``/healthz``, ``/readyz``, ``/status``.

``/healthz`` answers while the event loop turns (liveness). ``/readyz`` is 200 only when every flow is
prepared, every cluster a flow needs answered the last connectivity check, and every task on this worker
is running; otherwise 503 with the reasons. The checks run in the background every few seconds over the
flows' own admin clients (a probe never waits on Kafka). ``/status`` is the JSON ``mirror status`` prints.
Metrics are rendered in a thread so a scrape never blocks the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass
from typing import Any

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from mirror import __version__, metrics
from mirror.errors import MirrorError
from mirror.kafka import Admin
from mirror.kafka.groups import Groups
from mirror.service.worker import FlowRunner, Worker

log = structlog.get_logger(__name__)

#: Seconds between connectivity checks, and the most one check may take.
PROBE_INTERVAL, PROBE_TIMEOUT = 5.0, 5.0


@dataclass
class Reachability:
    """The last connectivity check of one cluster for one flow."""

    ok: bool
    error: str | None
    checked_at: float


def clusters_needed(runner: FlowRunner) -> dict[str, Admin]:
    """The clusters a flow needs, with the admin client that checks each: the target always, the source
    when it replicates (a heartbeat-only flow writes to its target only)."""
    needed = {runner.flow.target: runner.target_admin}
    if runner.flow.enabled:
        needed.setdefault(runner.flow.source, runner.source_admin)
    return needed


class ClusterProbe:
    """Checks every cluster each flow needs, every `PROBE_INTERVAL` seconds, until closed."""

    def __init__(
        self, worker: Worker, interval: float = PROBE_INTERVAL, timeout: float = PROBE_TIMEOUT
    ) -> None:
        self.worker = worker
        self.interval, self.timeout = interval, timeout
        self.results: dict[tuple[str, str], Reachability] = {}  # (flow name, cluster alias) -> result

    def of(self, runner: FlowRunner) -> dict[str, Reachability]:
        return {
            alias: result
            for (flow, alias), result in self.results.items()
            if flow == runner.flow.name and alias in clusters_needed(runner)
        }

    async def run(self) -> None:
        while True:
            try:
                await self.check()
            except Exception:  # a check that breaks must not end the probe: log it, go on
                log.exception("cluster connectivity check failed")
            await asyncio.sleep(self.interval)

    async def check(self) -> None:
        checks = [
            self._check(runner, alias, admin)
            for runner in self.worker.flows
            if runner.prepared.is_set()  # before that the flow itself reports why it is not running
            for alias, admin in clusters_needed(runner).items()
        ]
        await asyncio.gather(*checks)

    async def _check(self, runner: FlowRunner, alias: str, admin: Admin) -> None:
        key = (runner.flow.name, alias)
        error: str | None = None
        try:
            await asyncio.wait_for(admin.broker_count(), self.timeout)
        except TimeoutError:
            error = f"no answer within {self.timeout:.0f}s"
        except MirrorError as exc:
            error = str(exc)
        before = self.results.get(key)
        self.results[key] = Reachability(error is None, error, time.time())
        if before is not None and before.ok != (error is None):
            if error is None:
                log.info("cluster reachable again", flow=runner.flow.name, cluster=alias)
            else:
                log.warning("cluster unreachable", flow=runner.flow.name, cluster=alias, error=error)


def _task_lag(runner: FlowRunner) -> dict[str, dict[str, Any]]:
    """Lag per source topic (summed over its partitions, over every task of the flow on this worker)."""
    topics: dict[str, dict[str, Any]] = {}
    for task in runner.tasks.values():
        for (topic, _partition), lag in task.lag().items():
            entry = topics.setdefault(
                topic,
                {"remote": runner.policy.format_remote_topic(runner.flow.source, topic), "partitions": 0},
            )
            entry["partitions"] += 1
            entry["lag_records"] = entry.get("lag_records", 0) + lag
    return dict(sorted(topics.items()))


def _job_name(job: object) -> str:
    return type(job).__name__.removesuffix("Job").lower()


def status_of(worker: Worker, probe: ClusterProbe | None = None) -> dict[str, Any]:
    """A JSON-able snapshot: flows, their tasks and jobs, per-topic lag, cluster checks, last errors."""
    flows = []
    for runner in worker.flows:
        tasks = [
            {
                "task": index,
                "state": task.status.state,
                "partitions": task.status.partitions,
                "records": task.status.records,
                "restarts": task.status.restarts,
                "lag_records": sum(task.lag().values()),
                "last_error": task.status.last_error,
                "halted": [
                    {"topic": topic, "partition": partition, "offset": halt.offset, "reason": halt.reason}
                    for (topic, partition), halt in sorted(task.status.halted.items())
                ],
            }
            for index, task in sorted(runner.tasks.items())
        ]
        topics = _task_lag(runner)
        clusters = probe.of(runner) if probe is not None else {}
        flows.append(
            {
                "flow": runner.flow.name,
                "replicating": runner.flow.enabled,
                "state": runner.status.state,
                "last_error": runner.status.last_error,
                "topics": runner.status.topics,
                "partitions": runner.status.partitions,
                "task_count": runner.status.task_count,
                "topic_errors": runner.status.topic_errors,
                "lag_records": sum(t["lag_records"] for t in topics.values()),
                "lag": topics,
                "clusters": {
                    alias: {"reachable": r.ok, "error": r.error, "checked_at": r.checked_at}
                    for alias, r in sorted(clusters.items())
                },
                "jobs": {
                    _job_name(job): {"last_error": getattr(job, "last_error", None)}
                    for job in runner.singletons
                },
                "tasks": tasks,
            }
        )
    reasons = not_ready_reasons(worker, probe)
    return {
        "version": __version__,
        "worker": worker.id,
        "ready": not reasons,
        "reasons": reasons,
        "flows": flows,
    }


async def group_view(worker: Worker, timeout: float = 3.0) -> dict[str, Any]:
    """Per target cluster, as Kafka's group coordinator has it: every worker of the coordination group
    and the tasks it runs (``mm2-tasks.<source>.internal/<task>``), not only this worker's."""
    admins: dict[str, Admin] = {}
    for runner in worker.flows:
        if runner.prepared.is_set():  # its admin clients are started
            admins.setdefault(runner.flow.target, runner.target_admin)
    group = worker.settings.service.group
    view: dict[str, Any] = {}
    for target, admin in sorted(admins.items()):
        try:
            described = await asyncio.wait_for(Groups(admin).describe(group), timeout)
        except (MirrorError, TimeoutError) as exc:
            view[target] = {"group": group, "error": str(exc) or "timed out"}
            continue
        own = worker.memberships[target].member_id if target in worker.memberships else None
        view[target] = {
            "group": group,
            "state": described.state,
            "workers": [
                {
                    "worker": _worker_of(member.client_id),
                    "host": member.client_host,
                    "this": member.member_id == own,
                    "tasks": [f"{topic}/{task}" for topic, task in member.assignment],
                }
                for member in sorted(described.members, key=lambda m: m.client_id)
            ],
        }
    return view


def _worker_of(client_id: str) -> str:
    """Workers join as ``mirror-worker|<host>:<pid>|<target>`` (`mirror.service.worker`)."""
    parts = client_id.split("|")
    return parts[1] if len(parts) == 3 and parts[0] == "mirror-worker" else client_id


def not_ready_reasons(worker: Worker, probe: ClusterProbe | None = None) -> list[str]:
    reasons = []
    for runner in worker.flows:
        name = runner.flow.name
        if runner.status.state != "running":
            reasons.append(f"flow {name} is {runner.status.state}: {runner.status.last_error or ''}".strip())
            continue
        if probe is not None:
            reasons.extend(
                f"flow {name}: cluster {alias} unreachable: {result.error}"
                for alias, result in sorted(probe.of(runner).items())
                if not result.ok
            )
        reasons.extend(
            f"flow {name} task {index} is {task.status.state}: {task.status.last_error or ''}".strip()
            for index, task in sorted(runner.tasks.items())
            if task.status.state != "running"
        )
    return reasons


def state_snapshot(worker: Worker, probe: ClusterProbe | None = None) -> metrics.StateSnapshot:
    """The live state `metrics.state` exports, taken on the event loop before a scrape renders it."""
    tasks: list[tuple[str, str, str, str]] = []
    flows: list[tuple[str, str, str]] = []
    clusters: list[tuple[str, str, str, bool]] = []
    for runner in worker.flows:
        src, tgt = runner.flow.source, runner.flow.target
        flows.append((src, tgt, runner.status.state))
        tasks.extend((src, tgt, str(i), t.status.state) for i, t in sorted(runner.tasks.items()))
        if probe is not None:
            clusters.extend((src, tgt, alias, r.ok) for alias, r in sorted(probe.of(runner).items()))
    ready = not not_ready_reasons(worker, probe)
    return metrics.StateSnapshot(tuple(tasks), tuple(flows), tuple(clusters), ready)


class HttpServer:
    def __init__(self, worker: Worker, host: str, port: int) -> None:
        self.worker = worker
        self.host, self.port = host, port
        self.probe = ClusterProbe(worker)
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/status", self._status)
        self._runner = web.AppRunner(app, access_log=None)
        self._probing: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        server = site._server
        if self.port == 0 and server is not None and server.sockets:  # type: ignore[attr-defined]
            self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        self._probing = asyncio.create_task(self.probe.run(), name="http-cluster-probe")

    async def close(self) -> None:
        if self._probing is not None:
            self._probing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probing
            self._probing = None
        await self._runner.cleanup()

    async def _metrics(self, _request: web.Request) -> web.Response:
        metrics.state.snapshot = state_snapshot(self.worker, self.probe)
        body = await asyncio.to_thread(generate_latest, metrics.REGISTRY)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, _request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _readyz(self, _request: web.Request) -> web.Response:
        reasons = not_ready_reasons(self.worker, self.probe)
        return web.json_response({"ready": not reasons, "reasons": reasons}, status=503 if reasons else 200)

    async def _status(self, _request: web.Request) -> web.Response:
        status = status_of(self.worker, self.probe)
        status["groups"] = await group_view(self.worker)
        return web.json_response(status, dumps=lambda o: json.dumps(o, indent=2))
