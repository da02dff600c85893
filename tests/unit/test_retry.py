"""The one retry loop (`mirror.retry`): backoff growth and reset, stop-awareness, error reporting."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from mirror.errors import AuthenticationFailed, KafkaUnavailable, MirrorError
from mirror.retry import Backoff, pause, retrying


class Log:
    """Records (level, event, fields) as a structlog logger would log them."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict[str, Any]]] = []

    def debug(self, event: str, **kw: Any) -> None:
        self.lines.append(("debug", event, kw))

    def warning(self, event: str, **kw: Any) -> None:
        self.lines.append(("warning", event, kw))

    def error(self, event: str, **kw: Any) -> None:
        self.lines.append(("error", event, kw))


def _failing(*errors: BaseException, then: Any = None) -> Any:
    """An attempt raising ``errors`` one per call, then returning (or calling ``then``)."""
    queue = list(errors)

    async def attempt() -> None:
        if queue:
            raise queue.pop(0)
        if then is not None:
            then()

    return attempt


# --- Backoff ---------------------------------------------------------------------------------------------


def test_backoff_grows_to_its_maximum_and_resets() -> None:
    backoff = Backoff(0.5, 10.0)
    assert [backoff.next() for _ in range(7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    backoff.reset()
    assert backoff.next() == 0.5
    tripled = Backoff(1.0, 30.0, factor=3.0)
    assert [tripled.next() for _ in range(5)] == [1.0, 3.0, 9.0, 27.0, 30.0]


def test_a_floor_raises_the_next_wait_and_later_ones_grow_from_it() -> None:
    backoff = Backoff(0.5, 10.0)
    backoff.floor(3.0)
    assert [backoff.next() for _ in range(4)] == [3.0, 6.0, 10.0, 10.0]
    backoff.floor(3.0)  # already longer: unchanged
    assert backoff.next() == 10.0
    above = Backoff(0.5, 2.0)
    above.floor(3.0)
    assert [above.next(), above.next()] == [3.0, 2.0]


def test_a_constant_backoff_is_an_interval() -> None:
    backoff = Backoff(5.0, 5.0)
    assert {backoff.next() for _ in range(4)} == {5.0}


@pytest.mark.parametrize(
    ("initial", "maximum", "factor"), [(2.0, 1.0, 2.0), (-1.0, 1.0, 2.0), (1.0, 2.0, 0.5)]
)
def test_a_backoff_that_cannot_work_is_refused(initial: float, maximum: float, factor: float) -> None:
    with pytest.raises(ValueError, match="backoff"):
        Backoff(initial, maximum, factor)


# --- pause -------------------------------------------------------------------------------------------------


async def test_pause_wakes_at_once_when_stopping() -> None:
    stopping = asyncio.Event()
    asyncio.get_running_loop().call_later(0.05, stopping.set)
    t0 = time.monotonic()
    assert await pause(stopping, 30)
    assert time.monotonic() - t0 < 1
    assert await pause(stopping, 30)  # already stopping: no wait at all


async def test_pause_waits_its_time_when_not_stopped() -> None:
    stopping = asyncio.Event()
    t0 = time.monotonic()
    assert not await pause(stopping, 0.05)
    assert time.monotonic() - t0 >= 0.04
    assert not await pause(stopping, 0)


# --- retrying ----------------------------------------------------------------------------------------------


async def test_failures_back_off_growing_until_the_attempt_succeeds() -> None:
    log = Log()
    errors = [KafkaUnavailable(f"down {i}") for i in range(4)]
    backoff = Backoff(0.001, 0.004)
    ok = await retrying("start", _failing(*errors), stopping=asyncio.Event(), backoff=backoff, log=log)
    assert ok
    assert [(level, event) for level, event, _ in log.lines] == [("warning", "start failed, retrying")] * 4
    assert [kw["backoff_s"] for _, _, kw in log.lines] == [0.001, 0.002, 0.004, 0.004]
    assert [kw["error"] for _, _, kw in log.lines] == [f"down {i}" for i in range(4)]
    assert {kw["kind"] for _, _, kw in log.lines} == {"unavailable"}
    assert backoff.next() == 0.001  # the success reset it


async def test_stop_during_a_backoff_ends_the_loop_at_once() -> None:
    stopping = asyncio.Event()
    attempts = 0

    async def attempt() -> None:
        nonlocal attempts
        attempts += 1
        raise KafkaUnavailable("down")

    asyncio.get_running_loop().call_later(0.05, stopping.set)
    t0 = time.monotonic()
    assert not await retrying("job", attempt, stopping=stopping, backoff=Backoff(30, 60), log=Log())
    assert time.monotonic() - t0 < 1 and attempts == 1


async def test_nothing_runs_once_stopping() -> None:
    stopping = asyncio.Event()
    stopping.set()
    attempt = _failing(then=lambda: pytest.fail("ran"))
    assert not await retrying("job", attempt, stopping=stopping, backoff=Backoff(1, 1), log=Log())


async def test_the_same_error_again_is_logged_at_debug_with_quiet_repeats() -> None:
    log = Log()
    auth = AuthenticationFailed("bad password")
    errors = [auth, auth, KafkaUnavailable("down"), KafkaUnavailable("down"), auth]
    await retrying(
        "flow start",
        _failing(*errors),
        stopping=asyncio.Event(),
        backoff=Backoff(0.001, 0.001),
        log=log,
        quiet_repeats=True,
        urgent={"authentication"},
    )
    assert [(level, event) for level, event, _ in log.lines] == [
        ("error", "flow start failed, retrying"),  # needs a person
        ("debug", "flow start failed again, retrying"),
        ("warning", "flow start failed, retrying"),
        ("debug", "flow start failed again, retrying"),
        ("error", "flow start failed, retrying"),  # different from the last: logged again
    ]


async def test_every_error_is_logged_without_quiet_repeats() -> None:
    log = Log()
    down = KafkaUnavailable("down")
    await retrying("session", _failing(down, down), stopping=asyncio.Event(), backoff=Backoff(0, 0), log=log)
    assert [level for level, _, _ in log.lines] == ["warning", "warning"]


async def test_fatal_and_unexpected_errors_pass_through() -> None:
    class Fatal(MirrorError):
        pass

    log = Log()
    stopping = asyncio.Event()
    with pytest.raises(Fatal):
        await retrying(
            "x", _failing(Fatal("no")), stopping=stopping, backoff=Backoff(0, 0), log=log, fatal=(Fatal,)
        )
    with pytest.raises(KeyError):
        await retrying("x", _failing(KeyError("bug")), stopping=stopping, backoff=Backoff(0, 0), log=log)
    # retried, but on_error's default refuses what is not a MirrorError
    with pytest.raises(KeyError):
        await retrying(
            "x",
            _failing(KeyError("bug")),
            stopping=stopping,
            backoff=Backoff(0, 0),
            log=log,
            retry_on=(Exception,),
        )
    assert log.lines == []


async def test_on_error_reports_translates_or_skips_the_backoff() -> None:
    """on_error sees every failure; None means: nothing to report, go again at once, backoff untouched."""
    log = Log()
    seen: list[str] = []
    backoff = Backoff(0.001, 0.01)

    def on_error(exc: Exception) -> MirrorError | None:
        seen.append(type(exc).__name__)
        if isinstance(exc, LookupError):
            return None
        return KafkaUnavailable(f"translated {exc}")

    await retrying(
        "session",
        _failing(KeyError("a"), OSError("b"), KeyError("c"), OSError("d")),
        stopping=asyncio.Event(),
        backoff=backoff,
        log=log,
        retry_on=(Exception,),
        on_error=on_error,
    )
    assert seen == ["KeyError", "OSError", "KeyError", "OSError"]
    assert [kw["error"] for _, _, kw in log.lines] == ["translated b", "translated d"]
    assert [kw["backoff_s"] for _, _, kw in log.lines] == [0.001, 0.002]


async def test_a_repeating_loop_runs_every_interval_and_resets_after_a_success() -> None:
    """``every``: a periodic job. A success resets the backoff and the error memory, calls on_success."""
    stopping = asyncio.Event()
    log = Log()
    backoff = Backoff(0.001, 0.004)
    events: list[str] = []
    outcomes: list[BaseException | None] = [
        KafkaUnavailable("down"),
        KafkaUnavailable("down"),
        None,
        KafkaUnavailable("down"),
        None,
    ]

    async def attempt() -> None:
        outcome = outcomes.pop(0)
        if not outcomes:
            stopping.set()
        if outcome is not None:
            events.append("failed")
            raise outcome
        events.append("ok")

    ok = await retrying(
        "sync",
        attempt,
        stopping=stopping,
        backoff=backoff,
        log=log,
        on_success=lambda: events.append("on_success"),
        every=0.001,
        quiet_repeats=True,
    )
    assert not ok  # ended by the stop, not by a success
    assert events == ["failed", "failed", "ok", "on_success", "failed", "ok", "on_success"]
    # the error after the success is news again (warning), and waits the initial backoff again
    assert [(level, kw["backoff_s"]) for level, _, kw in log.lines] == [
        ("warning", 0.001),
        ("debug", 0.002),
        ("warning", 0.001),
    ]
