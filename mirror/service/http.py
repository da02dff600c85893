"""HTTP endpoints on one port: ``/metrics``, ``/healthz``, ``/readyz``, ``/status`` (and ``/control``).

``/healthz`` answers while the event loop turns (liveness). ``/readyz`` is 200 only when every flow is
prepared, every cluster a flow needs answered the last connectivity check, and every task on this worker
is running; otherwise 503 with the reasons. Either way it names the partitions halted on a record the
target refuses (``halted``): those do not make it fail, since neither a restart nor routing traffic
elsewhere would fix them, and the other partitions go on (they are retried by themselves). The checks
run in the background every few seconds over the flows' own admin clients (a probe never waits on
Kafka). ``/status`` is the JSON ``mirror status`` prints. Metrics are rendered in a thread so a scrape
never blocks the loop.

``/status``, ``/readyz`` and the live state metrics read one thing: the worker's typed status snapshot
(`mirror.service.worker.Worker.status`, types and JSON in `mirror.service.status`), taken with the probe's
last checks. The probe and the group view only borrow the flows' admin clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from mirror import metrics
from mirror.errors import MirrorError
from mirror.kafka import Admin
from mirror.kafka.groups import Groups
from mirror.service.control import add_control_routes
from mirror.service.status import ClusterStatus, GroupMember, GroupStatus, WorkerStatus
from mirror.service.worker import Worker

log = structlog.get_logger(__name__)

#: Seconds between connectivity checks, and the most one check may take.
PROBE_INTERVAL, PROBE_TIMEOUT = 5.0, 5.0
#: Every this many probes, the group's workers' configurations are compared (`ClusterProbe.check_configs`).
CONFIG_CHECK_ROUNDS = 6


class ClusterProbe:
    """Checks every cluster each flow needs, every `PROBE_INTERVAL` seconds, until closed."""

    def __init__(
        self, worker: Worker, interval: float = PROBE_INTERVAL, timeout: float = PROBE_TIMEOUT
    ) -> None:
        self.worker = worker
        self.interval, self.timeout = interval, timeout
        self.results: dict[str, dict[str, ClusterStatus]] = {}  # flow name -> cluster alias -> result

    async def run(self) -> None:
        rounds = 0
        while True:
            try:
                await self.check()
                if rounds % CONFIG_CHECK_ROUNDS == 0:
                    await self.check_configs()
            except Exception:  # a check that breaks must not end the probe: log it, go on
                log.exception("cluster connectivity check failed")
            rounds += 1
            await asyncio.sleep(self.interval)

    async def check_configs(self) -> None:
        """Warn while the group's workers run different configurations (a reload that reached some)."""
        disagreement = config_disagreement(await group_view(self.worker))
        if disagreement:
            log.warning("workers of the group run different configurations", configs=disagreement)

    async def check(self) -> None:
        checks = [
            self._check(runner.flow.name, alias, admin)
            for runner in self.worker.flows
            if runner.prepared.is_set()  # before that the flow itself reports why it is not running
            for alias, admin in runner.clusters_needed().items()
        ]
        await asyncio.gather(*checks)

    async def _check(self, flow: str, alias: str, admin: Admin) -> None:
        error: str | None = None
        try:
            await asyncio.wait_for(admin.broker_count(), self.timeout)
        except TimeoutError:
            error = f"no answer within {self.timeout:.0f}s"
        except MirrorError as exc:
            error = str(exc)
        results = self.results.setdefault(flow, {})
        before = results.get(alias)
        results[alias] = ClusterStatus(error is None, error, time.time())
        if before is not None and before.reachable != (error is None):
            if error is None:
                log.info("cluster reachable again", flow=flow, cluster=alias)
            else:
                log.warning("cluster unreachable", flow=flow, cluster=alias, error=error)


def snapshot_of(worker: Worker, probe: ClusterProbe | None = None) -> WorkerStatus:
    """The worker's status with the probe's last connectivity checks (none without a probe)."""
    return worker.status(probe.results if probe is not None else None)


def status_of(worker: Worker, probe: ClusterProbe | None = None) -> dict[str, Any]:
    """A JSON-able snapshot: flows, their tasks and jobs, per-topic lag, cluster checks, last errors."""
    return snapshot_of(worker, probe).to_json()


async def group_view(worker: Worker, timeout: float = 3.0) -> dict[str, GroupStatus]:
    """Per target cluster, as Kafka's group coordinator has it: every worker of the coordination group
    and the tasks it runs (``mm2-tasks.<source>.internal/<task>``), not only this worker's."""
    admins: dict[str, Admin] = {}
    for runner in worker.flows:
        if runner.prepared.is_set():  # its admin clients are started
            admins.setdefault(runner.flow.target, runner.target_admin)
    group = worker.settings.service.group
    view: dict[str, GroupStatus] = {}
    for target, admin in sorted(admins.items()):
        try:
            async with asyncio.timeout(timeout):  # not wait_for: it can drop a cancellation (3.11)
                described = await Groups(admin).describe(group)
        except (MirrorError, TimeoutError) as exc:
            view[target] = GroupStatus(group, error=str(exc) or "timed out")
            continue
        own = worker.memberships[target].member_id if target in worker.memberships else None
        view[target] = GroupStatus(
            group,
            described.state,
            tuple(
                GroupMember(
                    _worker_of(member.client_id)[0],
                    member.client_host,
                    member.member_id == own,
                    tuple(f"{topic}/{task}" for topic, task in member.assignment),
                    _worker_of(member.client_id)[1],
                )
                for member in sorted(described.members, key=lambda m: m.client_id)
            ),
        )
    return view


def _worker_of(client_id: str) -> tuple[str, str | None]:
    """Workers join as ``mirror-worker|<host>:<pid>|<target>|<config digest>`` (`mirror.service.worker`;
    older ones without the digest): the worker and its configuration's digest."""
    parts = client_id.split("|")
    if len(parts) in (3, 4) and parts[0] == "mirror-worker":
        return parts[1], parts[3] if len(parts) == 4 else None
    return client_id, None


def config_disagreement(view: dict[str, GroupStatus]) -> dict[str, list[str]]:
    """Per configuration digest the workers running it, when the group's workers disagree ({} otherwise)."""
    digests: dict[str, list[str]] = {}
    for group in view.values():
        for member in group.workers:
            workers = digests.setdefault(member.config or "unknown", [])
            if member.worker not in workers:
                workers.append(member.worker)
    return digests if len(digests) > 1 else {}


def not_ready_reasons(worker: Worker, probe: ClusterProbe | None = None) -> list[str]:
    return list(snapshot_of(worker, probe).reasons)


def state_metrics(status: WorkerStatus) -> metrics.StateSnapshot:
    """The live state `metrics.state` exports, from one status snapshot."""
    tasks: list[tuple[str, str, str, str]] = []
    flows: list[tuple[str, str, str]] = []
    clusters: list[tuple[str, str, str, bool]] = []
    for flow in status.flows:
        src, tgt = flow.source, flow.target
        flows.append((src, tgt, flow.state))
        tasks.extend((src, tgt, str(task.task), task.state) for task in flow.tasks)
        clusters.extend((src, tgt, alias, check.reachable) for alias, check in flow.clusters.items())
    return metrics.StateSnapshot(tuple(tasks), tuple(flows), tuple(clusters), status.ready)


def state_snapshot(worker: Worker, probe: ClusterProbe | None = None) -> metrics.StateSnapshot:
    """The live state `metrics.state` exports, taken on the event loop before a scrape renders it."""
    return state_metrics(snapshot_of(worker, probe))


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
        add_control_routes(app, worker)  # /control, /control/pause, /control/resume
        self._runner = web.AppRunner(app, access_log=None)
        self._probing: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        if self.port == 0 and self._runner.addresses:  # an ephemeral port: the one the OS chose
            self.port = self._runner.addresses[0][1]
        self._probing = asyncio.create_task(self.probe.run(), name="http-cluster-probe")

    async def close(self) -> None:
        if self._probing is not None:
            self._probing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probing
            self._probing = None
        await self._runner.cleanup()

    async def _metrics(self, _request: web.Request) -> web.Response:
        metrics.state.snapshot = state_metrics(snapshot_of(self.worker, self.probe))
        body = await asyncio.to_thread(generate_latest, metrics.REGISTRY)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, _request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _readyz(self, _request: web.Request) -> web.Response:
        status = snapshot_of(self.worker, self.probe)
        reasons = list(status.reasons)
        body = {"ready": status.ready, "reasons": reasons, "halted": status.halted_partitions()}
        return web.json_response(body, status=503 if reasons else 200)

    async def _status(self, _request: web.Request) -> web.Response:
        status = snapshot_of(self.worker, self.probe).with_groups(await group_view(self.worker))
        return web.json_response(status.to_json(), dumps=lambda o: json.dumps(o, indent=2))
