"""A flow's control topic on the target: created with the flow, read at its start, followed while it runs,
written by ``mirror pause|resume|throttle|progress reset`` and the HTTP control endpoints.

Every worker of the group follows the topic and logs each change it sees (who and what), so an operator's
pause reaches every worker within a poll (half a second) and survives restarts: a starting worker reads
the whole topic before its tasks fetch anything. Format and state: `mirror.replication.controls`.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable

import structlog

from mirror.config import ClusterSettings, FlowSettings
from mirror.errors import AuthorizationFailed, MirrorError
from mirror.kafka import Admin, Writer
from mirror.kafka.groups import PartitionTail
from mirror.replication.controls import (
    ALL_TOPICS,
    Change,
    Controls,
    Reset,
    pause_key,
    reset_key,
    stamp,
    throttle_key,
)
from mirror.replication.topology import control_topic
from mirror.retry import Backoff, pause

__all__ = ["ControlChannel"]

log = structlog.get_logger(__name__)

#: How long one poll of the control topic waits for a record: a change reaches a worker within this.
POLL_MS = 500


class ControlChannel:
    """The control topic of ``flow``: `load` and `follow` keep ``controls`` current; `pause`, `resume`,
    `throttle` and `announce_reset` write to it."""

    def __init__(self, flow: FlowSettings, target: ClusterSettings, controls: Controls | None = None) -> None:
        self.flow = flow
        self.target = target
        self.topic = control_topic(flow)
        self.controls = controls if controls is not None else Controls(flow.name)
        self._follower: PartitionTail | None = None
        self._writer: Writer | None = None
        self._log = log.bind(flow=flow.name)

    async def ensure_topic(self, admin: Admin) -> None:
        rf = self.flow.offset_storage_replication_factor
        await admin.ensure_topic(self.topic, 1, rf, {"cleanup.policy": "compact"})

    async def load(self) -> None:
        """Read the whole control topic (the state a restarted worker must obey before it fetches)."""
        if self._follower is not None:  # a retried flow start
            await self._follower.close()
        follower = PartitionTail(self.target, self.topic, f"{self.flow.name}|control-reader")
        self._follower = follower
        await follower.start()
        try:
            records = await follower.read_to_end(30.0)
        except AuthorizationFailed as exc:
            # ACLs written for an older mirror: replicate on, without operator controls, and say so
            self._log.error(
                "control topic not readable: pause, resume and throttle do not work for this flow",
                topic=self.topic,
                error=str(exc),
                hint=f"allow READ, WRITE and CREATE on topic {self.topic} of cluster {self.flow.target}",
            )
            await follower.close()
            self._follower = None
            return
        for record in records:
            if record.key is not None:
                self.controls.apply(record.key, record.value)
        if self.controls.pauses:
            self._log.warning("flow has paused topics", paused=sorted(self.controls.pauses))

    async def follow(self, stopping: asyncio.Event, on_reset: Callable[[Reset], None]) -> None:
        """Apply new control records until ``stopping``; log each change; call ``on_reset`` for resets."""
        follower = self._follower
        if follower is None:  # not readable (logged by load)
            await stopping.wait()
            return
        backoff = Backoff(0.5, 10.0)
        while not stopping.is_set():
            try:
                records = await follower.poll(POLL_MS)
            except MirrorError as exc:
                self._log.warning("reading the control topic failed, retrying", error=str(exc))
                await pause(stopping, backoff.next())
                continue
            backoff.reset()
            for record in records:
                if record.key is None:
                    continue
                change = self.controls.apply(record.key, record.value)
                if change is not None:
                    self._audit(change)
                    if change.action == "reset" and self.controls.reset is not None:
                        on_reset(self.controls.reset)

    def _audit(self, change: Change) -> None:
        self._log.warning(f"control: {change.action}", topics=change.topics, by=change.by)

    async def close(self) -> None:
        if self._follower is not None:
            await self._follower.close()
            self._follower = None
        if self._writer is not None:
            await self._writer.close()
            self._writer = None

    # --- writing ---------------------------------------------------------------------------------

    async def pause(self, pattern: str | None, by: str) -> list[str]:
        """Pause the topics matching ``pattern`` (None: the whole flow); returns the patterns now written."""
        pattern = ALL_TOPICS if pattern is None else pattern
        await self._write([(pause_key(self.flow.name, pattern), stamp(by, time.time()))])
        return [pattern]

    async def resume(self, pattern: str | None, by: str) -> list[str]:
        """Remove the pause ``pattern`` (None: every pause of the flow, as this channel last read them);
        returns the patterns resumed ([] when ``pattern`` was not paused)."""
        patterns = sorted(self.controls.pauses) if pattern is None else [pattern]
        patterns = [p for p in patterns if p in self.controls.pauses]
        value = b'{"paused":false,' + stamp(by, time.time())[1:]
        await self._write([(pause_key(self.flow.name, p), value) for p in patterns])
        return patterns

    async def throttle(self, bytes_per_second: int | None, by: str) -> None:
        """Limit the flow to ``bytes_per_second`` (0: no limit; None: back to the configured limit)."""
        value = b'{"bytes_per_second":' + (b"null" if bytes_per_second is None else b"%d" % bytes_per_second)
        await self._write([(throttle_key(self.flow.name), value + b"," + stamp(by, time.time())[1:])])

    async def announce_reset(self, topics: str, by: str) -> None:
        """Tell the workers that the stored progress of ``topics`` was rewritten: tasks re-read it."""
        value = stamp(by, time.time(), id=uuid.uuid4().hex, topics=topics)
        await self._write([(reset_key(self.flow.name), value)])

    async def _write(self, records: list[tuple[bytes, bytes]]) -> None:
        if not records:
            return
        if self._writer is None:
            writer = Writer(self.target, f"{self.flow.name}|control-producer", {"linger.ms": "0"})
            await writer.start()
            self._writer = writer
        pending = [await self._writer.send(self.topic, key, value, partition=0) for key, value in records]
        await self._writer.flush()
        for ack in pending:
            await ack.ack()
