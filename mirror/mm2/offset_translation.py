"""Offset syncs and offset translation, as Java MirrorMaker 2 does them (docs/mm2-compat.md §5).

- `OffsetSyncWriter`: the source task's decision when to emit an offset sync (Java `OffsetSyncWriter`),
  as a state machine without I/O: the caller sends what `take_pending` returns. With ``precise=True`` it
  also emits what `mirror.mm2.sync_history` needs for exact translation (docs/mm2-compat.md §5.1).
- `OffsetSyncStore`: the checkpoint task's 64-slot store per source partition and its translation of a
  consumer group's upstream offset (Java `OffsetSyncStore`, 3.8+), bit-identical including int64 wrap-around.
- `checkpoint_is_more_recent`: the rule that keeps emitted checkpoints from rewinding downstream.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Final

from mirror.mm2.records import Checkpoint, OffsetSync
from mirror.types import TP

__all__ = [
    "DEFAULT_OFFSET_LAG_MAX",
    "MAX_OUTSTANDING_OFFSET_SYNCS",
    "SYNCS_PER_PARTITION",
    "OffsetSyncStore",
    "OffsetSyncWriter",
    "TopicPartition",
    "checkpoint_is_more_recent",
]

TopicPartition = TP  # the name this module exported before `mirror.types`

DEFAULT_OFFSET_LAG_MAX: Final = 100
MAX_OUTSTANDING_OFFSET_SYNCS: Final = 10
"""Java sends pending syncs while fewer than this many are in flight."""
SYNCS_PER_PARTITION: Final = 64
MAX_FIRED_OFFSET_SYNCS: Final = 10_000
"""Bound on triggered syncs waiting to be sent; past it the oldest are dropped (fewer syncs only cost
translation precision, never correctness)."""


class _PartitionState:
    __slots__ = ("last_sync_downstream", "previous_downstream", "previous_upstream", "promoted")

    def __init__(self) -> None:
        self.previous_upstream = -1
        self.previous_downstream = -1
        self.last_sync_downstream = -1
        self.promoted = (-1, -1)  # precise: the last delayed sync promoted (Java's state does not know it)

    def is_sync(self, upstream: int, downstream: int) -> bool:
        """Precise: the record copy (upstream, downstream) is a sync already (an edge would repeat it)."""
        return downstream == self.last_sync_downstream or (upstream, downstream) == self.promoted


class OffsetSyncWriter:
    """Decides which (upstream, downstream) pairs become offset syncs (Java `OffsetSyncWriter`).

    Call `on_ack` (or `on_ack_batch`) when the target acknowledged replicated records. A record triggers
    a sync when (a) this writer has emitted none for the partition yet, (b) its downstream offset is at least
    `offset_lag_max` past the last sync's + 1, (c) its upstream offset does not follow the previous record's
    (a gap: compaction, transaction markers), or (d) its downstream offset went backwards (truncation).
    A triggered sync is *pending* (send it now); otherwise the newest record of the partition is kept
    *delayed* until `promote_delayed`, which the caller runs on every offset commit/flush. Both maps hold
    one sync per partition and keep Java's `LinkedHashMap` order.

    One difference from Java, for batches: Java fires pending syncs after every record, so a sync that a
    later record of the same partition triggers rarely replaces an unsent one. Here acks arrive per batch,
    so a triggered sync that a newer one would replace is kept in a *fired* queue instead and sent first:
    every triggered sync is sent (up to `MAX_FIRED_OFFSET_SYNCS` waiting), about one per `offset_lag_max`
    records as in Java, whatever the batch size. `on_ack` per record and `on_ack_batch` agree exactly.

    ``precise=True`` adds three things, so that a reader can trust the copy between two consecutive syncs
    of one writer (docs/mm2-compat.md §5.1), in the same record format:

    - an *edge* sync: when the upstream offsets jump (rule c), the record before the jump becomes a sync
      too (unless it already is one), so between two consecutive syncs the upstream offsets are contiguous
      up to the later sync's record, or there is no record at all between them;
    - a *break marker*: the first sync `take_pending` returns for a partition, the first after a sync of
      it was dropped (the fired queue overflowed), and the sync after an upstream jump where the
      downstream offsets jumped too, is returned twice in a row. Two equal consecutive syncs tell the
      reader that the link into that sync is not to be trusted (a new writer, a lost sync, or a jump a
      transaction marker may hide);
    - `promote_delayed` keeps a triggered sync that a delayed one replaces (Java drops it).

    Per upstream jump at most an edge and a marker besides Java's sync, plus one marker per partition per
    writer: at most three times Java's write rate (twice where the downstream offsets do not jump).
    """

    __slots__ = (
        "_breaks",
        "_delayed",
        "_fired",
        "_marked",
        "_pending",
        "_states",
        "offset_lag_max",
        "precise",
    )

    def __init__(self, offset_lag_max: int = DEFAULT_OFFSET_LAG_MAX, *, precise: bool = False) -> None:
        self.offset_lag_max = offset_lag_max
        self.precise = precise
        self._states: dict[TopicPartition, _PartitionState] = {}
        self._pending: dict[TopicPartition, OffsetSync] = {}
        self._delayed: dict[TopicPartition, OffsetSync] = {}
        self._fired: deque[OffsetSync] = deque(maxlen=MAX_FIRED_OFFSET_SYNCS)
        self._marked: set[TopicPartition] = set()  # precise: partitions whose break marker was taken
        self._breaks: set[OffsetSync] = set()  # precise: queued syncs to send with a break marker

    @property
    def pending(self) -> dict[TopicPartition, OffsetSync]:
        """Syncs waiting to be sent, oldest partition first (a copy)."""
        return dict(self._pending)

    @property
    def fired(self) -> list[OffsetSync]:
        """Triggered syncs that a newer one superseded before they were sent, oldest first (a copy)."""
        return list(self._fired)

    @property
    def delayed(self) -> dict[TopicPartition, OffsetSync]:
        """Syncs waiting for the next `promote_delayed` (a copy)."""
        return dict(self._delayed)

    def has_pending(self) -> bool:
        return bool(self._pending or self._fired)

    def _trigger(self, tp: TopicPartition, sync: OffsetSync) -> None:
        replaced = self._pending.get(tp)
        if replaced is not None:
            if len(self._fired) == MAX_FIRED_OFFSET_SYNCS:  # the oldest is dropped: its partition's next
                dropped = self._fired[0]  # sync is sent with a break marker
                self._marked.discard((dropped.topic, dropped.partition))
                self._breaks.discard(dropped)
            self._fired.append(replaced)
        self._pending[tp] = sync

    def _edge(self, tp: TopicPartition, state: _PartitionState, upstream: int, downstream: int) -> None:
        """Precise: the record before an upstream jump becomes a sync, unless it is one already. When the
        downstream offsets jump at the same record too (a transaction marker right there), the link over
        the jump is not one to interpolate: the sync after it carries a break marker."""
        if not self.precise or state.previous_upstream == -1 or upstream - state.previous_upstream == 1:
            return
        if not state.is_sync(state.previous_upstream, state.previous_downstream):
            self._delayed.pop(tp, None)
            self._trigger(tp, OffsetSync(tp[0], tp[1], state.previous_upstream, state.previous_downstream))
        if downstream - state.previous_downstream > 1:
            self._breaks.add(OffsetSync(tp[0], tp[1], upstream, downstream))

    def _state(self, tp: TopicPartition) -> _PartitionState:
        state = self._states.get(tp)
        if state is None:
            state = self._states[tp] = _PartitionState()
        return state

    def on_ack(self, tp: TopicPartition, upstream: int, downstream: int) -> None:
        """One record of `tp` at source offset `upstream` was written at target offset `downstream`."""
        state = self._state(tp)
        if (
            state.last_sync_downstream == -1
            or downstream - (state.last_sync_downstream + 1) >= self.offset_lag_max
            or upstream - state.previous_upstream != 1
            or downstream < state.previous_downstream
        ):
            self._edge(tp, state, upstream, downstream)
            state.last_sync_downstream = downstream
            self._delayed.pop(tp, None)
            self._trigger(tp, OffsetSync(tp[0], tp[1], upstream, downstream))
        else:
            self._delayed[tp] = OffsetSync(tp[0], tp[1], upstream, downstream)
        state.previous_upstream = upstream
        state.previous_downstream = downstream

    def on_ack_batch(
        self,
        tp: TopicPartition,
        first_upstream: int,
        first_downstream: int,
        count: int,
        upstream_offsets: Sequence[int] | None = None,
    ) -> None:
        """`count` records of `tp` were acked at target offsets `first_downstream` + 0 .. `count - 1`.

        Their source offsets are `upstream_offsets` (strictly increasing, as fetched records are, and
        starting with `first_upstream`), or the contiguous `first_upstream` .. `first_upstream + count - 1`
        when None. The result is that of calling `on_ack` for each record in order; a contiguous batch costs
        O(1) whatever `count` is, any other batch one cheap loop.
        """
        if count <= 0:
            return
        if upstream_offsets is not None:
            if len(upstream_offsets) != count:
                raise ValueError(f"{len(upstream_offsets)} upstream offsets for a batch of {count} records")
            if upstream_offsets[0] != first_upstream:
                raise ValueError(f"upstream_offsets start at {upstream_offsets[0]}, not {first_upstream}")
            last = upstream_offsets[-1]
            if last - first_upstream != count - 1:  # not contiguous: replay the records one by one
                self._ack_each(tp, upstream_offsets, first_downstream)
                return
        if first_downstream < 0:  # never happens with a real broker; keep exact Java semantics anyway
            self._ack_each(tp, range(first_upstream, first_upstream + count), first_downstream)
            return
        state = self._state(tp)
        last_sync = state.last_sync_downstream
        lag = self.offset_lag_max
        # Record 0 is checked against the previous batch; records 1.. can only trigger by rule (b), since
        # their offsets follow one another, and rule (b) then fires every `step` records after a trigger.
        if (
            last_sync == -1
            or first_downstream - (last_sync + 1) >= lag
            or first_upstream - state.previous_upstream != 1
            or first_downstream < state.previous_downstream
        ):
            first_trigger = 0
            self._edge(tp, state, first_upstream, first_downstream)
        else:
            first_trigger = last_sync + 1 + lag - first_downstream  # >= 1 here
        end = count - 1
        trigger: int | None = None
        up, down = first_upstream, first_downstream
        if first_trigger <= end:
            step = max(lag, 0) + 1
            trigger = first_trigger + ((end - first_trigger) // step) * step  # the last triggering record
            state.last_sync_downstream = first_downstream + trigger
            # the earlier triggering records of this batch, oldest first (at most the queue's bound)
            first_kept = max(first_trigger, trigger - step * MAX_FIRED_OFFSET_SYNCS)
            first_kept = first_trigger + -(-(first_kept - first_trigger) // step) * step
            if self.precise and first_kept > first_trigger:  # earlier triggers dropped, record 0's
                self._breaks.add(OffsetSync(tp[0], tp[1], up + first_kept, down + first_kept))  # among them
            for earlier in range(first_kept, trigger, step):
                self._trigger(tp, OffsetSync(tp[0], tp[1], up + earlier, down + earlier))
        state.previous_upstream = first_upstream + end
        state.previous_downstream = first_downstream + end
        self._queue(
            tp,
            None if trigger is None else OffsetSync(tp[0], tp[1], up + trigger, down + trigger),
            None if trigger == end else OffsetSync(tp[0], tp[1], up + end, down + end),
        )

    def _ack_each(self, tp: TopicPartition, upstream_offsets: Sequence[int], first_downstream: int) -> None:
        state = self._state(tp)
        lag = self.offset_lag_max
        prev_up, prev_down = state.previous_upstream, state.previous_downstream
        last_sync = state.last_sync_downstream
        trigger: int | None = None  # index of the last record that triggered a sync
        for index, upstream in enumerate(upstream_offsets):
            downstream = first_downstream + index
            if (
                last_sync == -1
                or downstream - (last_sync + 1) >= lag
                or upstream - prev_up != 1
                or downstream < prev_down
            ):
                if trigger is not None:
                    earlier = upstream_offsets[trigger]
                    self._trigger(tp, OffsetSync(tp[0], tp[1], earlier, first_downstream + trigger))
                    trigger = None
                if self.precise and prev_up != -1 and upstream - prev_up != 1:
                    if last_sync != prev_down and (prev_up, prev_down) != state.promoted:
                        self._delayed.pop(tp, None)  # the edge: the record before the jump
                        self._trigger(tp, OffsetSync(tp[0], tp[1], prev_up, prev_down))
                    if downstream - prev_down > 1:  # the downstream jumped too: see `_edge`
                        self._breaks.add(OffsetSync(tp[0], tp[1], upstream, downstream))
                last_sync = downstream
                trigger = index
            prev_up, prev_down = upstream, downstream
        state.previous_upstream, state.previous_downstream = prev_up, prev_down
        state.last_sync_downstream = last_sync
        end = len(upstream_offsets) - 1
        self._queue(
            tp,
            None
            if trigger is None
            else OffsetSync(tp[0], tp[1], upstream_offsets[trigger], first_downstream + trigger),
            None
            if trigger == end
            else OffsetSync(tp[0], tp[1], upstream_offsets[end], first_downstream + end),
        )

    def _queue(self, tp: TopicPartition, pending: OffsetSync | None, delayed: OffsetSync | None) -> None:
        """Leave the queues as the records of one batch would: the last triggered sync is pending, and
        the batch's last record is delayed unless it triggered itself."""
        if pending is not None:
            self._delayed.pop(tp, None)
            self._trigger(tp, pending)
        if delayed is not None:
            self._delayed[tp] = delayed

    def promote_delayed(self) -> None:
        """Move every delayed sync to pending (Java `commit()` → `promoteDelayedOffsetSyncs`); precise:
        a pending sync it replaces is still sent first."""
        if self.precise:
            for tp, sync in self._delayed.items():
                self._trigger(tp, sync)
                self._state(tp).promoted = (sync.upstream_offset, sync.downstream_offset)
        else:
            self._pending.update(self._delayed)
        self._delayed.clear()

    def take_pending(self, max_n: int = MAX_OUTSTANDING_OFFSET_SYNCS) -> list[OffsetSync]:
        """Remove and return up to `max_n` pending syncs, oldest first; pass 10 minus the syncs in flight.
        Precise: a sync that carries a break marker is in the list twice (so up to 2 * `max_n` entries)."""
        taken = self._take(max_n)
        if not self.precise:
            return taken
        out: list[OffsetSync] = []
        for sync in taken:
            out.append(sync)
            tp = (sync.topic, sync.partition)
            if tp not in self._marked or sync in self._breaks:
                self._marked.add(tp)
                self._breaks.discard(sync)
                out.append(sync)
        return out

    def _take(self, max_n: int) -> list[OffsetSync]:
        if max_n <= 0 or not (self._pending or self._fired):
            return []
        if self._fired:
            fired = [self._fired.popleft() for _ in range(min(max_n, len(self._fired)))]
            return fired + self._take(max_n - len(fired))
        if max_n >= len(self._pending):
            taken = list(self._pending.values())
            self._pending.clear()
            return taken
        keys = list(self._pending)[:max_n]
        return [self._pending.pop(key) for key in keys]

    def unmark(self, tps: Sequence[TopicPartition] | None = None) -> None:
        """Precise: the next sync of these partitions (of all: None) carries a break marker again, e.g.
        because syncs taken from this writer may not have reached the topic."""
        if tps is None:
            self._marked.clear()
        else:
            self._marked.difference_update(tps)

    def remove_partitions(self, tps: Sequence[TopicPartition]) -> None:
        """Forget the state and queued syncs of partitions this task no longer replicates."""
        for tp in tps:
            self._states.pop(tp, None)
            self._pending.pop(tp, None)
            self._delayed.pop(tp, None)
            self._marked.discard(tp)
        gone = set(tps)
        self._breaks = {b for b in self._breaks if b.topic_partition not in gone}
        kept = [s for s in self._fired if (s.topic, s.partition) not in gone]
        self._fired.clear()
        self._fired.extend(kept)


# --------------------------------------------------------------------------------------------------------
# OffsetSyncStore
# --------------------------------------------------------------------------------------------------------

_SIGN = 1 << 63
_MASK64 = (1 << 64) - 1
# Java `1L << k` as a signed long (1L << 63 is Long.MIN_VALUE).
_POW: Final = tuple(((1 << k) ^ _SIGN) - _SIGN if k == 63 else 1 << k for k in range(64))


def _wrap(x: int) -> int:
    """Java long overflow: reduce to the signed 64-bit range."""
    return ((x + _SIGN) & _MASK64) - _SIGN


def _invariant_b(i_sync: OffsetSync, j_sync: OffsetSync, i: int, j: int) -> bool:
    if i_sync is j_sync:
        return True
    bound = _wrap(j_sync.upstream_offset + _POW[j] - _POW[i])
    return bound < 0 or i_sync.upstream_offset <= bound


def _invariant_c(i_sync: OffsetSync, j_sync: OffsetSync, i: int) -> bool:
    if i_sync is j_sync:
        return True
    bound = _wrap(j_sync.upstream_offset + _POW[max(i - 2, 0)])
    return bound >= 0 and i_sync.upstream_offset >= bound


class OffsetSyncStore:
    """Java `OffsetSyncStore`: per source partition, 64 syncs spaced roughly exponentially into the past.

    Feed it every record of the offset-syncs topic (partition 0) with `update`, and call `mark_read_to_end`
    once the initial read reached the end of the topic. Until then `translate_downstream` answers None.
    `initialization_must_read_to_end` is Java's `start(boolean)` argument: true when the CheckpointStore
    failed to load, in which case syncs read during the initial load only keep the newest one.

    Slots are compared by identity (`is`), as Java compares references; never intern equal syncs.
    """

    __slots__ = ("_syncs", "initialization_must_read_to_end", "read_to_end")

    def __init__(self, initialization_must_read_to_end: bool = True) -> None:
        self.initialization_must_read_to_end = initialization_must_read_to_end
        self.read_to_end = False
        self._syncs: dict[TopicPartition, list[OffsetSync]] = {}

    def mark_read_to_end(self) -> None:
        """The initial read of the offset-syncs topic is complete: translation may start."""
        self.read_to_end = True

    def syncs(self, tp: TopicPartition) -> tuple[OffsetSync, ...] | None:
        """The 64 slots of `tp` (index 0 is the newest sync), or None if no sync was seen."""
        slots = self._syncs.get(tp)
        return None if slots is None else tuple(slots)

    def partitions(self) -> list[TopicPartition]:
        return list(self._syncs)

    def update(self, sync: OffsetSync) -> None:
        """Apply one sync read from the offset-syncs topic."""
        tp = (sync.topic, sync.partition)
        slots = self._syncs.get(tp)
        if slots is None:
            self._syncs[tp] = [sync] * SYNCS_PER_PARTITION
            return
        # Java copies the array so readers never see a half-updated one; we replace the list likewise.
        self._syncs[tp] = self._updated(slots, sync)

    def _updated(self, original: list[OffsetSync], sync: OffsetSync) -> list[OffsetSync]:
        upstream = sync.upstream_offset
        only_load_last = not self.read_to_end and self.initialization_must_read_to_end
        if only_load_last or upstream < original[0].upstream_offset:
            return [sync] * SYNCS_PER_PARTITION
        syncs = original.copy()
        replacement = sync
        replacement_index = 0
        syncs[0] = sync
        for current in range(1, SYNCS_PER_PARTITION):
            previous = current - 1
            prev_sync = syncs[previous]
            nxt = current + 1
            while True:
                old = original[replacement_index]
                is_recent = _invariant_b(prev_sync, old, previous, current)
                separated_prev = _invariant_c(prev_sync, old, previous)
                separated_next = nxt >= SYNCS_PER_PARTITION or _invariant_c(old, syncs[nxt], current)
                duplicate = (
                    replacement_index + 1 < SYNCS_PER_PARTITION and old is original[replacement_index + 1]
                )
                promote = is_recent and separated_prev and separated_next
                if promote:
                    replacement = old
                skip = duplicate or not separated_prev
                if promote or skip:
                    replacement_index += 1
                if not (replacement_index < current and skip):
                    break
            if _invariant_b(prev_sync, syncs[current], previous, current):
                break  # the rest of the array still satisfies the invariants
            syncs[current] = replacement
        return syncs

    def lookup(self, tp: TopicPartition, upstream_offset: int) -> OffsetSync | None:
        """The newest sync at or before `upstream_offset`, else the oldest kept; None if `tp` has none."""
        slots = self._syncs.get(tp)
        if slots is None:
            return None
        for sync in slots:
            if sync.upstream_offset <= upstream_offset:
                return sync
        return slots[-1]

    def translate_downstream(self, group: str, tp: TopicPartition, upstream_offset: int) -> int | None:
        """Translate a group's committed upstream offset on `tp` to a downstream offset.

        None: the initial read is not complete, or there is no sync for `tp` (no checkpoint).
        -1: the offset is older than every kept sync ("too far in the past"; Java drops the checkpoint).
        Otherwise the sync's downstream offset, + 1 when the group is past the sync (KAFKA-12468): never
        past a record that might not have been replicated yet. `group` is only informative, as in Java.
        """
        del group
        if not self.read_to_end:
            return None
        sync = self.lookup(tp, upstream_offset)
        if sync is None:
            return None
        if sync.upstream_offset > upstream_offset:
            return -1
        if sync.upstream_offset == upstream_offset:
            return sync.downstream_offset
        return _wrap(sync.downstream_offset + 1)


def checkpoint_is_more_recent(previous: Checkpoint | None, new: Checkpoint) -> bool:
    """Java `MirrorCheckpointTask.checkpointIsMoreRecent` for one (group, partition).

    Emit when there is no previous checkpoint, when the group rewound upstream, or when the downstream
    offset advanced; otherwise skip, so downstream offsets never move back or repeat.
    """
    if previous is None:
        return True
    if new.upstream_offset < previous.upstream_offset:
        return True
    return new.downstream_offset > previous.downstream_offset
