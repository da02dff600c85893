"""The send queue of one target partition of `BatchProducer`: sequences, the in-flight window, coalescing
and retries in order (pure, no I/O; docs/record-batches.md, "Producing").

A `Send` is one call of ``BatchProducer.send``; a `Stamped` is one batch as it goes to the broker (one
send, or several merged), with its base sequence. Stamped batches stay in the queue until acknowledged,
and a retried one goes again with the same bytes and sequence. The queue never stamps a new batch while
``window`` batches are unacknowledged (the broker remembers the last 5 batches of a producer and partition
to recognise a retried one), and after a retriable error it sends nothing until no batch of the partition
is in flight any more, then re-sends the unacknowledged ones in sequence order, the first one alone.
Until the partition's first batch is acknowledged, only one is in flight: a broker that knows nothing of
the producer yet takes any sequence, so a second batch could land before a first one that failed.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Final, Generic, TypeVar

from mirror.kafka.batches import next_sequence

#: Batches of one producer and partition the broker remembers to recognise a retried one.
WINDOW: Final = 5
#: A head send lingers only while at most this many sends queue behind it (more: enough to merge now).
_LINGER_SCAN: Final = 64

T = TypeVar("T")


class Send(Generic[T]):
    """One queued send: what the caller gave (``payload``), its record count, its bytes, when it was
    queued (for the delivery timeout), whether it may be merged with its neighbours and whether it may
    linger (not: its caller waits for it before it queues more). Sends merge only with sends of the same
    ``kind`` (the producer's: their compression codec, so a merged batch is compressed like its parts and
    its size stays close to theirs)."""

    __slots__ = ("count", "kind", "lingers", "mergeable", "payload", "queued_at", "size")

    def __init__(
        self,
        payload: T,
        count: int,
        size: int,
        queued_at: float = 0.0,
        mergeable: bool = True,
        *,
        lingers: bool = True,
        kind: int = 0,
    ) -> None:
        self.payload, self.count, self.size, self.queued_at = payload, count, size, queued_at
        self.mergeable, self.lingers, self.kind = mergeable, lingers, kind

    def merges_with(self, head: Send[T]) -> bool:
        return self.mergeable and self.kind == head.kind


class Stamped(Generic[T]):
    """One batch as stamped for the target: its bytes, base sequence and the sends it carries, each with
    the offset delta of its first record in the batch."""

    __slots__ = ("acked", "base_sequence", "count", "data", "first_sent", "in_flight", "parts", "serial")

    def __init__(
        self, serial: int, base_sequence: int, data: bytes | bytearray, parts: list[tuple[Send[T], int]]
    ) -> None:
        self.serial, self.base_sequence, self.data, self.parts = serial, base_sequence, data, parts
        self.count = sum([s.count for s, _ in parts])
        self.in_flight = False
        self.acked = False
        self.first_sent = 0.0

    def __repr__(self) -> str:
        return f"Stamped(#{self.serial}, seq {self.base_sequence}, {self.count} records)"


#: Builds a batch's bytes from the sends it carries and its base sequence.
Stamper = Callable[[list[Send[T]], int], "bytes | bytearray"]


class PartitionQueue(Generic[T]):
    """The sends of one partition, in call order, and its stamped batches until acknowledged.

    Failures are collected, not raised: `take_failures` gives the sends to fail with their errors."""

    __slots__ = (
        "_failures",
        "_serial",
        "coalesce_after",
        "confirmed",
        "dead",
        "flushed",
        "in_flight",
        "linger",
        "merge_bytes",
        "next_sequence",
        "not_before",
        "queued",
        "retrying",
        "rtt",
        "small",
        "unacked",
        "window",
    )

    def __init__(
        self,
        merge_bytes: int,
        window: int = WINDOW,
        coalesce_after: float = 0.0,
        small: int = 0,
        linger: float = 0.0,
    ) -> None:
        self.merge_bytes, self.window = merge_bytes, window
        #: Merge queued sends only while acknowledgements take at least this long (seconds): over a long
        #: round trip merging buys throughput; on a fast network the batches go as they are (no re-encoding).
        self.coalesce_after = coalesce_after
        #: ...and whatever the round trip, sends smaller than this (bytes): a stream of tiny source
        #: batches costs more per batch sent than the re-encoding of their few records
        self.small = small
        #: A send smaller than ``small`` at the head waits up to this long (seconds, ``linger.ms``) for more
        #: small sends of the partition to merge with: a source producer without linger writes batches of
        #: a record or two, which the target, its consumers and we pay for per batch.
        self.linger = linger
        #: Sends queued up to this time go without lingering: somebody waits for them (a flush).
        self.flushed = float("-inf")
        #: How long the partition's acknowledgements take, smoothed (seconds since the batch's first send).
        self.rtt = 0.0
        self.queued: deque[Send[T]] = deque()
        #: Stamped, not acknowledged batches, in sequence order (in flight or waiting to be re-sent).
        self.unacked: deque[Stamped[T]] = deque()
        self.in_flight = 0
        self.next_sequence = 0
        self.retrying = False
        #: The broker acknowledged a batch of this partition: it knows our sequence from there on.
        self.confirmed = False
        self.not_before = 0.0
        #: Why this partition sends nothing more (a refused batch, a delivery timeout); later sends fail.
        self.dead: BaseException | None = None
        self._serial = 0
        self._failures: list[tuple[Send[T], BaseException]] = []

    # --- queueing and sending ----------------------------------------------------------------------------

    def push(self, send: Send[T]) -> None:
        if self.dead is not None:
            self._failures.append((send, self.dead))
        else:
            self.queued.append(send)

    @property
    def has_work(self) -> bool:
        """Something to send (now, or after a backoff)."""
        return bool(self.queued) or self.in_flight < len(self.unacked)

    @property
    def idle(self) -> bool:
        """Nothing queued, nothing unacknowledged."""
        return not self.queued and not self.unacked

    def next_batch(self, now: float, stamp: Stamper[T]) -> Stamped[T] | None:
        """The next batch to put in a request (marked in flight), or None: the window is full, a retry
        waits for the partition's requests in flight or for its backoff, or there is nothing to send."""
        if self.retrying:
            if self.in_flight or now < self.not_before:
                return None
            for batch in self.unacked:  # the first unacknowledged one goes alone
                if not batch.acked:
                    return self._flying(batch)
            self.retrying = False
        if self.in_flight < len(self.unacked):  # re-sends after a retry, in sequence order
            for batch in self.unacked:
                if not batch.in_flight and not batch.acked:
                    return self._flying(batch)
        if not self.queued or self.dead is not None or self.linger_left(now) is not None:
            return None
        free = (self.window if self.confirmed else 1) - len(self.unacked)
        if free <= 0:
            return None
        sends = [self.queued.popleft()]
        head = sends[0]
        small = head.size < self.small
        behind = len(self.queued) >= free and (self.rtt >= self.coalesce_after or small)
        lingered = small and self.linger > 0
        if head.mergeable and (behind or lingered):
            size, limit = head.size, self.merge_bytes
            while self.queued and self.queued[0].merges_with(head) and size + self.queued[0].size <= limit:
                if not behind and self.queued[0].size >= self.small:
                    break  # lingered small sends merge with each other, not with a batch that goes as it is
                size += self.queued[0].size
                sends.append(self.queued.popleft())
        try:
            data = stamp(sends, self.next_sequence)
        except Exception as exc:  # noqa: BLE001  (a batch we cannot build: the partition stops here)
            self._kill(exc, [(s, exc) for s in sends])
            return None
        parts, delta = [], 0
        for s in sends:
            parts.append((s, delta))
            delta += s.count
        batch = Stamped(self._serial, self.next_sequence, data, parts)
        self._serial += 1
        self.next_sequence = next_sequence(self.next_sequence, batch.count)
        batch.first_sent = now
        self.unacked.append(batch)
        return self._flying(batch)

    def linger_left(self, now: float) -> float | None:
        """Seconds the small send at the head still waits for more to merge with (``linger``), or None:
        it goes now (no linger; not small or not mergeable; a send behind it goes as it is, is of another
        kind or may not linger; its linger is over; it was flushed; enough queued to fill a batch; re-sends
        or a dead partition come first)."""
        if self.linger <= 0 or not self.queued or self.retrying or self.dead is not None:
            return None
        if self.queued[0].queued_at <= self.flushed:
            return None
        if self.in_flight < len(self.unacked) or len(self.queued) > _LINGER_SCAN:
            return None
        left = self.queued[0].queued_at + self.linger - now
        if left <= 0:
            return None
        left = min(left, self.linger)  # float rounding: 0.1 + 0.05 - 0.1 > 0.05
        size, head = 0, self.queued[0]
        for send in self.queued:
            if not send.merges_with(head) or send.size >= self.small or not send.lingers:
                return None
            size += send.size
        return left if size < self.merge_bytes else None

    def _flying(self, batch: Stamped[T]) -> Stamped[T]:
        batch.in_flight = True
        self.in_flight += 1
        return batch

    # --- answers -------------------------------------------------------------------------------------------

    def acked(self, batch: Stamped[T], now: float | None = None) -> None:
        """The broker appended it (or recognised it as a retry of an appended one) at ``now``."""
        if now is not None and self.confirmed:  # the first one may have waited for a new leader: not counted
            took = max(0.0, now - batch.first_sent)
            self.rtt = took if self.rtt == 0.0 else 0.8 * self.rtt + 0.2 * took
        if batch.in_flight:
            batch.in_flight = False
            self.in_flight -= 1
        batch.acked = True
        self.confirmed = True
        if self.retrying and self.unacked and self.unacked[0] is batch:
            self.retrying = False  # the first re-sent batch is in: the rest may go pipelined again
        while self.unacked and self.unacked[0].acked:
            self.unacked.popleft()

    def earlier_unacked(self, batch: Stamped[T]) -> bool:
        """A batch before it is not acknowledged yet: an out-of-order sequence for it may only mean that
        one has not landed (yet)."""
        return bool(self.unacked) and self.unacked[0] is not batch and self.unacked[0].serial < batch.serial

    def retry(
        self, batch: Stamped[T], error: BaseException, now: float, backoff: float, delivery_timeout: float
    ) -> None:
        """A retriable failure: every unacknowledged batch goes again, in order, once none is in flight
        and ``backoff`` passed; past ``delivery_timeout`` since the oldest one was first sent, they all
        fail with ``error`` and the partition is dead."""
        if batch.in_flight:
            batch.in_flight = False
            self.in_flight -= 1
        if batch.acked:
            return
        if self.dead is not None:  # a batch still in flight when the partition died
            self._failures.extend((s, self.dead) for s, _ in batch.parts)
            self._remove(batch)
            return
        oldest = self.unacked[0] if self.unacked else batch
        if now - oldest.first_sent > delivery_timeout:
            self._kill(error, [(s, error) for b in self.unacked for s, _ in b.parts if not b.in_flight])
            return
        self.retrying = True
        self.not_before = max(self.not_before, now + backoff)

    def expire(self, now: float, delivery_timeout: float, error: BaseException) -> None:
        """Sends that could not even be sent (no leader known) past ``delivery_timeout`` fail with
        ``error``, and the partition is dead."""
        if self.queued and not self.unacked and now - self.queued[0].queued_at > delivery_timeout:
            self._kill(error, [])

    def refuse(self, batch: Stamped[T], error: BaseException, behind: BaseException) -> None:
        """The broker refuses the batch for good: its sends fail with ``error``, every later one with
        ``behind`` (out of sequence now); the partition is dead."""
        if batch.in_flight:
            batch.in_flight = False
            self.in_flight -= 1
        if self.dead is not None:  # a later batch of a dead partition
            self._failures.extend((s, self.dead) for s, _ in batch.parts)
            self._remove(batch)
            return
        failures = [(s, error) for s, _ in batch.parts]
        later = [b for b in self.unacked if b.serial > batch.serial and not b.in_flight and not b.acked]
        failures += [(s, behind) for b in later for s, _ in b.parts]
        self._remove(batch, *later)
        self._kill(behind, failures)

    def _remove(self, *gone: Stamped[T]) -> None:
        self.unacked = deque(b for b in self.unacked if b not in gone)

    def _kill(self, error: BaseException, failures: list[tuple[Send[T], BaseException]]) -> None:
        self.dead = error
        self.retrying = False
        self._failures.extend(failures)
        self._failures.extend((s, error) for s in self.queued)
        self.queued.clear()
        failed = {id(s) for s, _ in failures}
        self.unacked = deque(b for b in self.unacked if not any(id(s) in failed for s, _ in b.parts))

    def drain(self) -> list[Send[T]]:
        """Every send not acknowledged (queued, in flight or waiting): the producer fails or ends."""
        out = [s for b in self.unacked if not b.acked for s, _ in b.parts]
        out += self.queued
        self.queued.clear()
        self.unacked.clear()
        self.in_flight = 0
        return out

    def take_failures(self) -> list[tuple[Send[T], BaseException]]:
        """The sends that failed since the last call, with their errors."""
        failures, self._failures = self._failures, []
        return failures
