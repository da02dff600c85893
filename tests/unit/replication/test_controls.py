"""Operator controls: the control records, the pause state, how a task applies it; stuck tasks."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mirror.config import ClusterSettings, FlowSettings, load_settings
from mirror.errors import KafkaUnavailable, RecordRejected
from mirror.kafka import SourceBatch
from mirror.kafka.batches import Chunk
from mirror.kafka.reader import Reader
from mirror.mm2.policy import DefaultReplicationPolicy
from mirror.replication import pausing
from mirror.replication.controls import Controls, Reset, pause_key, reset_key, stamp, throttle_key
from mirror.replication.inflight import InFlight
from mirror.replication.observe import TaskMetrics
from mirror.replication.pausing import PauseGate
from mirror.replication.positions import Positions
from mirror.replication.progress import ProgressStore, StoredProgress
from mirror.replication.stuck import StuckWatch
from mirror.replication.task import SourceTask
from mirror.replication.throttle import TokenBucket
from mirror.replication.topology import make_policy
from tests.unit.cancelling import ends_cancelled

FLOW = "A->B"


def _resume(flow: str, pattern: str, by: str = "bob") -> tuple[bytes, bytes]:
    return pause_key(flow, pattern), b'{"paused":false,' + stamp(by, 2.0)[1:]


def test_patterns_add_up_and_resume_removes_exactly_one() -> None:
    """A topic is paused while any pattern fully matches it; resuming one pattern leaves the others."""
    c = Controls(FLOW)
    assert c.apply(pause_key(FLOW, "orders.*"), stamp("alice", 1.0)) is not None
    assert c.apply(pause_key(FLOW, "pay"), stamp("alice", 1.0)) is not None
    assert c.is_paused("orders.eu") and c.is_paused("pay") and not c.is_paused("payments")
    change = c.apply(*_resume(FLOW, "orders.*"))
    assert change is not None and (change.action, change.topics, change.by) == ("resume", "orders.*", "bob")
    assert not c.is_paused("orders.eu") and c.is_paused("pay")
    assert c.apply(pause_key(FLOW, "pay"), None) is not None  # a tombstone resumes too
    assert not c.pauses


def test_other_flows_and_repeats_change_nothing() -> None:
    """Another flow's records, a pause read twice and records that are not mirror's are ignored."""
    c = Controls(FLOW)
    assert c.apply(pause_key("B->A", ".*"), stamp("x", 1.0)) is None
    assert c.apply(pause_key(FLOW, "t"), stamp("x", 1.0)) is not None
    version = c.version
    assert c.apply(pause_key(FLOW, "t"), stamp("x", 1.0)) is None  # read again after a reconnect
    assert c.apply(b"not json", b"{}") is None
    assert c.apply(pause_key(FLOW, "(unclosed"), stamp("x", 1.0)) is None  # invalid regex: pauses nothing
    assert c.version == version and set(c.pauses) == {"t"}


def test_a_reset_is_applied_once_per_id() -> None:
    c = Controls(FLOW)
    value = stamp("carol", 3.0, id="r1", topics="orders")
    change = c.apply(reset_key(FLOW), value)
    assert change is not None and change.action == "reset" and c.reset == Reset("r1", "orders", "carol", 3.0)
    assert c.apply(reset_key(FLOW), value) is None


@given(st.lists(st.tuples(st.sampled_from(["a", "b", "a|b", ".*"]), st.booleans()), max_size=20))
def test_the_state_is_the_last_record_per_pattern(ops: list[tuple[str, bool]]) -> None:
    """Whatever order pauses and resumes come in, a topic is paused iff the last record of some pattern
    matching it paused (what a compacted topic keeps)."""
    c = Controls(FLOW)
    last: dict[str, bool] = {}
    for pattern, pause in ops:
        c.apply(*((pause_key(FLOW, pattern), stamp("x", 1.0)) if pause else _resume(FLOW, pattern)))
        last[pattern] = pause
    for topic in ("a", "b", "c"):
        expected = any(p and re.fullmatch(pat, topic) for pat, p in last.items())
        assert c.is_paused(topic) == expected


class FakeReader:
    def __init__(self) -> None:
        self.paused: set[tuple[str, int]] = set()
        self.calls: list[tuple[str, list[tuple[str, int]]]] = []

    def pause(self, tps: list[tuple[str, int]]) -> None:
        self.paused |= set(tps)
        self.calls.append(("pause", list(tps)))

    def resume(self, tps: list[tuple[str, int]]) -> None:
        self.paused -= set(tps)
        self.calls.append(("resume", list(tps)))


class FakeProgress:
    def __init__(self) -> None:
        self.stored: list[dict[tuple[str, int], int]] = []
        self.loaded: dict[tuple[str, int], int] = {}

    async def store(self, offsets: dict[tuple[str, int], int], topic_ids: object = None) -> None:
        self.stored.append(dict(offsets))

    async def load(self) -> dict[tuple[str, int], int]:
        return dict(self.loaded)


def _gate(controls: Controls) -> tuple[PauseGate, Positions, FakeProgress]:
    flow = FlowSettings(source="A", target="B", enabled=True)
    positions = Positions(flow, set(), exactly_once=False)
    metrics = TaskMetrics(flow, DefaultReplicationPolicy(), positions.next_offset)
    progress = FakeProgress()
    return PauseGate(controls, metrics, positions, progress), positions, progress  # type: ignore[arg-type]


def test_the_gate_pauses_resumes_and_stores_paused_progress_at_once() -> None:
    """A pause pauses exactly the matching partitions (once), stores their acknowledged progress without
    waiting for the flush interval, and a resume resumes only what the gate paused."""
    controls = Controls(FLOW)
    gate, positions, progress = _gate(controls)
    reader: Any = FakeReader()
    parts = {("t", 0), ("t", 1), ("u", 0)}
    asyncio.run(gate.apply(reader, parts))
    assert reader.calls == []
    controls.apply(pause_key(FLOW, "t"), stamp("x", 1.0))
    positions.acked[("t", 0)] = 41
    positions.dirty.add(("t", 0))
    asyncio.run(gate.apply(reader, parts))
    assert reader.paused == {("t", 0), ("t", 1)}
    assert progress.stored == [{("t", 0): 41}] and not positions.dirty
    asyncio.run(gate.apply(reader, parts))  # nothing changed: no calls
    assert len(reader.calls) == 1
    controls.apply(*_resume(FLOW, "t"))
    asyncio.run(gate.apply(reader, parts))
    assert reader.paused == set() and reader.calls[-1] == ("resume", [("t", 0), ("t", 1)])


def test_after_a_reassignment_the_gate_pauses_again() -> None:
    """A new session (or new partitions) assigns the reader afresh: the gate pauses the paused ones again
    before the next fetch."""
    controls = Controls(FLOW)
    controls.apply(pause_key(FLOW, "t"), stamp("x", 1.0))
    gate, _, _ = _gate(controls)
    reader: Any = FakeReader()
    asyncio.run(gate.apply(reader, {("t", 0)}))
    fresh: Any = FakeReader()
    gate.assigned()
    asyncio.run(gate.apply(fresh, {("t", 0), ("t", 1)}))
    assert fresh.paused == {("t", 0), ("t", 1)}


def test_a_reset_forgets_the_partitions_it_names_and_rereads_progress() -> None:
    controls = Controls(FLOW)
    gate, positions, progress = _gate(controls)
    positions.position = {("t", 0): 100, ("u", 0): 7}
    positions.acked = {("t", 0): 99, ("u", 0): 6}
    progress.loaded = {("t", 0): 49, ("u", 0): 6}
    assert gate.request_reload(Reset("r", "t", "x", 1.0))
    asyncio.run(gate.reload({("t", 0), ("u", 0)}))
    assert positions.position == {("u", 0): 7} and positions.acked == {("u", 0): 6}
    assert positions.next_offset(("t", 0)) == 50


def test_a_partition_behind_without_progress_is_stuck_until_it_moves() -> None:
    """Stuck: lag > 0 and no acknowledgement for longer than the timeout; partitions caught up never are;
    the verdict stays (for /readyz) until a stuck partition moves or catches up."""
    watch = StuckWatch(10.0)
    watch.session_started(now=0.0)
    assert watch.check({("t", 0): 5, ("t", 1): 0}, now=9.0) is None
    why = watch.check({("t", 0): 5, ("t", 1): 0}, now=11.0)
    assert why == "no progress for 10 s in t-0 (5 records behind)"
    watch.session_started(now=12.0)  # restarted: still named while it has not moved
    assert watch.stuck == why
    watch.moved(("t", 1), now=13.0)
    assert watch.stuck == why
    watch.moved(("t", 0), now=14.0)
    assert watch.stuck is None
    assert watch.check({("t", 0): 5}, now=20.0) is None
    watch.check({("t", 0): 5}, now=30.0)
    assert watch.stuck is not None
    watch.check({("t", 0): 0}, now=31.0)  # caught up
    assert watch.stuck is None


def test_a_runtime_throttle_overrides_the_configured_one_until_cleared() -> None:
    c = Controls(FLOW)
    change = c.apply(throttle_key(FLOW), b'{"bytes_per_second":5000,"by":"dan","at":1}')
    assert change is not None and change.topics == "5000 bytes/s" and c.throttle == 5000
    assert c.apply(throttle_key(FLOW), b'{"bytes_per_second":5000,"by":"dan","at":2}') is None
    assert c.apply(throttle_key(FLOW), b'{"bytes_per_second":null,"by":"dan","at":3}') is not None
    assert c.throttle is None


@given(st.lists(st.integers(min_value=1, max_value=50_000), min_size=50, max_size=200))
def test_a_token_bucket_keeps_to_its_rate(sizes: list[int]) -> None:
    """Whatever the batch sizes, the bytes sent by time t never exceed rate * t + one second's burst,
    and sending as fast as allowed reaches the rate."""
    now = [0.0]
    bucket = TokenBucket(lambda: 10_000.0, clock=lambda: now[0])
    sent = 0
    for size in sizes:
        now[0] += bucket.debt(size, 1)  # wait as told, then send
        sent += size
        assert sent <= 10_000 * now[0] + 10_000 + max(sizes)
    if now[0] > 10:
        assert sent / now[0] >= 10_000 * 0.9
    assert TokenBucket(lambda: 0.0).debt(10**9, 1) == 0.0  # 0: unlimited


def test_a_halted_partition_stays_paused_on_resume_for_its_halt_retry() -> None:
    """Resuming a topic leaves its halted partitions paused: their halt's retry resumes them from the
    halt record (a plain resume would fetch past it)."""
    controls = Controls(FLOW)
    controls.apply(pause_key(FLOW, "t"), stamp("x", 1.0))
    gate, _, _ = _gate(controls)
    reader: Any = FakeReader()
    parts = {("t", 0), ("t", 1)}
    asyncio.run(gate.apply(reader, parts, halted={("t", 1)}))
    controls.apply(*_resume(FLOW, "t"))
    asyncio.run(gate.apply(reader, parts, halted={("t", 1)}))
    assert reader.paused == {("t", 1)} and gate.paused == set()


# --- a task's fetch step with the gate: pauses meeting halt retries and progress resets -----------------


class SteppedReader(FakeReader):
    """A reader whose fetches return nothing: the task's fetch step runs the gate and the halt retries."""

    def __init__(self, batches: list[Any] | None = None) -> None:
        super().__init__()
        self.seeks: list[tuple[tuple[str, int], int]] = []
        self.batches = batches or []

    def seek(self, positions: dict[tuple[str, int], int]) -> None:
        self.seeks += list(positions.items())

    async def fetch(self, timeout_ms: int, max_records: int | None = None) -> list[Any]:
        batches, self.batches = self.batches, []
        return batches

    def limit_fetch(self, bytes_per_partition: int | None) -> None:
        pass

    def highwater(self, topic: str, partition: int) -> int | None:
        return None


def _task(tmp_path: Path, controls: Controls, throttle: float = 0.0) -> SourceTask:
    config = tmp_path / "mm2.properties"
    config.write_text(
        "clusters = A, B\nA.bootstrap.servers = a:9092\nB.bootstrap.servers = b:9092\nA->B.enabled = true\n"
    )
    settings = load_settings(config, env={}).settings
    flow = settings.flows[FLOW]
    progress = ProgressStore(flow, settings.cluster("B"))
    source, target = settings.cluster("A"), settings.cluster("B")
    task = SourceTask(
        flow, 0, source, target, make_policy(flow), progress, controls=controls, throttle=lambda: throttle
    )
    task.set_partitions({("t", 0), ("t", 1)})
    task._partitions_changed.clear()  # assigned already (the reader is the test's)
    return task


async def test_a_halt_retry_paused_by_an_operator_goes_on_after_the_resume(tmp_path: Path) -> None:
    """A halted partition's retry has resumed it (its halt record not fetched yet) when an operator pauses
    the topic: the resume must let the retry go on. (It stayed paused for good: the gate keeps halted
    partitions paused for their retry, and a retry under way is never started again.)"""
    controls = Controls(FLOW)
    task = _task(tmp_path, controls)
    tp = ("t", 0)
    task._halting.rejected(RecordRejected("InvalidTimestampError", topic="t", partition=0, offset=5, count=1))
    reader: Any = SteppedReader()
    reader.paused.add(tp)  # halted: the assignment (or the cut) paused it
    task._halting._retry_at[tp] = 0.0
    await task._fetch(reader)  # the retry is due: the partition fetches its halt record again
    assert tp in task._halting.retrying and tp not in reader.paused
    controls.apply(pause_key(FLOW, "t"), stamp("x", 1.0))
    await task._fetch(reader)
    assert reader.paused == {("t", 0), ("t", 1)}
    controls.apply(*_resume(FLOW, "t"))
    for _ in range(3):
        task._halting._retry_at[tp] = 0.0
        await task._fetch(reader)
    assert reader.paused == set(), "the halted partition's retry never fetches its record again"


class LateAck:
    """A target batch acknowledged when the test says so."""

    def __init__(self) -> None:
        self.acknowledged = False
        self.arrived = asyncio.Event()

    async def ack(self, shield: bool = False) -> SimpleNamespace:
        await self.arrived.wait()
        self.acknowledged = True
        return SimpleNamespace(base_offset=1000)

    def ignore_failure(self) -> None:
        pass


async def test_a_batch_sent_before_a_progress_reset_and_acknowledged_after_it_does_not_undo_it(
    tmp_path: Path,
) -> None:
    """Records 100..119 of t-0 are in flight (the target is slow: its acknowledgement takes longer than
    the 10 s a reset waits after the pause) when a reset stores offset 49 and the task re-reads it. The
    late acknowledgement must not bring back the old position: neither stored over the reset, nor where
    the partition is read from at the next assignment."""
    controls = Controls(FLOW)
    task = _task(tmp_path, controls)
    progress = FakeProgress()
    task.progress = task._gate._progress = progress  # type: ignore[assignment]
    tp = ("t", 0)
    positions = task._positions
    positions.acked[tp], positions.position[tp] = 99, 120
    late = LateAck()
    records = [
        SimpleNamespace(offset=o, timestamp=1_700_000_000_000 + o, value=b"v") for o in range(100, 120)
    ]
    entry = InFlight(tp, "A.t", records[-1].timestamp, 20, [(late, Chunk.of(records))])  # type: ignore[list-item]
    await task._inflight.put([entry])
    acker = asyncio.create_task(task._ack_loop())

    progress.loaded = {tp: 49}  # `mirror progress reset --to-offset 50`, then its announcement
    task.reset_progress(Reset("r1", "t", "x", 1.0))
    await task._gate.reload(task._partitions)
    assert positions.next_offset(tp) == 50

    late.arrived.set()  # the target's late acknowledgement
    await task._inflight.end()
    await acker
    await positions.store(progress)  # the flush loop
    assert progress.stored == [], "the reset was overwritten with the progress from before it"
    assert positions.next_offset(tp) == 50


async def test_a_task_waiting_on_its_throttle_is_not_stuck(tmp_path: Path) -> None:
    """A record larger than what the task's throttle lets through in ``task.stuck.timeout.seconds`` (a
    1 MB record at a 3 KB/s share takes longer than the default 300 s): waiting for it is no standstill.
    (It was: the session restarted, fetched the record again and charged it again, for ever.)"""
    big = SimpleNamespace(offset=0, timestamp=1_700_000_000_000, key=None, value=b"x" * 1500, headers=[])
    task = _task(tmp_path, Controls(FLOW), throttle=1000.0)
    task._stuck.timeout = 0.4
    reader: Any = SteppedReader([SourceBatch("t", 0, [big])])
    task._stuck.session_started()
    watchdog = asyncio.create_task(task._stuck.loop(lambda: {("t", 0): 1}))
    batches = await task._fetch(reader)  # 1.5 s of the rate
    assert not watchdog.done(), "the throttle's wait was taken for a stuck task"
    assert [r.offset for b in batches for r in b.records] == [0]
    watchdog.cancel()


async def test_a_fetch_held_by_the_throttle_is_dropped_when_a_progress_reset_arrives_meanwhile(
    tmp_path: Path,
) -> None:
    """A reset announced while the task waits for its throttle with records of the old position in hand:
    they are dropped (read again from the re-read progress), not sent. Exactly once they would commit
    the old progress over the reset, with nothing to tell the operator."""
    task = _task(tmp_path, Controls(FLOW), throttle=1000.0)
    record = SimpleNamespace(offset=7, timestamp=1_700_000_000_000, key=None, value=b"x" * 1500, headers=[])
    reader: Any = SteppedReader([SourceBatch("t", 0, [record])])
    asyncio.get_running_loop().call_later(0.3, task.reset_progress, Reset("r1", "t", "x", 1.0))
    assert await task._fetch(reader) == []


async def test_a_reset_whose_progress_read_fails_is_still_applied_by_the_next_session() -> None:
    """Re-reading the stored progress after a reset fails (the target is briefly unreachable): the session
    fails and the next one reads the stored progress at its start. The task must not keep its old
    acknowledged position meanwhile, or that next session reads from it, and stores it over the reset."""
    controls = Controls(FLOW)
    gate, positions, progress = _gate(controls)
    tp = ("t", 0)
    positions.position, positions.acked = {tp: 100}, {tp: 99}

    async def unreachable() -> dict[tuple[str, int], int]:
        raise KafkaUnavailable("B unreachable")

    progress.load = unreachable  # type: ignore[method-assign]
    assert gate.request_reload(Reset("r1", "t", "x", 1.0))
    with pytest.raises(KafkaUnavailable):
        await gate.reload({tp})
    positions.load(StoredProgress({tp: 49}))  # the next session's start
    assert positions.next_offset(tp) == 50


@pytest.mark.parametrize("turns", range(6))
async def test_the_lag_loop_ends_when_cancelled_as_the_end_offsets_come_in(
    turns: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The session stops (or a sibling loop failed) and cancels the loop keeping paused partitions' lag
    current in the turn of the loop in which the source's end offsets come in: the loop ends. (On Python
    3.11 the reader's ``asyncio.wait_for`` returned the offsets and dropped the cancellation: the loop
    polled on for ever, and the session, waiting for it, never stored its final progress nor ended.)"""
    monkeypatch.setattr(pausing, "LAG_INTERVAL", 0.01)
    asked, answer = asyncio.Event(), asyncio.Event()

    async def end_offsets(partitions: list[Any]) -> dict[Any, int]:
        asked.set()
        await answer.wait()
        return {tp: 10 for tp in partitions}

    reader = Reader(ClusterSettings(alias="A", bootstrap_servers="127.0.0.1:1"), "t", {}, "read_committed")
    monkeypatch.setattr(reader._offsets, "end_offsets", end_offsets)
    gate, _, _ = _gate(Controls(FLOW))
    gate.paused = {("t", 0)}
    lags = asyncio.create_task(gate.lag_loop(reader))
    await asyncio.wait_for(asked.wait(), 1)
    try:
        assert await ends_cancelled(lags, answer, turns), "the cancelled lag loop polls on"
    finally:
        await reader._offsets.stop()
