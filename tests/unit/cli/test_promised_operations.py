"""Operations the README promises without Kafka: `mirror status --json` prints the /status document, and
`mirror run` serves HTTP on 127.0.0.1 unless told otherwise."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from mirror.cli import _run, main
from mirror.config import load_settings
from mirror.service.http import HttpServer
from tests.unit.service.test_http import runner, worker


async def test_status_json_prints_the_status_document(capsys: pytest.CaptureFixture[str]) -> None:
    """`mirror status --json` prints exactly what /status answers, as JSON a program can parse: long values
    are not wrapped at the terminal width and markup-like text is not interpreted."""
    ab = runner("A", "B")
    ab.prepared.clear()  # its fake admin clients are not asked for the coordination group
    long_error = "TopicAuthorizationFailedError: [bold]not[/bold] authorized ünïcode " + "x" * 300
    ab.status.topic_errors = {"bad": long_error}
    server = HttpServer(worker(ab), "127.0.0.1", 0)
    await server.start()
    try:
        url = f"http://127.0.0.1:{server.port}"
        code = await asyncio.to_thread(main, ["status", "--json", "--url", url])
        printed = capsys.readouterr().out
        async with aiohttp.ClientSession() as session, session.get(f"{url}/status") as response:
            served: dict[str, Any] = await response.json()
    finally:
        await server.close()
    assert code == 0
    document = json.loads(printed)
    assert document == served
    assert list(document) == ["version", "worker", "ready", "reasons", "flows", "config", "groups"]
    (flow,) = document["flows"]
    assert flow["flow"] == "A->B" and flow["topic_errors"] == {"bad": long_error}
    assert {"state", "topics", "partitions", "task_count", "lag", "clusters", "jobs", "tasks"} <= set(flow)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def _connects(host: str, port: int) -> bool:
    try:
        _reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 5)
    except OSError:
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


async def test_http_binds_to_loopback_by_default(tmp_path: Path) -> None:
    """`mirror run` with no service.http.host listens on 127.0.0.1 only: another local address of this
    machine (127.0.0.2, on loopback too) is refused, as any address of another interface would be."""
    port = _free_port()
    config = tmp_path / "mm2.properties"
    config.write_text(
        "clusters = A, B\nA.bootstrap.servers = 127.0.0.1:1\nB.bootstrap.servers = 127.0.0.1:1\n"
        f"A->B.enabled = true\nservice.http.port = {port}\n"
    )
    settings = load_settings(config, env={}).settings
    assert settings.service.http_host == "127.0.0.1"
    run = asyncio.create_task(_run(settings, lambda: settings))
    try:
        async with asyncio.timeout(20):
            while not await _connects("127.0.0.1", port):  # noqa: ASYNC110 (polling a socket)
                await asyncio.sleep(0.05)
        assert not await _connects("127.0.0.2", port)
        assert not await _connects("::1", port)
    finally:
        run.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await run
