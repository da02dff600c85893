"""`BatchProducer`: an idempotent (or transactional) producer sending whole record batches, pipelined.

A fetched source batch goes to the target as its own bytes, re-stamped (`mirror.kafka.batches.restamp`);
records are built into one batch. Per leader broker, produce requests carry one batch per partition and
several go at once on the connection; per partition at most 5 batches are unacknowledged, retried in
sequence order with the same bytes (docs/record-batches.md, "Producing"). Only aiokafka's public client
(`mirror.kafka.client_args.protocol_client`) and protocol classes are used. `Pending` is the
acknowledgement to come of one sent batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import aiokafka.errors as ke
import structlog
from aiokafka.client import ConnectionGroup
from aiokafka.protocol.produce import ProduceRequest
from aiokafka.protocol.transaction import AddPartitionsToTxnRequest, EndTxnRequest, InitProducerIdRequest
from aiokafka.structs import TopicPartition

from mirror.config import ClusterSettings
from mirror.errors import KafkaRequestFailed, MergedBatchRefused, MirrorError
from mirror.kafka import batches
from mirror.kafka.batches import Action, Codec, RawBatch
from mirror.kafka.client_args import protocol_client
from mirror.kafka.closing import close_within
from mirror.kafka.errors import delivery_error, denied_error, errors_translated
from mirror.kafka.records import Ack, RecordData
from mirror.kafka.send_queue import PartitionQueue, Send, Stamped
from mirror.metrics import ProduceMeters
from mirror.retry import woken

log = structlog.get_logger(__name__)

__all__ = ["BatchProducer", "Delivered", "Pending", "response_error"]

_TXN_COORDINATOR: Final = 1  # FindCoordinator key type of a transactional id
_ACKS_ALL: Final = -1
#: Produce error codes worth a retry of the same batch (besides aiokafka's ``retriable`` classes).
_RETRIABLE: Final = frozenset({3, 5, 6, 7, 13, 19, 20, 56})
_OUT_OF_ORDER_SEQUENCE: Final = 45
#: Produce and transaction error codes after which this producer can send nothing more.
_FATAL: Final = frozenset({45, 47, 48, 49, 53, 59, 90})
_FENCED: Final = frozenset({47, 90})  # INVALID_PRODUCER_EPOCH, PRODUCER_FENCED
_TOPIC_AUTHORIZATION_FAILED: Final = 29
#: COORDINATOR_LOAD_IN_PROGRESS, CONCURRENT_TRANSACTIONS, UNKNOWN_TOPIC_OR_PARTITION: wait and ask again.
_TXN_WAIT: Final = frozenset({14, 51, 3})
_TXN_MOVED: Final = frozenset({15, 16})  # COORDINATOR_NOT_AVAILABLE, NOT_COORDINATOR: find it again
_OPERATION_NOT_ATTEMPTED: Final = 52
_COMPRESSION: Final = {
    None: Codec.NONE,
    "none": Codec.NONE,
    "gzip": Codec.GZIP,
    "snappy": Codec.SNAPPY,
    "lz4": Codec.LZ4,
    "zstd": Codec.ZSTD,
}
#: Java producer keys this producer honours itself (aiokafka's producer has no such option).
_DELIVERY_TIMEOUT_KEY: Final = "delivery.timeout.ms"
_IN_FLIGHT_KEY: Final = "max.in.flight.requests.per.connection"
_BUFFER_KEY: Final = "buffer.memory"
#: ...and this key of ours: connections to each target broker (a partition always uses the same one).
_CONNECTIONS_KEY: Final = "connections.per.broker"
#: A broker handles one request of a connection at a time: over a long round trip each connection adds
#: ``max.in.flight.requests.per.connection`` requests in flight (docs/record-batches.md, "Connections").
_CONNECTIONS: Final = 4
_ABORT_TIMEOUT: Final = 10.0
#: Queued batches are merged only while a partition's acknowledgements take this long (seconds): a
#: long round trip (a WAN), not a fast network, where each source batch goes as it came.
_COALESCE_AFTER: Final = 0.03
#: ...or while they queue as batches smaller than this (bytes), whatever the round trip.
_SMALL_BATCH: Final = 16 * 1024
#: How long a batch smaller than ``_SMALL_BATCH`` waits for more of its partition to merge with, unless
#: ``linger.ms`` says otherwise (Kafka 4's producer default, docs/record-batches.md, "Producing").
_LINGER_MS: Final = 5


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Mark a failed delivery future's error as seen (asyncio would log it as never retrieved)."""
    if not future.cancelled():
        future.exception()


class MergedBatchRefusedError(ke.KafkaError):  # type: ignore[misc]
    """The target refused a batch this producer merged of several sends (`send_queue`, coalescing): each of
    them fails with this, since the refused record may be in any; sent again unmerged, the refusal is
    exact."""

    def __init__(self, sends: int, error: BaseException) -> None:
        super().__init__(f"a batch merged of {sends} sends was refused: {error}")
        self.error = error


class Pending:
    """The target's answer to come for one produced batch (or record), from `BatchProducer.send` or the
    `Writer`: `ack` waits for it."""

    __slots__ = ("_future",)

    def __init__(self, future: asyncio.Future[Any]) -> None:
        self._future = future

    async def ack(self, *, shield: bool = False) -> Ack:
        """Wait for the target's answer. Errors are translated: a batch the target refuses for good is a
        `RecordRejected`, one it does not let us write an `AuthorizationFailed` naming the topic. With
        ``shield``, cancelling the caller leaves the delivery itself alone."""
        future = asyncio.shield(self._future) if shield else self._future
        try:
            meta = await future
        except MergedBatchRefusedError as exc:
            raise MergedBatchRefused(str(exc)) from exc
        except (ke.KafkaError, OSError, TimeoutError) as exc:
            raise delivery_error(exc) from exc
        # aiokafka's RecordMetadata (the Writer's) is a named tuple: its ``count`` is tuple.count
        return Ack(int(meta.offset), meta.count if isinstance(meta, Delivered) else 0)

    @property
    def acknowledged(self) -> bool:
        """The target has acknowledged it already (an error it ended with counts as seen)."""
        future = self._future
        return future.done() and not future.cancelled() and future.exception() is None

    def ignore_failure(self) -> None:
        """Its failure is expected and needs no report (refused too, or out of sequence behind a refused
        batch): asyncio must not log its error as never retrieved."""
        self._future.add_done_callback(_retrieve)


@dataclass(frozen=True, slots=True)
class Delivered:
    """What a `BatchProducer` future resolves to: the batch's base offset on the target, its records."""

    offset: int
    count: int


#: Where a request goes: (broker node id, lane: which of our connections to it).
_Route = tuple[int, int]


class _Job:
    """One send: its records (a batch to pass through, or records to build one of) and its future."""

    __slots__ = ("codec", "future", "raw", "records", "tp")

    def __init__(
        self,
        tp: tuple[str, int],
        raw: RawBatch | None,
        records: Sequence[RecordData] | None,
        codec: Codec,
        future: asyncio.Future[Delivered],
    ) -> None:
        self.tp, self.raw, self.records, self.codec, self.future = tp, raw, records, codec, future

    def decoded(self) -> Sequence[RecordData]:
        if self.records is not None:
            return self.records
        assert self.raw is not None
        return batches.decode(self.raw)


def _positive_int(options: Mapping[str, str], key: str, default: int) -> int:
    text = options.get(key)
    if text is None:
        return default
    try:
        value = int(str(text).strip())
    except ValueError:
        value = 0
    if value < 1:
        raise MirrorError(f"producer key {key}={text!r}: must be a whole number of at least 1")
    return value


def response_error(code: int, topic: str, message: str | None = None, record_errors: Any = None) -> Exception:
    """aiokafka's error for a produce or transaction error code, with the broker's message and the
    records it names; a topic authorization failure names the topic, a fencing is `ke.ProducerFenced`."""
    error: Exception
    if code == _TOPIC_AUTHORIZATION_FAILED:
        error = ke.TopicAuthorizationFailedError({topic})
    elif code in _FENCED:
        error = ke.ProducerFenced()
    else:
        details = [message] if message else []
        details += [f"record {index}: {text}" for index, text in record_errors or ()]
        cls = ke.for_code(code)
        error = cls("; ".join(details)) if details else cls()
    return error


class _Closed(ke.KafkaError):  # type: ignore[misc]
    """The producer was closed before the batch was acknowledged."""


class BatchProducer:
    """Whole batches to fixed partitions of the target: pipelined, idempotent, optionally transactional.

    `send` queues one batch per call (in call order per partition) and returns its `Pending`; a
    background dispatcher sends them. Every task it runs is in one task group that `close` ends.
    ``meters``: where its requests, batches, retries and refusals are counted (`mirror.metrics`)."""

    def __init__(
        self,
        cluster: ClusterSettings,
        client_id: str,
        overrides: Mapping[str, str],
        transactional_id: str | None = None,
        meters: ProduceMeters | None = None,
    ) -> None:
        self.cluster = cluster
        self._meters = ProduceMeters() if meters is None else meters
        self._client, options = protocol_client(cluster, "producer", overrides, client_id)
        java = {**cluster.producer, **overrides}
        self._max_batch = int(options.get("max_batch_size", 1024 * 1024))
        self._max_request = int(options.get("max_request_size", 4 * 1024 * 1024))
        self._linger = int(options.get("linger_ms", _LINGER_MS)) / 1000
        self._request_timeout_ms = int(options.get("request_timeout_ms", 30000))
        self._backoff = int(options.get("retry_backoff_ms", 100)) / 1000
        self._txn_timeout_ms = int(options.get("transaction_timeout_ms", 60000))
        self._codec = _COMPRESSION[options.get("compression_type")]
        self._delivery_timeout = _positive_int(java, _DELIVERY_TIMEOUT_KEY, 120_000) / 1000
        self._max_in_flight = _positive_int(java, _IN_FLIGHT_KEY, 5)
        self._buffer_limit = _positive_int(java, _BUFFER_KEY, 32 * 1024 * 1024)
        #: One client per connection to each broker ("lane"): ``_client`` is lane 0 (and keeps the metadata
        #: we route by), these are the others. A partition's batches always go through its lane.
        self._more_lanes: list[Any] = [
            protocol_client(cluster, "producer", overrides, client_id)[0]
            for _ in range(_positive_int(java, _CONNECTIONS_KEY, _CONNECTIONS) - 1)
        ]
        self._lane_of: dict[tuple[str, int], int] = {}
        #: Partitions given a lane so far, per leader at their first send (-1: no leader known then).
        self._lanes_given: dict[int, int] = defaultdict(int)
        acks = options.get("acks", "all")
        if acks not in ("all", -1, "-1"):
            log.warning("producer acks is always all (idempotence needs it)", configured=acks)
        self._transactional_id = transactional_id
        self._producer_id, self._epoch = -1, -1
        self._queues: dict[tuple[str, int], PartitionQueue[_Job]] = {}
        self._active: dict[tuple[str, int], PartitionQueue[_Job]] = {}
        #: Requests in flight and batches carried over to the next request, per (broker, lane).
        self._node_in_flight: dict[_Route, int] = defaultdict(int)
        self._carry: dict[_Route, list[tuple[tuple[str, int], Stamped[_Job]]]] = defaultdict(list)
        self._outstanding: set[asyncio.Future[Delivered]] = set()
        self._buffered = 0
        self._room = asyncio.Event()
        self._room.set()
        self._wake = asyncio.Event()
        self._fatal: BaseException | None = None
        self._closing = False
        self._runner: asyncio.Task[None] | None = None
        self._group: asyncio.TaskGroup | None = None
        self._metadata: dict[int, asyncio.Future[Any]] = {}
        # transactions
        self._coordinator: int | None = None
        self._in_txn = False
        self._txn_added: set[tuple[str, int]] = set()
        self._txn_adding: set[tuple[str, int]] = set()
        self._txn_futures: list[asyncio.Future[Delivered]] = []
        #: Produce requests sent, and the batches they carried (for tests and metrics).
        self.requests_sent = 0
        self.batches_sent = 0
        #: Batches that failed retriably and go again (for tests and metrics).
        self.retries = 0
        #: The most requests that were in flight on one connection to a broker at once.
        self.most_in_flight = 0

    @property
    def max_batch_bytes(self) -> int:
        """The largest batch it builds (``batch.size``; coalesced batches stay within it)."""
        return self._max_batch

    # --- lifecycle ---------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Bootstrap and get a producer id (InitProducerId), which fences older producers of the same
        transactional id."""
        async with errors_translated(self.cluster):
            # every bootstrap ends before a failure is raised: one still under way would start its client's
            # metadata task after the close that follows the failure, and that task would run for good
            bootstraps = await asyncio.gather(
                *(lane.bootstrap() for lane in self._lanes()), return_exceptions=True
            )
            for outcome in bootstraps:
                if isinstance(outcome, BaseException):
                    raise outcome
            await self._init_producer_id()
        self._runner = asyncio.create_task(self._run(), name="batch-producer")

    async def _run(self) -> None:
        async with asyncio.TaskGroup() as group:
            self._group = group
            try:
                await self._dispatch()
            except Exception as exc:  # a bug: fail what waits rather than hang it
                log.exception("producer dispatcher failed", error=str(exc))
                self._die(exc)

    async def close(self, timeout: float = 3.0) -> None:
        """Deliver what is queued for at most ``timeout`` seconds, then cancel everything: once this
        returns, no request of this producer is sent again (a stale batch would otherwise land behind the
        back of the next session); what was not acknowledged fails. A cancellation of the caller meanwhile
        propagates, once every send failed (the client's close, at most a second, may still be under way)."""
        self._closing = True
        self._hurry()
        try:
            if self._outstanding and self._fatal is None:
                await asyncio.wait(set(self._outstanding), timeout=timeout)
        finally:
            runner, self._runner = self._runner, None
            try:
                if runner is not None:
                    runner.cancel()
                    await asyncio.wait({runner})  # its outcome is of no interest; a cancel of ours propagates
                    if not runner.cancelled() and runner.exception() is not None:  # retrieved: logged once
                        log.warning("producer dispatcher had failed", error=str(runner.exception()))
            finally:
                if self._outstanding:
                    log.warning(
                        "producer closed; its unacknowledged batches fail", batches=len(self._outstanding)
                    )
                self._fail_everything(
                    _Closed("the producer was closed before the target acknowledged the batch")
                )
                await asyncio.gather(*(close_within(lane.close(), 1.0) for lane in self._lanes()))

    # --- sending -------------------------------------------------------------------------------------------

    async def send(
        self,
        topic: str,
        partition: int,
        batch: RawBatch | Sequence[RecordData],
        *,
        mergeable: bool = True,
        linger: bool = True,
    ) -> Pending:
        """Queue one batch for ``partition`` of ``topic``: a fetched v2 batch passes as its own bytes
        (re-stamped), records are built into one batch. Returns once queued; waits while the buffered
        bytes are over ``buffer.memory``. Not ``mergeable``: it goes as a batch of its own, never merged
        with its neighbours (a refusal of it then names exactly its records). Not ``linger``: the caller
        waits for it before it queues more of the partition, so it goes at once (with what is queued
        before it) rather than wait ``linger.ms`` for more; so does every send of a transaction (the
        caller queues the whole transaction, then waits for all of it)."""
        self._check_usable()
        if self._transactional_id is not None and not self._in_txn:
            raise MirrorError("a transactional producer sends inside a transaction only (begin_transaction)")
        tp = (topic, partition)
        pq = self._queues.get(tp)
        if pq is None:
            await known_partition(self._client, self.cluster, topic, partition)
            pq = self._queues.setdefault(
                tp,
                PartitionQueue(
                    self._max_batch, coalesce_after=_COALESCE_AFTER, small=_SMALL_BATCH, linger=self._linger
                ),
            )
            if tp not in self._lane_of:
                self._lane_of[tp] = self._next_lane(tp)
        while self._buffered > self._buffer_limit and self._fatal is None:
            self._room.clear()
            await self._room.wait()
        self._check_usable()
        future: asyncio.Future[Delivered] = asyncio.get_running_loop().create_future()
        if isinstance(batch, RawBatch):
            job, count, size = self._raw_job(tp, batch, future)
        else:
            if not batch:
                raise ValueError("a record batch needs at least one record")
            job = _Job(tp, None, batch, self._codec, future)
            count, size = len(batch), batches.records_size(batch)
        self._outstanding.add(future)
        self._buffered += size
        future.add_done_callback(functools.partial(self._settled, size=size))
        if self._in_txn:
            self._txn_futures.append(future)
        lingers = linger and self._transactional_id is None
        pq.push(Send(job, count, size, time.monotonic(), mergeable, lingers=lingers, kind=job.codec))
        self._fail_taken(pq)
        self._active[tp] = pq
        self._wake.set()
        return Pending(future)

    def _next_lane(self, tp: tuple[str, int]) -> int:
        """The lane of a partition sent to for the first time: its leader's connections in turn. Kafka puts
        leaders on the brokers in turn too: taking every lane in turn, whatever the leader, the partitions of
        a broker would skip some of its lanes (all but one of 4, with 4 brokers)."""
        leader = self._client.cluster.leader_for_partition(TopicPartition(*tp))
        key = leader if isinstance(leader, int) and leader >= 0 else -1
        lane = self._lanes_given[key] % (1 + len(self._more_lanes))
        self._lanes_given[key] += 1
        return lane

    def _raw_job(
        self, tp: tuple[str, int], raw: RawBatch, future: asyncio.Future[Delivered]
    ) -> tuple[_Job, int, int]:
        action = batches.plan(raw)
        if action is Action.DROP:
            raise ValueError(f"record batch at offset {raw.base_offset} has no records to produce")
        if action is Action.PASS:
            assert raw.header is not None
            return _Job(tp, raw, None, raw.header.codec, future), raw.header.record_count, raw.size
        records = batches.decode(raw)  # gaps, LogAppendTime, an old format: rebuilt
        codec = raw.header.codec if raw.header is not None else self._codec
        return _Job(tp, None, records, codec, future), len(records), raw.size

    def _settled(self, future: asyncio.Future[Delivered], *, size: int) -> None:
        self._outstanding.discard(future)
        self._buffered -= size
        if self._buffered <= self._buffer_limit:
            self._room.set()

    def _check_usable(self) -> None:
        if self._fatal is not None:
            raise delivery_error(self._fatal) from self._fatal
        if self._closing or self._runner is None:
            raise KafkaRequestFailed("the producer is not running (not started, or closed)")

    async def flush(self) -> None:
        """Wait until everything queued is acknowledged (or failed); what lingers goes at once."""
        self._hurry()
        while self._outstanding:
            await asyncio.wait(set(self._outstanding))

    def _hurry(self) -> None:
        """The sends queued so far linger no more: somebody waits for them (docs/record-batches.md,
        "Producing")."""
        now = time.monotonic()
        for pq in self._active.values():
            pq.flushed = now
        self._wake.set()

    # --- the dispatcher ------------------------------------------------------------------------------------

    async def _dispatch(self) -> None:
        while True:
            self._wake.clear()
            delay = self._dispatch_once(time.monotonic())
            await woken(self._wake, delay)

    def _dispatch_once(self, now: float) -> float | None:
        """Send what can go now; the seconds until a backoff or a linger ends, or None (wait for a
        wake-up)."""
        wait: float | None = None
        ready: dict[_Route, list[tuple[tuple[str, int], PartitionQueue[_Job]]]] = defaultdict(list)
        cluster = self._client.cluster
        for tp, pq in list(self._active.items()):
            if not pq.has_work:
                if pq.idle or pq.dead is not None:
                    del self._active[tp]
                continue
            if pq.retrying and not pq.in_flight and now < pq.not_before:
                wait = min(wait, pq.not_before - now) if wait is not None else pq.not_before - now
                continue
            lingering = pq.linger_left(now)
            if lingering is not None:
                wait = min(wait, lingering) if wait is not None else lingering
                continue
            if self._transactional_id is not None and tp not in self._txn_added:
                self._add_to_txn(tp)
                continue
            leader = cluster.leader_for_partition(TopicPartition(*tp))
            if leader is None or leader < 0:
                self._refresh_metadata()
                pq.expire(now, self._delivery_timeout, ke.LeaderNotAvailableError(f"{tp[0]}-{tp[1]}"))
                self._fail_taken(pq)
                wait = min(wait, 1.0) if wait is not None else 1.0  # check again, for the timeout
                continue
            ready[(leader, self._lane_of[tp])].append((tp, pq))
        for route in set(ready) | {r for r, c in self._carry.items() if c}:
            self._fill_node(route, ready.get(route, []), now)
        for parts in ready.values():  # a send behind one that went may linger now: wake when it ends
            for _, pq in parts:
                lingering = pq.linger_left(now)
                if lingering is not None:
                    wait = min(wait, lingering) if wait is not None else lingering
        return wait

    def _fill_node(
        self, route: _Route, parts: list[tuple[tuple[str, int], PartitionQueue[_Job]]], now: float
    ) -> None:
        """Requests on one connection to a broker, up to its in-flight limit: one batch per partition each."""
        while self._node_in_flight[route] < self._max_in_flight:
            request: list[tuple[tuple[str, int], Stamped[_Job]]] = []
            carried, self._carry[route] = self._carry[route], []
            size = 0
            for tp, held in carried:
                if request and size + len(held.data) > self._max_request:
                    self._carry[route].append((tp, held))
                    continue
                request.append((tp, held))
                size += len(held.data)
            taken = {tp for tp, _ in request}
            for tp, pq in parts:
                if tp in taken or size >= self._max_request:
                    continue
                batch = pq.next_batch(now, self._stamp)
                self._fail_taken(pq)
                if batch is None:
                    continue
                if request and size + len(batch.data) > self._max_request:
                    self._carry[route].append((tp, batch))  # in the next request to this broker
                    break
                request.append((tp, batch))
                size += len(batch.data)
            if not request:
                return
            self._node_in_flight[route] += 1
            self.most_in_flight = max(self.most_in_flight, self._node_in_flight[route])
            assert self._group is not None
            self._group.create_task(self._produce(route, request))

    def _stamp(self, sends: list[Send[_Job]], base_sequence: int) -> bytearray:
        first = sends[0].payload
        pid, epoch, txn = self._producer_id, self._epoch, self._transactional_id is not None
        if len(sends) > 1:
            self._meters.merged()
        if len(sends) == 1 and first.raw is not None:
            return batches.restamp(
                first.raw,
                producer_id=pid,
                producer_epoch=epoch,
                base_sequence=base_sequence,
                transactional=txn,
            )
        records = first.decoded() if len(sends) == 1 else [r for s in sends for r in s.payload.decoded()]
        return batches.rebuild(
            records,
            codec=first.codec,
            producer_id=pid,
            producer_epoch=epoch,
            base_sequence=base_sequence,
            transactional=txn,
        )

    async def _produce(self, route: _Route, request: list[tuple[tuple[str, int], Stamped[_Job]]]) -> None:
        node, lane = route
        by_topic: dict[str, list[tuple[int, bytes | bytearray]]] = defaultdict(list)
        sent: dict[tuple[str, int], Stamped[_Job]] = {}
        for tp, batch in request:
            by_topic[tp[0]].append((tp[1], batch.data))
            sent[tp] = batch
        self.requests_sent += 1
        self.batches_sent += len(request)
        self._meters.sent(len(request))
        sent_at, took = time.monotonic(), None
        try:
            try:
                response = await self._lanes()[lane].send(
                    node,
                    ProduceRequest(
                        self._transactional_id, _ACKS_ALL, self._request_timeout_ms, list(by_topic.items())
                    ),
                )
            except (ke.KafkaError, OSError, TimeoutError) as exc:
                self._refresh_metadata()
                for tp, batch in request:
                    self._retry(tp, batch, exc)
                return
            took = time.monotonic() - sent_at
            for topic, partitions in response.topics:
                for answer in partitions:
                    batch = sent.pop((topic, answer[0]))
                    self._answered((topic, answer[0]), batch, answer)
            for tp, batch in sent.items():  # not in the response: ask again
                self._retry(tp, batch, ke.KafkaError(f"no answer for partition {tp[1]} of {tp[0]}"))
        except Exception as exc:  # a bug or an unexpected answer: nothing can go on
            log.exception("producer failed", error=str(exc))
            self._die(exc)
        finally:
            self._meters.done(len(request), took)
            self._node_in_flight[route] -= 1
            self._wake.set()

    def _answered(self, tp: tuple[str, int], batch: Stamped[_Job], answer: Any) -> None:
        if self._fatal is not None:
            return  # every batch failed already
        pq = self._queues[tp]
        code, offset = int(answer[1]), int(answer[2])
        if code == 0:
            pq.acked(batch, time.monotonic())
            for send, delta in batch.parts:
                job = send.payload
                if not job.future.done():
                    job.future.set_result(Delivered(offset + delta, send.count))
            return
        message = answer[6] if len(answer) > 6 else None
        error = response_error(code, tp[0], message, answer[5] if len(answer) > 5 else None)
        if pq.dead is not None:
            pq.refuse(batch, error, pq.dead)
        elif code in _RETRIABLE or getattr(type(error), "retriable", False):
            self._refresh_metadata()
            self._retry(tp, batch, error)
        elif code == _OUT_OF_ORDER_SEQUENCE and pq.earlier_unacked(batch):
            self._retry(tp, batch, error)  # an earlier batch is being retried: this one goes after it
        elif code in _FATAL:
            self._meters.refused(type(error).__name__)
            self._die(error)
        else:
            self._meters.refused(type(error).__name__)
            behind = ke.OutOfOrderSequenceNumber(f"behind a batch the target refused on {tp[0]}-{tp[1]}")
            log.warning("target refused a batch", topic=tp[0], partition=tp[1], error=str(error))
            if len(batch.parts) > 1:  # which of the merged sends holds the refused record is unknown
                error = MergedBatchRefusedError(len(batch.parts), error)
            pq.refuse(batch, error, behind)
        self._fail_taken(pq)

    def _retry(self, tp: tuple[str, int], batch: Stamped[_Job], error: BaseException) -> None:
        if self._fatal is not None:
            return
        pq = self._queues[tp]
        self.retries += 1
        pq.retry(batch, error, time.monotonic(), self._backoff, self._delivery_timeout)
        if pq.dead is None:
            self._meters.retried(type(error).__name__)
        self._active[tp] = pq
        self._fail_taken(pq)

    def _refresh_metadata(self) -> None:
        """Every lane's client: the first routes by its leaders, the others must know the brokers'
        addresses."""
        for i, lane in enumerate(self._lanes()):
            pending = self._metadata.get(i)
            if pending is None or pending.done():
                self._metadata[i] = pending = lane.force_metadata_update()
                pending.add_done_callback(self._metadata_updated)

    def _lanes(self) -> list[Any]:
        return [self._client, *self._more_lanes]

    def _metadata_updated(self, future: asyncio.Future[Any]) -> None:
        if not future.cancelled():
            future.exception()
        self._wake.set()

    def _fail_taken(self, pq: PartitionQueue[_Job]) -> None:
        for send, error in pq.take_failures():
            if not send.payload.future.done():
                send.payload.future.set_exception(error)
                send.payload.future.add_done_callback(_retrieve)

    def _die(self, error: BaseException) -> None:
        """The producer can send nothing more: every pending batch fails, later calls too."""
        if self._fatal is None:
            log.warning("producer stopped for good", error=f"{type(error).__name__}: {error}")
            self._fatal = error
        self._fail_everything(error)
        self._room.set()

    def _fail_everything(self, error: BaseException) -> None:
        for pq in self._queues.values():
            for send in pq.drain():
                future = send.payload.future
                if not future.done():
                    future.set_exception(error)
                    future.add_done_callback(_retrieve)
        self._carry.clear()
        self._active.clear()

    # --- the producer id and transactions ----------------------------------------------------------------

    async def _init_producer_id(self) -> None:
        while True:
            if self._transactional_id is None:
                node = self._client.get_random_node()
                request = InitProducerIdRequest(None, self._txn_timeout_ms)
                response = await self._client.send(node, request)
            else:
                request = InitProducerIdRequest(self._transactional_id, self._txn_timeout_ms)
                response = await self._to_coordinator(request)
            code = int(response.error_code)
            if code == 0:
                self._producer_id, self._epoch = int(response.producer_id), int(response.producer_epoch)
                return
            if code in _TXN_MOVED:
                self._coordinator = None
            elif code not in _TXN_WAIT:
                raise response_error(code, "", None)
            await asyncio.sleep(self._backoff)

    async def _to_coordinator(self, request: Any) -> Any:
        """Send to the transaction coordinator of our transactional id (found first, and again when it
        moved)."""
        assert self._transactional_id is not None
        while True:
            if self._coordinator is None:
                try:
                    self._coordinator = await self._client.coordinator_lookup(
                        _TXN_COORDINATOR, self._transactional_id
                    )
                except ke.KafkaError as exc:
                    if (
                        not getattr(exc, "retriable", False)
                        and int(getattr(exc, "errno", -1)) not in _TXN_WAIT
                    ):
                        raise
                    await asyncio.sleep(self._backoff)
                    continue
            try:
                return await self._client.send(self._coordinator, request, group=ConnectionGroup.COORDINATION)
            except (ke.KafkaConnectionError, ke.NodeNotReadyError, ke.RequestTimedOutError, OSError):
                self._coordinator = None
                await asyncio.sleep(self._backoff)

    async def begin_transaction(self) -> None:
        self._check_usable()
        if self._transactional_id is None:
            raise MirrorError("begin_transaction needs a transactional producer (transactional_id)")
        if self._in_txn:
            raise MirrorError("a transaction is open already")
        self._in_txn = True
        self._txn_added.clear()
        self._txn_futures = []

    def _add_to_txn(self, tp: tuple[str, int]) -> None:
        """AddPartitionsToTxn before a partition's first batch of the transaction; partitions asked for
        while a request is out go in the next one."""
        if tp in self._txn_adding:
            return
        first = not self._txn_adding
        self._txn_adding.add(tp)
        if first:
            assert self._group is not None
            self._group.create_task(self._add_partitions())

    async def _add_partitions(self) -> None:
        assert self._transactional_id is not None
        try:
            await asyncio.sleep(0)  # the partitions of this dispatch round go together
            while self._txn_adding:
                asking = sorted(self._txn_adding)
                topics: dict[str, list[int]] = defaultdict(list)
                for topic, partition in asking:
                    topics[topic].append(partition)
                response = await self._to_coordinator(
                    AddPartitionsToTxnRequest(
                        self._transactional_id, self._producer_id, self._epoch, list(topics.items())
                    )
                )
                again = False
                for topic, partitions in response.errors:
                    for partition, code in partitions:
                        tp = (topic, partition)
                        if code == 0:
                            self._txn_added.add(tp)
                            self._txn_adding.discard(tp)
                        elif code in _TXN_MOVED:
                            self._coordinator, again = None, True
                        elif code in _TXN_WAIT or code == _OPERATION_NOT_ATTEMPTED:
                            again = True
                        elif code in _FATAL:
                            raise response_error(code, topic)
                        else:  # say, not authorized for that topic: its batches fail
                            self._txn_adding.discard(tp)
                            pq = self._queues[tp]
                            error = response_error(code, topic)
                            for send in pq.drain():
                                if not send.payload.future.done():
                                    send.payload.future.set_exception(error)
                                    send.payload.future.add_done_callback(_retrieve)
                self._wake.set()
                if again:
                    await asyncio.sleep(self._backoff)
        except Exception as exc:  # noqa: BLE001  (the transaction cannot go on: the producer stops)
            self._txn_adding.clear()
            self._die(exc)

    async def commit_transaction(self) -> None:
        """Wait for every batch of the transaction (raising the first failure: no commit then), then
        EndTxn(commit)."""
        if not self._in_txn:
            raise MirrorError("no transaction is open")
        futures = self._txn_futures
        if futures:
            self._hurry()
            await asyncio.wait(futures)
        for future in futures:
            if not future.cancelled() and (error := future.exception()) is not None:
                raise delivery_error(error) from error
        self._check_usable()
        async with errors_translated(self.cluster):
            try:
                await self._end_txn(commit=True)
            except ke.KafkaError as exc:
                self._die(exc)
                raise
        self._in_txn = False

    async def abort_transaction(self) -> None:
        """Drop what is not sent, wait for what is in flight, EndTxn(abort): bounded, errors suppressed."""
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._abort(), _ABORT_TIMEOUT)
        self._in_txn = False

    async def _abort(self) -> None:
        aborted = ke.KafkaError("the transaction was aborted before the batch was sent")
        for pq in self._queues.values():
            while pq.queued:
                job = pq.queued.popleft().payload
                if not job.future.done():
                    job.future.set_exception(aborted)
                    job.future.add_done_callback(_retrieve)
        if self._txn_futures:
            await asyncio.wait(self._txn_futures)
        if self._fatal is None:
            await self._end_txn(commit=False)

    async def _end_txn(self, *, commit: bool) -> None:
        assert self._transactional_id is not None
        if not self._txn_added:
            return  # nothing was written in it
        while True:
            response = await self._to_coordinator(
                EndTxnRequest(self._transactional_id, self._producer_id, self._epoch, commit)
            )
            code = int(response.error_code)
            if code == 0:
                self._txn_added.clear()
                return
            if code in _TXN_MOVED:
                self._coordinator = None
            elif code not in _TXN_WAIT:
                raise response_error(code, "")
            await asyncio.sleep(self._backoff)


async def known_partition(client: Any, cluster: ClusterSettings, topic: str, partition: int) -> None:
    """A client sends only to partitions in its metadata: refresh it once when ``partition`` is not there;
    `AuthorizationFailed` or `KafkaRequestFailed` naming the topic when it is still not."""
    known = client.cluster.partitions_for_topic(topic)
    if known is not None and partition in known:
        return
    async with errors_translated(cluster):
        await client.force_metadata_update()
    known = client.cluster.partitions_for_topic(topic)
    if topic in client.cluster.unauthorized_topics:
        raise denied_error(cluster, "DESCRIBE/WRITE", f"topic '{topic}'", ke.TopicAuthorizationFailedError())
    if known is None or partition not in known:
        raise KafkaRequestFailed(f"partition {partition} of {topic} is not (yet) in the target's metadata")
