"""HTTP endpoints on one port: ``/metrics``, ``/healthz``, ``/readyz``, ``/status``.

``/healthz`` answers while the event loop turns (liveness); ``/readyz`` is 200 only when every flow is
connected and every task is running (503 with the reasons otherwise); ``/status`` is the JSON the
``mirror status`` command prints. Metrics are rendered in a thread so a scrape never blocks the loop.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from mirror import __version__, metrics
from mirror.worker import Worker


def status_of(worker: Worker) -> dict[str, Any]:
    """A JSON-able snapshot: flows, their tasks, per-partition lag, last errors."""
    flows = []
    for runner in worker.flows:
        tasks: list[dict[str, Any]] = []
        total_lag = 0
        for task in runner.tasks:
            lag = task.lag()
            total_lag += sum(lag.values())
            tasks.append(
                {
                    "task": task.index,
                    "state": task.status.state,
                    "partitions": task.status.partitions,
                    "records": task.status.records,
                    "restarts": task.status.restarts,
                    "last_error": task.status.last_error,
                    "lag": {f"{t}-{p}": n for (t, p), n in sorted(lag.items())},
                }
            )
        heartbeat = runner.heartbeat
        flows.append(
            {
                "flow": runner.flow.name,
                "replicating": runner.flow.enabled,
                "state": runner.status.state,
                "last_error": runner.status.last_error,
                "topics": runner.status.topics,
                "partitions": runner.status.partitions,
                "topic_errors": runner.status.topic_errors,
                "lag_records": total_lag,
                "heartbeat_error": heartbeat.last_error if heartbeat else None,
                "tasks": tasks,
            }
        )
    return {"version": __version__, "flows": flows}


def not_ready_reasons(worker: Worker) -> list[str]:
    reasons = []
    for runner in worker.flows:
        if runner.status.state != "running":
            reasons.append(
                f"flow {runner.flow.name} is {runner.status.state}: {runner.status.last_error or ''}".strip()
            )
        reasons.extend(
            f"flow {runner.flow.name} task {task.index} is {task.status.state}: "
            f"{task.status.last_error or ''}".strip()
            for task in runner.tasks
            if task.status.state != "running"
        )
    return reasons


class HttpServer:
    def __init__(self, worker: Worker, host: str, port: int) -> None:
        self.worker = worker
        self.host, self.port = host, port
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/status", self._status)
        self._runner = web.AppRunner(app, access_log=None)

    async def start(self) -> None:
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        server = site._server
        if self.port == 0 and server is not None and server.sockets:  # type: ignore[attr-defined]
            self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]

    async def close(self) -> None:
        await self._runner.cleanup()

    async def _metrics(self, _request: web.Request) -> web.Response:
        body = await asyncio.to_thread(generate_latest, metrics.REGISTRY)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, _request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _readyz(self, _request: web.Request) -> web.Response:
        reasons = not_ready_reasons(self.worker)
        return web.json_response({"ready": not reasons, "reasons": reasons}, status=503 if reasons else 200)

    async def _status(self, _request: web.Request) -> web.Response:
        return web.json_response(status_of(self.worker), dumps=lambda o: json.dumps(o, indent=2))
