"""Guarantees that hold without a broker: a failed fetch leaves no sends behind, a timed-out close ends
the producer's sender, a refused batch is located and then halts its partition, a membership can be
run again after it failed, and client overrides that would void the guarantees are refused."""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, TypeVar

import pytest
import structlog
from aiokafka.record.default_records import DefaultRecordBatchBuilder

from mirror import metrics
from mirror.config import ConfigError, load_settings
from mirror.errors import KafkaUnavailable, MergedBatchRefused, RecordRejected
from mirror.kafka import Pending, SourceBatch, Writer
from mirror.kafka.batches import Chunk, crc32c, pieces, split
from mirror.replication.inflight import InFlight as _InFlight
from mirror.replication.progress import ProgressStore
from mirror.replication.task import SourceTask, _unwrapped
from mirror.replication.topology import make_policy
from mirror.types import TP

_Q = TypeVar("_Q")

BASE = "clusters = A, B\nA.bootstrap.servers = a:9092\nB.bootstrap.servers = b:9092\nA->B.enabled = true\n"


def _task(tmp_path: Path, extra: str = "") -> SourceTask:
    config = tmp_path / "mm2.properties"
    config.write_text(BASE + extra)
    settings = load_settings(config, env={}).settings
    flow = settings.flows["A->B"]
    task = SourceTask(
        flow,
        0,
        settings.cluster("A"),
        settings.cluster("B"),
        make_policy(flow),
        ProgressStore(flow, settings.cluster("B")),
    )
    task.set_partitions({("t", 0), ("t", 1)})
    return task


class _Pieces:
    """A fake writer's target batches: ``size`` records each (or what the task asks)."""

    size = 0

    def pieces(self, chunks: list[Chunk], per_batch: int = 0) -> list[Chunk]:
        return pieces(chunks, per_batch or self.size, 1 << 40)


def _records(first: int, count: int) -> list[Any]:
    return [
        SimpleNamespace(offset=o, timestamp=1_700_000_000_000 + o, key=None, value=b"v", headers=[])
        for o in range(first, first + count)
    ]


# --- item 6: a failed send of a fetch cancels its siblings -------------------------------------------------


class FakeWriter(_Pieces):
    """send_chunk of partition 0 fails at once; partition 1's waits for buffer space (forever)."""

    def __init__(self) -> None:
        self.waiting = asyncio.Event()
        self.cancelled = False
        self.per_batch: list[int] = []

    async def send_chunk(
        self, topic: str, partition: int, chunk: Chunk, *, mergeable: bool = True, linger: bool = True
    ) -> Any:
        self.per_batch.append(chunk.count)
        if partition == 0:
            await self.waiting.wait()
            raise KafkaUnavailable("target gone")
        try:
            self.waiting.set()
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        return []


async def test_a_failed_send_cancels_its_siblings_before_the_session_ends(tmp_path: Path) -> None:
    """An orphaned send still waiting for buffer space would later overwrite the next session's read
    position: when one send of a fetch fails, the others are cancelled and awaited first."""
    task = _task(tmp_path)
    task._positions.position = {}
    writer = FakeWriter()
    batches = [SourceBatch("t", 0, _records(0, 3)), SourceBatch("t", 1, _records(10, 3))]
    with pytest.raises(ExceptionGroup) as info:
        await task._delivery.send_all(writer, batches)  # type: ignore[arg-type]
    assert info.group_contains(KafkaUnavailable)
    assert writer.cancelled  # the sibling is gone, not left running
    await asyncio.sleep(0.05)
    assert task._positions.position == {}  # and it never recorded a position


# --- item 1: a refused batch is located, narrowed to one record, then halts its partition --------------


def _refused_entry(tp: TP, records: list[Any], sizes: list[int], refused_at: int) -> _InFlight:
    loop = asyncio.get_running_loop()
    futures = []
    start = 0
    for i, n in enumerate(sizes):
        fut: asyncio.Future[Any] = loop.create_future()
        if i < refused_at:
            fut.set_result(SimpleNamespace(offset=100 + start))
        else:
            from aiokafka.errors import InvalidTimestampError  # noqa: PLC0415

            fut.set_exception(InvalidTimestampError())
        futures.append((Pending(fut), Chunk.of(records[start : start + n])))
        start += n
    return _InFlight(tp, "A.t", records[-1].timestamp, 10, futures)


class Target(_Pieces):
    """A fake target partition: batches of ``size`` records (or what the task asks); a batch holding an
    offset in ``bad`` is refused (InvalidTimestamp), one of more than ``max_records`` too (size); a batch
    behind a refused one is refused as out of sequence. ``written`` is what the target holds."""

    def __init__(self, size: int, bad: frozenset[int] = frozenset(), max_records: int = 0) -> None:
        self.size, self.bad, self.max_records = size, bad, max_records
        self.written: list[int] = []
        self.batches = 0
        self.chunks: list[list[int]] = []  # the offsets of every batch sent, in order
        self.dead: list[Any] = []  # what the dead-letter topic holds
        self.dead_refuses = False
        self.merged_ok: list[tuple[int, bool]] = []  # (records, mergeable) of every batch sent

    #: a batch of this producer was refused: the ones after it are refused as out of sequence
    behind_refused = False

    async def send(
        self,
        topic: str,
        key: Any,
        value: Any,
        partition: int,
        timestamp_ms: Any = None,
        *,
        headers: Any = None,
        mergeable: bool = True,
    ) -> Any:
        from aiokafka.errors import MessageSizeTooLargeError  # noqa: PLC0415

        assert topic.startswith("mm2-dead-letter.")
        fut0: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self.dead_refuses:
            fut0.set_exception(MessageSizeTooLargeError())
        else:
            self.dead.append(SimpleNamespace(key=key, value=value, timestamp=timestamp_ms, headers=headers))
            fut0.set_result(SimpleNamespace(offset=len(self.dead) - 1))
        return Pending(fut0)

    async def send_chunk(
        self, topic: str, partition: int, piece: Chunk, *, mergeable: bool = True, linger: bool = True
    ) -> Any:
        from aiokafka.errors import (  # noqa: PLC0415
            InvalidTimestampError,
            MessageSizeTooLargeError,
            OutOfOrderSequenceNumber,
        )

        chunk = [r.offset for r in piece.records]
        self.merged_ok.append((len(chunk), mergeable))
        self.batches += 1
        self.chunks.append(chunk)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self.behind_refused:
            fut.set_exception(OutOfOrderSequenceNumber())
        elif self.max_records and len(chunk) > self.max_records:
            fut.set_exception(MessageSizeTooLargeError())
            self.behind_refused = True
        elif self.bad & set(chunk):
            fut.set_exception(InvalidTimestampError())
            self.behind_refused = True
        else:
            self.written += chunk
            fut.set_result(SimpleNamespace(offset=len(self.written) - len(chunk)))
        return Pending(fut)


def _raw_chunks(records: list[Any], start: int, size: int) -> list[Chunk]:
    """``records`` as a fetch from ``start`` hands them out: source batches of ``size`` consecutive
    offsets passed through as bytes; the batch holding ``start`` decoded and cut there (as the fetcher
    does), as is every batch with offset gaps."""
    out = []
    for first in range(records[0].offset, records[-1].offset + 1, size):
        rs = [r for r in records if first <= r.offset < first + size]
        if not rs or rs[-1].offset < start:
            continue
        if rs[0].offset < start or rs[-1].offset - rs[0].offset + 1 != len(rs):
            out.append(Chunk.of([r for r in rs if r.offset >= start]))
            continue
        builder = DefaultRecordBatchBuilder(2, 0, 0, -1, -1, -1, 1 << 30)
        for r in rs:
            builder.append(r.offset - rs[0].offset, r.timestamp, r.key, r.value, r.headers)
        raw = builder.build()
        struct.pack_into(">qi", raw, 0, rs[0].offset, len(raw) - 12)
        struct.pack_into(">I", raw, 17, crc32c(memoryview(raw)[21:]))
        [batch] = split(bytes(raw))
        out.append(Chunk(batch))
    return out


async def _sessions(
    task: SourceTask, target: Target, records: list[Any], limit: int = 40, raw: int = 0
) -> int:
    """Run fetch-send-ack sessions over ``records`` (partition ("t", 0)) until everything not halted is
    copied; each session has a new producer, as a real one. Returns the number of sessions. ``raw``:
    the source batches hold that many offsets each and are passed through (`_raw_chunks`)."""
    tp = ("t", 0)
    for session in range(1, limit + 1):
        target.behind_refused = False  # a new producer
        task._delivery.confirmed = {}
        task._positions.position = {}
        start = task._positions.acked.get(tp, records[0].offset - 1) + 1
        batch = [r for r in records if r.offset >= start]
        fetched = []
        if batch:
            chunks = _raw_chunks(records, start, raw) if raw else [Chunk.of(batch)]
            fetched = [SourceBatch("t", 0, chunks=chunks)]
        kept = task._halting.cut(FakeReader(), fetched)  # type: ignore[arg-type]
        if not kept:
            return session

        async def one() -> None:
            for entry in await task._delivery.send_all(target, kept):  # type: ignore[arg-type]  # noqa: B023
                await task._delivery.complete(entry)

        try:
            await _unwrapped(one())
        except RecordRejected as exc:
            task._halting.rejected(exc)
        except MergedBatchRefused:
            pass  # a new session at once, as the task's: the range goes unmerged
    raise AssertionError(f"not done after {limit} sessions")


async def test_a_refused_record_is_found_by_halving_and_halts_its_partition(tmp_path: Path) -> None:
    """At-least-once: 200 records, the target refuses offset 137. Everything before it is copied, in
    order and once; the partition halts at 137, named; nothing after it is written."""
    task = _task(tmp_path)
    target = Target(size=100, bad=frozenset({137}))
    with structlog.testing.capture_logs() as logs:
        sessions = await _sessions(task, target, _records(0, 200))
    assert target.written == list(range(137))
    assert task.status.halted[("t", 0)].offset == 137
    assert "InvalidTimestampError" in task.status.halted[("t", 0)].reason
    assert sessions <= 10  # halving: log2(100) + a few, not one session per record
    # while narrowing down, no batch may be merged with its neighbours (a refusal must be exact)
    probing = [ok for n, ok in target.merged_ok if n < 100]  # the batches halving made smaller
    assert probing and not any(probing)
    assert [e["offset"] for e in logs if e["log_level"] == "error"] == [137]
    gauge = metrics.REGISTRY.get_sample_value(
        "mirror_partition_halted", {"source": "A", "target": "B", "topic": "A.t", "partition": "0"}
    )
    assert gauge == 1


async def test_batches_too_large_for_the_target_are_split_until_they_fit(tmp_path: Path) -> None:
    """The remote topic takes at most 30 records per batch: batches are halved until they fit and stay
    that size afterwards; nothing halts, nothing is lost or repeated."""
    task = _task(tmp_path)
    target = Target(size=100, max_records=30)
    sessions = await _sessions(task, target, _records(0, 200))
    assert target.written == list(range(200))
    assert not task.status.halted and task._halting.cap[("t", 0)] == 25
    assert sessions <= 6
    refused_before = target.batches
    await _sessions(task, target, _records(200, 100))
    assert target.written == list(range(300))
    assert target.batches - refused_before == 4  # 100 records in batches of 25, none refused


async def test_a_refused_first_batch_reports_its_range(tmp_path: Path) -> None:
    task = _task(tmp_path)
    # at-least-once: batches of 4 and 6 records (offsets 20..29); the second is refused
    entry = _refused_entry(("t", 0), _records(20, 10), [4, 6], refused_at=1)
    with pytest.raises(RecordRejected) as info:
        await task._delivery.complete(entry)
    exc = info.value
    assert (exc.topic, exc.partition, exc.offset, exc.count, exc.last_offset) == ("t", 0, 24, 6, 29)
    assert "InvalidTimestampError" in exc.reason
    # the first batch counts
    assert task._positions.acked[("t", 0)] == 23 and ("t", 0) in task._positions.dirty
    task._halting.rejected(exc)
    assert task._halting.probing == {("t", 0): (29, 3)} and not task.status.halted


class FakeReader:
    def __init__(self) -> None:
        self.paused: list[TP] = []
        self.resumed: list[TP] = []
        self.seeks: list[tuple[TP, int]] = []

    def pause(self, partitions: list[TP]) -> None:
        self.paused += partitions

    def resume(self, partitions: list[TP]) -> None:
        self.resumed += partitions

    def seek(self, positions: dict[TP, int]) -> None:
        self.seeks += list(positions.items())


def test_records_from_the_halt_offset_on_are_never_sent(tmp_path: Path) -> None:
    task = _task(tmp_path)
    task._halting.rejected(RecordRejected("InvalidTimestampError", topic="t", partition=0, offset=5, count=1))
    reader = FakeReader()
    kept = task._halting.cut(
        reader,  # type: ignore[arg-type]
        [
            SourceBatch("t", 0, _records(2, 6)),
            SourceBatch("t", 1, _records(0, 9)),
            SourceBatch("t", 0, _records(8, 2)),
        ],
    )
    assert [(b.partition, [r.offset for r in b.records]) for b in kept] == [
        (0, [2, 3, 4]),
        (1, list(range(9))),
    ]
    assert reader.paused == [("t", 0), ("t", 0)]


class QueueingWriter(_Pieces):
    """Queues target batches of ``size`` records; the batch starting at ``refused`` is refused."""

    def __init__(self, size: int, refused: int) -> None:
        self.size, self.refused = size, refused
        self.sent: list[list[int]] = []
        self.lingers: list[bool] = []

    async def send_chunk(
        self, topic: str, partition: int, chunk: Chunk, *, mergeable: bool = True, linger: bool = True
    ) -> Any:
        from aiokafka.errors import InvalidTimestampError  # noqa: PLC0415

        self.sent.append([r.offset for r in chunk.records])
        self.lingers.append(linger)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if chunk.first_offset == self.refused:
            fut.set_exception(InvalidTimestampError())
        else:
            fut.set_result(SimpleNamespace(offset=0))
        return Pending(fut)


async def test_at_least_once_sends_nothing_behind_a_new_producers_first_batch_until_it_is_in(
    tmp_path: Path,
) -> None:
    """A broker keeps no sequence state for a new producer: batches queued behind a refused first batch
    would be accepted, past the missing records. So the first batch goes alone."""
    task = _task(tmp_path)
    writer = QueueingWriter(size=4, refused=30)
    with pytest.raises(ExceptionGroup) as info:
        await task._delivery.send_all(writer, [SourceBatch("t", 0, _records(30, 10))])  # type: ignore[arg-type]
    refused = info.value.exceptions[0]
    assert isinstance(refused, RecordRejected)
    assert (refused.offset, refused.count) == (30, 4)
    assert writer.sent == [[30, 31, 32, 33]]  # nothing behind it was queued
    assert writer.lingers == [False]  # and it did not linger: it is awaited, nothing comes behind it

    # once the partition's first batch is in, the rest is pipelined as usual
    writer = QueueingWriter(size=4, refused=-1)
    [entry] = await task._delivery.send_all(writer, [SourceBatch("t", 0, _records(30, 10))])  # type: ignore[arg-type]
    assert writer.sent == [[30, 31, 32, 33], [34, 35, 36, 37], [38, 39]]
    assert [(c.first_offset, c.count) for _f, c in entry.futures] == [(30, 4), (34, 4), (38, 2)]
    await task._delivery.send_all(writer, [SourceBatch("t", 0, _records(40, 10))])  # type: ignore[arg-type]
    assert writer.sent[3:] == [[40, 41, 42, 43], [44, 45, 46, 47], [48, 49]]
    assert writer.lingers == [False] + [True] * 5


# --- item 7: a close that times out still ends the producer's sender ---------------------------------------


async def test_a_close_that_times_out_ends_the_sender_and_the_connections() -> None:
    """aiokafka's stop() cut short leaves its sender retrying: it would deliver stale batches later."""
    sender_task = asyncio.ensure_future(asyncio.sleep(3600))
    closed_client = asyncio.Event()

    async def hanging_stop() -> None:
        await asyncio.sleep(3600)

    async def client_close() -> None:
        closed_client.set()

    writer = Writer.__new__(Writer)
    writer._producer = SimpleNamespace(  # type: ignore[assignment]
        stop=hanging_stop,
        _sender=SimpleNamespace(sender_task=sender_task),
        client=SimpleNamespace(close=client_close),
    )
    await writer.close(timeout=0.2)
    await asyncio.sleep(0)
    assert sender_task.cancelled()
    assert closed_client.is_set()


# --- item 5: a membership can run again after it failed ----------------------------------------------------


async def test_a_failed_membership_runs_again_with_a_new_consumer(monkeypatch: pytest.MonkeyPatch) -> None:
    from mirror.kafka import coordination  # noqa: PLC0415

    made: list[Any] = []

    class FakeConsumer:
        def __init__(self, **kwargs: Any) -> None:
            self.kwargs, self.started, self.stopped = kwargs, 0, False
            made.append(self)

        async def start(self) -> None:
            if self.stopped:
                raise AssertionError("an aiokafka consumer cannot start again once stopped")
            self.started += 1
            from aiokafka.errors import KafkaConnectionError  # noqa: PLC0415

            raise KafkaConnectionError("coordinator gone")

        async def stop(self) -> None:
            self.stopped = True

    monkeypatch.setattr(coordination, "AIOKafkaConsumer", FakeConsumer)
    settings = load_settings_text(
        BASE + "B.consumer.session.timeout.ms = 12000\nB.consumer.isolation.level = read_uncommitted\n"
    )

    async def nothing(*_: Any) -> None:
        return None

    membership = coordination.GroupMembership(
        settings.cluster("B"),
        "g",
        ["mm2-tasks.A.internal"],
        on_assigned=nothing,
        on_revoked=nothing,
        client_id="w",
    )
    for _ in range(2):
        with pytest.raises(KafkaUnavailable):
            await membership.run(asyncio.Event(), nothing)
    assert len(made) == 2 and all(c.started == 1 and c.stopped for c in made)
    assert made[0].kwargs["session_timeout_ms"] == 12000  # the cluster's override is honoured, once


def load_settings_text(text: str) -> Any:
    import tempfile  # noqa: PLC0415

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "mm2.properties"
        path.write_text(text)
        return load_settings(path, env={}).settings


def test_the_leaders_task_counts_travel_in_the_assignment() -> None:
    from aiokafka.coordinator.protocol import ConsumerProtocolMemberMetadata  # noqa: PLC0415

    from mirror.kafka.coordination import TaskAssignor, decode_task_counts  # noqa: PLC0415

    cluster = SimpleNamespace(
        partitions_for_topic=lambda t: {0, 1, 2, 3} if t == "mm2-tasks.A.internal" else {0}
    )
    members = {
        "m1": ConsumerProtocolMemberMetadata(0, ["mm2-tasks.A.internal", "mm2-tasks.C.internal"], b""),
        "m2": ConsumerProtocolMemberMetadata(0, ["mm2-tasks.A.internal", "mm2-tasks.C.internal"], b""),
    }
    out = TaskAssignor().assign(cluster, members)
    member = TaskAssignor()
    member.on_assignment(out["m2"])
    assert member.task_counts == {"mm2-tasks.A.internal": 4, "mm2-tasks.C.internal": 1}
    assert sorted(p for a in out.values() for _t, ps in a.assignment for p in ps) == [0, 0, 1, 2, 3]
    assert decode_task_counts(b"") == {} and decode_task_counts(b"not json") == {}


def test_a_lower_tasks_max_leaves_the_surplus_tasks_unassigned() -> None:
    """The tasks topic never shrinks: the leader assigns only its first tasks.max partitions and says so."""
    from aiokafka.coordinator.protocol import ConsumerProtocolMemberMetadata  # noqa: PLC0415

    from mirror.kafka.coordination import TaskAssignor  # noqa: PLC0415

    cluster = SimpleNamespace(partitions_for_topic=lambda t: set(range(6)))
    topics = ["mm2-tasks.A.internal", "mm2-tasks.C.internal"]
    members = {m: ConsumerProtocolMemberMetadata(0, topics, b"") for m in ("m1", "m2")}
    out = TaskAssignor({"mm2-tasks.A.internal": 2, "mm2-tasks.C.internal": 9}).assign(cluster, members)
    assigned = sorted((t, p) for a in out.values() for t, ps in a.assignment for p in ps)
    assert assigned == [("mm2-tasks.A.internal", 0), ("mm2-tasks.A.internal", 1)] + [
        ("mm2-tasks.C.internal", p) for p in range(6)
    ]
    member = TaskAssignor()
    member.on_assignment(out["m1"])
    assert member.task_counts == {"mm2-tasks.A.internal": 2, "mm2-tasks.C.internal": 6}


# --- item 8: overrides that void the guarantees are refused -------------------------------------------------


@pytest.mark.parametrize(
    ("line", "key", "value"),
    [
        ("B.producer.acks = 1", "B.producer.acks", "'1'"),
        ("A->B.producer.acks = 0", "A->B.producer.acks", "'0'"),
        ("A->B.producer.enable.idempotence = false", "A->B.producer.enable.idempotence", "'false'"),
        ("B.producer.enable.idempotence = false", "B.producer.enable.idempotence", "'false'"),
        ("A.consumer.auto.offset.reset = none", "A.consumer.auto.offset.reset", "'none'"),
    ],
)
def test_overrides_that_void_the_guarantees_are_refused(
    tmp_path: Path, line: str, key: str, value: str
) -> None:
    config = tmp_path / "mm2.properties"
    config.write_text(BASE + line + "\n")
    with pytest.raises(ConfigError) as info:
        load_settings(config, env={})
    assert info.value.key == key
    assert f"invalid value {value}" in str(info.value)


@pytest.mark.parametrize(
    "line",
    [
        "B.producer.acks = all",
        "A->B.producer.acks = -1",
        "A->B.producer.enable.idempotence = true",
        "A.consumer.auto.offset.reset = latest",
        "B.consumer.auto.offset.reset = none",  # B's consumers do not read for A->B
        "B->A.producer.acks = 1\nB->A.enabled = false",  # a flow that does not replicate
    ],
)
def test_overrides_that_keep_the_guarantees_are_accepted(tmp_path: Path, line: str) -> None:
    config = tmp_path / "mm2.properties"
    config.write_text(BASE + line + "\n")
    load_settings(config, env={})


class LatestReader:
    """A source whose partitions' ends move on; the task starts partitions without progress at the end."""

    start_at = "latest"

    def __init__(self) -> None:
        self.ends: dict[TP, int] = {("t", 0): 50, ("t", 1): 0}
        self.positions: dict[TP, int | None] = {}

    async def beginning_offsets(self, partitions: list[TP]) -> dict[TP, int]:
        return dict.fromkeys(partitions, 0)

    async def end_offsets(self, partitions: list[TP]) -> dict[TP, int]:
        return {tp: self.ends[tp] for tp in partitions}

    async def assign(self, positions: dict[TP, int | None]) -> None:
        self.positions = dict(positions)


@pytest.mark.parametrize("eos", [False, True])
async def test_latest_is_resolved_once_and_stored_as_progress(tmp_path: Path, eos: bool) -> None:
    """auto.offset.reset=latest: a failed session must not move a partition to its (new) end again, which
    would skip what was written meanwhile; the start is stored as progress so a next owner keeps it."""
    task = _task(tmp_path, "A->B.exactly.once.support = required\n" if eos else "")
    reader = LatestReader()
    await task._assign(reader)  # type: ignore[arg-type]
    assert reader.positions == {("t", 0): 50, ("t", 1): 0}
    reader.ends = {("t", 0): 80, ("t", 1): 7}  # records arrive; the session fails before copying them
    task._positions.position = {}
    if eos:
        task._positions.acked.clear()  # what a new exactly-once session does
    await task._assign(reader)  # type: ignore[arg-type]
    assert reader.positions == {("t", 0): 50, ("t", 1): 0}
    if eos:
        assert task._positions.initial_unstored == {("t", 0): 49}  # committed with the next transaction
    else:
        # stored with the next flush
        assert task._positions.acked == {("t", 0): 49} and task._positions.dirty == {("t", 0)}


def test_a_generations_task_counts_do_not_outlive_it() -> None:
    from mirror.kafka.coordination import TaskAssignor, _Listener  # noqa: PLC0415

    assignor = TaskAssignor()
    assignor.task_counts = {"mm2-tasks.A.internal": 4}
    seen: list[dict[str, int]] = []

    async def assigned(_tasks: Any, counts: dict[str, int]) -> None:
        seen.append(counts)

    async def revoked(_tasks: Any) -> None:
        return None

    listener = _Listener(assignor, assigned, revoked)

    async def rebalance() -> None:
        await listener.on_partitions_revoked([])
        await listener.on_partitions_assigned([])  # a generation under plain round-robin: no counts

    asyncio.run(rebalance())
    assert seen == [{}]


class Transactions(_Pieces):
    """A fake transactional writer: ``calls`` says what it was asked to do."""

    def __init__(self, calls: list[str]) -> None:
        self.calls = calls

    async def begin_transaction(self) -> None:
        self.calls.append("begin")

    async def commit_transaction(self) -> None:
        self.calls.append("commit")

    async def abort_transaction(self) -> None:
        self.calls.append("abort")


async def test_an_exactly_once_start_is_committed_even_when_nothing_is_copied(tmp_path: Path) -> None:
    """A partition started at its end (latest) that then copies nothing — its only record was refused and
    it is halted — still commits where it started: else a restart would start it at the end again, past
    the halted record (seen in a full broker run, where the partition had a task of its own)."""
    task = _task(tmp_path, "A->B.exactly.once.support = required\n")
    task._positions.initial_unstored = {("t", 0): 2}
    task._partitions_changed.clear()
    calls: list[str] = []

    class Reader:
        async def fetch(self, _timeout: int) -> list[SourceBatch]:
            task._stopping.set()  # one round
            return []

    class Progress:
        async def send_with(self, _writer: Any, progress: dict[TP, int], _ids: Any = None) -> list[Any]:
            calls.append(f"progress {progress}")
            return []

    task.progress = Progress()  # type: ignore[assignment]
    await task._transaction_loop(Reader(), Transactions(calls))  # type: ignore[arg-type]
    assert calls == ["begin", "progress {('t', 0): 2}", "commit"]
    assert task._positions.initial_unstored == {} and task._positions.loaded[("t", 0)] == 2


# --- refused records: a halted partition is retried; the opt-in dead-letter policy -------------------------


def _retry_now(task: SourceTask) -> FakeReader:
    """Make every halted partition's retry due, and start it as the task's fetch does."""
    task._halting._retry_at = dict.fromkeys(task._halting._retry_at, 0.0)
    reader = FakeReader()
    task._retry_halted(reader)  # type: ignore[arg-type]
    return reader


def _halted_gauge() -> float | None:
    labels = {"source": "A", "target": "B", "topic": "A.t", "partition": "0"}
    return metrics.REGISTRY.get_sample_value("mirror_partition_halted", labels)


async def test_a_halted_partition_is_retried_and_resumes_by_itself_once_the_target_takes_its_record(
    tmp_path: Path,
) -> None:
    """Offset 137 is refused: the partition halts there. Its retry waits for the backoff; refused again,
    it stays halted (a warning, not another error) and waits twice as long; once the target takes the
    record, sent alone, the partition resumes: every record is on the target once, in order, the gauge is
    back to 0."""
    task = _task(tmp_path, "rejected.records.retry.backoff.ms = 1000\n")
    target = Target(size=100, bad=frozenset({137}))
    records = _records(0, 200)
    tp = ("t", 0)
    with structlog.testing.capture_logs() as logs:
        await _sessions(task, target, records)
        assert task.status.halted[tp].offset == 137 and target.written == list(range(137))
        assert task._halting.due({tp}) == []  # not before its backoff

        reader = _retry_now(task)  # still refused
        assert reader.resumed == [tp] and tp in task._halting.retrying
        await _sessions(task, target, records)
        assert target.chunks[-1] == [137]  # the retry sends the record alone
        assert task.status.halted[tp].offset == 137 and target.written == list(range(137))
        assert tp not in task._halting.retrying
        assert task._halting._backoffs[tp].current == 4.0  # 1 s, then 2 s, then 4 s

        target.bad = frozenset()  # the remote topic is fixed
        _retry_now(task)
        await _sessions(task, target, records)
    assert target.written == list(range(200))
    assert target.chunks[-2:] == [[137], list(range(138, 200))]  # alone, then batches as large as ever
    assert not task.status.halted and not task._halting.retrying
    assert _halted_gauge() == 0
    events = [(e["log_level"], e["event"]) for e in logs if e.get("offset") == 137]
    assert [level for level, _ in events].count("error") == 1, events
    assert ("warning", "target still refuses the record; partition stays halted") in events
    assert ("info", "target took the refused record; partition resumed") in events


def test_a_retry_reads_again_from_the_halted_record_when_the_reader_went_past_it(tmp_path: Path) -> None:
    """The reader fetched past the halted record (records cut, partition paused): the retry seeks it back
    to that record before it resumes; a partition paused before any fetch is only resumed."""
    task = _task(tmp_path)
    task._halting.rejected(RecordRejected("InvalidTimestampError", topic="t", partition=0, offset=5, count=1))
    task._halting.rejected(RecordRejected("InvalidTimestampError", topic="t", partition=1, offset=9, count=1))
    task._halting.cut(FakeReader(), [SourceBatch("t", 0, _records(3, 6))])  # type: ignore[arg-type]
    reader = _retry_now(task)
    assert reader.seeks == [(("t", 0), 5)] and sorted(reader.resumed) == [("t", 0), ("t", 1)]
    assert task._positions.position[("t", 0)] == 5
    # a retrying partition is not cut: its records from the halt on go to the target
    kept = task._halting.cut(FakeReader(), [SourceBatch("t", 0, _records(5, 3))])  # type: ignore[arg-type]
    assert [r.offset for r in kept[0].records] == [5, 6, 7]


async def test_with_the_dead_letter_policy_a_refused_record_goes_there_and_the_partition_goes_on(
    tmp_path: Path,
) -> None:
    """``rejected.records.policy = dead-letter``: offset 137 is refused; it goes to the dead-letter topic
    with its key, value, timestamp and headers, plus headers naming its source topic, partition, offset
    and the reason; it is counted; every other record is copied, in order; progress passes it only once
    it is in the dead-letter topic; and no offset sync maps a source offset to a record it is not."""
    task = _task(tmp_path, "A->B.rejected.records.policy = dead-letter\noffset.lag.max = 0\n")
    target = Target(size=100, bad=frozenset({137}))
    records = _records(0, 200)
    records[137].headers = [("h", b"1")]
    syncs: list[Any] = []
    for _ in range(20):  # session by session, taking the offset syncs each decided
        with contextlib.suppress(AssertionError):  # not done after this session
            await _sessions(task, target, records, limit=1)
        task._syncs._syncs.promote_delayed()
        syncs += task._syncs._syncs.take_pending(10_000)
    assert target.written == [o for o in range(200) if o != 137]
    assert not task.status.halted and task.status.dead_lettered == 1
    [letter] = target.dead
    assert (letter.key, letter.value, letter.timestamp) == (None, b"v", records[137].timestamp)
    headers = dict(letter.headers)
    assert headers["h"] == b"1"
    assert headers["mirror.dead-letter.source.topic"] == b"t"
    assert headers["mirror.dead-letter.source.partition"] == b"0"
    assert headers["mirror.dead-letter.source.offset"] == b"137"
    assert headers["mirror.dead-letter.remote.topic"] == b"A.t"
    assert b"InvalidTimestampError" in headers["mirror.dead-letter.reason"]
    assert task._positions.acked[("t", 0)] == 199
    counted = metrics.REGISTRY.get_sample_value(
        "mirror_dead_lettered_records_total", {"source": "A", "target": "B", "topic": "A.t", "partition": "0"}
    )
    assert counted is not None and counted >= 1
    assert syncs and all(target.written[s.downstream_offset] == s.upstream_offset for s in syncs), syncs
    assert (138, 137) in {(s.upstream_offset, s.downstream_offset) for s in syncs}  # the one after the gap


async def test_a_record_the_dead_letter_topic_refuses_too_halts_its_partition(tmp_path: Path) -> None:
    """Never a silent skip: refused by the remote topic and by the dead-letter topic, the partition halts
    at the record, named with both reasons; once the dead-letter topic takes it, the partition goes on."""
    task = _task(tmp_path, "A->B.rejected.records.policy = dead-letter\n")
    target = Target(size=100, bad=frozenset({137}))
    target.dead_refuses = True
    records = _records(0, 200)
    await _sessions(task, target, records)
    halt = task.status.halted[("t", 0)]
    assert halt.offset == 137 and "dead-letter topic" in halt.reason, halt
    assert target.written == list(range(137)) and target.dead == []
    target.dead_refuses = False
    _retry_now(task)
    await _sessions(task, target, records)
    assert target.written == [o for o in range(200) if o != 137]
    assert len(target.dead) == 1
    assert not task.status.halted and task.status.dead_lettered == 1


async def test_with_the_dead_letter_policy_refused_records_next_to_each_other_all_go_there(
    tmp_path: Path,
) -> None:
    """Offsets 137, 138 and 150 are refused, fetched in one batch: the refusal of 138 comes before 137's
    dead-letter write counted (the session fails inside the batch). Both stay pending, so each reaches
    the dead-letter topic and every other record is copied, in order, in a few sessions (not one
    displacing the other for ever)."""
    task = _task(tmp_path, "A->B.rejected.records.policy = dead-letter\n")
    bad = frozenset({137, 138, 150})
    target = Target(size=100, bad=bad)
    records = _records(0, 200)
    sessions = await _sessions(task, target, records)
    assert target.written == [o for o in range(200) if o not in bad]
    letters = [int(dict(r.headers)["mirror.dead-letter.source.offset"]) for r in target.dead]
    assert sorted(set(letters)) == sorted(bad), letters
    assert not task.status.halted and not task._halting.dead_letter
    assert task._positions.acked[("t", 0)] == 199
    assert sessions <= 25, sessions  # about 7 halvings per refused record


def _merged(queue: list[_Q], mergeable: Callable[[_Q], bool]) -> Iterator[list[_Q]]:
    """Take ``queue``'s sends as the producer batches them: a mergeable one with the mergeable ones
    right behind it, any other alone."""
    while queue:
        group = [queue.pop(0)]
        while mergeable(group[0]) and queue and mergeable(queue[0]):
            group.append(queue.pop(0))
        yield group


class MergingDeadLetters(_Pieces):
    """A fake producer's dead-letter partition that merges what is queued together, as the producer does
    when more is queued than its window takes (`send_queue`): a merged batch the topic refuses fails
    each of its sends with `MergedBatchRefusedError`; a batch of one send, with the topic's own error."""

    def __init__(self) -> None:
        self.queued: list[tuple[asyncio.Future[Any], bool]] = []
        self.mergeable: list[bool] = []

    async def send(self, *_record: Any, mergeable: bool = True, **_fields: Any) -> Any:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if not self.queued:
            asyncio.get_running_loop().call_soon(self._sender)
        self.queued.append((fut, mergeable))
        self.mergeable.append(mergeable)
        return Pending(fut)

    def _sender(self) -> None:
        from aiokafka.errors import MessageSizeTooLargeError  # noqa: PLC0415

        from mirror.kafka.producer import MergedBatchRefusedError  # noqa: PLC0415

        for batch in _merged(self.queued, lambda q: q[1]):
            for fut, _ in batch:
                refused = MessageSizeTooLargeError()
                fut.set_exception(
                    refused if len(batch) == 1 else MergedBatchRefusedError(len(batch), refused)
                )


async def test_dead_letters_refused_there_too_halt_their_partitions_even_when_written_together(
    tmp_path: Path,
) -> None:
    """Two partitions send a refused record each to the dead-letter topic at once, and it refuses them
    too: each partition halts at its record. Merged into one batch by the producer, the refusal would
    name neither (a new session at once, merged again: never halted, sessions without end)."""
    task = _task(tmp_path, "A->B.rejected.records.policy = dead-letter\n")
    for p in (0, 1):
        task._halting.dead_letter[("t", p)] = {5: "InvalidTimestampError"}
    writer = MergingDeadLetters()
    batches = [SourceBatch("t", 0, _records(5, 3)), SourceBatch("t", 1, _records(5, 3))]
    with pytest.raises(ExceptionGroup) as info:
        await task._delivery.send_all(writer, batches)  # type: ignore[arg-type]
    leaves = info.value.exceptions
    assert all(isinstance(e, RecordRejected) for e in leaves), leaves
    assert writer.mergeable == [False, False]
    for exc in leaves:
        assert task._session_failed(exc) is None  # type: ignore[arg-type]
    assert {tp: h.offset for tp, h in task.status.halted.items()} == {("t", 0): 5, ("t", 1): 5}


@pytest.mark.parametrize("policy", ["halt", "dead-letter"])
@pytest.mark.parametrize(("raw", "gaps"), [(7, False), (7, True), (64, False), (1, False)])
async def test_refused_records_in_passed_through_batches_are_found_exactly(
    tmp_path: Path, policy: str, raw: int, gaps: bool
) -> None:
    """The source batches are passed through as bytes (some decoded: offset gaps, or cut where a session
    starts): the refused records are still found exactly, the partition halts at the first one (halt)
    or each goes to the dead-letter topic (dead-letter), every other record is copied once, in order;
    offset syncs map each source offset to its own record."""
    task = _task(tmp_path, f"A->B.rejected.records.policy = {policy}\noffset.lag.max = 0\n")
    records = [r for r in _records(0, 200) if not gaps or r.offset % 11 != 3]
    bad = frozenset({40, 41, 137})
    target = Target(size=30, bad=bad)
    syncs: list[Any] = []
    for _ in range(60):
        with contextlib.suppress(AssertionError):
            await _sessions(task, target, records, limit=1, raw=raw)
        task._syncs._syncs.promote_delayed()
        syncs += task._syncs._syncs.take_pending(10_000)
    offsets = [r.offset for r in records]
    if policy == "halt":
        assert target.written == [o for o in offsets if o < 40]
        assert task.status.halted[("t", 0)].offset == 40
    else:
        assert target.written == [o for o in offsets if o not in bad]
        letters = [int(dict(r.headers)["mirror.dead-letter.source.offset"]) for r in target.dead]
        assert sorted(set(letters)) == sorted(bad)
        assert not task.status.halted
    assert syncs and all(target.written[s.downstream_offset] == s.upstream_offset for s in syncs)


@pytest.mark.parametrize("raw", [7, 64])
async def test_passed_through_batches_too_large_for_the_target_are_split_until_they_fit(
    tmp_path: Path, raw: int
) -> None:
    """The remote topic takes at most 5 records per batch, the source batches are passed through as
    bytes: they are decoded and cut until they fit; nothing halts, nothing is lost or repeated."""
    task = _task(tmp_path)
    target = Target(size=100, max_records=5)
    await _sessions(task, target, _records(0, 300), raw=raw)
    assert target.written == list(range(300))
    assert not task.status.halted and task._halting.cap[("t", 0)] <= 5


class MergingTarget(Target):
    """A `Target` whose producer merges the mergeable batches queued together (within one turn of the
    event loop), as it does when more are queued than its window takes: a merged batch holding a bad
    offset fails each of its sends with `MergedBatchRefusedError`."""

    def __init__(self, size: int, bad: frozenset[int] = frozenset()) -> None:
        super().__init__(size, bad)
        self.queue: list[tuple[Chunk, bool, asyncio.Future[Any]]] = []
        self.merged: list[list[int]] = []  # the offsets of every merged batch sent

    async def send_chunk(
        self, topic: str, partition: int, piece: Chunk, *, mergeable: bool = True, linger: bool = True
    ) -> Any:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if not self.queue:
            asyncio.get_running_loop().call_soon(self._flush)
        self.queue.append((piece, mergeable, fut))
        self.merged_ok.append((piece.count, mergeable))
        return Pending(fut)

    def _flush(self) -> None:
        from aiokafka.errors import InvalidTimestampError, OutOfOrderSequenceNumber  # noqa: PLC0415

        from mirror.kafka.producer import MergedBatchRefusedError  # noqa: PLC0415

        for group in _merged(self.queue, lambda q: q[1]):
            offsets = [r.offset for piece, _, _ in group for r in piece.records]
            if len(group) > 1:
                self.merged.append(offsets)
            self.batches += 1
            self.chunks.append(offsets)
            if self.behind_refused:
                for _, _, fut in group:
                    fut.set_exception(OutOfOrderSequenceNumber())
            elif self.bad & set(offsets):
                self.behind_refused = True
                for _, _, fut in group:
                    refused = InvalidTimestampError()
                    fut.set_exception(
                        refused if len(group) == 1 else MergedBatchRefusedError(len(group), refused)
                    )
            else:
                for piece, _, fut in group:
                    fut.set_result(SimpleNamespace(offset=len(self.written)))
                    self.written += [r.offset for r in piece.records]


@pytest.mark.parametrize("policy", ["halt", "dead-letter"])
@pytest.mark.parametrize("raw", [0, 7])
async def test_a_refused_merged_batch_is_sent_again_unmerged_and_the_refused_record_found(
    tmp_path: Path, policy: str, raw: int
) -> None:
    """The producer merges the batches queued together; one holding a refused record fails each of its
    sends as merged: the range goes again unmerged, the refused record is found exactly and the
    partition halts there (or it goes to the dead-letter topic); every other record is copied once, in
    order, in a bounded number of sessions."""
    task = _task(tmp_path, f"A->B.rejected.records.policy = {policy}\n")
    bad = frozenset({73, 74, 150})
    target = MergingTarget(size=10, bad=bad)
    records = _records(0, 200)
    sessions = await _sessions(task, target, records, limit=60, raw=raw)
    if policy == "halt":
        assert target.written == list(range(73))
        assert task.status.halted[("t", 0)].offset == 73
    else:
        assert target.written == [o for o in range(200) if o not in bad]
        letters = [int(dict(r.headers)["mirror.dead-letter.source.offset"]) for r in target.dead]
        assert sorted(set(letters)) == sorted(bad)
    assert target.merged  # the producer did merge
    assert sessions <= 40, sessions


@pytest.mark.parametrize("halt", [10, 14, 7, 3])
async def test_exactly_once_commits_a_halted_partition_up_to_its_halt_with_passed_through_batches(
    tmp_path: Path, halt: int
) -> None:
    """Exactly once, a fetch of passed-through source batches (7 offsets each) of a partition halted at
    ``halt``: the transaction holds exactly the records before it (the batch holding it cut there, those
    before it passed through whole) and commits that progress, nothing after it."""
    task = _task(tmp_path, "A->B.exactly.once.support = required\n")
    task._halting.rejected(
        RecordRejected("InvalidTimestampError", topic="t", partition=0, offset=halt, count=1)
    )
    task._partitions_changed.clear()
    sent: list[list[int]] = []
    progress: list[dict[TP, int]] = []
    calls: list[str] = []
    records = _records(0, 21)

    class Reader(FakeReader):
        async def fetch(self, _timeout: int) -> list[SourceBatch]:
            task._stopping.set()  # one round
            return [SourceBatch("t", 0, chunks=_raw_chunks(records, 0, 7))]

        def highwater(self, _topic: str, _partition: int) -> int:
            return 21

    class TxnWriter(Transactions):
        async def send_chunk(
            self, _topic: str, _partition: int, chunk: Chunk, *, mergeable: bool = True, linger: bool = True
        ) -> Any:
            sent.append([r.offset for r in chunk.records])
            fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            fut.set_result(SimpleNamespace(offset=sum(len(s) for s in sent) - len(sent[-1])))
            return Pending(fut)

    class Progress:
        async def send_with(self, _writer: Any, last: dict[TP, int], _ids: Any = None) -> list[Any]:
            progress.append(dict(last))
            return []

    task.progress = Progress()  # type: ignore[assignment]
    await task._transaction_loop(Reader(), TxnWriter(calls))  # type: ignore[arg-type]
    assert calls == ["begin", "commit"]
    assert [o for s in sent for o in s] == list(range(halt))
    assert progress == [{("t", 0): halt - 1}]
    whole = [list(range(f, f + 7)) for f in range(0, halt - halt % 7, 7)]
    assert sent[: len(whole)] == whole  # the batches before the halt's went as they were
