"""`BatchFetcher`: source partitions fetched as record batches (bytes), pipelined in the background.

It speaks the Fetch protocol itself through aiokafka's public `AIOKafkaClient` and protocol classes
(docs/record-batches.md, "Fetching"): one request at a time per leader broker, asked again as soon as its
response is in, while the bytes buffered but not handed out stay under a bound. Each partition's bytes
are split into batches (`mirror.kafka.batches`): a batch that passes goes out as its bytes (CRC
checked), one that must be rebuilt as its decoded records, one to drop (markers, aborted transactions,
emptied by compaction) moves the position on and nothing more.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import time
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any, Final

import aiokafka.errors as ke
import structlog
from aiokafka import TopicPartition
from aiokafka.protocol.fetch import FetchRequest

from mirror.config import ClusterSettings
from mirror.errors import MirrorError, SourceOutOfRange
from mirror.kafka.batches import (
    AbortedTransactions,
    Action,
    Chunk,
    CorruptBatch,
    RawBatch,
    SourceBatch,
    decode,
    plan,
    split,
    verified,
)
from mirror.kafka.client_args import protocol_client
from mirror.kafka.closing import close_within
from mirror.kafka.errors import denied_error, error_for_code, errors_translated
from mirror.metrics import FetchMeters
from mirror.retry import Backoff, woken

__all__ = ["BatchFetcher"]

log = structlog.get_logger(__name__)

TP = tuple[str, int]

#: What the fetcher keeps buffered at most (and asks per response), unless ``fetch.max.bytes`` says.
DEFAULT_BUFFER_BYTES: Final = 64 * 1024 * 1024
DEFAULT_PARTITION_BYTES: Final = 4 * 1024 * 1024
_ISOLATION: Final = {"read_uncommitted": 0, "read_committed": 1}
#: Partition errors after which the leader may have moved: refresh metadata, back off, ask again.
_RELOCATED: Final = frozenset(
    cls.errno
    for cls in (
        ke.NotLeaderForPartitionError,
        ke.UnknownTopicOrPartitionError,
        ke.LeaderNotAvailableError,
        ke.ReplicaNotAvailableError,
        ke.KafkaStorageError,
    )
) | {74, 75, 78}  # FENCED_LEADER_EPOCH, UNKNOWN_LEADER_EPOCH, OFFSET_NOT_AVAILABLE
_OUT_OF_RANGE: Final = ke.OffsetOutOfRangeError.errno
_DENIED: Final = ke.TopicAuthorizationFailedError.errno
_LENGTH: Final = struct.Struct(">i")
_LOG_OVERHEAD: Final = 12
#: Longest wait between attempts at an unreachable broker (each failure is logged).
_MAX_BACKOFF_S: Final = 10.0


def _sooner(wait: float | None, seconds: float) -> float:
    return seconds if wait is None else min(wait, seconds)


def _cut(chunk: Chunk, n: int) -> tuple[Chunk, Chunk | None]:
    """The first ``n`` records of a chunk, and the rest (None: none); decoded (the throttled path only)."""
    if n >= chunk.count:
        return chunk, None
    records = chunk.records
    return Chunk.of(records[:n]), Chunk.of(records[n:])


class _Partition:
    """One assigned partition: where it is read, what is buffered of it, how it is doing."""

    __slots__ = (
        "aborted",
        "buffer",
        "buffered",
        "error",
        "fetch_offset",
        "generation",
        "grow",
        "handed",
        "highwater",
        "in_flight",
        "misses",
        "out_of_range",
        "paused",
        "retry_at",
        "tp",
    )

    def __init__(self, tp: TP, offset: int) -> None:
        self.tp = tp
        #: The next offset to ask the broker for (ahead of the position by what is buffered).
        self.fetch_offset = offset
        #: The position while something is buffered: the end of what was handed out last.
        self.handed = offset
        #: Buffered chunks (None: nothing of a batch reaches the caller), the offset after each, its bytes.
        self.buffer: deque[tuple[Chunk | None, int, int]] = deque()
        self.buffered = 0
        self.paused = False
        self.aborted = AbortedTransactions()
        self.highwater: int | None = None
        self.error: MirrorError | None = None
        self.out_of_range = False
        #: A fetch size raised for a batch bigger than the partition limit (0: none; until a seek).
        self.grow = 0
        self.retry_at = 0.0
        #: Attempts in a row that found no leader, or a leader that was not one any more.
        self.misses = 0
        self.in_flight = False
        #: Bumped by every seek, pause and drop: a response to an older request is not used.
        self.generation = 0

    @property
    def position(self) -> int:
        return self.handed if self.buffer else self.fetch_offset

    def reset(self, offset: int) -> None:
        """Read from ``offset`` on: what is buffered and what is in flight are dropped."""
        self.fetch_offset = self.handed = offset
        self.buffer.clear()
        self.buffered = 0
        self.aborted = AbortedTransactions()
        self.error = None
        self.out_of_range = False
        self.grow = 0
        self.retry_at = 0.0
        self.generation += 1


class BatchFetcher:
    """Fetches assigned source partitions as `SourceBatch`es of `Chunk`s, in the background; ``meters``:
    where its requests, errors and buffered bytes are counted (`mirror.metrics.FetchMeters`)."""

    def __init__(
        self,
        cluster: ClusterSettings,
        client_id: str,
        overrides: Mapping[str, str],
        isolation_level: str,
        meters: FetchMeters | None = None,
    ) -> None:
        self.cluster = cluster
        self._meters = FetchMeters() if meters is None else meters
        self._client, options = protocol_client(cluster, "consumer", overrides, client_id)
        isolation = str(options.get("isolation_level", isolation_level))
        if isolation not in _ISOLATION:
            raise ValueError(f"isolation level {isolation!r}: use read_committed or read_uncommitted")
        self._isolation = _ISOLATION[isolation]
        self._partition_bytes = int(options.get("max_partition_fetch_bytes", DEFAULT_PARTITION_BYTES))
        self._bound = int(options.get("fetch_max_bytes", DEFAULT_BUFFER_BYTES))
        self._max_wait_ms = int(options.get("fetch_max_wait_ms", 500))
        self._min_bytes = int(options.get("fetch_min_bytes", 1))
        self._retry_s = max(0.01, int(options.get("retry_backoff_ms", 100)) / 1000)
        self._limit: int | None = None
        self._partitions: dict[TP, _Partition] = {}
        self._buffered = 0
        self._busy: set[int] = set()  # brokers with a request in flight
        self._backoff: dict[int, Backoff] = {}
        self._failures: dict[int, int] = {}
        self._refreshing: asyncio.Task[None] | None = None
        self._refresh_after = 0.0
        self._refresh_backoff = Backoff(self._retry_s, _MAX_BACKOFF_S)
        self._wake = asyncio.Event()  # something changed: the driver looks for requests to send
        self._data = asyncio.Event()  # something came in: a waiting `fetch` looks
        self._rotate = 0
        self._main: asyncio.Task[None] | None = None
        self._tg: asyncio.TaskGroup | None = None

    # --- lifecycle ----------------------------------------------------------------------------------

    async def start(self) -> None:
        async with errors_translated(self.cluster):
            await self._client.bootstrap()
        started = asyncio.get_running_loop().create_future()
        self._main = asyncio.create_task(self._main_loop(started))
        await started

    async def close(self) -> None:
        main, self._main = self._main, None
        try:
            if main is not None:
                main.cancel()
                await asyncio.wait([main])  # its outcome is of no interest; a cancel of ours still propagates
        finally:  # (also when cancelled meanwhile: the client's connections closed, its bytes not counted)
            self._meters.buffered(0)
            await close_within(self._client.close())

    async def _main_loop(self, started: asyncio.Future[None]) -> None:
        async with asyncio.TaskGroup() as tg:
            self._tg = tg
            started.set_result(None)
            await self._drive()

    # --- what the caller controls -------------------------------------------------------------------

    def assign(self, positions: Mapping[TP, int]) -> None:
        """Fetch exactly these partitions, each from its offset (a partition kept at its position keeps
        what is buffered of it); none is paused."""
        old, self._partitions = self._partitions, {}
        for tp, offset in positions.items():
            p = old.pop(tp, None)
            if p is None:
                p = _Partition(tp, int(offset))
            elif p.position != offset or p.paused:
                self._drop(p, int(offset))
            p.paused = False
            self._partitions[tp] = p
        for p in old.values():
            self._drop(p, p.position)
        topics = {t for t, _ in positions}
        if topics:
            self._client.set_topics(sorted(topics))
        self._wake.set()

    def seek(self, positions: Mapping[TP, int]) -> None:
        """Read these assigned partitions from these offsets: nothing fetched before is handed out."""
        for tp, offset in positions.items():
            p = self._partitions.get(tp)
            if p is None:
                raise ValueError(f"seek: partition {tp[0]}-{tp[1]} is not assigned")
            self._drop(p, int(offset))
        self._wake.set()

    def pause(self, partitions: Iterable[TP]) -> None:
        """Stop fetching these; what is buffered of them is dropped (read again from the position)."""
        for tp in partitions:
            p = self._partitions.get(tp)
            if p is not None and not p.paused:
                self._drop(p, p.position)
                p.paused = True

    def resume(self, partitions: Iterable[TP]) -> None:
        for tp in partitions:
            p = self._partitions.get(tp)
            if p is not None:
                p.paused = False
        self._wake.set()

    def limit(self, bytes_per_partition: int | None) -> None:
        """Ask at most this much per partition and request from the next request on (None: as
        configured, ``max.partition.fetch.bytes``)."""
        self._limit = None if bytes_per_partition is None else max(1, bytes_per_partition)
        self._wake.set()

    def position(self, tp: TP) -> int:
        """The next offset handed out of this assigned partition."""
        return self._partitions[tp].position

    def highwater(self, tp: TP) -> int | None:
        """The partition's high watermark in the last fetch response (None: none yet)."""
        p = self._partitions.get(tp)
        return None if p is None else p.highwater

    @property
    def buffered(self) -> int:
        """Bytes fetched and not handed out yet (of batches to hand out or to drop)."""
        return self._buffered

    async def fetch(
        self, timeout_ms: int, max_bytes: int | None = None, max_records: int | None = None
    ) -> list[SourceBatch]:
        """What is buffered (whole batches, at most about ``max_bytes``, at least one; at most
        ``max_records`` records, a batch cut if need be: decoded, for the throttle); else waits up to
        ``timeout_ms`` for a response. [] when nothing came."""
        deadline = time.monotonic() + timeout_ms / 1000
        while True:
            self._raise_errors()
            out = self._hand_out(max_bytes, max_records)
            if out:
                return out
            left = deadline - time.monotonic()
            if left <= 0:
                return []
            self._data.clear()
            await woken(self._data, left)

    # --- handing out --------------------------------------------------------------------------------

    def _raise_errors(self) -> None:
        main = self._main
        if main is None:
            raise MirrorError("the fetcher is not started")
        if main.done():
            exc = None if main.cancelled() else main.exception()
            raise MirrorError(f"the fetcher stopped: {exc!r}") from exc
        lost = {p.tp: p.fetch_offset for p in self._partitions.values() if p.out_of_range and not p.buffer}
        if lost:
            raise SourceOutOfRange(lost)
        for p in self._partitions.values():
            if p.error is not None and not p.buffer:
                error, p.error = p.error, None
                self._wake.set()
                raise error

    def _hand_out(self, max_bytes: int | None, max_records: int | None) -> list[SourceBatch]:
        parts = [p for p in self._partitions.values() if p.buffer]
        if not parts:
            return []
        self._rotate = (self._rotate + 1) % len(parts)
        parts = parts[self._rotate :] + parts[: self._rotate]
        out: list[SourceBatch] = []
        size = count = 0
        for p in parts:
            chunks: list[Chunk] = []
            buffer = p.buffer
            while buffer:
                if (max_bytes is not None and size >= max_bytes) or (
                    max_records is not None and count >= max_records
                ):
                    break
                chunk, end, nbytes = buffer.popleft()
                if chunk is not None and max_records is not None and count + chunk.count > max_records:
                    chunk, rest = _cut(chunk, max(1, max_records - count))
                    if rest is not None:  # the rest stays first in line, with its share of the bytes
                        share = nbytes * rest.count // (rest.count + chunk.count)
                        buffer.appendleft((rest, end, share))
                        nbytes, end = nbytes - share, rest.first_offset
                p.buffered -= nbytes
                self._buffered -= nbytes
                p.handed = end
                if chunk is not None:
                    chunks.append(chunk)
                    size += nbytes
                    count += chunk.count
            if chunks:
                out.append(SourceBatch(p.tp[0], p.tp[1], chunks=chunks))
        self._meters.buffered(self._buffered)
        self._wake.set()  # room in the buffer
        return out

    def _drop(self, p: _Partition, offset: int) -> None:
        self._buffered -= p.buffered
        p.reset(offset)
        self._meters.buffered(self._buffered)

    # --- the background: requests and responses -----------------------------------------------------

    def _fetch_size(self, p: _Partition) -> int:
        size = self._partition_bytes if self._limit is None else min(self._partition_bytes, self._limit)
        return max(size, p.grow)

    def _cap(self, p: _Partition, active: int) -> int:
        """Bytes buffered of one partition above which it is not asked for more."""
        size = self._fetch_size(p)
        if self._limit is not None:
            return 2 * size  # throttled: read about what is handed out
        return max(2 * size, self._bound // max(1, active))

    async def _drive(self) -> None:
        while True:
            self._wake.clear()
            delay = self._dispatch()
            await woken(self._wake, delay)

    def _dispatch(self) -> float | None:
        """Send a request to each idle leader of partitions to fetch; seconds until a backoff ends."""
        if self._buffered >= self._bound:
            return None  # woken when the caller takes some
        now = time.monotonic()
        cluster = self._client.cluster
        active = [p for p in self._partitions.values() if not p.paused]
        by_node: dict[int, list[_Partition]] = {}
        wait: float | None = None
        unknown: list[_Partition] = []
        for p in active:
            if (
                p.in_flight
                or p.error is not None
                or p.out_of_range
                or p.buffered >= self._cap(p, len(active))
            ):
                continue
            if p.retry_at > now:
                wait = _sooner(wait, p.retry_at - now)
                continue
            node = cluster.leader_for_partition(TopicPartition(*p.tp))
            if node is None or node < 0:
                unknown.append(p)
                continue
            if node not in self._busy:
                by_node.setdefault(node, []).append(p)
        if unknown:
            until = self._refresh(unknown, now)
            if until is not None:
                wait = _sooner(wait, until)
        else:
            self._refresh_backoff.reset()
        assert self._tg is not None
        for node, parts in by_node.items():
            self._busy.add(node)
            for p in parts:
                p.in_flight = True
            self._tg.create_task(self._request(node, parts))
        return wait

    def _refresh(self, unknown: list[_Partition], now: float) -> float | None:
        """Partitions without a known leader (just assigned, or their leader is moving): a metadata
        refresh at once, the next ones after a backoff; seconds until the next may start (None: one is
        under way, its end wakes the driver)."""
        if self._refreshing is not None and not self._refreshing.done():
            return None
        if now < self._refresh_after:
            return self._refresh_after - now
        self._refresh_after = now + self._refresh_backoff.next()
        for p in unknown:
            self._missed(p, now, "no leader known", wait=False)
        assert self._tg is not None
        self._refreshing = self._tg.create_task(self._metadata())
        return None

    async def _metadata(self) -> None:
        with contextlib.suppress(ke.KafkaError, OSError, TimeoutError):
            await asyncio.wait_for(self._client.force_metadata_update(), 30)
        self._wake.set()

    def _missed(self, p: _Partition, now: float, why: str, *, wait: bool = True) -> float:
        """No leader to ask for ``p``, or one that is not any more: wait longer each time in a row (up to
        the maximum backoff), logged from the 8th time on (metadata is refreshed meanwhile)."""
        p.misses += 1
        delay: float = min(self._retry_s * 2.0 ** min(p.misses - 1, 16), _MAX_BACKOFF_S)
        if wait:
            p.retry_at = now + delay
        if p.misses >= 8 and p.misses & (p.misses - 1) == 0:
            log.warning(
                "fetch: partition has no reachable leader, retrying",
                cluster=self.cluster.alias,
                topic=p.tp[0],
                partition=p.tp[1],
                attempts=p.misses,
                reason=why,
                retry_in_s=round(delay, 2),
            )
        return delay

    async def _request(self, node: int, parts: list[_Partition]) -> None:
        sent = {p.tp: (p, p.generation, p.fetch_offset) for p in parts}
        topics: dict[str, list[tuple[int, int, int]]] = {}
        for p in parts:
            topics.setdefault(p.tp[0], []).append((p.tp[1], p.fetch_offset, self._fetch_size(p)))
        request = FetchRequest(
            self._max_wait_ms, self._min_bytes, self._bound, self._isolation, list(topics.items())
        )
        meters = self._meters
        sent_at = time.monotonic()
        try:
            try:
                response = await self._client.send(node, request)
            except (ke.KafkaError, OSError, TimeoutError) as exc:
                meters.request(None)
                meters.error(type(exc).__name__)
                self._failed(node, parts, exc)
                return
            meters.request(time.monotonic() - sent_at)
            error_code = getattr(response, "error_code", 0)
            if error_code:
                error = ke.for_code(error_code)()
                meters.error(type(error).__name__)
                self._failed(node, parts, error)
                return
            self._backoff.pop(node, None)
            if self._failures.pop(node, 0):
                log.info("fetch: broker answers again", cluster=self.cluster.alias, broker=node)
            self._answered(response, sent)
        finally:
            self._busy.discard(node)
            for p in parts:
                p.in_flight = False
            self._wake.set()

    def _failed(self, node: int, parts: list[_Partition], exc: BaseException) -> None:
        backoff = self._backoff.setdefault(node, Backoff(self._retry_s, _MAX_BACKOFF_S))
        delay = backoff.next()
        failures = self._failures[node] = self._failures.get(node, 0) + 1
        log.warning(
            "fetch: broker not reachable, retrying",
            cluster=self.cluster.alias,
            broker=node,
            failures=failures,
            retry_in_s=round(delay, 2),
            error=f"{type(exc).__name__}: {exc}",
        )
        retry_at = time.monotonic() + delay
        for p in parts:
            p.retry_at = retry_at
        self._client.force_metadata_update()

    def _answered(self, response: Any, sent: dict[TP, tuple[_Partition, int, int]]) -> None:
        version = response.API_VERSION
        now = time.monotonic()
        relocated = False
        came = False
        for topic, partitions in response.topics:
            for partition, code, highwater, *rest in partitions:
                tp = (topic, partition)
                p, generation, offset = sent.get(tp, (None, 0, 0))
                if p is None or self._partitions.get(tp) is not p or p.generation != generation:
                    continue  # sought, paused or unassigned meanwhile
                if p.fetch_offset != offset or p.paused:
                    continue
                if code != 0:
                    self._meters.error(ke.for_code(code).__name__)
                if code == 0:
                    p.misses = 0
                    p.highwater = highwater
                    aborted = None if version < 4 else (rest[2] if version >= 5 else rest[1])
                    if self._take(p, rest[-1], aborted):
                        came = True
                elif code in _RELOCATED:
                    relocated = True
                    self._missed(p, now, ke.for_code(code).__name__)
                elif code == _OUT_OF_RANGE:
                    p.out_of_range = True
                    came = True
                elif code == _DENIED:
                    exc = ke.TopicAuthorizationFailedError(topic)
                    p.error = denied_error(self.cluster, "READ", f"topic '{topic}'", exc)
                    came = True
                elif ke.for_code(code).retriable:
                    p.retry_at = now + self._retry_s
                else:
                    what = f"fetch {topic}-{partition} at offset {offset}"
                    p.error = error_for_code(code, what, cluster=self.cluster)
                    p.retry_at = now + self._retry_s
                    came = True
        self._meters.buffered(self._buffered)
        if relocated:
            self._client.force_metadata_update()
        if came:
            self._data.set()

    def _take(self, p: _Partition, data: bytes | None, aborted: list[Any] | None) -> bool:
        """Buffer what a response brought of one partition; whether anything changed for the caller."""
        if not data:
            return False
        committed = self._isolation == 1
        if committed and aborted:
            p.aborted.add(aborted)
        offset = p.fetch_offset
        was_empty = not p.buffer
        whole = False
        try:
            for batch in split(data):
                whole = True
                entry = self._chunk(p, batch, offset, committed)
                if entry is None:
                    continue
                p.buffer.append(entry)
                p.buffered += entry[2]
                self._buffered += entry[2]
                offset = entry[1]
        except CorruptBatch as exc:
            p.error = CorruptBatch(f"{p.tp[0]}-{p.tp[1]} at offset {offset}: {exc}")
        if was_empty and p.buffer:
            p.handed = p.fetch_offset
        p.fetch_offset = offset
        if not whole and len(data) >= _LOG_OVERHEAD:
            # only part of one batch: it is bigger than the partition limit; ask for all of it from now
            # on (until a seek), so batches of about that size do not cost a partial response each
            p.grow = max(p.grow, _LENGTH.unpack_from(data, 8)[0] + _LOG_OVERHEAD)
        return bool(p.buffer) or p.error is not None

    def _chunk(
        self, p: _Partition, batch: RawBatch, offset: int, committed: bool
    ) -> tuple[Chunk | None, int, int] | None:
        """One fetched batch as a buffer entry (chunk or None, the offset after it, its bytes); None
        when it lies wholly before ``offset``."""
        h = batch.header
        if h is not None and h.next_offset <= offset:
            return None
        action = p.aborted.plan(batch) if committed else plan(batch)
        if action is Action.DROP:
            assert h is not None
            return None, h.next_offset, batch.size
        if action is Action.PASS:
            assert h is not None
            if h.base_offset >= offset:
                return Chunk(raw=verified(batch)), h.next_offset, batch.size
        records = decode(batch)  # rebuilt, or a batch that starts before the position: cut
        if records and records[0].offset < offset:
            records = [r for r in records if r.offset >= offset]
        if h is not None:
            end = h.next_offset
        elif records:
            end = int(records[-1].offset) + 1
        else:
            return None
        return (Chunk.of(records) if records else None), end, batch.size
