"""For unit tests: a cancellation that comes in the same turn of the loop as what a task waits for."""

from __future__ import annotations

import asyncio
from typing import Any


async def ends_cancelled(task: asyncio.Task[Any], answer: asyncio.Event, turns: int) -> bool:
    """Set ``answer`` (what ``task`` waits for), cancel ``task`` ``turns`` turns of the loop later: whether
    it ended cancelled within a second. (On Python 3.11 ``asyncio.wait_for`` drops a cancellation that
    comes as its awaitable ends, in one of the first turns.) ``task`` is cancelled again either way."""
    answer.set()
    for _ in range(turns):
        await asyncio.sleep(0)
    task.cancel()
    try:
        await asyncio.wait({task}, timeout=1)
        return task.cancelled()
    finally:
        task.cancel()
