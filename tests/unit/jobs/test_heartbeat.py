"""The heartbeat job outlives a target down or denying it at start-up: retried, reported, never raised."""

from __future__ import annotations

import asyncio
import types
from typing import Any

import pytest

from mirror.config import ClusterSettings, FlowSettings
from mirror.errors import AuthorizationFailed, KafkaUnavailable
from mirror.jobs import heartbeat
from mirror.kafka import Pending
from mirror.mm2.records import Heartbeat


class FakeAdmin:
    """`ensure_topic` fails ``failures`` times (the target down, then a denied request), then works."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    async def ensure_topic(self, *args: Any) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            if self.calls % 2:
                raise KafkaUnavailable("cannot reach B")
            raise AuthorizationFailed("CREATE denied on topic heartbeats")


class FakeWriter:
    instances: list[FakeWriter] = []

    def __init__(self, *args: Any) -> None:
        self.sent: list[Heartbeat] = []
        self.closed = False
        FakeWriter.instances.append(self)

    async def start(self) -> None:
        pass

    async def send(self, topic: str, key: bytes, value: bytes, partition: int, ts: int) -> Pending:
        self.sent.append(Heartbeat.decode(key, value))
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        future.set_result(types.SimpleNamespace(offset=len(self.sent) - 1))
        return Pending(future)

    async def close(self, timeout: float = 3.0) -> None:
        self.closed = True


async def test_a_failing_set_up_is_retried_and_reported_then_beats_flow(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(heartbeat, "Writer", FakeWriter)
    monkeypatch.setattr(heartbeat, "_SETUP_BACKOFF_MIN", 0.01)
    FakeWriter.instances = []
    flow = FlowSettings(source="A", target="B", emit_heartbeats_interval_seconds=0.05)
    admin = FakeAdmin(failures=3)
    job = heartbeat.HeartbeatJob(flow, ClusterSettings(alias="B", bootstrap_servers=["b:1"]), admin)  # type: ignore[arg-type]
    run = asyncio.create_task(job.run())
    errors: set[str] = set()
    async with asyncio.timeout(10):
        while not (FakeWriter.instances and len(FakeWriter.instances[-1].sent) >= 2):
            if job.last_error:
                errors.add(job.last_error)
            await asyncio.sleep(0.005)
    assert not run.done(), "the job must not end on a set-up error"
    assert admin.calls == 4
    assert any("cannot reach B" in e for e in errors) and any("denied" in e for e in errors)
    assert job.last_error is None  # a beat went through: nothing to report any more
    beats = FakeWriter.instances[-1].sent
    assert {(b.source_cluster_alias, b.target_cluster_alias) for b in beats} == {("A", "B")}
    job.stop()
    await asyncio.wait_for(run, 5)
    assert all(w.closed for w in FakeWriter.instances)


async def test_stop_during_set_up_retries_ends_the_job(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(heartbeat, "Writer", FakeWriter)
    flow = FlowSettings(source="A", target="B", emit_heartbeats_interval_seconds=60)
    admin = FakeAdmin(failures=10**6)
    job = heartbeat.HeartbeatJob(flow, ClusterSettings(alias="B", bootstrap_servers=["b:1"]), admin)  # type: ignore[arg-type]
    run = asyncio.create_task(job.run())
    async with asyncio.timeout(5):
        while job.last_error is None:  # noqa: ASYNC110 (polling the job's public state)
            await asyncio.sleep(0.01)
    job.stop()
    await asyncio.wait_for(run, 2)
    assert "cannot reach B" in (job.last_error or "")
