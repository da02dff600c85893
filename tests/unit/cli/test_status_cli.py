"""`mirror status`: the tables it prints from a /status document, and its failures as one line."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import socket

import pytest
from rich.console import Console

from mirror.cli import main
from mirror.cli.status import Unreachable, render, url_of, watch
from mirror.config import ServiceSettings
from mirror.service.status import FlowStatus, HaltedPartition, TaskStatus, WorkerStatus

STATUS = {
    "version": "0.1.0",
    "worker": "host:42",
    "ready": False,
    "reasons": ["flow A->B: cluster B unreachable: KafkaConnectionError"],
    "flows": [
        {
            "flow": "A->B",
            "replicating": True,
            "state": "running",
            "last_error": None,
            "topics": 2,
            "partitions": 5,
            "task_count": 2,
            "topic_errors": {"bad": "TopicAuthorizationFailedError"},
            "topic_events": {"old": {"change": "deleted", "at": 1.0, "remote": "A.old"}},
            "lag_records": 1234567,
            "lag": {
                "orders": {"remote": "A.orders", "partitions": 3, "lag_records": 1234560},
                "payments": {"remote": "A.payments", "partitions": 2, "lag_records": 7},
            },
            "clusters": {
                "A": {"reachable": True, "error": None, "checked_at": 1.0},
                "B": {"reachable": False, "error": "KafkaConnectionError", "checked_at": 1.0},
            },
            "jobs": {"heartbeat": {"last_error": None}, "checkpoint": {"last_error": "timed out"}},
            "tasks": [
                {"task": 0, "state": "running", "partitions": 3, "records": 10, "restarts": 0,
                 "lag_records": 1234560, "last_error": None},
                {"task": 1, "state": "retrying", "partitions": 2, "records": 5, "dead_lettered": 2,
                 "restarts": 3, "lag_records": 7, "last_error": "KafkaTimeoutError"},
            ],
        },
        {"flow": "B->A", "replicating": False, "state": "running", "lag": {}, "clusters": {}, "tasks": []},
    ],
}  # fmt: skip


def rendered(status: WorkerStatus | dict[str, object]) -> str:
    console = Console(width=160, record=True, color_system=None)
    console.print(render(status))
    return console.export_text()


def test_render_shows_flows_lag_per_topic_tasks_and_errors() -> None:
    """Every part of the document is in the tables: readiness, flows, per-topic lag, tasks, errors."""
    text = rendered(STATUS)
    assert "NOT READY" in text and "cluster B unreachable" in text
    rows = [[c.strip() for c in line.split("│") if c.strip()] for line in text.splitlines()]
    assert ["A->B", "orders", "A.orders", "3", "1,234,560", "copying"] in rows
    assert ["A->B", "payments", "A.payments", "2", "7", "copying"] in rows
    assert ["A->B", "1", "retrying", "2", "5", "2", "3", "7"] in rows  # 2 records dead-lettered
    assert any(r[:2] == ["A->B", "running"] and "1,234,567" in r and "1/2 running here" in r for r in rows)
    assert any(r[:2] == ["B->A", "running"] and "heartbeats only" in r for r in rows)
    assert ["A->B", "topic old", "source topic deleted; remote topic A.old"] in rows
    for error in ("TopicAuthorizationFailedError", "timed out", "KafkaTimeoutError", "KafkaConnectionError"):
        assert error in text


def test_render_shows_the_whole_group_and_why_a_cluster_could_not_say() -> None:
    status = {
        "ready": True,
        "flows": [],
        "groups": {
            "A": {"group": "mirror", "error": "cluster A: group coordinator not available"},
            "B": {
                "group": "mirror",
                "state": "Stable",
                "workers": [
                    {
                        "worker": "h1:10",
                        "host": "/10.0.0.1",
                        "this": True,
                        "tasks": ["mm2-tasks.A.internal/0"],
                    },
                    {"worker": "h2:20", "host": "/10.0.0.2", "this": False, "tasks": []},
                ],
            },
        },
    }
    rows = [[c.strip() for c in line.split("│") if c.strip()] for line in rendered(status).splitlines()]
    assert ["B", "h1:10 (this)", "/10.0.0.1", "mm2-tasks.A.internal/0"] in rows
    assert ["B", "h2:20", "/10.0.0.2", "-"] in rows
    assert ["A", "?", "cluster A: group coordinator not available"] in rows


def test_render_tolerates_an_empty_document() -> None:
    """A worker with no flows (or an older server) renders without errors."""
    assert "ready" in rendered({"ready": True, "flows": []})


def test_url_of_a_config() -> None:
    """A wildcard bind address is reached on loopback; a disabled HTTP port is a clear error."""
    assert url_of(ServiceSettings(http_host="0.0.0.0", http_port=9000)) == "http://127.0.0.1:9000"
    assert url_of(ServiceSettings(http_host="::", http_port=9000)) == "http://[::1]:9000"
    assert url_of(ServiceSettings(http_host="10.0.0.1", http_port=80)) == "http://10.0.0.1:80"
    with pytest.raises(Unreachable, match=r"service\.http\.port = 0"):
        url_of(ServiceSettings(http_port=0))


def test_unreachable_is_one_line_and_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    """Nothing listening: exit code 1 and one message on stderr, no traceback."""
    assert main(["status", "--url", "http://127.0.0.1:1"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("mirror: cannot reach http://127.0.0.1:1/status") and "Traceback" not in err


def test_watch_needs_a_positive_interval(capsys: pytest.CaptureFixture[str]) -> None:
    """--watch 0 is a usage error."""
    with pytest.raises(SystemExit) as exc:
        main(["status", "--watch", "0"])
    assert exc.value.code == 2
    assert "seconds > 0" in capsys.readouterr().err


def test_render_reads_the_snapshot_a_document_or_its_typed_form_alike() -> None:
    """`mirror status` renders the worker's status snapshot: the /status document is read into it, so
    the document and the snapshot it came from print the same; a halted partition is a last error."""
    task = TaskStatus(
        0, "running", 3, 10, 0, 5, None, (HaltedPartition("orders", 2, 41, "InvalidTimestamp"),)
    )
    flow = FlowStatus("A->B", "A", "B", True, "running", tasks=(task,))
    snapshot = WorkerStatus.of("0.1.0", "host:42", [flow])
    text = rendered(snapshot)
    assert text == rendered(snapshot.to_json())
    rows = [[c.strip() for c in line.split("│") if c.strip()] for line in text.splitlines()]
    assert ["A->B", "partition orders-2", "halted at offset 41: InvalidTimestamp"] in rows
    assert "mirror 0.1.0  worker host:42  ready" in text


async def test_piped_watch_prints_every_frame() -> None:
    """Not on a terminal (a log, tee), --watch prints each frame after the last: rich's Live would only
    print the last one when it ends. An unreachable worker gives a frame per round too."""
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    out = io.StringIO()
    console = Console(file=out, width=200, force_terminal=False)
    task = asyncio.create_task(watch(f"http://127.0.0.1:{port}", 0.05, console))
    async with asyncio.timeout(10):
        while out.getvalue().count("retrying every 0.05s") < 3:  # noqa: ASYNC110 (polling the output)
            await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_ctrl_c_ends_watch_with_exit_0_even_inside_a_request() -> None:
    """Ctrl-C stops the watch (exit 0) also while a request hangs: it is an event, not a cancellation a
    request's own timeout could turn into a retried failure."""
    hanging = await asyncio.start_server(lambda r, w: asyncio.sleep(3600), "127.0.0.1", 0)
    port = hanging.sockets[0].getsockname()[1]
    out = io.StringIO()
    try:
        task = asyncio.create_task(watch(f"http://127.0.0.1:{port}", 0.05, Console(file=out)))
        await asyncio.sleep(0.3)  # inside its first request, which never gets an answer
        os.kill(os.getpid(), signal.SIGINT)
        assert await asyncio.wait_for(task, 3) == 0
    finally:
        hanging.close()
    assert "updated" not in out.getvalue()
