"""Operator control against real brokers: pause and resume (the control topic), progress show and reset."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

import pytest

from mirror.cli import progress as progress_cli
from mirror.cli.control import run_control
from mirror.cli.progress import run_progress
from mirror.local.kafka import LocalKafkaCluster
from mirror.service.worker import Worker

from .support import Rec, consume, create_topic, produce, running, settings_for, wait_for

BASE_TS = 1_700_000_000_000


def _args(command: str, flow: str, **kw: Any) -> argparse.Namespace:
    defaults: dict[str, Any] = {
        "topics": None,
        "json": False,
        "dry_run": False,
        "to_earliest": False,
        "to_latest": False,
        "to_offset": None,
        "to_timestamp": None,
        "progress_command": None,
    }
    return argparse.Namespace(command=command, flow=flow, **{**defaults, **kw})


def _paused_here(worker: Worker) -> int:
    return sum(len(task.paused()) for runner in worker.flows for task in runner.tasks.values())


async def test_progress_reset_to_a_timestamp_recopies_exactly_the_records_from_then_on(
    cluster_a: LocalKafkaCluster,
    cluster_b: LocalKafkaCluster,
    topic: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`progress reset --to-timestamp T` on a paused topic: after resume the target holds every record once,
    then again exactly those with a timestamp >= T, in order; refused while the topic is not paused."""
    a, b = cluster_a.bootstrap_servers, cluster_b.bootstrap_servers
    await create_topic(a, topic, 2)
    sent: dict[int, list[Rec]] = {
        p: [(b"k%d" % i, b"v%d-%d" % (p, i), (), BASE_TS + i * 1000) for i in range(100)] for p in range(2)
    }
    await produce(a, topic, sent)
    settings = settings_for(tmp_path, {"A": a, "B": b}, ["A->B"], **{"A->B.topics": topic})
    remote = f"A.{topic}"
    monkeypatch.setattr(progress_cli, "SETTLED", 1.0)  # the settling wait, shortened for the test
    async with running(settings) as worker:
        copied = await consume(b, remote, {0: 100, 1: 100}, timeout=60)
        assert copied == sent
        # workers run the flow and the topic is not paused: refused
        reset = _args(
            "progress", "A->B", progress_command="reset", topics=topic, to_timestamp=str(BASE_TS + 60_000)
        )
        assert await run_progress(settings, reset) == 1
        assert "refused: topics not paused" in capsys.readouterr().out

        assert await run_control(settings, _args("pause", "A->B", topics=topic)) == 0
        await wait_for(lambda: _ready(_paused_here(worker) == 2), timeout=10)
        await asyncio.sleep(1.2)  # SETTLED, as shortened above
        # the stored progress is at the end (the paused partitions' progress is stored at once)
        show = _args("progress", "A->B", progress_command="show", topics=topic, json=True)
        assert await run_progress(settings, show) == 0
        shown = capsys.readouterr().out
        assert shown.count('"stored": 100') == 2 and shown.count('"lag": 0') == 2, shown

        dry = _args(
            "progress", "A->B", progress_command="reset", topics=topic, to_timestamp=str(BASE_TS + 60_000)
        )
        dry.dry_run = True
        assert await run_progress(settings, dry) == 0
        assert "dry run" in capsys.readouterr().out
        assert await run_progress(settings, reset) == 0
        assert "reset" in capsys.readouterr().out
        await asyncio.sleep(1.0)  # nothing may flow while paused, reset or not
        assert await consume(b, remote, {0: 100, 1: 100}, timeout=5) == sent

        assert await run_control(settings, _args("resume", "A->B")) == 0
        expected = {p: recs + recs[60:] for p, recs in sent.items()}
        got = await consume(b, remote, {0: 140, 1: 140}, timeout=60)
        assert got == expected


async def _ready(value: bool) -> bool:
    return value
