"""The one retry loop: every loop of `mirror` that must outlive errors runs its attempts through `retrying`.

Those loops are a flow's start and its group membership (`mirror.service.worker`), a replication task's
sessions (`mirror.replication.task`), and the flow jobs: checkpoints, config and ACL sync, heartbeats
(`mirror.jobs`). Each passes its own `Backoff` (how long to wait after a failure), says what a failure
means (`on_error`: the error to report, or raise to stop) and whether it repeats after a success
(``every``). All of them wake at once when their stop event is set, in a backoff as between rounds.

Pure asyncio: nothing here knows Kafka.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Container
from dataclasses import dataclass, field
from typing import Any, Protocol

from mirror.errors import MirrorError

__all__ = ["Backoff", "Logger", "pause", "retrying"]


@dataclass(slots=True)
class Backoff:
    """Exponential backoff between failed attempts: ``initial``, then ``factor`` times longer each time,
    at most ``maximum``; `reset` after a success."""

    initial: float
    maximum: float
    factor: float = 2.0
    current: float = field(init=False)

    def __post_init__(self) -> None:
        if not 0 <= self.initial <= self.maximum or self.factor < 1:
            raise ValueError(
                "backoff needs 0 <= initial <= maximum and factor >= 1, not "
                f"initial={self.initial}, maximum={self.maximum}, factor={self.factor}"
            )
        self.current = self.initial

    def next(self) -> float:
        """The wait after this failure; the next one is longer (up to ``maximum``)."""
        delay = self.current
        self.current = min(self.current * self.factor, self.maximum)
        return delay

    def floor(self, seconds: float) -> None:
        """This failure needs a wait of at least ``seconds`` (even above ``maximum``); later waits grow
        from it."""
        self.current = max(self.current, seconds)

    def reset(self) -> None:
        self.current = self.initial


class Logger(Protocol):
    """What `retrying` logs with (a structlog logger, usually bound to the loop's flow and task)."""

    def debug(self, event: str, **kw: Any) -> Any: ...

    def warning(self, event: str, **kw: Any) -> Any: ...

    def error(self, event: str, **kw: Any) -> Any: ...


async def woken(event: asyncio.Event, timeout: float | None) -> None:
    """Until ``event`` is set or ``timeout`` seconds passed (None: no limit). Not ``asyncio.wait_for``: on
    Python 3.11 it drops a cancellation that comes in the same turn of the loop as the event (it returns
    instead), and a loop waiting that way runs on after it was cancelled."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            await event.wait()


async def pause(stopping: asyncio.Event, seconds: float) -> bool:
    """Wait ``seconds``, or less when ``stopping`` is set meanwhile; True when stopping. Always yields to
    the event loop, even for no wait at all (a loop going round at once lets the others run)."""
    if stopping.is_set():
        return True
    if seconds <= 0:
        await asyncio.sleep(0)
    else:
        await woken(stopping, seconds)
    return stopping.is_set()


def _as_reported(exc: Exception) -> MirrorError | None:
    if isinstance(exc, MirrorError):
        return exc
    raise exc


async def retrying(
    what: str,
    attempt: Callable[[], Awaitable[object]],
    *,
    stopping: asyncio.Event,
    backoff: Backoff,
    log: Logger,
    retry_on: tuple[type[Exception], ...] = (MirrorError,),
    fatal: tuple[type[Exception], ...] = (),
    on_error: Callable[[Exception], MirrorError | None] = _as_reported,
    on_success: Callable[[], None] | None = None,
    every: float | None = None,
    quiet_repeats: bool = False,
    urgent: Container[str] = frozenset(),
) -> bool:
    """Run ``attempt`` until it succeeds (True) or ``stopping`` is set (False).

    ``every``: a success does not end the loop: ``attempt`` runs again ``every`` seconds later (0: at
    once), until stopping; a success resets ``backoff`` and calls ``on_success``.

    A failure (an exception of ``retry_on``, not of ``fatal``: those, and any other, pass through) goes to
    ``on_error`` (it runs inside the ``except`` block, so it may log the traceback), which returns the
    error to report, or None: nothing to report, try again at once without waiting. It may also raise
    to end the loop (the default re-raises anything that is not a `MirrorError`). A reported error is
    logged ``"<what> failed, retrying"`` at warning level (error level for the kinds in ``urgent``: they
    need a person), then the loop waits ``backoff.next()`` seconds. With ``quiet_repeats`` an error
    logged already (the same text as the previous failure) is logged again at debug level only.
    """
    last: str | None = None
    while not stopping.is_set():
        try:
            await attempt()
        except fatal:
            raise
        except retry_on as exc:
            err = on_error(exc)
            if err is None:
                continue
            delay = backoff.next()
            text = str(err)
            if quiet_repeats and text == last:
                log.debug(f"{what} failed again, retrying", error=text, kind=err.kind, backoff_s=delay)
            elif err.kind in urgent:
                log.error(f"{what} failed, retrying", error=text, kind=err.kind, backoff_s=delay)
            else:
                log.warning(f"{what} failed, retrying", error=text, kind=err.kind, backoff_s=delay)
            last = text
        else:
            backoff.reset()
            last = None
            if on_success is not None:
                on_success()
            if every is None:
                return True
            delay = every
        await pause(stopping, delay)
    return False
