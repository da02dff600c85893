"""`mirror run --workers N` without Kafka: worker processes are restarted with backoff, and SIGTERM ends
them all, also while a restart is waiting (the worker command is replaced by a small Python program)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from mirror.service import processes


def _program(monkeypatch: pytest.MonkeyPatch, code: str) -> None:
    def argv(_: Sequence[str]) -> list[str]:
        return [sys.executable, "-c", code]

    monkeypatch.setattr(processes, "worker_argv", argv)


async def test_a_dying_worker_is_restarted_and_sigterm_during_the_wait_ends_supervise(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    starts = tmp_path / "starts"
    _program(monkeypatch, f"open({str(starts)!r}, 'a').write('x'); raise SystemExit(3)")
    monkeypatch.setattr(processes, "_RESTART_MIN", 0.05)
    monkeypatch.setattr(processes, "_RESTART_MAX", 30.0)
    run = asyncio.create_task(processes.supervise([], workers=1, http_port=0))
    async with asyncio.timeout(30):
        while not starts.exists() or len(starts.read_text()) < 3:  # noqa: ASYNC110 (a file, not an event)
            await asyncio.sleep(0.02)
    # the waits double (0.05, 0.1, 0.2, ...): after a few restarts the next wait is long; stop in it
    async with asyncio.timeout(30):
        while len(starts.read_text()) < 6:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
    await asyncio.sleep(0.05)  # inside the wait before the seventh start (>= 1.6 s)
    os.kill(os.getpid(), signal.SIGTERM)
    code = await asyncio.wait_for(run, 5)
    assert code == 3
    assert len(starts.read_text()) == 6, "no worker may start once stopping"


async def test_sigterm_is_forwarded_to_every_worker(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    _program(
        monkeypatch,
        "import signal, sys, time\n"
        "signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))\n"
        f"open({str(ready)!r}, 'a').write('x')\n"
        "time.sleep(60)\n"
        "sys.exit(9)",
    )
    run = asyncio.create_task(processes.supervise([], workers=3, http_port=0))
    async with asyncio.timeout(30):
        while not ready.exists() or len(ready.read_text()) < 3:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
    os.kill(os.getpid(), signal.SIGTERM)
    assert await asyncio.wait_for(run, 10) == 0  # each worker ended cleanly on the forwarded SIGTERM


def test_worker_argv_drops_the_workers_option() -> None:
    argv = processes.worker_argv(["run", "--workers", "3", "--config", "x.properties", "--workers=2"])
    assert argv[1:] == ["-m", "mirror", "run", "--config", "x.properties"]
