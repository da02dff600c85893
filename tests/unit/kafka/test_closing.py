"""`mirror.kafka.close_within`: closing a client is bounded and never leaks a stray cancellation."""

from __future__ import annotations

import asyncio
import time

import pytest

from mirror.kafka import close_within


async def _stop_awaiting_a_cancelled_request() -> None:
    """What aiokafka's stop() does: cancel a background request and await it (CancelledError escapes)."""
    request = asyncio.ensure_future(asyncio.sleep(10))
    await asyncio.sleep(0)
    request.cancel()
    await request


async def test_a_cancelled_background_request_does_not_cancel_the_caller() -> None:
    with pytest.raises(asyncio.CancelledError):  # the aiokafka behaviour this guards against
        await _stop_awaiting_a_cancelled_request()
    await close_within(_stop_awaiting_a_cancelled_request())
    await asyncio.sleep(0)  # still running: not cancelled


async def test_a_close_that_hangs_is_given_up_after_the_timeout() -> None:
    t0 = time.monotonic()
    await close_within(asyncio.sleep(60), timeout=0.2)
    assert time.monotonic() - t0 < 2


async def test_errors_while_closing_are_ignored() -> None:
    async def failing() -> None:
        raise ConnectionResetError("broker went away")

    await close_within(failing())


async def test_cancelling_the_caller_still_cancels_it() -> None:
    started, ended = asyncio.Event(), asyncio.Event()

    async def slow_close() -> None:
        started.set()
        try:
            await asyncio.sleep(60)
        finally:
            ended.set()

    caller = asyncio.create_task(close_within(slow_close(), timeout=0.5))
    await started.wait()
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert not ended.is_set()  # the close itself goes on in the background, up to its timeout
    await asyncio.wait_for(ended.wait(), 2)
