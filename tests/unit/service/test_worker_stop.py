"""Stopping a task is bounded: a task that does not stop in time is cancelled, never waited on forever."""

from __future__ import annotations

import asyncio
import time

import pytest
import structlog

from mirror.service.worker import _stopped

log = structlog.get_logger()


async def test_a_task_that_stops_is_awaited() -> None:
    run = asyncio.create_task(asyncio.sleep(0.05))
    await _stopped(run, 5, "task 0", log)
    assert run.done() and not run.cancelled()


async def test_a_task_that_hangs_is_cancelled_after_the_timeout() -> None:
    run = asyncio.create_task(asyncio.sleep(60))
    t0 = time.monotonic()
    with structlog.testing.capture_logs() as logs:
        await _stopped(run, 0.2, "task 0", log)
    assert run.cancelled() and time.monotonic() - t0 < 2
    assert [e["event"] for e in logs] == ["task 0 did not stop in time; cancelled"]


async def test_a_task_that_ended_cancelled_counts_as_stopped() -> None:
    run = asyncio.create_task(asyncio.sleep(60))
    await asyncio.sleep(0)
    run.cancel()
    await _stopped(run, 5, "task 0", log)  # no CancelledError for the caller
    assert run.cancelled()


async def test_cancelling_the_caller_cancels_the_task_too() -> None:
    run = asyncio.create_task(asyncio.sleep(60))
    caller = asyncio.create_task(_stopped(run, 30, "task 0", log))
    await asyncio.sleep(0.05)
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    await asyncio.sleep(0)
    assert run.cancelled()
