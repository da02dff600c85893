"""`mirror.kafka.send_queue.PartitionQueue` against a model broker (docs/record-batches.md, "Producing"):
whatever requests are lost, answered late or refused as out of order, every send lands once, in call
order, at the offset it is told; never more than the window unacknowledged; coalescing only when sends
queue behind a full window."""

from __future__ import annotations

import copy
from collections import deque
from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from mirror.kafka import batches
from mirror.kafka.batches import Codec
from mirror.kafka.send_queue import WINDOW, PartitionQueue, Send, Stamped

BACKOFF, TIMEOUT = 0.1, 1e9


class Broker:
    """One partition's leader with idempotence: appends a batch whose sequence follows the last one,
    answers a retry of one of its last 5 batches with its first offset, refuses other sequences. Like
    Kafka's, it takes any sequence from a producer it knows nothing of yet."""

    def __init__(self) -> None:
        self.log: list[tuple[int, int]] = []  # (send id, record index)
        self.next_sequence = 0
        self.recent: deque[tuple[int, int]] = deque(maxlen=WINDOW)  # (base sequence, base offset)

    def produce(self, batch: Stamped[int]) -> int | None:
        """The batch's base offset, or None: out of order."""
        for sequence, offset in self.recent:
            if sequence == batch.base_sequence:
                return offset
        if self.recent and batch.base_sequence != self.next_sequence:
            return None
        offset = len(self.log)
        for send, _ in batch.parts:
            self.log += [(send.payload, i) for i in range(send.count)]
        self.recent.append((batch.base_sequence, offset))
        self.next_sequence = batch.base_sequence + batch.count
        return offset


def stamp(sends: list[Send[int]], base_sequence: int) -> bytes:
    return b"x" * sum(s.size for s in sends)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_every_send_lands_once_in_order_at_its_offset(data: st.DataObject) -> None:
    queue: PartitionQueue[int] = PartitionQueue(
        merge_bytes=data.draw(st.integers(1, 400)),
        small=data.draw(st.sampled_from([0, 100])),
        linger=data.draw(st.sampled_from([0.0, 0.05, 0.25])),
    )
    kinds = data.draw(st.integers(1, 2))  # one kind: merges as often as without kinds; two: where they end
    broker = Broker()
    flying: deque[Stamped[int]] = deque()  # requests on one connection: answered in order
    told: dict[int, int] = {}
    counts: dict[int, int] = {}
    sequence_of: dict[int, tuple[int, int]] = {}  # batch serial -> (base sequence, count): never changes
    now, pushed = 0.0, 0

    def dispatch() -> None:
        while (batch := queue.next_batch(now, stamp)) is not None:
            assert batch.serial not in sequence_of or sequence_of[batch.serial] == (
                batch.base_sequence,
                batch.count,
            ), "a retried batch goes with its sequence"
            if queue.retrying:
                assert not flying, "a retry waits for the partition's requests in flight"
            assert len({s.kind for s, _ in batch.parts}) == 1, "only sends of one kind merge"
            sequence_of[batch.serial] = (batch.base_sequence, batch.count)
            flying.append(batch)
            assert len(queue.unacked) <= WINDOW
        free = (WINDOW if queue.confirmed else 1) > len(queue.unacked)
        if queue.queued and free and not queue.retrying and queue.in_flight == len(queue.unacked):
            left = queue.linger_left(now)  # held back only by a linger, which says when it ends
            assert left is not None and 0 < left <= queue.linger
            later = copy.deepcopy(queue)  # and only for sends that then go with it
            batch = later.next_batch(now + queue.linger, stamp)
            assert batch is not None and len(batch.parts) == len(queue.queued), "it lingered in vain"

    def answer(outcome: str) -> None:
        batch = flying.popleft()
        offset = broker.produce(batch) if outcome in ("ok", "lost-answer") else None
        if outcome == "ok" and offset is not None:
            queue.acked(batch)
            for send, delta in batch.parts:
                told[send.payload] = offset + delta
        elif outcome == "ok":  # out of order: only behind an earlier batch still to land
            assert queue.earlier_unacked(batch)
            queue.retry(batch, RuntimeError("out of order"), now, BACKOFF, TIMEOUT)
        else:
            queue.retry(batch, RuntimeError(outcome), now, BACKOFF, TIMEOUT)

    for _ in range(data.draw(st.integers(1, 60))):
        step = data.draw(st.sampled_from(["push", "push", "dispatch", "answer", "answer", "wait", "flush"]))
        if step == "push":
            counts[pushed] = data.draw(st.integers(1, 4))
            size, lingers = data.draw(st.integers(1, 200)), data.draw(st.booleans())
            mergeable, kind = data.draw(st.booleans()), data.draw(st.integers(0, kinds - 1))
            queue.push(Send(pushed, counts[pushed], size, now, mergeable, lingers=lingers, kind=kind))
            pushed += 1
        elif step == "flush":
            queue.flushed = now
        elif step == "dispatch":
            dispatch()
        elif step == "answer" and flying:
            answer(data.draw(st.sampled_from(["ok", "ok", "ok", "lost-answer", "not-delivered"])))
        elif step == "wait":
            now += BACKOFF
    for _ in range(10 * pushed + 20):  # then the network heals
        now += BACKOFF
        dispatch()
        while flying:
            answer("ok")
            dispatch()
        if queue.idle:
            break
    assert queue.idle and queue.take_failures() == []
    expected = [(send, i) for send in range(pushed) for i in range(counts[send])]
    assert broker.log == expected
    assert told == {send: broker.log.index((send, 0)) for send in range(pushed)}


def _queue_of(n: int, merge_bytes: int = 1000) -> PartitionQueue[int]:
    """A queue whose first batch (send -1, sequence 0, 2 records) is acknowledged, with ``n`` sends of 2
    records and 100 bytes queued."""
    queue: PartitionQueue[int] = PartitionQueue(merge_bytes)
    queue.push(Send(-1, 2, 100))
    first = queue.next_batch(0.0, stamp)
    assert first is not None
    queue.acked(first)
    for i in range(n):
        queue.push(Send(i, 2, 100))
    return queue


def test_one_batch_is_in_flight_until_the_partition_has_an_acknowledgement() -> None:
    queue: PartitionQueue[int] = PartitionQueue(merge_bytes=100)
    for i in range(3):
        queue.push(Send(i, 1, 100))
    first = queue.next_batch(0.0, stamp)
    assert first is not None and queue.next_batch(0.0, stamp) is None
    queue.acked(first)
    assert queue.next_batch(0.0, stamp) is not None and queue.next_batch(0.0, stamp) is not None


def test_sends_are_not_merged_while_the_window_has_room_for_them() -> None:
    queue = _queue_of(WINDOW)
    batches = [queue.next_batch(0.0, stamp) for _ in range(WINDOW)]
    assert [len(b.parts) for b in batches if b] == [1] * WINDOW
    assert [b.base_sequence for b in batches if b] == [2, 4, 6, 8, 10]
    assert queue.next_batch(0.0, stamp) is None


def test_sends_queued_behind_a_full_window_are_merged_up_to_the_batch_size() -> None:
    queue = _queue_of(30, merge_bytes=1000)
    first = queue.next_batch(0.0, stamp)
    assert first is not None
    assert [delta for _, delta in first.parts] == [0, 2, 4, 6, 8, 10, 12, 14, 16, 18]  # 10 x 100 bytes
    assert first.count == 20
    second = queue.next_batch(0.0, stamp)
    assert second is not None and second.base_sequence == 22


def test_sends_are_merged_only_while_acknowledgements_are_slow() -> None:
    """On a fast network each send goes as it came (no re-encoding); once acknowledgements take at least
    ``coalesce_after`` (the partition's first one not counted), sends queued behind the window merge."""
    queue: PartitionQueue[int] = PartitionQueue(merge_bytes=1000, coalesce_after=0.03)
    queue.push(Send(-1, 1, 100))
    first = queue.next_batch(0.0, stamp)
    assert first is not None
    queue.acked(first, now=5.0)  # waited for a new leader: not counted
    for i in range(20):
        queue.push(Send(i, 1, 100))
    fast = [queue.next_batch(5.0, stamp) for _ in range(WINDOW)]
    assert [len(b.parts) for b in fast if b] == [1] * WINDOW
    for b in fast:
        assert b is not None
        queue.acked(b, now=5.01)  # 10 ms
    assert queue.rtt < 0.03
    quick = queue.next_batch(5.01, stamp)
    assert quick is not None and len(quick.parts) == 1
    queue.acked(quick, now=5.2)  # a slow one: 190 ms
    slow = queue.next_batch(5.2, stamp)
    assert queue.rtt >= 0.03 and slow is not None and len(slow.parts) > 1


def test_small_sends_queued_behind_a_full_window_merge_even_on_a_fast_network() -> None:
    """Tiny source batches (a producer with no linger) cost more per batch sent than their re-encoding:
    behind a full window they merge whatever the round trip; large ones still go as they came."""
    for size, merged in ((100, True), (50_000, False)):
        queue: PartitionQueue[int] = PartitionQueue(merge_bytes=1 << 20, coalesce_after=0.03, small=16384)
        queue.push(Send(-1, 1, size))
        first = queue.next_batch(0.0, stamp)
        assert first is not None
        queue.acked(first, now=0.001)
        for i in range(20):
            queue.push(Send(i, 1, size))
        batches = [queue.next_batch(0.001, stamp) for _ in range(WINDOW)]
        assert (max(len(b.parts) for b in batches if b) > 1) is merged, size


def _lingering_queue(linger: float = 0.005) -> PartitionQueue[int]:
    """A queue with ``linger`` for sends under 1000 bytes whose first batch is acknowledged."""
    queue: PartitionQueue[int] = PartitionQueue(merge_bytes=4000, small=1000, linger=linger)
    queue.push(Send(-1, 1, 2000))  # not small: goes at once
    first = queue.next_batch(0.0, stamp)
    assert first is not None
    queue.acked(first)
    return queue


def test_a_small_send_lingers_for_more_small_sends_to_merge_with() -> None:
    """``linger.ms``: a send under the small size waits that long after it was queued, then goes merged
    with the small sends queued behind it meanwhile; with no linger it goes at once."""
    queue = _lingering_queue()
    queue.push(Send(0, 1, 100, queued_at=1.0))
    assert queue.next_batch(1.001, stamp) is None
    left = queue.linger_left(1.001)
    assert left is not None and abs(left - 0.004) < 1e-9
    for i in (1, 2, 3):
        queue.push(Send(i, 1, 100, queued_at=1.002))
    assert queue.next_batch(1.004, stamp) is None
    batch = queue.next_batch(1.005, stamp)
    assert batch is not None and [s.payload for s, _ in batch.parts] == [0, 1, 2, 3]
    assert [delta for _, delta in batch.parts] == [0, 1, 2, 3]
    eager = _lingering_queue(linger=0.0)
    eager.push(Send(0, 1, 100, queued_at=1.0))
    assert eager.linger_left(1.0) is None and eager.next_batch(1.0, stamp) is not None


def test_the_linger_left_never_exceeds_the_linger() -> None:
    """Pushed and asked at the same instant, the whole linger is left, not a float rounding above it (the
    dispatcher sleeps at most ``linger``; CI once drew 0.1 + 0.05 - 0.1 = 0.05000000000000002)."""
    queue = _lingering_queue(linger=0.05)
    queue.push(Send(0, 1, 100, queued_at=0.1))
    left = queue.linger_left(0.1)
    assert left is not None and 0 < left <= queue.linger


def test_large_unmergeable_or_enough_sends_do_not_linger() -> None:
    """Only small mergeable sends linger, and only while what is queued would not fill a batch; a small
    send with a large one behind it goes at once and alone (the large one passes as it is)."""
    cases: list[tuple[list[Send[int]], list[list[int]]]] = [
        ([Send(0, 1, 5000, queued_at=1.0)], [[0]]),  # not small
        ([Send(0, 1, 100, queued_at=1.0, mergeable=False)], [[0]]),
        ([Send(0, 1, 100, queued_at=1.0), Send(1, 1, 5000, queued_at=1.0)], [[0], [1]]),
        ([Send(i, 1, 900, queued_at=1.0) for i in range(5)], [[0, 1, 2, 3], [4]]),  # 4 of them fill 4000
    ]
    for sends, expected in cases:
        queue = _lingering_queue()
        for send in sends:
            queue.push(send)
        got = []
        while (batch := queue.next_batch(1.0, stamp)) is not None:
            got.append([s.payload for s, _ in batch.parts])
        assert got[: len(expected)] == expected[: len(got)] and got[0] == expected[0], (sends, got)


def test_re_sends_go_before_a_lingering_send() -> None:
    """A retried batch is never held back by a small send lingering behind it."""
    queue = _lingering_queue()
    queue.push(Send(0, 1, 5000, queued_at=1.0))
    sent = queue.next_batch(1.0, stamp)
    assert sent is not None
    queue.push(Send(1, 1, 100, queued_at=1.0))
    queue.retry(sent, RuntimeError("lost"), 1.0, 0.0, TIMEOUT)
    assert queue.linger_left(1.0) is None
    again = queue.next_batch(1.0, stamp)
    assert again is sent


def test_sends_that_are_not_mergeable_go_as_batches_of_their_own() -> None:
    """A source task narrowing down on a refused record (or re-sending a refused merged batch) needs each
    of its batches refused or taken alone: such sends are never merged, before or after a mergeable one."""
    queue = _queue_of(0)
    for i in range(30):
        queue.push(Send(i, 2, 100, mergeable=i not in (3, 4)))
    got = []
    while (batch := queue.next_batch(0.0, stamp)) is not None:
        got.append([s.payload for s, _ in batch.parts])
    assert got == [[0, 1, 2], [3], [4], list(range(5, 15)), list(range(15, 25))]  # a full window


def test_sends_of_another_kind_are_never_merged_nor_lingered_for() -> None:
    """The producer's kinds are compression codecs: an uncompressed batch merged into a compressed one
    (or the reverse) would be rebuilt in the head's codec, far larger (or smaller) than the sizes added up.
    A small send with one of another kind behind it goes at once."""
    queue = _queue_of(0)
    for i in range(10):
        queue.push(Send(i, 2, 100, kind=0 if i < 3 or i > 5 else 4))
    got = []
    while (batch := queue.next_batch(0.0, stamp)) is not None:
        got.append([s.payload for s, _ in batch.parts])
    assert got == [[0, 1, 2], [3, 4, 5], [6, 7, 8, 9]]
    lingering = _lingering_queue()
    lingering.push(Send(0, 1, 100, queued_at=1.0))
    assert lingering.linger_left(1.0) is not None
    lingering.push(Send(1, 1, 100, queued_at=1.0, kind=4))
    assert lingering.linger_left(1.0) is None


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_a_send_lingers_only_for_the_sends_that_then_go_with_it(data: st.DataObject) -> None:
    """``linger.ms`` (docs/record-batches.md, "Producing"): a small send at the head waits only while each
    send queued behind it can still go merged with it (small, mergeable, may linger, of its kind, within a
    batch): its linger over, they all go in one batch. Anything else behind it sends what is queued at
    once, in order, each batch of one kind."""
    queue = _lingering_queue(linger=0.05)
    now, pushed, sent = 1.0, 0, list[int]()
    for _ in range(data.draw(st.integers(1, 12))):
        now += data.draw(st.sampled_from([0.0, 0.0, 0.01, 0.06]))
        size = data.draw(st.sampled_from([100, 100, 900, 2000]))
        mergeable, lingers = data.draw(st.booleans()), data.draw(st.sampled_from([True, True, False]))
        kind = data.draw(st.sampled_from([0, 0, 1]))
        queue.push(Send(pushed, 1, size, now, mergeable, lingers=lingers, kind=kind))
        pushed += 1
        while queue.queued:
            if queue.linger_left(now) is not None:
                assert queue.next_batch(now, stamp) is None
                later = copy.deepcopy(queue)
                batch = later.next_batch(now + queue.linger, stamp)
                assert batch is not None and len(batch.parts) == len(queue.queued), "it lingered in vain"
                break
            batch = queue.next_batch(now, stamp)
            assert batch is not None, "neither lingering nor going"
            assert len({s.kind for s, _ in batch.parts}) == 1
            sent += [s.payload for s, _ in batch.parts]
            queue.acked(batch)
    assert sent == list(range(len(sent))) and len(sent) + len(queue.queued) == pushed


def test_a_refused_batch_fails_every_later_send_of_its_partition() -> None:
    queue = _queue_of(3)
    first, refused, later = (queue.next_batch(0.0, stamp) for _ in range(3))
    assert first and refused and later
    queue.acked(first)
    too_large, behind = ValueError("too large"), RuntimeError("behind")
    queue.refuse(refused, too_large, behind)
    queue.push(Send(99, 1, 1))
    assert queue.next_batch(1.0, stamp) is None
    queue.refuse(later, RuntimeError("out of order"), behind)  # its answer comes later
    failed = {send.payload: error for send, error in queue.take_failures()}
    assert failed == {1: too_large, 2: behind, 99: behind}


def test_retries_past_the_delivery_timeout_fail_the_partition() -> None:
    queue = _queue_of(2)
    first, second = queue.next_batch(0.0, stamp), queue.next_batch(0.0, stamp)
    assert first and second
    lost = ConnectionError("lost")
    queue.retry(first, lost, 5.0, BACKOFF, delivery_timeout=10.0)
    queue.retry(second, lost, 5.0, BACKOFF, delivery_timeout=10.0)
    assert queue.next_batch(5.0, stamp) is None  # backing off
    again = queue.next_batch(5.0 + BACKOFF, stamp)
    assert again is first and queue.next_batch(5.0 + BACKOFF, stamp) is None  # the first one alone
    queue.retry(first, lost, 11.0, BACKOFF, delivery_timeout=10.0)
    assert {send.payload for send, _ in queue.take_failures()} == {0, 1}
    assert queue.dead is lost


def test_sends_that_cannot_be_sent_fail_past_the_delivery_timeout() -> None:
    queue: PartitionQueue[int] = PartitionQueue(merge_bytes=100)
    queue.push(Send(0, 1, 10, queued_at=0.0))
    no_leader = LookupError("no leader")
    queue.expire(9.0, 10.0, no_leader)
    assert queue.take_failures() == [] and queue.dead is None
    queue.expire(11.0, 10.0, no_leader)
    assert [(send.payload, error) for send, error in queue.take_failures()] == [(0, no_leader)]
    assert queue.dead is no_leader


def test_a_batch_that_cannot_be_built_stops_the_partition() -> None:
    queue = _queue_of(2)

    def broken(sends: list[Send[int]], base_sequence: int) -> bytes:
        raise ValueError("corrupt")

    assert queue.next_batch(0.0, broken) is None
    assert sorted(send.payload for send, _ in queue.take_failures()) == [0, 1]
    assert isinstance(queue.dead, ValueError)


@dataclass(frozen=True)
class Rec:
    """A record as `BatchProducer.send` takes it."""

    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]]


record = st.builds(
    Rec,
    timestamp=st.integers(0, 1 << 42),
    key=st.none() | st.binary(max_size=200),
    value=st.none() | st.binary(max_size=300),
    headers=st.lists(st.tuples(st.text(max_size=20), st.none() | st.binary(max_size=300)), max_size=6),
)


@settings(max_examples=200, deadline=None)
@given(
    sends=st.lists(st.lists(record, min_size=1, max_size=4), min_size=2, max_size=12),
    merge=st.integers(1, 4000),
)
def test_a_merged_batch_of_records_stays_within_the_batch_size_and_its_header(
    sends: list[list[Rec]], merge: int
) -> None:
    """Sends of records counted as `batches.records_size` (what `BatchProducer.send` counts them as) merge
    into batches of at most the batch size plus a batch header, encoded as the producer encodes them
    (docs/record-batches.md, "Producing"), headers and all."""
    queue: PartitionQueue[list[Rec]] = PartitionQueue(merge, window=1)  # merged whenever one waits
    queue.push(Send([], 1, 1))
    first = queue.next_batch(0.0, lambda s, q: b"")
    assert first is not None
    queue.acked(first)
    for records in sends:
        queue.push(Send(records, len(records), batches.records_size(records)))

    def rebuild(merged: list[Send[list[Rec]]], base_sequence: int) -> bytes:
        data = batches.rebuild(
            [r for s in merged for r in s.payload],
            codec=Codec.NONE,
            producer_id=1,
            producer_epoch=0,
            base_sequence=base_sequence,
            transactional=False,
        )
        return bytes(data)

    while (batch := queue.next_batch(0.0, rebuild)) is not None:
        queue.acked(batch)
        if len(batch.parts) > 1:
            assert len(batch.data) <= merge + batches.HEADER_SIZE, (len(batch.data), merge)
    assert queue.idle
