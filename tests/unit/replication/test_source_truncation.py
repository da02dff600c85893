"""A task says loudly when the source deleted records it had not copied yet (never a silent skip)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import structlog

from mirror import metrics
from mirror.config import ClusterSettings, load_settings
from mirror.errors import SourceOutOfRange
from mirror.kafka.fetcher import BatchFetcher
from mirror.replication.progress import ProgressStore
from mirror.replication.task import SourceTask
from mirror.replication.topology import make_policy
from mirror.types import TP
from tests.unit.kafka.test_fetcher import OUT_OF_RANGE, Broker, batch


class FakeReader:
    """Log start offsets as the source reports them; records where the task seeks."""

    start_at = "earliest"

    def __init__(self, starts: dict[TP, int]) -> None:
        self.starts = starts
        self.asked: list[TP] = []
        self.positions: dict[TP, int | None] = {}
        self.ends: dict[TP, int] = {}

    async def beginning_offsets(self, partitions: list[TP]) -> dict[TP, int]:
        self.asked += partitions
        return {tp: self.starts[tp] for tp in partitions}

    async def assign(self, positions: dict[TP, int | None]) -> None:
        self.positions = dict(positions)

    async def end_offsets(self, partitions: list[TP]) -> dict[TP, int]:
        return {tp: self.ends.get(tp, 1000) for tp in partitions}

    def seek(self, positions: dict[TP, int]) -> None:
        self.positions.update(positions)


def _task(tmp_path: Path, stored: dict[TP, int], created: set[TP]) -> SourceTask:
    config = tmp_path / "mm2.properties"
    config.write_text(
        "clusters = A, B\nA.bootstrap.servers = a:9092\nB.bootstrap.servers = b:9092\nA->B.enabled = true\n"
    )
    settings = load_settings(config, env={}).settings
    flow = settings.flows["A->B"]
    progress = ProgressStore(flow, settings.cluster("B"))
    task = SourceTask(
        flow,
        0,
        settings.cluster("A"),
        settings.cluster("B"),
        make_policy(flow),
        progress,
        created_while_running=created,
    )
    task._positions.loaded = dict(stored)  # as the task's session read it
    task.set_partitions({("old", 0), ("new", 0), ("kept", 0)})
    return task


def _lost(topic: str) -> float:
    value: Any = metrics.truncated_records_total.labels("A", "B", topic, "0")._value.get()
    return float(value)


async def test_records_deleted_before_they_were_copied_are_reported(tmp_path: Path) -> None:
    # "kept": progress stored at 9, the source now starts at 25 -> 15 records (10..24) lost
    # "new": created while running, never copied, starts at 40 -> 40 records lost
    # "old": existed when the flow started, never copied: its log start is where history begins
    task = _task(tmp_path, {("kept", 0): 9}, created={("new", 0)})
    reader = FakeReader({("old", 0): 70, ("new", 0): 40, ("kept", 0): 25})
    before = {t: _lost(t) for t in ("old", "new", "kept")}
    with structlog.testing.capture_logs() as logs:
        await task._assign(reader)  # type: ignore[arg-type]
    assert sorted(reader.asked) == [("kept", 0), ("new", 0)]
    assert reader.positions == {("old", 0): None, ("new", 0): 40, ("kept", 0): 25}
    lost = {e["topic"]: e["records"] for e in logs if e["log_level"] == "error"}
    assert lost == {"new": 40, "kept": 15}
    assert {t: _lost(t) - before[t] for t in before} == {"old": 0, "new": 40, "kept": 15}


async def test_a_new_partition_from_its_first_offset_is_no_loss(tmp_path: Path) -> None:
    task = _task(tmp_path, {}, created={("new", 0)})
    reader = FakeReader({("old", 0): 0, ("new", 0): 0, ("kept", 0): 0})
    with structlog.testing.capture_logs() as logs:
        await task._assign(reader)  # type: ignore[arg-type]
    assert not [e for e in logs if e["log_level"] == "error"]
    assert reader.positions[("new", 0)] == 0  # from its first offset, whatever auto.offset.reset says


async def test_records_deleted_ahead_of_a_running_task_are_reported_once(tmp_path: Path) -> None:
    # the reader hit "out of range" at 120 of "kept": the source now starts at 300 -> 180 lost, and the
    # task reads on from 300. A later session finding the same gap (progress still at 119) counts nothing.
    task = _task(tmp_path, {("kept", 0): 119}, created=set())
    reader = FakeReader({("old", 0): 0, ("new", 0): 0, ("kept", 0): 300})
    before = _lost("kept")
    with structlog.testing.capture_logs() as logs:
        await task._out_of_range(reader, {("kept", 0): 120})  # type: ignore[arg-type]
        await task._assign(reader)  # type: ignore[arg-type]
    assert reader.positions[("kept", 0)] == 300
    assert [e["records"] for e in logs if e["log_level"] == "error"] == [180]
    assert _lost("kept") - before == 180


async def test_a_source_log_cut_below_the_position_is_read_again_from_its_start(tmp_path: Path) -> None:
    task = _task(tmp_path, {}, created=set())
    reader = FakeReader({("kept", 0): 5})
    reader.ends[("kept", 0)] = 50  # we were at 80: the log was cut (unclean election) or re-created
    before = _lost("kept")
    with structlog.testing.capture_logs() as logs:
        await task._out_of_range(reader, {("kept", 0): 80})  # type: ignore[arg-type]
    assert reader.positions[("kept", 0)] == 5
    errors = [e for e in logs if e["log_level"] == "error"]
    assert len(errors) == 1 and errors[0]["log_end_offset"] == 50 and errors[0]["position"] == 80
    assert _lost("kept") == before  # nothing the source still had was skipped


class FetcherReader(FakeReader):
    """Offset lookups as a FakeReader; fetches and seeks through a real `BatchFetcher` on a fake broker."""

    def __init__(self, starts: dict[TP, int], fetcher: BatchFetcher) -> None:
        super().__init__(starts)
        self.fetcher = fetcher

    def seek(self, positions: dict[TP, int]) -> None:
        super().seek(positions)
        self.fetcher.seek(positions)


async def test_a_position_back_in_range_reads_on_after_an_out_of_range_answer(tmp_path: Path) -> None:
    # the source answered "out of range" for offset 10 once (a leader that had not caught up, or a
    # log end read a moment too early); when the task looks, 10 is in range again: it must read on from
    # there, not have the fetcher raise SourceOutOfRange for ever (nothing of the task's partitions would
    # be handed out again)
    task = _task(tmp_path, {}, created=set())
    tp = ("kept", 0)
    broker = Broker([batch(0, 5), batch(5, 5), batch(10, 5)])
    answers = [(OUT_OF_RANGE, b"")]

    async def once_out_of_range(offset: int, max_bytes: int) -> tuple[int, bytes]:
        if offset >= 10 and answers:
            return answers.pop()
        return 0, broker.log[offset // 5]  # one batch per response

    broker.answer = once_out_of_range
    fetcher = BatchFetcher(ClusterSettings(alias="A", bootstrap_servers="a:9092"), "t", {}, "read_committed")
    fetcher._client = broker  # type: ignore[assignment]
    await fetcher.start()
    try:
        fetcher.assign({tp: 0})
        reader = FetcherReader({tp: 0}, fetcher)
        reader.ends[tp] = 15
        got: list[int] = []
        for _ in range(100):
            if fetcher.position(tp) >= 15:
                break
            try:
                got += [r.offset for b in await fetcher.fetch(50) for r in b.records]
            except SourceOutOfRange as exc:
                await task._out_of_range(reader, exc.positions)  # type: ignore[arg-type]
        assert got == list(range(15))
    finally:
        await fetcher.close()
