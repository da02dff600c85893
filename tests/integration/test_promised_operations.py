"""README operations against real brokers: SIGUSR1 logs every asyncio task's stack and the worker goes on,
and `mirror demo` runs end to end."""

from __future__ import annotations

import json
import re
import signal
from pathlib import Path
from typing import Any

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
