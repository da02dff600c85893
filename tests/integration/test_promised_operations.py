"""README operations against real brokers: SIGUSR1 logs every asyncio task's stack and the worker goes on,
and `mirror demo` runs end to end."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import sys
from pathlib import Path
from typing import Any

import pytest

from mirror.local.kafka import LocalKafkaCluster

from .support import MirrorProcess, Rec, consume_all, create_topic, joined, mm2_properties, produce, wait_for


def _events(log: Path, name: str) -> list[dict[str, Any]]:
    events = []
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            event = json.loads(line)
            if event.get("event") == name:
                events.append(event)
    return events


async def test_sigusr1_logs_every_asyncio_task_stack_and_the_worker_goes_on(
    cluster_a: LocalKafkaCluster, cluster_b: LocalKafkaCluster, topic: str, tmp_path: Path
) -> None:
    """SIGUSR1 logs `asyncio task stacks`: every task by name with where it waits (file:line > ...); the
    worker keeps copying, and SIGTERM still stops it cleanly."""
    a, b = cluster_a.bootstrap_servers, cluster_b.bootstrap_servers
    await create_topic(a, topic, 1)
    config = tmp_path / "mm2.properties"
    config.write_text(mm2_properties({"A": a, "B": b}, ["A->B"], **{"A->B.topics": topic}))
    worker = MirrorProcess(config, tmp_path / "worker.log")
    before: list[Rec] = [(b"k%d" % i, b"before", (), 1_700_000_000_000 + i) for i in range(20)]
    after: list[Rec] = [(b"k%d" % i, b"after", (), 1_700_000_001_000 + i) for i in range(20)]
    await produce(a, topic, {0: before})
    worker.start()
    try:
        await joined(worker, "mm2-tasks.A.internal")
        await consume_all(b, f"A.{topic}", {0: before}, timeout=30)
        assert worker.proc is not None
        worker.proc.send_signal(signal.SIGUSR1)

        async def dumped() -> list[dict[str, Any]]:
            assert worker.proc is not None and worker.proc.poll() is None, "SIGUSR1 ended the worker"
            return _events(worker.log, "asyncio task stacks")

        (dump,) = await wait_for(dumped, 15)
        stacks: dict[str, str] = dump["stacks"]
        assert dump["tasks"] == len(stacks) >= 5, dump
        where = re.compile(r"[\w.]+\.py:\d+( > [\w.]+\.py:\d+)*")
        assert all(where.fullmatch(stack) for stack in stacks.values()), stacks
        # the worker's own tasks are among them: the main one, the source task's reader, the heartbeats
        for module in ("worker.py", "task.py", "reader.py", "heartbeat.py"):
            assert any(module in stack for stack in stacks.values()), (module, stacks)
        # the worker goes on: records written after the dump are copied, and it still stops cleanly
        assert worker.proc.poll() is None
        await produce(a, topic, {0: after})
        got = await consume_all(b, f"A.{topic}", {0: before + after}, timeout=30)
        assert got == {0: before + after}
    finally:
        code, took = worker.terminate()
    assert code == 0 and took < 15, (code, took)


async def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    """`mirror demo` (small: 3000 records, 3 partitions) starts its own clusters A and B, fills `orders` on
    A, mirrors all of it to `A.orders` on B, prints the summary and stops everything: exit 0."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mirror", "demo", "--records", "3000", "--partitions", "3",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=tmp_path,
    )  # fmt: skip
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), 180)
    finally:
        if proc.returncode is None:  # Ctrl-C first: the demo stops its brokers on the way out
            proc.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                proc.kill()
                await proc.wait()
    text = " ".join(out.decode(errors="replace").split())  # rich wraps lines at 80 columns when piped
    assert proc.returncode == 0, text[-3000:]
    ports = re.search(r"Kafka [\d.]+: A at 127\.0\.0\.1:(\d+), B at 127\.0\.0\.1:(\d+)", text)
    assert ports is not None, text[-3000:]
    assert "producing 3,000 records into orders (3 partitions) on A" in text, text[-3000:]
    assert "A.orders on B" in text and "3000/3000" in text, text[-3000:]  # the progress bar, full
    assert re.search(r"done: 3,000 records copied A -> B into topic A\.orders in [\d.]+s", text), text[-3000:]
    for port in ports.groups():  # everything stopped: no broker answers any more
        with pytest.raises(OSError):
            await asyncio.open_connection("127.0.0.1", int(port))
