"""``mirror status``: what a running ``mirror`` is doing, read from its ``/status`` endpoint into the
worker's status snapshot (`mirror.service.status.WorkerStatus.from_json`).

Prints the flows (state, topics, partitions, tasks, lag, clusters), lag per topic, the tasks and the last
errors as tables; ``--json`` prints the document as it came. ``--watch N`` redraws every N seconds until
Ctrl-C, saying when it last succeeded and why it failed when the process does not answer. A process that
cannot be reached is a one-line message and exit code 1, never a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
from collections.abc import Coroutine, Iterable, Mapping
from typing import Any, TypeVar

import aiohttp
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from mirror.config import ServiceSettings
from mirror.retry import pause
from mirror.service.status import ClusterStatus, FlowStatus, WorkerStatus

EXIT_OK, EXIT_FAILURE = 0, 1
_T = TypeVar("_T")
DEFAULT_URL = "http://127.0.0.1:8080"
_TIMEOUT = 5.0
_ANY_ADDRESS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}  # wildcard binds


class Unreachable(Exception):
    """The ``mirror`` process did not answer ``/status`` (with the reason, for one line of output)."""


def url_of(service: ServiceSettings) -> str:
    """Where a process started with these settings serves HTTP (a wildcard bind is reached on loopback)."""
    if service.http_port == 0:
        raise Unreachable("HTTP is off in this configuration (service.http.port = 0): pass --url")
    host = _ANY_ADDRESS.get(service.http_host, service.http_host)
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{service.http_port}"


async def fetch_status(session: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    endpoint = url.rstrip("/") + "/status"
    try:
        async with session.get(endpoint, timeout=aiohttp.ClientTimeout(total=_TIMEOUT)) as response:
            if response.status != 200:
                raise Unreachable(f"{endpoint} answered HTTP {response.status}")
            body: dict[str, Any] = await response.json(content_type=None)
            return body
    except TimeoutError as exc:
        raise Unreachable(f"{endpoint} did not answer within {_TIMEOUT:.0f}s") from exc
    except (aiohttp.ClientError, OSError, ValueError) as exc:
        raise Unreachable(f"cannot reach {endpoint}: {exc}") from exc


# --- rendering ---------------------------------------------------------------------------------------

_STATE_STYLE = {
    "running": "green",
    "starting": "yellow",
    "retrying": "red",
    "fenced": "red",
    "stopped": "dim",
}


def _state(state: str) -> Text:
    return Text(state, style=_STATE_STYLE.get(state, ""))


def _clusters(clusters: Mapping[str, ClusterStatus]) -> Text:
    text = Text()
    for alias, check in clusters.items():
        if text:
            text.append(", ")
        up = check.reachable
        text.append(f"{alias} {'up' if up else 'DOWN'}", style="green" if up else "bold red")
    return text or Text("-", style="dim")


def _known(number: int) -> str:
    return str(number) if number >= 0 else "?"  # -1: the document did not say


def render(status: WorkerStatus | Mapping[str, Any]) -> RenderableType:
    """The tables ``mirror status`` prints for one ``/status`` document (or its snapshot)."""
    if not isinstance(status, WorkerStatus):
        status = WorkerStatus.from_json(status)
    flows = status.flows
    ready = status.ready
    head = Text(f"mirror {status.version}  worker {status.worker}  ")
    head.append("ready" if ready else "NOT READY", style="bold green" if ready else "bold red")
    parts: list[RenderableType] = [head]
    parts.extend(Text(f"  - {reason}", style="red") for reason in status.reasons)

    table = Table(title="flows", title_justify="left", expand=False)
    for column in ("flow", "state", "topics", "partitions", "tasks", "lag (records)", "clusters"):
        table.add_column(
            column, justify="right" if column in {"topics", "partitions", "lag (records)"} else "left"
        )
    for flow in flows:
        running = sum(1 for t in flow.tasks if t.state == "running")
        replicating = flow.replicating
        table.add_row(
            flow.flow,
            _state(flow.state),
            str(flow.topics) if replicating else "-",
            str(flow.partitions) if replicating else "-",
            f"{running}/{len(flow.tasks)} running here" if replicating else "heartbeats only",
            f"{flow.lag_records:,}" if replicating else "-",
            _clusters(flow.clusters),
        )
    parts.append(table)

    lag = Table(title="lag per topic", title_justify="left")
    for column in ("flow", "topic", "remote topic", "partitions", "lag (records)", "state"):
        lag.add_column(column, justify="right" if column in {"partitions", "lag (records)"} else "left")
    for flow in flows:
        for topic, entry in flow.lag.items():
            state = Text("PAUSED", style="yellow") if entry.paused else Text("copying", style="green")
            lag.add_row(
                flow.flow, topic, entry.remote, str(entry.partitions), f"{entry.lag_records:,}", state
            )
    if lag.row_count:
        parts.append(lag)

    paused = Table(title="paused (mirror resume FLOW [--topics REGEX] to resume)", title_justify="left")
    for column in ("flow", "topics", "by", "since"):
        paused.add_column(column)
    for flow in flows:
        for held in flow.paused:
            since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(held.at))
            paused.add_row(flow.flow, held.topics, held.by, since, style="yellow")
    if paused.row_count:
        parts.append(paused)
    throttled = [
        f"{flow.flow} {flow.throttle_bytes_per_second:,} bytes/s"
        for flow in flows
        if flow.throttle_bytes_per_second
    ]
    if throttled:
        parts.append(Text("throttled: " + ", ".join(throttled), style="yellow"))

    tasks_table = Table(title="tasks", title_justify="left")
    columns = ("flow", "task", "state", "partitions", "records", "dead-lettered", "restarts", "lag (records)")
    for column in columns:
        tasks_table.add_column(column, justify="left" if column in {"flow", "state"} else "right")
    for flow in flows:
        for task in flow.tasks:
            tasks_table.add_row(
                flow.flow,
                _known(task.task),
                _state(task.state),
                str(task.partitions),
                f"{task.records:,}",
                f"{task.dead_lettered:,}",
                str(task.restarts),
                f"{task.lag_records:,}",
            )
    if tasks_table.row_count:
        parts.append(tasks_table)

    workers = Table(title="workers (the whole group, from Kafka)", title_justify="left")
    for column in ("target", "worker", "host", "tasks"):
        workers.add_column(column, overflow="fold" if column == "tasks" else "ellipsis")
    for target, group in (status.groups or {}).items():
        if group.error is not None:
            workers.add_row(target, "?", "", Text(group.error, style="red"))
        for member in group.workers:
            name = member.worker + (" (this)" if member.this else "")
            workers.add_row(target, name, member.host, ", ".join(member.tasks) or "-")
    if workers.row_count:
        parts.append(workers)

    errors = _errors(flows)
    if errors:
        err_table = Table(title="last errors", title_justify="left")
        err_table.add_column("flow")
        err_table.add_column("where")
        err_table.add_column("error", overflow="fold")
        for row in errors:
            err_table.add_row(*row, style="red")
        parts.append(err_table)
    return Group(*parts)


def _errors(flows: Iterable[FlowStatus]) -> list[tuple[str, str, str]]:
    rows = []
    for flow in flows:
        name = flow.flow
        if flow.last_error:
            rows.append((name, "flow", str(flow.last_error)))
        rows.extend(
            (name, f"cluster {alias}", str(check.error))
            for alias, check in flow.clusters.items()
            if not check.reachable
        )
        rows.extend((name, f"topic {topic}", str(err)) for topic, err in flow.topic_errors.items())
        rows.extend(
            (name, f"topic {topic}", f"source topic {event.change}; remote topic {event.remote}")
            for topic, event in flow.topic_events.items()
        )
        rows.extend((name, job.job, str(job.last_error)) for job in flow.jobs if job.last_error)
        rows.extend((name, f"task {_known(t.task)}", str(t.last_error)) for t in flow.tasks if t.last_error)
        rows.extend(
            (
                name,
                f"partition {h.topic}-{_known(h.partition)}",
                f"halted at offset {_known(h.offset)}: {h.reason}",
            )
            for t in flow.tasks
            for h in t.halted
        )
    return rows


# --- the command ---------------------------------------------------------------------------------------


async def show_once(url: str, as_json: bool, console: Console) -> int:
    async with aiohttp.ClientSession() as session:
        status = await fetch_status(session, url)
    if as_json:
        console.print_json(json.dumps(status))
    else:
        console.print(render(WorkerStatus.from_json(status)))
    return EXIT_OK


async def watch(url: str, every: float, console: Console) -> int:
    """Redraw every ``every`` seconds until Ctrl-C; a failed fetch is shown (under the last status) and
    retried. On a terminal the frame is redrawn in place; piped (a log, ``tee``), each frame is printed
    after the last one.

    Ctrl-C sets an event rather than cancelling the command: a cancellation landing in an HTTP request
    whose own timeout fires at the same moment becomes a timeout (then shown and retried), and the
    command would go on."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, stop.set)
    try:
        async with aiohttp.ClientSession() as session:
            shown: RenderableType = Text(f"connecting to {url} ...", style="dim")
            live = None if not console.is_terminal else Live(shown, console=console, auto_refresh=False)
            with live or contextlib.nullcontext():
                while True:
                    fetched = await _unless(stop, _frame(session, url, every, shown))
                    if fetched is None:
                        return EXIT_OK
                    shown, frame = fetched
                    if live is None:  # piped: Live would show only its last frame, when it ends
                        console.print(frame)
                    else:
                        live.update(frame, refresh=True)
                    if await pause(stop, every):
                        return EXIT_OK
    finally:
        loop.remove_signal_handler(signal.SIGINT)


async def _unless(stop: asyncio.Event, work: Coroutine[Any, Any, _T]) -> _T | None:
    """The result of ``work``, or None when ``stop`` is set first (``work`` is then cancelled)."""
    task = asyncio.ensure_future(work)
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
    if task.done():
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return None


async def _frame(
    session: aiohttp.ClientSession, url: str, every: float, shown: RenderableType
) -> tuple[RenderableType, RenderableType]:
    """The status now (or the last one shown, when it cannot be fetched) and the frame: it with a footer."""
    stamp = time.strftime("%H:%M:%S")
    try:
        shown = render(WorkerStatus.from_json(await fetch_status(session, url)))
        footer = Text(f"{url}  updated {stamp}, every {every:g}s (Ctrl-C to stop)", style="dim")
    except Unreachable as exc:
        footer = Text(f"{stamp}: {exc}; retrying every {every:g}s (Ctrl-C to stop)", style="red")
    return shown, Group(shown, footer)


def run_status(where: str | ServiceSettings, every: float | None = None, as_json: bool = False) -> int:
    """``mirror status`` for a URL or the HTTP settings of a config: 0 when shown, 1 when the process
    cannot be reached (one line on stderr)."""
    console = Console()
    try:
        url = where if isinstance(where, str) else url_of(where)
        if every is not None:
            return asyncio.run(watch(url, every, console))
        return asyncio.run(show_once(url, as_json, console))
    except Unreachable as exc:
        Console(stderr=True).print(f"mirror: {exc}", style="red", highlight=False, soft_wrap=True)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return EXIT_OK  # the way to leave --watch
