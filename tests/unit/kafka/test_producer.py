"""`mirror.kafka.producer`: produce error codes become aiokafka's errors, which `Pending.ack` translates as
the `Writer`'s are (docs/record-batches.md, "Producing"); the producer keys it reads itself are checked;
what it counts, against a fake broker."""

from __future__ import annotations

import asyncio
import struct
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import aiokafka.errors as ke
import pytest
from aiokafka.protocol.produce import ProduceRequest
from aiokafka.protocol.transaction import AddPartitionsToTxnRequest, EndTxnRequest, InitProducerIdRequest

from mirror import metrics
from mirror.config import ClusterSettings
from mirror.errors import AuthorizationFailed, KafkaRequestFailed, MirrorError, ProducerFenced, RecordRejected
from mirror.kafka import BatchProducer, batches
from mirror.kafka.errors import delivery_error
from mirror.kafka.producer import Pending, response_error


def test_a_refused_batch_carries_the_brokers_message_and_the_records_it_names() -> None:
    error = response_error(87, "orders", "one record is bad", [(3, "null key on a compacted topic")])
    translated = delivery_error(error)
    assert isinstance(translated, RecordRejected)
    assert "one record is bad; record 3: null key on a compacted topic" in str(error)


def test_too_large_is_a_rejection_a_smaller_batch_may_pass() -> None:
    translated = delivery_error(response_error(10, "orders"))
    assert isinstance(translated, RecordRejected) and translated.too_large


def test_a_topic_authorization_failure_names_the_topic() -> None:
    translated = delivery_error(response_error(29, "orders"))
    assert isinstance(translated, AuthorizationFailed)
    assert "'orders'" in str(translated)


@pytest.mark.parametrize("code", [47, 90])
def test_a_fenced_epoch_is_producer_fenced(code: int) -> None:
    assert isinstance(delivery_error(response_error(code, "orders")), ProducerFenced)


def test_out_of_order_is_a_request_failure() -> None:
    assert isinstance(delivery_error(response_error(45, "orders")), KafkaRequestFailed)


@pytest.mark.parametrize("value", ["0", "five", "-1"])
async def test_a_bad_in_flight_limit_names_the_key_and_what_is_allowed(value: str) -> None:
    cluster = ClusterSettings(alias="b", bootstrap_servers="127.0.0.1:9")
    with pytest.raises(MirrorError, match=f"max.in.flight.requests.per.connection='{value}'.*at least 1"):
        BatchProducer(cluster, "test", {"max.in.flight.requests.per.connection": value})


async def test_the_batch_size_bounds_the_batches_it_builds() -> None:
    cluster = ClusterSettings(alias="b", bootstrap_servers="127.0.0.1:9")
    assert BatchProducer(cluster, "test", {}).max_batch_bytes == 1024 * 1024
    assert BatchProducer(cluster, "test", {"batch.size": "65536"}).max_batch_bytes == 65536


@dataclass(frozen=True)
class R:
    """A record as `BatchProducer.send` takes it."""

    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...] = ()
    timestamp: int = 1_700_000_000_000


class Target:
    """A fake target broker (node 1) for `BatchProducer`: it answers produce requests with the error codes
    queued per partition (then 0), each after ``gate`` opens."""

    def __init__(self, errors: dict[int, list[int]], partitions: int = 2) -> None:
        self.errors = errors
        self.gate = asyncio.Event()
        self.asked = asyncio.Event()
        self.requests: list[list[tuple[str, int, int]]] = []  # per request: (topic, partition, records)
        self.nodes: list[int] = []  # per request: the broker it went to
        self.ends: dict[int, int] = {}
        self.cluster = SimpleNamespace(
            leader_for_partition=lambda tp: 1,
            partitions_for_topic=lambda topic: set(range(partitions)),
            unauthorized_topics=set(),
        )

    async def bootstrap(self) -> None: ...

    async def close(self) -> None: ...

    def get_random_node(self) -> int:
        return 1

    def force_metadata_update(self) -> asyncio.Future[bool]:
        done = asyncio.get_running_loop().create_future()
        done.set_result(True)
        return done

    async def coordinator_lookup(self, _type: int, _key: str) -> int:
        return 1

    async def send(self, node: int, request: Any, **_: Any) -> Any:
        if isinstance(request, InitProducerIdRequest):
            return SimpleNamespace(error_code=0, producer_id=7, producer_epoch=0)
        if isinstance(request, AddPartitionsToTxnRequest):
            return SimpleNamespace(errors=[(t, [(p, 0) for p in ps]) for t, ps in request._topics])
        if isinstance(request, EndTxnRequest):
            return SimpleNamespace(error_code=0)
        assert isinstance(request, ProduceRequest)
        carried = [
            (topic, partition, struct.unpack_from(">i", data, 57)[0])
            for topic, parts in request._topics
            for partition, data in parts
        ]
        self.requests.append(carried)
        self.nodes.append(node)
        self.asked.set()
        await self.gate.wait()
        answers: dict[str, list[tuple[Any, ...]]] = {}
        for topic, partition, count in carried:
            pending = self.errors.get(partition, [])
            code = pending.pop(0) if pending else 0
            offset = self.ends.get(partition, 0)
            if code == 0:
                self.ends[partition] = offset + count
            answers.setdefault(topic, []).append((partition, code, offset, -1, -1, [], None))
        return SimpleNamespace(topics=list(answers.items()))


def on_target(
    target: Target,
    overrides: dict[str, str] | None = None,
    transactional_id: str | None = None,
    meters: metrics.ProduceMeters | None = None,
) -> BatchProducer:
    """A producer (not started) whose one connection (``connections.per.broker`` 1) goes to ``target``."""
    cluster = ClusterSettings(alias="b", bootstrap_servers="127.0.0.1:9")
    options = {"connections.per.broker": "1", **(overrides or {})}
    producer = BatchProducer(cluster, "test", options, transactional_id, meters)
    producer._client = target  # type: ignore[assignment]
    return producer


def sample(name: str, flow: tuple[str, str], **labels: str) -> float:
    value = metrics.REGISTRY.get_sample_value(name, {"source": flow[0], "target": flow[1], **labels})
    return 0.0 if value is None else value


async def test_requests_batches_retries_merges_refusals_and_batches_in_flight_are_counted() -> None:
    """Requests and the batches they carry count as sent, a retried batch by its error's name, a batch
    merged of several sends once, a refused one by its error's name; the in-flight gauge holds the
    batches of unanswered requests and is 0 again at rest."""
    flow = ("src", f"tgt-{uuid.uuid4().hex[:6]}")
    target = Target({0: [6], 1: [10]})  # NOT_LEADER_OR_FOLLOWER once on partition 0; 1 refuses: too large
    producer = on_target(target, {"retry.backoff.ms": "10"}, meters=metrics.ProduceMeters(*flow))
    await producer.start()
    try:
        pending = [await producer.send("t", 0, [R(b"k", b"v%d" % i)]) for i in range(30)]
        refused = await producer.send("t", 1, [R(b"k", b"x")])
        await asyncio.wait_for(target.asked.wait(), 5)
        assert sample("mirror_produce_in_flight_batches", flow) == len(target.requests[0]) == 2
        target.gate.set()
        acks = [await p.ack() for p in pending]
        with pytest.raises(RecordRejected):
            await refused.ack()
    finally:
        await producer.close()
    assert sum(a.count for a in acks) == 30 and target.ends == {0: 30}
    assert sample("mirror_produce_in_flight_batches", flow) == 0
    assert sample("mirror_produce_requests_total", flow) == len(target.requests)
    assert sample("mirror_produce_request_seconds_count", flow) == len(target.requests)
    assert sample("mirror_produce_batches_total", flow) == sum(len(r) for r in target.requests)
    assert sample("mirror_produce_retries_total", flow, error="NotLeaderForPartitionError") == 1
    assert sample("mirror_produce_refused_batches_total", flow, error="MessageSizeTooLargeError") == 1
    # the 30 sends queued at once went as one merged batch, sent twice (the retry): built, and counted, once
    assert target.requests == [[("t", 0, 30), ("t", 1, 1)], [("t", 0, 30)]]
    assert sample("mirror_produce_merged_batches_total", flow) == 1


@pytest.mark.parametrize("linger", ["50", "0"])
async def test_small_batches_linger_then_go_merged(linger: str) -> None:
    """``linger.ms``: the dispatcher holds a small batch until its linger ends, then sends it merged with the
    small ones queued meanwhile; with no linger a lone small batch goes at once (docs/record-batches.md)."""
    target = Target({})
    target.gate.set()
    producer = on_target(target, {"linger.ms": linger})
    await producer.start()
    loop = asyncio.get_running_loop()
    try:
        started = loop.time()
        first = await (await producer.send("t", 0, [R(b"k", b"v0")])).ack()
        alone = loop.time() - started
        pending = [await producer.send("t", 0, [R(b"k", b"v%d" % i)]) for i in (1, 2)]
        acks = [first] + [await p.ack() for p in pending]
    finally:
        await producer.close()
    assert [a.base_offset for a in acks] == [0, 1, 2]
    assert (alone >= 0.045) is (linger == "50"), alone
    merged = [[("t", 0, 1)], [("t", 0, 2)]]  # the two queued together lingered, then went merged
    assert target.requests == (merged if linger == "50" else [[("t", 0, 1)]] * 3)


async def _lingering(linger_ms: int, transactional_id: str | None = None) -> tuple[Target, BatchProducer]:
    """A started producer with ``linger.ms`` on a `Target` that answers at once."""
    target = Target({})
    target.gate.set()
    producer = on_target(target, {"linger.ms": str(linger_ms)}, transactional_id)
    await producer.start()
    return target, producer


async def test_a_small_batch_behind_one_that_went_still_goes_when_its_linger_ends() -> None:
    """A large batch goes at once; the small one queued with it lingers, and the dispatcher wakes when its
    linger ends, not when the large one is answered (which may take a request timeout)."""
    target, producer = await _lingering(20)
    try:
        await (await producer.send("t", 0, [R(b"k", b"v0")])).ack()  # acknowledged: the window opens
        target.gate.clear()  # the next requests stay unanswered
        large = await producer.send("t", 0, [R(b"k", b"x" * 20_000)])
        small = await producer.send("t", 0, [R(b"k", b"v1")])
        async with asyncio.timeout(2):
            while len(target.requests) < 3:
                target.asked.clear()
                await target.asked.wait()
        target.gate.set()
        assert [(await p.ack()).base_offset for p in (large, small)] == [1, 2]
    finally:
        await producer.close()
    assert target.requests == [[("t", 0, 1)], [("t", 0, 1)], [("t", 0, 1)]]


@pytest.mark.parametrize("end", ["flush", "close"])
async def test_flush_and_close_send_what_lingers_at_once(end: str) -> None:
    """Whoever flushes or closes waits for the sends queued so far: they linger no more (as Java's
    producer's flush), even with a ``linger.ms`` longer than the close's timeout."""
    target, producer = await _lingering(60000)
    try:
        pending = [await producer.send("t", 0, [R(b"k", b"v%d" % i)]) for i in range(3)]
        async with asyncio.timeout(2):
            await (producer.flush() if end == "flush" else producer.close(timeout=1.0))
        assert [(await p.ack()).base_offset for p in pending] == [0, 1, 2]
    finally:
        await producer.close()
    assert target.requests == [[("t", 0, 3)]]  # and merged


async def test_a_send_that_may_not_linger_goes_at_once_with_the_small_ones_before_it() -> None:
    """``linger=False`` (its caller waits for it next): it goes at once, merged with the small sends
    queued before it, while a long ``linger.ms`` holds the others."""
    target, producer = await _lingering(60000)
    try:
        before = await producer.send("t", 0, [R(b"k", b"v0")])
        awaited = await producer.send("t", 0, [R(b"k", b"v1")], linger=False)
        async with asyncio.timeout(2):
            assert [(await p.ack()).base_offset for p in (before, awaited)] == [0, 1]
    finally:
        await producer.close()
    assert target.requests == [[("t", 0, 2)]]


async def test_the_sends_of_a_transaction_do_not_linger() -> None:
    """The task queues a whole transaction (batches, progress), then waits for all of it before the
    commit: its sends go at once (merged, as they queued together), whatever ``linger.ms``."""
    target, producer = await _lingering(60000, transactional_id="txn")
    try:
        await producer.begin_transaction()
        pending = [await producer.send("t", 0, [R(b"k", b"v%d" % i)]) for i in range(2)]
        async with asyncio.timeout(2):
            assert [(await p.ack()).base_offset for p in pending] == [0, 1]
            await producer.commit_transaction()
    finally:
        await producer.close()
    assert target.requests == [[("t", 0, 2)]]


async def test_batches_of_another_compression_are_not_merged_with_the_small_ones_around_them() -> None:
    """A gzip batch passed through between records built uncompressed goes as a batch of its own: merged,
    it would be rebuilt in its neighbours' codec (docs/record-batches.md, "Producing")."""
    gzip = next(
        batches.split(
            batches.rebuild(
                [R(b"k", b"z%d" % i) for i in range(3)],
                codec=batches.Codec.GZIP,
                producer_id=-1,
                producer_epoch=-1,
                base_sequence=-1,
                transactional=False,
            )
        )
    )
    target, producer = await _lingering(60000)
    try:
        pending = [await producer.send("t", 0, [R(b"k", b"v0")]), await producer.send("t", 0, gzip)]
        pending += [await producer.send("t", 0, [R(b"k", b"v%d" % i)]) for i in (1, 2)]
        async with asyncio.timeout(2):
            await producer.flush()
        assert [(await p.ack()).base_offset for p in pending] == [0, 1, 4, 5]
    finally:
        await producer.close()
    assert [batch for request in target.requests for batch in request] == [
        ("t", 0, 1),
        ("t", 0, 3),
        ("t", 0, 2),
    ]


async def _closing(close_client: Callable[[], Awaitable[None]]) -> tuple[asyncio.Task[None], Pending]:
    """A producer with one send unacknowledged (the fake broker never answers) whose client closes with
    ``close_client``, being closed (without waiting for acknowledgements): the close and the send."""
    target = Target({})
    target.close = close_client  # type: ignore[method-assign]
    producer = on_target(target)
    await producer.start()
    pending = await producer.send("t", 0, [R(b"k", b"v")])
    await asyncio.wait_for(target.asked.wait(), 2)
    return asyncio.create_task(producer.close(timeout=0.0)), pending


@pytest.mark.parametrize("turns", range(1, 9))
async def test_a_close_cancelled_at_any_point_ends_cancelled_with_its_sends_failed(turns: int) -> None:
    """Cancelling whoever closes (a task shutting down) is never swallowed, wherever the close is: waiting
    for the acknowledgements, for the dispatcher's end or for the client; the unacknowledged sends fail
    either way and the client is closed."""
    closed = asyncio.Event()

    async def close_client() -> None:
        closed.set()

    closing, pending = await _closing(close_client)
    for _ in range(turns):
        await asyncio.sleep(0)
    closing.cancel()
    await asyncio.wait({closing}, timeout=2)
    assert closing.done() and closing.cancelled()
    assert closed.is_set()
    with pytest.raises(KafkaRequestFailed):
        await pending.ack()


async def test_a_close_cancelled_while_the_client_closes_ends_cancelled_with_its_sends_failed() -> None:
    """The last place a close can be cancelled: closing the client (`close_within`), after the sends
    failed. The cancellation propagates; the client's close goes on, bounded."""
    entered, release = asyncio.Event(), asyncio.Event()

    async def close_client() -> None:
        entered.set()
        await release.wait()

    closing, pending = await _closing(close_client)
    await asyncio.wait_for(entered.wait(), 2)
    closing.cancel()
    await asyncio.wait({closing}, timeout=2)
    assert closing.done() and closing.cancelled()
    with pytest.raises(KafkaRequestFailed):
        await pending.ack()
    release.set()
    await asyncio.sleep(0.01)  # the client's close, left to run, ends


async def test_each_partition_keeps_to_one_of_the_connections_to_its_broker_also_when_retried() -> None:
    """``connections.per.broker`` 2: partitions take the connections in turn, in the order of their first
    send, and every batch of a partition (a retry too) goes through its own, so a broker answering each
    connection in order keeps each partition's batches in order."""
    lanes = [Target({}, partitions=4), Target({1: [6]}, partitions=4)]  # NOT_LEADER_OR_FOLLOWER once on 1
    for target in lanes:
        target.gate.set()
    producer = on_target(lanes[0], {"connections.per.broker": "2", "retry.backoff.ms": "10"})
    assert len(producer._more_lanes) == 1
    producer._more_lanes = [lanes[1]]
    await producer.start()
    try:
        pending = [await producer.send("t", p, [R(b"k", b"v%d" % i)]) for i in range(3) for p in (0, 1, 2, 3)]
        async with asyncio.timeout(5):
            acks = [await p.ack() for p in pending]
    finally:
        await producer.close()
    assert sorted(a.base_offset for a in acks) == sorted([0, 1, 2] * 4)
    carried = [
        {(topic, partition) for request in t.requests for topic, partition, _ in request} for t in lanes
    ]
    assert carried == [{("t", 0), ("t", 2)}, {("t", 1), ("t", 3)}]
    assert lanes[1].ends == {1: 3, 3: 3} and lanes[0].ends == {0: 3, 2: 3}
    assert producer.retries == 1


class Bootstrapping(Target):
    """A client that bootstraps as aiokafka's does: it fails (``fails``), or ends, once ``release`` is set,
    by starting a metadata task of its own that runs until the client is closed; a close before that finds
    no task to stop."""

    def __init__(self, release: asyncio.Event, *, fails: bool = False) -> None:
        super().__init__({})
        self.release, self.fails = release, fails
        self.synchronizer: asyncio.Task[None] | None = None

    async def bootstrap(self) -> None:
        if self.fails:
            raise ke.KafkaError("Unable to bootstrap")
        await self.release.wait()
        self.synchronizer = asyncio.create_task(asyncio.sleep(3600))

    async def close(self) -> None:
        if self.synchronizer is not None:
            self.synchronizer.cancel()


async def test_a_connection_that_fails_to_bootstrap_leaves_no_other_client_running() -> None:
    """One of the clients fails to bootstrap while another is still at it: `start` fails once every
    bootstrap ended, so the close that follows (the task's session closes its writer) stops them all; had it
    failed at once, the slow client would start its metadata task after its close, left running for good."""
    release = asyncio.Event()
    lanes = [Bootstrapping(release), Bootstrapping(release, fails=True)]
    producer = on_target(lanes[0], {"connections.per.broker": "2"})
    producer._more_lanes = [lanes[1]]
    asyncio.get_running_loop().call_later(0.05, release.set)
    try:
        with pytest.raises(MirrorError):
            await producer.start()
        await producer.close()
        await asyncio.sleep(0.1)  # the slow bootstrap has ended by now, in any case
        assert all(lane.synchronizer is None or lane.synchronizer.done() for lane in lanes)
    finally:
        for lane in lanes:
            if lane.synchronizer is not None:
                lane.synchronizer.cancel()


async def test_the_partitions_of_each_broker_take_all_of_its_connections_in_turn() -> None:
    """Kafka places partition leaders on the brokers in turn: with 2 brokers and 4 connections to each, the
    8 partitions sent to in partition order take the 4 connections of their own broker, not every other
    one (taking all connections in turn, a target of 4 brokers would use one connection to each)."""
    lanes = [Target({}, partitions=8) for _ in range(4)]
    for target in lanes:
        target.gate.set()
        target.cluster.leader_for_partition = lambda tp: tp.partition % 2 + 1
    producer = on_target(lanes[0], {"connections.per.broker": "4"})
    producer._more_lanes = lanes[1:]
    await producer.start()
    try:
        pending = [await producer.send("t", p, [R(b"k", b"v")]) for p in range(8)]
        async with asyncio.timeout(5):
            for p in pending:
                await p.ack()
    finally:
        await producer.close()
    lanes_of_broker: dict[int, set[int]] = {1: set(), 2: set()}
    for lane, target in enumerate(lanes):
        for node in target.nodes:
            lanes_of_broker[node].add(lane)
    assert lanes_of_broker == {1: {0, 1, 2, 3}, 2: {0, 1, 2, 3}}


class Sequenced:
    """A fake broker that checks sequences as Kafka's does: per partition, a batch whose base sequence
    follows the last one is appended; one of the last 5 again is a duplicate, answered with its first
    offset; another is out of order (45). A partition it has no producer state for takes any sequence."""

    def __init__(self) -> None:
        self.logs: dict[int, list[tuple[int, int, int]]] = {}  # per partition: (sequence, records, offset)
        self.ends: dict[int, int] = {}

    def append(self, request: list[tuple[str, int, bytes | bytearray]]) -> Any:
        answers: dict[str, list[tuple[Any, ...]]] = {}
        for topic, partition, data in request:
            sequence, count = struct.unpack_from(">ii", data, 53)
            log = self.logs.setdefault(partition, [])
            seen = [offset for s, _, offset in log[-5:] if s == sequence]
            code, offset = 0, self.ends.get(partition, 0)
            if seen:
                offset = seen[0]
            elif not log or sequence == log[-1][0] + log[-1][1]:
                log.append((sequence, count, offset))
                self.ends[partition] = offset + count
            else:
                code = 45
            answers.setdefault(topic, []).append((partition, code, offset, -1, -1, [], None))
        return SimpleNamespace(topics=list(answers.items()))


class Connection(Target):
    """One client's connection to a `Sequenced` broker: a produce request is answered at once, or (``hold``)
    waits in order until the test answers or breaks them."""

    def __init__(self, broker: Sequenced) -> None:
        super().__init__({}, partitions=2)
        self.broker = broker
        self.hold = False
        self.waiting: list[tuple[list[tuple[str, int, bytes | bytearray]], asyncio.Future[Any]]] = []

    async def send(self, node: int, request: Any, **kwargs: Any) -> Any:
        if not isinstance(request, ProduceRequest):
            return await super().send(node, request, **kwargs)
        carried = [(topic, partition, data) for topic, parts in request._topics for partition, data in parts]
        if not self.hold:
            return self.broker.append(carried)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.waiting.append((carried, future))
        self.asked.set()
        return await future

    def break_after(self, appended: int) -> None:
        """The connection breaks: the broker had appended the first ``appended`` requests waiting (their
        answers are lost), not the others; every one fails as aiokafka fails them."""
        waiting, self.waiting, self.hold = self.waiting, [], False
        for i, (carried, future) in enumerate(waiting):
            if i < appended:
                self.broker.append(carried)
            future.set_exception(ke.KafkaConnectionError("Connection at 127.0.0.1:9 closed"))


@pytest.mark.parametrize("appended", [0, 1, 3])
async def test_a_broken_connection_leaves_its_partitions_records_once_and_in_order(appended: int) -> None:
    """``connections.per.broker`` 2, the window open: 5 batches of partition 1 in flight on its connection
    when it breaks, the first ``appended`` of them appended; partition 0's connection goes on meanwhile. The
    broker ends with every record of each partition once, in order, and the acknowledgements say where."""
    broker = Sequenced()
    lanes = [Connection(broker), Connection(broker)]
    producer = on_target(lanes[0], {"connections.per.broker": "2", "retry.backoff.ms": "10"})
    producer._more_lanes = [lanes[1]]
    await producer.start()
    try:
        first = [await producer.send("t", p, [R(b"k", b"first")]) for p in (0, 1)]
        async with asyncio.timeout(5):
            for p in first:
                await p.ack()
        lanes[1].hold = True
        pending = {
            p: [await producer.send("t", p, [R(b"k", b"v%d" % i)], mergeable=False) for i in range(8)]
            for p in (0, 1)
        }
        async with asyncio.timeout(5):
            while len(lanes[1].waiting) < 5:
                lanes[1].asked.clear()
                await lanes[1].asked.wait()
            for p in pending[0]:  # the other connection goes on meanwhile
                await p.ack()
            lanes[1].break_after(appended)
            acks = {p: [(await a.ack()).base_offset for a in pending[p]] for p in (0, 1)}
    finally:
        await producer.close()
    assert acks == {0: list(range(1, 9)), 1: list(range(1, 9))}
    assert broker.logs[0] == broker.logs[1] == [(i, 1, i) for i in range(9)]
    assert producer.retries >= 5
