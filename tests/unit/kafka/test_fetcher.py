"""`BatchFetcher`'s request and response handling against a fake broker (docs/record-batches.md,
"Fetching"): partial batches, leader errors, an unreachable broker, out-of-range positions, corrupt
batches, seeks while a request is in flight, the buffer bound. Real brokers: tests/integration."""

from __future__ import annotations

import asyncio
import struct
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from types import SimpleNamespace
from typing import Any

import aiokafka.errors as ke
import pytest
import structlog
from aiokafka.record.default_records import DefaultRecordBatchBuilder

from mirror import metrics
from mirror.config import ClusterSettings
from mirror.errors import SourceOutOfRange
from mirror.kafka.batches import CorruptBatch
from mirror.kafka.fetcher import BatchFetcher

TP = ("t", 0)
NOT_LEADER, OUT_OF_RANGE = 6, 1


def batch(base: int, count: int, value_size: int = 10) -> bytes:
    builder = DefaultRecordBatchBuilder(2, 0, 0, -1, -1, -1, 1 << 30)
    for i in range(count):
        builder.append(i, 1_700_000_000_000 + i, None, b"v%05d" % (base + i) + b"x" * value_size, [])
    out = bytearray(builder.build())
    struct.pack_into(">q", out, 0, base)
    return bytes(out)


class Broker:
    """One partition's log of batches on node 1; ``answer`` may be replaced to fail or hold requests."""

    def __init__(self, batches: list[bytes]) -> None:
        self.log = batches
        self.requests: list[tuple[int, int]] = []  # (offset, partition max bytes)
        self.refreshes = 0
        self.cluster = SimpleNamespace(leader_for_partition=lambda tp: 1)
        self.answer: Callable[[int, int], Awaitable[tuple[int, bytes]]] = self.read

    async def read(self, offset: int, max_bytes: int) -> tuple[int, bytes]:
        """The log from the batch holding ``offset``, cut at ``max_bytes`` (a partial batch at the end)."""
        out = b""
        for data in self.log:
            base = struct.unpack_from(">q", data)[0]
            last = base + struct.unpack_from(">i", data, 23)[0]
            if last >= offset:
                out += data
        if offset > (struct.unpack_from(">q", self.log[-1])[0] + 10**6 if self.log else 0):
            return OUT_OF_RANGE, b""
        return 0, out[:max_bytes]

    async def bootstrap(self) -> None: ...

    async def close(self) -> None: ...

    def set_topics(self, topics: list[str]) -> None: ...

    def force_metadata_update(self) -> asyncio.Future[bool]:
        self.refreshes += 1
        done = asyncio.get_running_loop().create_future()
        done.set_result(True)
        return done

    async def send(self, node: int, request: Any) -> Any:
        [(topic, [(partition, offset, max_bytes)])] = request.topics
        self.requests.append((offset, max_bytes))
        code, data = await self.answer(offset, max_bytes)
        part = (partition, code, 1000, 1000, 0, None, -1, data)
        return SimpleNamespace(API_VERSION=11, error_code=0, topics=[(topic, [part])])


@pytest.fixture
async def fetcher() -> AsyncIterator[BatchFetcher]:
    overrides = {"max.partition.fetch.bytes": "1000", "retry.backoff.ms": "10", "fetch.max.bytes": "5000"}
    f = BatchFetcher(
        ClusterSettings(alias="src", bootstrap_servers="127.0.0.1:1"), "t", overrides, "read_committed"
    )
    yield f
    await f.close()


async def start(fetcher: BatchFetcher, broker: Broker, at: int = 0) -> None:
    fetcher._client = broker  # type: ignore[assignment]
    await fetcher.start()
    fetcher.assign({TP: at})


async def values(fetcher: BatchFetcher, until: int, timeout_ms: int = 100) -> list[bytes]:
    out: list[bytes] = []
    for _ in range(200):
        if fetcher.position(TP) >= until:
            return out
        out += [r.value[:6] for b in await fetcher.fetch(timeout_ms) for r in b.records if r.value]
    raise AssertionError(f"position {fetcher.position(TP)}, not {until}")


async def test_a_batch_bigger_than_the_fetch_size_is_asked_for_whole_next(fetcher: BatchFetcher) -> None:
    broker = Broker([batch(0, 3), batch(3, 40, 100), batch(43, 2)])  # the middle one is ~5 KB
    await start(fetcher, broker)
    assert await values(fetcher, 45) == [b"v%05d" % i for i in range(45)]
    sizes = [size for _, size in broker.requests]
    assert sizes[:2] == [1000, 1000] and sizes[2] > 4000, sizes


async def test_leader_errors_refresh_metadata_and_ask_again_without_skipping(fetcher: BatchFetcher) -> None:
    broker = Broker([batch(0, 5), batch(5, 5)])
    errors = [NOT_LEADER, NOT_LEADER]

    async def moving(offset: int, max_bytes: int) -> tuple[int, bytes]:
        return (errors.pop(), b"") if errors else await broker.read(offset, max_bytes)

    broker.answer = moving
    await start(fetcher, broker)
    assert await values(fetcher, 10) == [b"v%05d" % i for i in range(10)]
    assert broker.refreshes >= 2
    assert broker.requests[:3] == [(0, 1000)] * 3


async def test_a_partition_without_a_leader_is_retried_and_logged_until_it_has_one(
    fetcher: BatchFetcher,
) -> None:
    broker = Broker([batch(0, 5)])
    known_at = time.monotonic() + 1.5

    def leader(tp: Any) -> int | None:
        return 1 if time.monotonic() > known_at else None

    broker.cluster = SimpleNamespace(leader_for_partition=leader)
    with structlog.testing.capture_logs() as logs:
        await start(fetcher, broker)
        assert await values(fetcher, 5, timeout_ms=500) == [b"v%05d" % i for i in range(5)]
    assert 8 <= broker.refreshes <= 10, "at once, then after a backoff doubling from 10 ms"
    [warning] = [e for e in logs if e["log_level"] == "warning"]
    assert warning["attempts"] == 8 and warning["topic"] == "t" and warning["reason"] == "no leader known"


async def test_an_unreachable_broker_is_logged_retried_and_fetch_returns_nothing_meanwhile(
    fetcher: BatchFetcher,
) -> None:
    broker = Broker([batch(0, 5)])
    down = [True, True, True]

    async def unreachable(offset: int, max_bytes: int) -> tuple[int, bytes]:
        if down:
            down.pop()
            raise ke.KafkaConnectionError("connection refused")
        return await broker.read(offset, max_bytes)

    broker.answer = unreachable
    with structlog.testing.capture_logs() as logs:
        await start(fetcher, broker)
        assert await fetcher.fetch(5) == []
        assert await values(fetcher, 5) == [b"v%05d" % i for i in range(5)]
    warnings = [e for e in logs if e["log_level"] == "warning"]
    assert [e["failures"] for e in warnings] == [1, 2, 3]
    assert "KafkaConnectionError" in warnings[0]["error"]
    assert any(e["event"] == "fetch: broker answers again" for e in logs)


async def test_out_of_range_comes_after_what_was_buffered_and_stays_until_a_seek(
    fetcher: BatchFetcher,
) -> None:
    broker = Broker([batch(0, 5), batch(5, 5)])

    async def deleted_from_10(offset: int, max_bytes: int) -> tuple[int, bytes]:
        return (OUT_OF_RANGE, b"") if offset >= 10 else await broker.read(offset, max_bytes)

    broker.answer = deleted_from_10
    await start(fetcher, broker)
    assert await values(fetcher, 10) == [b"v%05d" % i for i in range(10)]
    for _ in range(2):
        with pytest.raises(SourceOutOfRange) as raised:
            for _ in range(50):
                await fetcher.fetch(20)
        assert raised.value.positions == {TP: 10}
    assert fetcher.position(TP) == 10
    fetcher.seek({TP: 3})
    assert await values(fetcher, 10) == [b"v%05d" % i for i in range(3, 10)]


async def test_a_corrupt_batch_is_an_error_naming_partition_and_offset(fetcher: BatchFetcher) -> None:
    damaged = bytearray(batch(5, 5))
    damaged[-1] ^= 0xFF
    broker = Broker([batch(0, 5), bytes(damaged)])
    await start(fetcher, broker)
    got = await values(fetcher, 5)
    assert got == [b"v%05d" % i for i in range(5)]
    with pytest.raises(CorruptBatch, match="t-0 at offset 5"):
        for _ in range(50):
            assert await fetcher.fetch(20) == []
    assert fetcher.position(TP) == 5


async def test_a_response_to_a_request_sent_before_a_seek_is_not_used(fetcher: BatchFetcher) -> None:
    broker = Broker([batch(0, 10)])
    held, release = asyncio.Event(), asyncio.Event()

    async def slow(offset: int, max_bytes: int) -> tuple[int, bytes]:
        held.set()
        await release.wait()
        return await broker.read(offset, max_bytes)

    broker.answer = slow
    await start(fetcher, broker)
    await held.wait()
    fetcher.seek({TP: 7})
    release.set()
    assert await values(fetcher, 10) == [b"v%05d" % i for i in range(7, 10)]
    assert [offset for offset, _ in broker.requests][:2] == [0, 7]


async def test_fetching_stops_at_the_buffer_bound_and_goes_on_when_the_caller_takes(
    fetcher: BatchFetcher,
) -> None:
    broker = Broker([batch(i * 10, 10, 40) for i in range(100)])  # ~600 bytes each
    await start(fetcher, broker)
    await asyncio.sleep(0.3)
    asked = len(broker.requests)
    assert 4000 <= fetcher.buffered <= 5000 + 1000, "up to the bound, plus at most one response"
    await asyncio.sleep(0.3)
    assert len(broker.requests) == asked, "not asked for more while the buffer is full"
    assert await values(fetcher, 1000) == [b"v%05d" % i for i in range(1000)]


def sample(name: str, flow: tuple[str, str], **labels: str) -> float:
    value = metrics.REGISTRY.get_sample_value(name, {"source": flow[0], "target": flow[1], **labels})
    return 0.0 if value is None else value


async def test_requests_errors_round_trips_and_buffered_bytes_are_counted_per_flow() -> None:
    """Every request counts once (answered ones with their round trip), each error by its Kafka name, and
    the buffered-bytes gauge follows what is held, back to 0 when the fetcher closes."""
    flow = (f"src-{uuid.uuid4().hex[:6]}", "tgt")
    overrides = {"max.partition.fetch.bytes": "1000", "retry.backoff.ms": "10", "fetch.max.bytes": "5000"}
    settings = ClusterSettings(alias="src", bootstrap_servers="127.0.0.1:1")
    fetcher = BatchFetcher(settings, "t", overrides, "read_committed", metrics.FetchMeters(*flow))
    broker = Broker([batch(i * 10, 10, 40) for i in range(20)])
    failures = [ke.KafkaConnectionError("refused"), NOT_LEADER]

    async def flaky(offset: int, max_bytes: int) -> tuple[int, bytes]:
        if failures:
            failure = failures.pop()
            if isinstance(failure, Exception):
                raise failure
            return failure, b""
        return await broker.read(offset, max_bytes)

    broker.answer = flaky
    try:
        await start(fetcher, broker)
        await wait_until(lambda: fetcher.buffered >= 4000)
        assert sample("mirror_fetch_buffered_bytes", flow) == fetcher.buffered
        assert await values(fetcher, 200) == [b"v%05d" % i for i in range(200)]
        assert sample("mirror_fetch_buffered_bytes", flow) == fetcher.buffered
    finally:
        await fetcher.close()
    assert sample("mirror_fetch_buffered_bytes", flow) == 0
    requests = len(broker.requests)
    assert sample("mirror_fetch_requests_total", flow) == requests
    assert sample("mirror_fetch_request_seconds_count", flow) == requests - 1  # the refused connection
    assert sample("mirror_fetch_errors_total", flow, error="NotLeaderForPartitionError") == 1
    assert sample("mirror_fetch_errors_total", flow, error="KafkaConnectionError") == 1


async def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def _held(broker: Broker) -> asyncio.Event:
    """Every request waits (for ever): the fetcher's driver sits waiting to be woken. Set when one came."""
    held = asyncio.Event()

    async def never(offset: int, max_bytes: int) -> tuple[int, bytes]:
        held.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    broker.answer = never
    return held


async def test_close_ends_the_fetcher_also_when_it_is_woken_as_it_is_cancelled(fetcher: BatchFetcher) -> None:
    """A wake-up (a response, a resume, the caller taking what is buffered) in the same turn of the loop as
    the close's cancellation, while the driver waits with a timeout (a backoff, a partition without a
    leader): on Python 3.11 ``asyncio.wait_for`` then returns the wake-up and drops the cancellation, and
    the driver ran on for ever, with ``close`` waiting for it (a task session that never ended: a topic
    re-created with fewer partitions never copied)."""
    broker = Broker([batch(0, 5)])
    held = await _held(broker)
    # a second partition without a leader (a deleted one, say) keeps the driver in a timed wait
    broker.cluster = SimpleNamespace(leader_for_partition=lambda tp: 1 if tp.partition == 0 else None)
    await start(fetcher, broker)
    fetcher.assign({TP: 0, ("t", 1): 0})
    await held.wait()
    await asyncio.sleep(0.05)
    main = fetcher._main
    assert main is not None
    fetcher.resume([TP])  # wakes the driver
    try:
        await asyncio.wait_for(fetcher.close(), 2)
    finally:
        main.cancel()  # (should the close not have ended it)
    assert main.done()


async def test_a_fetch_cancelled_as_data_comes_in_is_cancelled(fetcher: BatchFetcher) -> None:
    """The caller's cancellation (its task group ending) is never dropped for a response arriving in the
    same turn of the loop: the fetch raises CancelledError instead of waiting on until its timeout."""
    broker = Broker([batch(0, 5)])
    held = await _held(broker)
    await start(fetcher, broker)
    await held.wait()
    waiting = asyncio.create_task(fetcher.fetch(3000))
    await asyncio.sleep(0.05)
    fetcher._data.set()  # what a response does
    waiting.cancel()
    started = time.monotonic()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert time.monotonic() - started < 1


async def test_a_close_cancelled_while_the_driver_ends_still_closes_the_client_and_zeroes_the_gauge() -> None:
    """The caller is cancelled while ``close`` waits for the driver to end (a task session's close as its
    worker stops): the client is closed all the same (no connections left open) and the flow's
    buffered-bytes gauge drops this fetcher's share (else it stays counted for ever)."""
    flow = (f"src-{uuid.uuid4().hex[:6]}", "tgt")
    overrides = {"max.partition.fetch.bytes": "1000", "retry.backoff.ms": "10", "fetch.max.bytes": "5000"}
    settings = ClusterSettings(alias="src", bootstrap_servers="127.0.0.1:1")
    fetcher = BatchFetcher(settings, "t", overrides, "read_committed", metrics.FetchMeters(*flow))
    broker = Broker([batch(i * 10, 10, 40) for i in range(20)])
    closed = asyncio.Event()

    async def close() -> None:
        closed.set()

    broker.close = close  # type: ignore[method-assign]
    await start(fetcher, broker)
    await wait_until(lambda: fetcher.buffered >= 4000)
    assert sample("mirror_fetch_buffered_bytes", flow) > 0
    closing = asyncio.create_task(fetcher.close())
    await asyncio.sleep(0)  # the close cancelled the driver and waits for it to end
    closing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await closing
    assert sample("mirror_fetch_buffered_bytes", flow) == 0
    assert closed.is_set(), "the client was left open"
