"""Closing an aiokafka client without hanging on it or leaking its cancellations."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any


async def close_within(closing: Awaitable[Any], timeout: float = 3.0) -> None:
    """Close an aiokafka client: bounded by ``timeout``, errors ignored, and never a stray cancellation.

    aiokafka's ``stop()`` cancels its background requests and awaits them; when one was waiting (say, in
    a retry backoff while a broker is down) their CancelledError escapes ``stop()``. Leaking it would end
    the caller as if it had been cancelled (a task session that then never restarts). Only a genuine
    cancellation of the caller propagates (the close still runs to its end, or its timeout)."""
    task = asyncio.ensure_future(asyncio.wait_for(closing, timeout))
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise  # the close itself goes on in the background, bounded by its timeout
    except Exception:  # noqa: BLE001  (timed out or failed: the client is abandoned either way)
        return
