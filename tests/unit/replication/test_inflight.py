"""`InFlightQueue.drained`: the end of a session's in-flight acks, and its caller's cancellation."""

from __future__ import annotations

import asyncio

import pytest

from mirror.replication.inflight import InFlightQueue


@pytest.mark.parametrize("turns", range(6))
async def test_drained_keeps_a_cancellation_that_comes_as_the_acker_ends(turns: int) -> None:
    """The session is cancelled (its worker stops, a sibling failed) in the turn of the loop in which the
    acker ends: ``drained`` raises CancelledError. (On Python 3.11 ``asyncio.wait_for`` returned the
    acker's end instead and dropped the cancellation: the session went on as if it had ended normally,
    and a run not told to stop started the next one.)"""
    queue = InFlightQueue()
    acker = asyncio.create_task(queue.first())  # returns at the end marker `drained` puts
    draining = asyncio.create_task(queue.drained(acker, 10))

    async def cancel_later() -> bool:
        await asyncio.wait({acker})
        for _ in range(turns):
            await asyncio.sleep(0)
        return draining.cancel()  # False: it had returned already

    if await asyncio.create_task(cancel_later()):
        with pytest.raises(asyncio.CancelledError):
            await draining
    else:
        assert draining.result() is True
