"""Operator control over HTTP: ``POST /control/pause``, ``/control/resume`` and ``/control/throttle``
behind a bearer token, ``GET /control`` for everybody; every change logged with who asked and what.

The token is ``service.control.token`` (or ``service.control.token.file``, or
``MIRROR_SERVICE__CONTROL_TOKEN``); without one the changing endpoints answer 403 and change nothing. A
change is written to the flow's control topic (`mirror.replication.control_channel`), which every worker
of the group follows: the worker answering need not run the partitions it pauses.
"""

from __future__ import annotations

import hmac
import json
from typing import Any

import structlog
from aiohttp import web

from mirror.errors import MirrorError
from mirror.replication.controls import compile_pattern
from mirror.service.worker import FlowRunner, Worker

__all__ = ["add_control_routes"]

log = structlog.get_logger(__name__)


def add_control_routes(app: web.Application, worker: Worker) -> None:
    control = _Control(worker)
    app.router.add_get("/control", control.show)
    app.router.add_post("/control/pause", control.pause)
    app.router.add_post("/control/resume", control.resume)
    app.router.add_post("/control/throttle", control.throttle)


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


class _Control:
    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    async def show(self, _request: web.Request) -> web.Response:
        """Every flow's pauses, as this worker last read them from the control topics."""
        runners = [runner for runner in self.worker.flows if runner.flow.enabled]
        paused = {
            runner.flow.name: [
                {"topics": p.pattern, "by": p.by, "at": p.at}
                for _, p in sorted(runner.control.controls.pauses.items())
            ]
            for runner in runners
        }
        throttles = {runner.flow.name: runner.throttle for runner in runners}
        return web.json_response({"paused": paused, "throttle_bytes_per_second": throttles})

    async def pause(self, request: web.Request) -> web.Response:
        return await self._change(request, "pause")

    async def resume(self, request: web.Request) -> web.Response:
        return await self._change(request, "resume")

    async def throttle(self, request: web.Request) -> web.Response:
        return await self._change(request, "throttle")

    async def _change(self, request: web.Request, action: str) -> web.Response:
        who = _who(request)
        refused = self._refused(request)
        if refused is not None:
            log.warning(f"control {action} refused", by=who, reason=refused.text)
            return refused
        try:
            body: Any = await request.json() if request.can_read_body else {}
        except ValueError:
            return _error(400, 'the body must be JSON: {"flow": "A->B", "topics": "REGEX"}')
        if not isinstance(body, dict):
            return _error(400, 'the body must be a JSON object: {"flow": "A->B", "topics": "REGEX"}')
        flow, topics, rate = body.get("flow"), body.get("topics"), body.get("bytes_per_second")
        runner = self._runner(flow)
        if runner is None:
            flows = sorted(r.flow.name for r in self.worker.flows if r.flow.enabled)
            return _error(404, f"flow {flow!r} is not replicated here (flows: {', '.join(flows) or 'none'})")
        if topics is not None:
            if not isinstance(topics, str):
                return _error(400, f"topics must be a regex string, not {topics!r}")
            try:
                compile_pattern(topics)
            except ValueError as exc:
                return _error(400, f"topics: invalid regex {topics!r}: {exc}")
        if action == "throttle" and (rate is not None and (not isinstance(rate, int) or rate < 0)):
            return _error(
                400, f"bytes_per_second must be an integer >= 0 (or null: as configured), not {rate!r}"
            )
        if not runner.prepared.is_set():
            return _error(
                503, f"flow {runner.flow.name} is not started yet: {runner.status.last_error or ''}"
            )
        channel = runner.control
        try:
            if action == "throttle":
                await channel.throttle(rate, who)
                changed = [str(runner.flow.throttle_bytes_per_second if rate is None else rate)]
            elif action == "pause":
                changed = await channel.pause(topics, who)
            else:
                changed = await channel.resume(topics, who)
        except MirrorError as exc:
            log.warning(
                f"control {action} failed", flow=runner.flow.name, topics=topics, by=who, error=str(exc)
            )
            return _error(503, f"cannot write to {channel.topic}: {exc}")
        log.warning(f"control {action}", flow=runner.flow.name, topics=topics, changed=changed, by=who)
        if action == "resume" and topics is not None and not changed:
            paused = sorted(channel.controls.pauses)
            return _error(409, f"{topics!r} is not a paused pattern of {runner.flow.name} (paused: {paused})")
        return web.json_response({"flow": runner.flow.name, action: changed})

    def _refused(self, request: web.Request) -> web.Response | None:
        token = self.worker.settings.service.control_token
        if token is None:
            return _error(403, "control endpoints are off: set service.control.token (or .token.file)")
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        expected = token.get_secret_value().encode()
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected):
            return web.json_response(
                {"error": "a valid bearer token is required"},
                status=401,
                headers={"WWW-Authenticate": 'Bearer realm="mirror"'},
            )
        return None

    def _runner(self, flow: object) -> FlowRunner | None:
        for runner in self.worker.flows:
            if runner.flow.name == flow and runner.flow.enabled:
                return runner
        return None


def _who(request: web.Request) -> str:
    """Who asked: the operator's own name for themselves (``X-Mirror-Operator``) and the peer address."""
    operator = request.headers.get("X-Mirror-Operator", "").strip()[:64] or "bearer token"
    return f"{json.dumps(operator)[1:-1]} via http from {request.remote or '?'}"
