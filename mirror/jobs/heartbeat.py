"""The heartbeat job of a flow: every ``emit.heartbeats.interval.seconds`` a Java-compatible heartbeat
(source alias, target alias, now) goes to ``heartbeats`` partition 0 on the target. Heartbeat topics are
replicated like any topic, which lets clients discover the replication topology downstream."""

from __future__ import annotations

import asyncio
import time

import structlog

from mirror import metrics
from mirror.config import ClusterSettings, FlowSettings
from mirror.errors import MirrorError
from mirror.kafka import Admin, Writer
from mirror.mm2.records import Heartbeat
from mirror.replication.topology import heartbeats_topic
from mirror.retry import Backoff, pause, retrying

log = structlog.get_logger(__name__)

_SETUP_BACKOFF_MIN = 1.0  # then doubling up to the heartbeat interval


class HeartbeatJob:
    def __init__(self, flow: FlowSettings, target: ClusterSettings, target_admin: Admin) -> None:
        self.flow = flow
        self.target = target
        self.admin = target_admin
        self.topic = heartbeats_topic(flow)
        self.last_sent: float | None = None
        self.last_error: str | None = None
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        interval = self.flow.emit_heartbeats_interval_seconds
        bound = log.bind(flow=self.flow.name)
        writers: list[Writer] = []
        try:
            # the topic and a started producer: a target down or denying us now is retried like a beat
            if not await retrying(
                "heartbeat set-up",
                lambda: self._set_up(writers),
                stopping=self._stopping,
                backoff=Backoff(_SETUP_BACKOFF_MIN, max(interval, _SETUP_BACKOFF_MIN)),
                log=bound,
                on_error=self._failed,
                quiet_repeats=True,
            ) or await pause(self._stopping, interval):
                return
            await retrying(
                "heartbeat",
                lambda: self._beat(writers[0]),
                stopping=self._stopping,
                backoff=Backoff(interval, interval),
                log=bound,
                on_error=self._failed,
                every=interval,
                quiet_repeats=True,
            )
        finally:
            for writer in writers:
                await writer.close(timeout=1.0)  # a heartbeat not sent by now is worthless

    async def _set_up(self, writers: list[Writer]) -> None:
        """Create the heartbeats topic (when missing) and start a producer: appended to ``writers``."""
        await self.admin.ensure_topic(
            self.topic, 1, self.flow.heartbeats_topic_replication_factor, {"cleanup.policy": "compact"}
        )
        writer = Writer(self.target, f"{self.flow.name}|MirrorHeartbeatConnector|heartbeats-producer", {})
        try:
            await writer.start()
        except BaseException:
            await writer.close(timeout=1.0)
            raise
        writers.append(writer)

    async def _beat(self, writer: Writer) -> None:
        now_ms = int(time.time() * 1000)
        beat = Heartbeat(self.flow.source, self.flow.target, now_ms)
        await (await writer.send(self.topic, beat.encode_key(), beat.encode_value(), 0, now_ms)).ack()
        self.last_sent, self.last_error = time.time(), None
        metrics.heartbeats_total.labels(self.flow.source, self.flow.target).inc()

    def _failed(self, exc: Exception) -> MirrorError:
        assert isinstance(exc, MirrorError)
        self.last_error = str(exc)
        return exc
