"""Offset-sync emission, the 64-slot OffsetSyncStore and checkpoint ordering (docs/mm2-compat.md §5)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mirror.mm2.offset_translation import (
    SYNCS_PER_PARTITION,
    OffsetSyncStore,
    OffsetSyncWriter,
    TopicPartition,
    checkpoint_is_more_recent,
)
from mirror.mm2.records import Checkpoint, OffsetSync

MAX = 2**63 - 1
MIN = -(2**63)
TP: TopicPartition = ("orders", 0)
TP2: TopicPartition = ("orders", 1)


def writer_snapshot(w: OffsetSyncWriter) -> tuple[list[tuple[TopicPartition, OffsetSync]], ...]:
    return (list(w.pending.items()), list(w.delayed.items()), [(("", 0), s) for s in w.fired])


# --- OffsetSyncWriter: the four rules -------------------------------------------------------------------


def test_first_record_triggers_a_sync() -> None:
    """(a) The first acked record of a partition in this writer's lifetime is synced at once."""
    w = OffsetSyncWriter(offset_lag_max=100)
    w.on_ack(TP, 0, 1)
    assert w.pending == {TP: OffsetSync("orders", 0, 0, 1)}
    assert w.delayed == {}
    assert w.has_pending()


def test_contiguous_records_are_delayed() -> None:
    """Records that follow on are only kept, newest first, in delayed."""
    w = OffsetSyncWriter(offset_lag_max=100)
    w.on_ack(TP, 0, 1)
    w.on_ack(TP, 1, 2)
    w.on_ack(TP, 2, 3)
    assert w.pending == {TP: OffsetSync("orders", 0, 0, 1)}
    assert w.delayed == {TP: OffsetSync("orders", 0, 2, 3)}


def test_offset_lag_max_triggers() -> None:
    """(b) A sync is due once downstream - (last sync downstream + 1) ≥ offset.lag.max."""
    w = OffsetSyncWriter(offset_lag_max=10)
    w.on_ack(TP, 0, 0)
    w.take_pending()
    for i in range(1, 11):
        w.on_ack(TP, i, i)
    assert not w.has_pending()  # 10 - (0 + 1) = 9 < 10
    w.on_ack(TP, 11, 11)  # 11 - 1 = 10 ≥ 10
    assert w.take_pending() == [OffsetSync("orders", 0, 11, 11)]
    assert w.delayed == {}


def test_upstream_gap_triggers() -> None:
    """(c) A gap in upstream offsets (compaction, transaction markers) triggers a sync."""
    w = OffsetSyncWriter(offset_lag_max=100)
    w.on_ack(TP, 0, 0)
    w.take_pending()
    w.on_ack(TP, 1, 1)
    w.on_ack(TP, 3, 2)
    assert w.take_pending() == [OffsetSync("orders", 0, 3, 2)]
    assert w.delayed == {}


def test_downstream_truncation_triggers() -> None:
    """(d) A downstream offset below the previous one (target truncated) triggers a sync."""
    w = OffsetSyncWriter(offset_lag_max=100)
    w.on_ack(TP, 0, 10)
    w.take_pending()
    w.on_ack(TP, 1, 11)
    w.on_ack(TP, 2, 5)
    assert w.take_pending() == [OffsetSync("orders", 0, 2, 5)]


def test_promote_delayed_keeps_linked_hash_map_order() -> None:
    """commit() promotes every delayed sync; a partition already pending keeps its place."""
    w = OffsetSyncWriter(offset_lag_max=100)
    w.on_ack(TP, 0, 0)
    w.on_ack(TP2, 0, 0)
    w.take_pending()
    w.on_ack(TP2, 1, 1)  # delayed
    w.on_ack(TP, 1, 1)  # delayed
    w.on_ack(("other", 0), 7, 7)  # pending
    w.on_ack(TP2, 5, 2)  # gap: TP2 pending, its delayed entry dropped
    assert list(w.pending) == [("other", 0), TP2]
    assert list(w.delayed) == [TP]
    w.promote_delayed()
    assert w.delayed == {}
    assert list(w.pending) == [("other", 0), TP2, TP]
    assert w.take_pending(2) == [OffsetSync("other", 0, 7, 7), OffsetSync("orders", 1, 5, 2)]
    assert w.take_pending(0) == []
    assert w.take_pending(10) == [OffsetSync("orders", 0, 1, 1)]
    assert w.take_pending() == []


def test_superseded_pending_sync_is_still_sent_first() -> None:
    """A newer triggered sync for the same partition takes the pending slot in place; the older one,
    which Java would have fired already, is kept and sent first (nothing triggered is lost)."""
    w = OffsetSyncWriter(offset_lag_max=0)
    w.on_ack(TP, 0, 0)
    w.on_ack(TP2, 0, 0)
    w.on_ack(TP, 1, 1)
    assert w.fired == [OffsetSync("orders", 0, 0, 0)]
    assert w.take_pending(2) == [OffsetSync("orders", 0, 0, 0), OffsetSync("orders", 0, 1, 1)]
    assert w.take_pending() == [OffsetSync("orders", 1, 0, 0)]


def test_remove_partitions_forgets_state() -> None:
    """A revoked partition's queues and state are dropped, so it syncs afresh if it comes back."""
    w = OffsetSyncWriter()
    w.on_ack(TP, 0, 0)
    w.on_ack(TP, 1, 1)
    w.remove_partitions([TP])
    assert w.pending == {} and w.delayed == {}
    w.on_ack(TP, 2, 2)
    assert w.take_pending() == [OffsetSync("orders", 0, 2, 2)]


def test_on_ack_batch_contiguous_example() -> None:
    """A contiguous batch leaves the last triggering record pending and its last record delayed."""
    w = OffsetSyncWriter(offset_lag_max=100)
    w.on_ack_batch(TP, 1000, 0, 250)
    # triggers at downstream 0 (first), 101 and 202 (lag); 249 is the last record
    assert w.fired == [OffsetSync("orders", 0, 1000, 0), OffsetSync("orders", 0, 1101, 101)]
    assert w.pending == {TP: OffsetSync("orders", 0, 1202, 202)}
    assert w.delayed == {TP: OffsetSync("orders", 0, 1249, 249)}


def test_on_ack_batch_is_constant_time_when_contiguous() -> None:
    """The hot path does not loop over the records: a batch of 10**12 records is immediate."""
    w = OffsetSyncWriter(offset_lag_max=100)
    count = 10**12 + 5
    w.on_ack_batch(TP, 0, 0, count)
    k = (count - 1) // 101 * 101  # triggers every offset.lag.max + 1 records
    assert k == 10**12 - 1
    assert w.pending == {TP: OffsetSync("orders", 0, k, k)}
    assert w.delayed == {TP: OffsetSync("orders", 0, count - 1, count - 1)}


def test_on_ack_batch_validates_offsets() -> None:
    """upstream_offsets must have `count` entries starting at first_upstream; count 0 is a no-op."""
    w = OffsetSyncWriter()
    with pytest.raises(ValueError, match="2 upstream offsets"):
        w.on_ack_batch(TP, 0, 0, 3, [0, 1])
    with pytest.raises(ValueError, match="start at 5"):
        w.on_ack_batch(TP, 0, 0, 2, [5, 6])
    w.on_ack_batch(TP, 0, 0, 0)
    assert w.pending == {} and w.delayed == {}


# A batch: (partition index, upstream gap before it, downstream jump before it, upstream gaps inside or None)
BATCH = st.tuples(
    st.integers(0, 2),
    st.sampled_from([1, 1, 1, 2, 5, 0, -3]),
    st.sampled_from([0, 0, 0, 1, 7, -4]),
    st.integers(1, 40),
    st.one_of(st.none(), st.lists(st.integers(1, 3), min_size=39, max_size=39)),
)


@settings(max_examples=300)
@given(
    st.sampled_from([-5, 0, 1, 2, 3, 10, 100]),
    st.lists(st.tuples(BATCH, st.integers(0, 4)), max_size=30),
    st.booleans(),
)
def test_on_ack_batch_equals_per_record_on_ack(
    lag: int, steps: list[tuple[tuple[int, int, int, int, list[int] | None], int]], precise: bool
) -> None:
    """on_ack_batch leaves exactly the state, queues and queue order of calling on_ack per record (Java's
    writer and the precise one, whose markers `take_pending` returns)."""
    batched, single = OffsetSyncWriter(lag, precise=precise), OffsetSyncWriter(lag, precise=precise)
    next_up = [0, 0, 0]
    next_down = [0, 0, 0]
    for (part, up_gap, down_jump, count, gaps), action in steps:
        tp = ("t", part)
        first_up = max(0, next_up[part] - 1 + up_gap)
        first_down = max(0, next_down[part] + down_jump)
        ups = [first_up]
        for i in range(1, count):
            ups.append(ups[-1] + (gaps[i - 1] if gaps is not None else 1))
        batched.on_ack_batch(tp, first_up, first_down, count, ups if gaps is not None else None)
        for i, up in enumerate(ups):
            single.on_ack(tp, up, first_down + i)
        next_up[part], next_down[part] = ups[-1] + 1, first_down + count
        assert writer_snapshot(batched) == writer_snapshot(single)
        if action == 1:
            batched.promote_delayed()
            single.promote_delayed()
        elif action == 2:
            assert batched.take_pending(3) == single.take_pending(3)
    assert writer_snapshot(batched) == writer_snapshot(single)
    assert batched.take_pending(10**6) == single.take_pending(10**6)


# --- OffsetSyncStore: translation rules -----------------------------------------------------------------


def sync(up: int, down: int, tp: TopicPartition = TP) -> OffsetSync:
    return OffsetSync(tp[0], tp[1], up, down)


def test_translation_is_absent_before_read_to_end() -> None:
    """Until the initial read of the offset-syncs topic completes, nothing is translated."""
    store = OffsetSyncStore()
    store.update(sync(100, 200))
    assert store.translate_downstream("g", TP, 150) is None
    store.mark_read_to_end()
    assert store.read_to_end
    assert store.translate_downstream("g", TP, 150) == 201


def test_translation_rules() -> None:
    """Older than every sync: -1; at a sync: its downstream; past it: its downstream + 1 (KAFKA-12468)."""
    store = OffsetSyncStore(initialization_must_read_to_end=False)
    store.mark_read_to_end()
    store.update(sync(100, 200))
    assert store.translate_downstream("g", TP, 0) == -1
    assert store.translate_downstream("g", TP, 99) == -1
    assert store.translate_downstream("g", TP, 100) == 200
    assert store.translate_downstream("g", TP, 150) == 201
    store.update(sync(150, 251))
    assert store.translate_downstream("g", TP, 100) == 200
    assert store.translate_downstream("g", TP, 149) == 201
    assert store.translate_downstream("g", TP, 150) == 251
    assert store.translate_downstream("g", TP, 10**6) == 252
    assert store.translate_downstream("g", TP2, 100) is None
    assert store.partitions() == [TP]
    assert store.syncs(TP2) is None


def test_translation_wraps_like_a_java_long() -> None:
    """downstream + 1 overflows to Long.MIN_VALUE, as in Java."""
    store = OffsetSyncStore()
    store.mark_read_to_end()
    store.update(sync(5, MAX))
    assert store.translate_downstream("g", TP, 6) == MIN


def test_first_sync_fills_every_slot() -> None:
    """The first sync of a partition occupies all 64 slots (the same object)."""
    store = OffsetSyncStore()
    first = sync(10, 20)
    store.update(first)
    slots = store.syncs(TP)
    assert slots is not None and len(slots) == SYNCS_PER_PARTITION
    assert all(s is first for s in slots)


def test_upstream_rewind_clears_the_store() -> None:
    """A sync whose upstream offset is below the newest one replaces every slot."""
    store = OffsetSyncStore()
    store.mark_read_to_end()
    for up in range(0, 1000, 10):
        store.update(sync(up, up))
    rewind = sync(500, 2000)
    store.update(rewind)
    slots = store.syncs(TP)
    assert slots is not None and all(s is rewind for s in slots)
    assert store.translate_downstream("g", TP, 499) == -1


def test_initial_load_keeps_only_the_last_sync_when_required() -> None:
    """With initializationMustReadToEnd, syncs read before the end only keep the newest one."""
    store = OffsetSyncStore(initialization_must_read_to_end=True)
    for up in range(100):
        store.update(sync(up, up))
    last = store.syncs(TP)
    assert last is not None and all(s.upstream_offset == 99 for s in last)
    store.mark_read_to_end()
    assert store.translate_downstream("g", TP, 50) == -1
    relaxed = OffsetSyncStore(initialization_must_read_to_end=False)
    for up in range(100):
        relaxed.update(sync(up, up))
    relaxed.mark_read_to_end()
    assert relaxed.translate_downstream("g", TP, 0) == 0


def test_slots_are_compared_by_identity() -> None:
    """Equal but distinct syncs are different slots, as Java compares references."""
    store = OffsetSyncStore()
    store.mark_read_to_end()
    a, b = sync(0, 0), sync(0, 0)
    assert a == b and a is not b
    store.update(a)
    store.update(b)
    slots = store.syncs(TP)
    assert slots is not None
    assert slots[0] is b
    assert all(s is a for s in slots[1:])


# Final slots ([first index, upstream, downstream] of each distinct sync) and translations of Java's own
# OffsetSyncStore (connect-mirror 4.3.1) for the scenarios of `store_scenarios` below, as generated by
# tests/interop/java/OffsetSyncStoreVectors.java (probes: MIN, 0, MAX and u-1, u, u+1 for every len/12-th
# and the last three distinct upstream offsets). tests/interop/test_java_offset_sync_store.py checks them
# against Java; `python -m tests.interop.test_java_offset_sync_store --print` regenerates this literal.
JAVA_STORE_VECTORS: dict[str, tuple[list[tuple[int, int, int]], list[tuple[int, int | None]]]] = {
    "linear": (
        [
            (0, 999, 999),
            (1, 998, 998),
            (2, 996, 996),
            (3, 992, 992),
            (4, 984, 984),
            (5, 976, 976),
            (6, 960, 960),
            (7, 896, 896),
            (8, 768, 768),
            (9, 512, 512),
            (10, 0, 0),
        ],
        [
            (-9223372036854775808, -1),
            (-1, -1),
            (0, 0),
            (1, 1),
            (82, 1),
            (83, 1),
            (84, 1),
            (165, 1),
            (166, 1),
            (167, 1),
            (248, 1),
            (249, 1),
            (250, 1),
            (331, 1),
            (332, 1),
            (333, 1),
            (414, 1),
            (415, 1),
            (416, 1),
            (497, 1),
            (498, 1),
            (499, 1),
            (580, 513),
            (581, 513),
            (582, 513),
            (663, 513),
            (664, 513),
            (665, 513),
            (746, 513),
            (747, 513),
            (748, 513),
            (829, 769),
            (830, 769),
            (831, 769),
            (912, 897),
            (913, 897),
            (914, 897),
            (995, 993),
            (996, 996),
            (997, 997),
            (998, 998),
            (999, 999),
            (1000, 1000),
            (9223372036854775807, 1000),
        ],
    ),
    "squares": (
        [
            (0, 89401, 598),
            (11, 88804, 596),
            (12, 87025, 590),
            (13, 85264, 584),
            (14, 81796, 572),
            (15, 68644, 524),
            (16, 53824, 464),
            (17, 0, 0),
        ],
        [
            (-9223372036854775808, -1),
            (-1, -1),
            (0, 0),
            (1, 1),
            (624, 1),
            (625, 1),
            (626, 1),
            (2499, 1),
            (2500, 1),
            (2501, 1),
            (5624, 1),
            (5625, 1),
            (5626, 1),
            (9999, 1),
            (10000, 1),
            (10001, 1),
            (15624, 1),
            (15625, 1),
            (15626, 1),
            (22499, 1),
            (22500, 1),
            (22501, 1),
            (30624, 1),
            (30625, 1),
            (30626, 1),
            (39999, 1),
            (40000, 1),
            (40001, 1),
            (50624, 1),
            (50625, 1),
            (50626, 1),
            (62499, 465),
            (62500, 465),
            (62501, 465),
            (75624, 525),
            (75625, 525),
            (75626, 525),
            (88208, 591),
            (88209, 591),
            (88210, 591),
            (88803, 591),
            (88804, 596),
            (88805, 597),
            (89400, 597),
            (89401, 598),
            (89402, 599),
            (9223372036854775807, 599),
        ],
    ),
    "near_max": (
        [
            (0, 9223372036854775807, 200),
            (4, 9223372036854775801, 142),
            (5, 9223372036854775787, 140),
            (6, 9223372036854775759, 136),
            (7, 9223372036854775703, 128),
            (8, 9223372036854775591, 112),
            (9, 9223372036854775479, 96),
            (10, 9223372036854775255, 64),
            (11, 9223372036854774807, 0),
        ],
        [
            (-9223372036854775808, -1),
            (0, -1),
            (9223372036854774806, -1),
            (9223372036854774807, 0),
            (9223372036854774808, 1),
            (9223372036854774890, 1),
            (9223372036854774891, 1),
            (9223372036854774892, 1),
            (9223372036854774974, 1),
            (9223372036854774975, 1),
            (9223372036854774976, 1),
            (9223372036854775058, 1),
            (9223372036854775059, 1),
            (9223372036854775060, 1),
            (9223372036854775142, 1),
            (9223372036854775143, 1),
            (9223372036854775144, 1),
            (9223372036854775226, 1),
            (9223372036854775227, 1),
            (9223372036854775228, 1),
            (9223372036854775310, 65),
            (9223372036854775311, 65),
            (9223372036854775312, 65),
            (9223372036854775394, 65),
            (9223372036854775395, 65),
            (9223372036854775396, 65),
            (9223372036854775478, 65),
            (9223372036854775479, 96),
            (9223372036854775480, 97),
            (9223372036854775562, 97),
            (9223372036854775563, 97),
            (9223372036854775564, 97),
            (9223372036854775646, 113),
            (9223372036854775647, 113),
            (9223372036854775648, 113),
            (9223372036854775730, 129),
            (9223372036854775731, 129),
            (9223372036854775732, 129),
            (9223372036854775793, 141),
            (9223372036854775794, 141),
            (9223372036854775795, 141),
            (9223372036854775800, 141),
            (9223372036854775801, 142),
            (9223372036854775802, 143),
            (9223372036854775806, 143),
            (9223372036854775807, 200),
        ],
    ),
    "must_read": (
        [
            (0, 199, 204),
            (3, 196, 201),
            (4, 190, 195),
            (5, 184, 189),
            (6, 172, 177),
            (7, 148, 153),
            (8, 99, 104),
        ],
        [
            (-9223372036854775808, -1),
            (-1, -1),
            (0, -1),
            (1, -1),
            (10, -1),
            (11, -1),
            (12, -1),
            (21, -1),
            (22, -1),
            (23, -1),
            (32, -1),
            (33, -1),
            (34, -1),
            (43, -1),
            (44, -1),
            (45, -1),
            (54, -1),
            (55, -1),
            (56, -1),
            (65, -1),
            (66, -1),
            (67, -1),
            (76, -1),
            (77, -1),
            (78, -1),
            (87, -1),
            (88, -1),
            (89, -1),
            (98, -1),
            (99, 104),
            (100, 105),
            (129, 105),
            (130, 105),
            (131, 105),
            (162, 154),
            (163, 154),
            (164, 154),
            (192, 196),
            (193, 196),
            (194, 196),
            (195, 196),
            (196, 201),
            (197, 202),
            (198, 202),
            (199, 204),
            (200, 205),
            (9223372036854775807, 205),
        ],
    ),
    "no_must_read": (
        [(0, 199, 204), (3, 196, 201), (4, 190, 195), (5, 184, 189), (6, 160, 165), (7, 112, 117), (8, 0, 5)],
        [
            (-9223372036854775808, -1),
            (-1, -1),
            (0, 5),
            (1, 6),
            (10, 6),
            (11, 6),
            (12, 6),
            (21, 6),
            (22, 6),
            (23, 6),
            (32, 6),
            (33, 6),
            (34, 6),
            (43, 6),
            (44, 6),
            (45, 6),
            (54, 6),
            (55, 6),
            (56, 6),
            (65, 6),
            (66, 6),
            (67, 6),
            (76, 6),
            (77, 6),
            (78, 6),
            (87, 6),
            (88, 6),
            (89, 6),
            (98, 6),
            (99, 6),
            (100, 6),
            (129, 118),
            (130, 118),
            (131, 118),
            (162, 166),
            (163, 166),
            (164, 166),
            (192, 196),
            (193, 196),
            (194, 196),
            (195, 196),
            (196, 201),
            (197, 202),
            (198, 202),
            (199, 204),
            (200, 205),
            (9223372036854775807, 205),
        ],
    ),
    "rewind": (
        [(0, 295, 1295), (4, 290, 1290), (5, 280, 1280), (6, 250, 1250), (7, 220, 1220), (8, 100, 1100)],
        [
            (-9223372036854775808, -1),
            (-1, -1),
            (0, -1),
            (1, -1),
            (43, -1),
            (44, -1),
            (45, -1),
            (87, -1),
            (88, -1),
            (89, -1),
            (125, 1101),
            (126, 1101),
            (127, 1101),
            (163, 1101),
            (164, 1101),
            (165, 1101),
            (199, 1101),
            (200, 1101),
            (201, 1101),
            (235, 1221),
            (236, 1221),
            (237, 1221),
            (273, 1251),
            (274, 1251),
            (275, 1251),
            (311, 1296),
            (312, 1296),
            (313, 1296),
            (355, 1296),
            (356, 1296),
            (357, 1296),
            (399, 1296),
            (400, 1296),
            (401, 1296),
            (443, 1296),
            (444, 1296),
            (445, 1296),
            (487, 1296),
            (488, 1296),
            (489, 1296),
            (493, 1296),
            (494, 1296),
            (495, 1296),
            (496, 1296),
            (497, 1296),
            (498, 1296),
            (499, 1296),
            (9223372036854775807, 1296),
        ],
    ),
    "wrap": (
        [(0, 8935141660703064064, 63), (1, -9223372036854775808, 0)],
        [
            (-9223372036854775808, 0),
            (-9223372036854775807, 1),
            (-7782220156096217089, 1),
            (-7782220156096217088, 1),
            (-7782220156096217087, 1),
            (-6341068275337658369, 1),
            (-6341068275337658368, 1),
            (-6341068275337658367, 1),
            (-4899916394579099649, 1),
            (-4899916394579099648, 1),
            (-4899916394579099647, 1),
            (-3458764513820540929, 1),
            (-3458764513820540928, 1),
            (-3458764513820540927, 1),
            (-2017612633061982209, 1),
            (-2017612633061982208, 1),
            (-2017612633061982207, 1),
            (-576460752303423489, 1),
            (-576460752303423488, 1),
            (-576460752303423487, 1),
            (0, 1),
            (864691128455135231, 1),
            (864691128455135232, 1),
            (864691128455135233, 1),
            (2305843009213693951, 1),
            (2305843009213693952, 1),
            (2305843009213693953, 1),
            (3746994889972252671, 1),
            (3746994889972252672, 1),
            (3746994889972252673, 1),
            (5188146770730811391, 1),
            (5188146770730811392, 1),
            (5188146770730811393, 1),
            (6629298651489370111, 1),
            (6629298651489370112, 1),
            (6629298651489370113, 1),
            (8070450532247928831, 1),
            (8070450532247928832, 1),
            (8070450532247928833, 1),
            (8358680908399640575, 1),
            (8358680908399640576, 1),
            (8358680908399640577, 1),
            (8646911284551352319, 1),
            (8646911284551352320, 1),
            (8646911284551352321, 1),
            (8935141660703064063, 1),
            (8935141660703064064, 63),
            (8935141660703064065, 64),
            (9223372036854775807, 64),
        ],
    ),
    "doubling": (
        [(0, 9223372036854775807, 63), (63, 4611686018427387903, 62)],
        [
            (-9223372036854775808, -1),
            (-1, -1),
            (0, -1),
            (1, -1),
            (30, -1),
            (31, -1),
            (32, -1),
            (1022, -1),
            (1023, -1),
            (1024, -1),
            (32766, -1),
            (32767, -1),
            (32768, -1),
            (1048574, -1),
            (1048575, -1),
            (1048576, -1),
            (33554430, -1),
            (33554431, -1),
            (33554432, -1),
            (1073741822, -1),
            (1073741823, -1),
            (1073741824, -1),
            (34359738366, -1),
            (34359738367, -1),
            (34359738368, -1),
            (1099511627774, -1),
            (1099511627775, -1),
            (1099511627776, -1),
            (35184372088830, -1),
            (35184372088831, -1),
            (35184372088832, -1),
            (1125899906842622, -1),
            (1125899906842623, -1),
            (1125899906842624, -1),
            (36028797018963966, -1),
            (36028797018963967, -1),
            (36028797018963968, -1),
            (1152921504606846974, -1),
            (1152921504606846975, -1),
            (1152921504606846976, -1),
            (2305843009213693950, -1),
            (2305843009213693951, -1),
            (2305843009213693952, -1),
            (4611686018427387902, -1),
            (4611686018427387903, 62),
            (4611686018427387904, 63),
            (9223372036854775806, 63),
            (9223372036854775807, 63),
        ],
    ),
}


def store_scenarios() -> Iterator[tuple[str, bool, int, list[tuple[int, int]]]]:
    """(name, initialization_must_read_to_end, index of the first sync read after the end, syncs)."""
    yield "linear", False, 0, [(u, u) for u in range(1000)]
    yield "squares", False, 0, [(i * i, 2 * i) for i in range(300)]
    yield "near_max", False, 0, [(MAX - 1000 + 7 * i, i) for i in range(143)] + [(MAX, 200)]
    yield "must_read", True, 100, [(u, u + 5) for u in range(100)] + [(u, u + 5) for u in range(100, 200, 3)]
    yield (
        "no_must_read",
        False,
        100,
        [(u, u + 5) for u in range(100)] + [(u, u + 5) for u in range(100, 200, 3)],
    )
    yield "rewind", False, 0, [(u, u) for u in range(0, 500, 2)] + [(u, 1000 + u) for u in range(100, 300, 5)]
    yield "wrap", False, 0, [(MIN + i * (1 << 58), i) for i in range(64)]
    yield "doubling", False, 0, [((1 << i) - 1, i) for i in range(63)] + [(MAX, 63)]


@pytest.mark.parametrize(("name", "must_read", "read_at", "syncs"), list(store_scenarios()))
def test_store_matches_java(name: str, must_read: bool, read_at: int, syncs: list[tuple[int, int]]) -> None:
    """Slots, their sharing and translations are bit-identical to Java's, int64 wrap-around included."""
    expected_runs, expected_translations = JAVA_STORE_VECTORS[name]
    store = OffsetSyncStore(must_read)
    for k, (up, down) in enumerate(syncs):
        if k == read_at:
            store.mark_read_to_end()
        store.update(sync(up, down))
    slots = store.syncs(TP)
    assert slots is not None
    runs = []
    for i, s in enumerate(slots):
        if all(slots[j] is not s for j in range(i)):
            runs.append((i, s.upstream_offset, s.downstream_offset))
        else:
            assert slots[i - 1] is s  # a sync occupies one contiguous run of slots
    assert runs == expected_runs
    for g, expected in expected_translations:
        assert store.translate_downstream("g", TP, g) == expected, g


# --- OffsetSyncStore: properties ------------------------------------------------------------------------

UPSTREAM_STEPS = st.lists(
    st.one_of(st.integers(1, 3), st.integers(1, 2**20), st.integers(1, 2**40)), min_size=1, max_size=120
)


@settings(max_examples=200)
@given(UPSTREAM_STEPS, st.integers(0, 2**40))
def test_store_invariants(steps: list[int], start: int) -> None:
    """After each sync: slot 0 is the newest, upstream offsets never increase along the slots, and
    invariant B (syncs[i].upstream ≤ syncs[i+1].upstream + 2^(i+1) - 2^i) holds for distinct neighbours."""
    store = OffsetSyncStore()
    store.mark_read_to_end()
    up = start
    for step in steps:
        up += step
        newest = sync(up, up)
        store.update(newest)
        slots = store.syncs(TP)
        assert slots is not None and slots[0] is newest
        for i in range(SYNCS_PER_PARTITION - 1):
            a, b = slots[i], slots[i + 1]
            assert a.upstream_offset >= b.upstream_offset
            if a is not b:
                assert a.upstream_offset <= b.upstream_offset + 2 ** (i + 1) - 2**i


@settings(max_examples=200)
@given(
    st.lists(st.integers(1, 50), min_size=1, max_size=300),  # upstream gaps between source records
    st.integers(0, 2**30),  # first upstream offset
    st.integers(0, 2**30),  # first downstream offset
    st.integers(0, 20),  # offset.lag.max
    st.sets(st.integers(0, 299)),  # commits (promote delayed) after these records
    st.data(),
)
def test_translation_never_passes_unreplicated_data(
    gaps: list[int], first_up: int, first_down: int, lag: int, commits: set[int], data: st.DataObject
) -> None:
    """Replicate a source partition through OffsetSyncWriter into OffsetSyncStore: every translated offset
    is at most the downstream offset of the group's next record (or the log end when that record is not
    replicated yet), and translation is monotonic in the upstream offset."""
    source = []
    up = first_up
    for gap in gaps:
        source.append(up)
        up += gap
    replicated = data.draw(st.integers(1, len(source)), label="replicated")
    must_read = data.draw(st.booleans(), label="must_read")
    read_at = data.draw(st.integers(0, replicated), label="read_at")
    writer, store = OffsetSyncWriter(lag), OffsetSyncStore(must_read)
    for i in range(replicated):
        if i == read_at:
            store.mark_read_to_end()
        writer.on_ack(TP, source[i], first_down + i)
        if i in commits:
            writer.promote_delayed()
        for s in writer.take_pending(10):
            store.update(s)
    store.mark_read_to_end()
    log_end = first_down + replicated
    probes = sorted({first_up - 1, up + 5} | {u + d for u in source for d in (-1, 0, 1)})
    previous = -1
    for g in probes:
        translated = store.translate_downstream("g", TP, g)
        assert translated is not None
        assert translated >= previous  # monotonic for a fixed store
        previous = translated
        nxt = next((i for i, u in enumerate(source[:replicated]) if u >= g), None)
        true_downstream = log_end if nxt is None else first_down + nxt
        assert translated <= true_downstream, (g, translated, true_downstream)


@given(UPSTREAM_STEPS, st.lists(st.integers(-(2**62), 2**62), max_size=30))
def test_translation_is_monotonic(steps: list[int], probes: list[int]) -> None:
    """For a fixed store, translating larger upstream offsets never gives smaller downstream offsets."""
    store = OffsetSyncStore()
    store.mark_read_to_end()
    up = down = 0
    for step in steps:
        up += step
        down += max(1, step // 3)
        store.update(sync(up, down))
    results = [store.translate_downstream("g", TP, g) for g in sorted([*probes, 0, up, up + 1])]
    assert all(r is not None for r in results)
    assert results == sorted(results)  # type: ignore[type-var]


# --- checkpoint ordering --------------------------------------------------------------------------------


def cp(up: int, down: int) -> Checkpoint:
    return Checkpoint("g", "A.orders", 0, up, down, "")


def test_checkpoint_is_more_recent() -> None:
    """Emit the first checkpoint, an upstream rewind, or a downstream advance; skip anything else."""
    assert checkpoint_is_more_recent(None, cp(10, 10))
    assert checkpoint_is_more_recent(cp(10, 10), cp(5, 3))  # group rewound upstream
    assert checkpoint_is_more_recent(cp(10, 10), cp(12, 11))  # downstream advanced
    assert not checkpoint_is_more_recent(cp(10, 10), cp(10, 10))  # repeat
    assert not checkpoint_is_more_recent(cp(10, 10), cp(12, 10))  # same downstream
    assert not checkpoint_is_more_recent(cp(10, 10), cp(12, 9))  # would rewind downstream
