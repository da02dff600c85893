"""``mirror run --workers N``: N worker processes on this machine, so every core is used.

The workers coordinate exactly as workers on different machines do (one Kafka consumer group); this
module only starts them, forwards SIGTERM/SIGINT (and SIGHUP: reload), and restarts a worker that died
(its tasks move to the others meanwhile). Each worker gets its own HTTP port: the configured port + its
index.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Sequence

import structlog

from mirror.retry import Backoff, pause

log = structlog.get_logger(__name__)

#: Waits before restarting a dead worker: 2 s, doubling up to a minute while it keeps dying young; a
#: worker that lived past a minute starts the count afresh.
_RESTART_MIN, _RESTART_MAX = 2.0, 60.0


def worker_argv(argv: Sequence[str]) -> list[str]:
    """The command line of one worker: the same arguments without ``--workers``."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--workers":
            skip = True
        elif not arg.startswith("--workers="):
            out.append(arg)
    return [sys.executable, "-m", "mirror", *out]


async def supervise(argv: Sequence[str], workers: int, http_port: int) -> int:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    procs: dict[int, asyncio.subprocess.Process] = {}

    async def keep(index: int) -> int:
        env = dict(os.environ)
        if http_port:
            env["MIRROR_SERVICE__HTTP_PORT"] = str(http_port + index)
        backoff = Backoff(_RESTART_MIN, _RESTART_MAX)
        while True:
            proc = await asyncio.create_subprocess_exec(*worker_argv(argv), env=env)
            procs[index] = proc
            started = loop.time()
            log.info("worker process started", index=index, pid=proc.pid)
            code = await proc.wait()
            if stopping.is_set():
                return code
            if loop.time() - started > _RESTART_MAX:
                backoff.reset()
            delay = backoff.next()
            log.error(
                "worker process died; restarting it",
                index=index,
                pid=proc.pid,
                exit_code=code,
                backoff_s=delay,
            )
            if await pause(stopping, delay):  # stopped meanwhile: no new worker behind forward()'s back
                return code

    def reload() -> None:  # SIGHUP: every worker reloads its configuration (mirror.service.reload)
        for proc in procs.values():
            if proc.returncode is None:
                proc.send_signal(signal.SIGHUP)

    loop.add_signal_handler(signal.SIGHUP, reload)

    async def forward() -> None:
        await stopping.wait()
        for proc in procs.values():
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)

    try:
        async with asyncio.TaskGroup() as tg:
            runs = [tg.create_task(keep(i)) for i in range(workers)]
            tg.create_task(forward())
            codes = [await run for run in runs]
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)
    return max(codes)
