"""``mirror run``'s serving loop: the worker and its HTTP port, and configuration reloads on SIGHUP.

On SIGHUP the configuration is loaded again from the same sources (file, ``MIRROR_*``, ``--set``). A
configuration that does not load is refused with the errors ``mirror validate`` prints, logged, and the
running one stays in force. One that loads and differs (its `config_digest`) replaces the running worker
inside the process: the worker stops as on SIGTERM (in-flight batches acknowledged, progress stored, the
group left), and a worker with the new settings starts and joins again, so new flows, topic filters,
intervals and client settings all take effect and nothing is copied twice or skipped. The process, its
pid and (unless ``service.http.*`` changed) its HTTP port stay.

Every worker names its configuration's digest in the client id it joins the group with; ``/status``
shows each member's digest, and a worker warns while the group's members disagree (a reload that reached
some workers only).
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Mapping
from typing import Any

import structlog

from mirror.config import ConfigError, Settings, config_digest, redacted
from mirror.service.http import HttpServer
from mirror.service.worker import Worker

__all__ = ["changed_keys", "serve"]

log = structlog.get_logger(__name__)


def changed_keys(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> list[str]:
    """The dotted paths whose values differ between two redacted configurations."""
    keys: list[str] = []
    for key in sorted(set(old) | set(new)):
        path = f"{prefix}{key}"
        a, b = old.get(key), new.get(key)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            keys.extend(changed_keys(a, b, path + "."))
        elif a != b:
            keys.append(path)
    return keys


async def serve(settings: Settings, reload: Callable[[], Settings]) -> None:
    """Run a worker (and its HTTP port) until SIGTERM/SIGINT; on SIGHUP, ``reload`` the settings and,
    when they load and differ, replace the worker with one running them."""
    loop = asyncio.get_running_loop()
    reloading, stopping = asyncio.Event(), asyncio.Event()
    workers: list[Worker] = []

    def stop() -> None:
        stopping.set()
        if workers:
            workers[-1].stop()

    loop.add_signal_handler(signal.SIGHUP, reloading.set)
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)
    try:
        while not stopping.is_set():
            workers[:] = [Worker(settings)]
            replaced = await _run_until_reload(workers[0], settings, reloading, reload)
            if replaced is None:
                return
            settings = replaced
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)


async def _run_until_reload(
    worker: Worker, settings: Settings, reloading: asyncio.Event, reload: Callable[[], Settings]
) -> Settings | None:
    """Run ``worker``; the new settings once it stopped for a reload, None once it stopped for good."""
    service = settings.service
    http = HttpServer(worker, service.http_host, service.http_port) if service.http_port else None
    new: Settings | None = None
    try:
        if http is not None:
            await http.start()
            log.info("http listening", url=f"http://{service.http_host}:{http.port}/status")
        running = asyncio.create_task(worker.run(), name="worker")
        while True:
            waiter = asyncio.create_task(reloading.wait())
            await asyncio.wait({running, waiter}, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            if running.done():
                running.result()
                return new
            reloading.clear()
            new = await _reloaded(settings, reload)
            if new is not None:
                worker.stop()  # as on SIGTERM: flush, store progress, leave the group; then start anew
    finally:
        if http is not None:
            await http.close()


async def _reloaded(settings: Settings, reload: Callable[[], Settings]) -> Settings | None:
    """The reloaded settings when they load and differ from ``settings``; None otherwise (logged)."""
    try:
        new = await asyncio.to_thread(reload)
    except ConfigError as exc:
        log.error("config reload refused; the running configuration stays", problems=str(exc).splitlines())
        return None
    old_digest, new_digest = config_digest(settings), config_digest(new)
    if new_digest == old_digest:
        log.info("config reload: nothing changed", config=old_digest)
        return None
    changed = changed_keys(redacted(settings), redacted(new))
    log.warning(
        "config reloaded; restarting the worker in place", config=new_digest, was=old_digest, changed=changed
    )
    return new
