"""Precise translation (`SyncHistory`) and the precise `OffsetSyncWriter`, against an oracle that knows
where every copy of every record went (docs/mm2-compat.md §5.1)."""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from mirror.mm2.offset_translation import MAX_FIRED_OFFSET_SYNCS, OffsetSyncStore, OffsetSyncWriter
from mirror.mm2.records import OffsetSync
from mirror.mm2.sync_history import SyncHistory, Translation

TP = ("orders", 0)


def sync(up: int, down: int) -> OffsetSync:
    return OffsetSync(TP[0], TP[1], up, down)


def history(
    *syncs: tuple[int, int], gaps_before: tuple[int, ...] = (), writer: bytes | None = b"w"
) -> SyncHistory:
    """The syncs of one writer session (`writer`: its id; None: a writer without one, e.g. Java's)."""
    h = SyncHistory(initialization_must_read_to_end=False)
    for i, (u, d) in enumerate(syncs):
        if i in gaps_before:
            h.gap()
        h.update(sync(u, d), writer)
    h.mark_read_to_end()
    return h


# --- the precise writer ---------------------------------------------------------------------------------


def test_precise_writer_marks_the_first_sync_of_a_partition_twice() -> None:
    w = OffsetSyncWriter(10, precise=True)
    w.on_ack_batch(TP, 0, 0, 5)
    w.promote_delayed()
    assert w.take_pending() == [sync(0, 0), sync(0, 0), sync(4, 4)]
    w.on_ack_batch(TP, 5, 5, 20)
    assert w.take_pending() == [sync(11, 11), sync(22, 22)]  # marked once per writer


def test_precise_writer_emits_the_record_before_an_upstream_jump() -> None:
    """Java emits only the record after the jump; the edge makes the copy between two syncs contiguous."""
    java, precise = OffsetSyncWriter(100), OffsetSyncWriter(100, precise=True)
    for w in (java, precise):
        w.on_ack_batch(TP, 0, 0, 10)
        w.on_ack_batch(TP, 15, 10, 5)  # upstream 10..14 compacted away
        w.promote_delayed()
    # Java: the delayed (19, 14) replaces the unsent trigger (15, 10), so the jump goes untold
    assert java.take_pending() == [sync(0, 0), sync(19, 14)]
    assert precise.take_pending() == [sync(0, 0), sync(0, 0), sync(9, 9), sync(15, 10), sync(19, 14)]


def test_precise_writer_marks_a_jump_where_the_downstream_jumps_too() -> None:
    """Upstream 5 refused by the target, a transaction marker at downstream 5: the distances cancel out, so
    the link over the jump must not be interpolated (a reader going back would pass over record 5)."""
    w = OffsetSyncWriter(100, precise=True)
    w.on_ack_batch(TP, 0, 0, 5)
    w.on_ack_batch(TP, 6, 6, 5)
    w.promote_delayed()
    assert w.take_pending() == [sync(0, 0), sync(0, 0), sync(4, 4), sync(6, 6), sync(6, 6), sync(10, 10)]


def test_precise_writer_keeps_a_trigger_that_a_delayed_sync_replaces() -> None:
    w = OffsetSyncWriter(5, precise=True)
    w.on_ack(TP, 0, 0)
    w.take_pending()
    w.on_ack_batch(TP, 1, 1, 8)  # 6 triggers (lag), 7 and 8 delayed
    w.promote_delayed()
    assert w.take_pending() == [sync(6, 6), sync(8, 8)]


def test_precise_writer_marks_again_after_dropping_a_sync() -> None:
    """A sync dropped from a full fired queue may have told of a gap: the next one carries a marker."""
    w = OffsetSyncWriter(0, precise=True)
    w.on_ack(TP, 0, 0)
    assert w.take_pending() == [sync(0, 0), sync(0, 0)]
    for i in range(1, MAX_FIRED_OFFSET_SYNCS + 6):  # every record triggers; nothing is sent meanwhile
        w.on_ack(TP, i, i)
    taken = w.take_pending(MAX_FIRED_OFFSET_SYNCS + 10)
    assert taken[0] == taken[1] == sync(5, 5)  # 1..4 were dropped
    assert len(taken) == MAX_FIRED_OFFSET_SYNCS + 2


# --- translation examples -------------------------------------------------------------------------------


def test_a_trusted_run_translates_exactly_between_syncs() -> None:
    h = history((0, 0), (0, 0), (101, 101), (202, 202), (250, 250))
    assert h.translate(TP, 150) == Translation(150, 0, "line")
    assert h.translate(TP, 202) == Translation(202, 0, "sync")
    # inside the newest link: not confirmed yet (the next sync could be a marker): Java's +1 rule
    assert h.translate(TP, 230) == Translation(203, 27, "+1")
    assert [p[:2] for p in h.points(TP)] == [(0, 0), (202, 202), (250, 250)]  # (101, 101) merged


def test_without_a_writer_id_nothing_is_trusted() -> None:
    """Syncs of Java MM2 (or of an older mirror) carry no writer id: the +1 rule, never interpolation, even
    where they repeat a sync as a precise writer's marker does."""
    h = history((0, 0), (0, 0), (101, 101), (202, 202), (250, 250), writer=None)
    assert h.translate(TP, 150) == Translation(102, 48, "+1")


def test_one_writer_is_trusted_without_its_first_marker() -> None:
    """The offset-syncs topic is compacted: a long session's first marker is gone, its id is enough."""
    h = history((101, 101), (202, 202), (250, 250))
    assert h.translate(TP, 150) == Translation(150, 0, "line")


def test_a_marker_breaks_the_link_into_it() -> None:
    """A writer restarted (crashed) after syncing 101: its unsent syncs may have told of a gap."""
    h = history((0, 0), (0, 0), (101, 101), (180, 160), (180, 160), (300, 280), (400, 380))
    assert h.translate(TP, 150).method == "+1"  # type: ignore[union-attr]
    assert h.translate(TP, 250) == Translation(230, 0, "line")


def test_a_gap_in_the_syncs_topic_breaks_the_links_across_it() -> None:
    h = history((0, 0), (0, 0), (101, 101), (202, 202), (303, 303), gaps_before=(3,))
    assert h.translate(TP, 50).method == "line"  # type: ignore[union-attr]
    assert h.translate(TP, 150).method == "+1"  # type: ignore[union-attr]


def test_downstream_extras_are_counted_in_the_bound() -> None:
    """Transaction markers on the target stretch the downstream side: the line undershoots, never skips."""
    h = history((0, 0), (0, 0), (100, 103), (200, 203), (300, 303))
    t = h.translate(TP, 50)
    assert t == Translation(50, 3, "line")


def test_an_upstream_rewind_keeps_the_points_below_it() -> None:
    """A copy restarted from older progress: records below it keep their first copies' points (Java's
    store forgets them all), the range copied again translates through the new copy."""
    h = history(
        (0, 0), (0, 0), (101, 101), (202, 202), (303, 303), (150, 400), (150, 400), (251, 501), (300, 550)
    )
    assert h.translate(TP, 50) == Translation(50, 0, "line")
    assert h.translate(TP, 200).offset <= 450  # type: ignore[union-attr]  # the new copy of 200 is at 450
    java = OffsetSyncStore(False)
    for u, d in ((0, 0), (101, 101), (202, 202), (303, 303), (150, 400)):
        java.update(sync(u, d))
    java.mark_read_to_end()
    assert java.translate_downstream("g", TP, 50) == -1


def test_a_new_writer_session_and_a_failed_send_bring_a_marker_back() -> None:
    w = OffsetSyncWriter(100, precise=True)
    w.on_ack_batch(TP, 0, 0, 5)
    assert w.take_pending() == [sync(0, 0), sync(0, 0)]
    w.on_ack_batch(TP, 5, 5, 200)
    w.unmark([TP])  # the batch taken next may be lost
    assert w.take_pending() == [sync(101, 101), sync(101, 101), sync(202, 202)]
    w.on_ack_batch(TP, 205, 205, 200)
    w.unmark()
    assert w.take_pending()[:2] == [sync(303, 303), sync(303, 303)]


def test_translate_back_inverts_a_trusted_run() -> None:
    h = history((0, 10), (0, 10), (101, 111), (202, 212), (250, 260))
    assert h.translate_back(TP, 160) == Translation(150, 0, "line")
    assert h.translate_back(TP, 10) is None  # it read nothing at or after the first sync's copy
    assert h.translate_back(TP, 213) == Translation(203, 0, "sync")  # it read the copy of 202
    assert h.translate_back(TP, 240) == Translation(203, 27, "+1")


def test_translate_back_never_skips_a_record_the_target_refused() -> None:
    """Upstream 5 was refused by the target (not copied): a group that read the copies of 0..4 and 6
    resumes on the source at 7, one that read only 0..4 at 5, the refused record, not at 6."""
    h = history((0, 0), (0, 0), (4, 4), (6, 5), (9, 8), (20, 19))
    assert h.translate_back(TP, 5) == Translation(5, 0, "line")
    assert h.translate_back(TP, 6) == Translation(7, 0, "sync")


def test_eviction_keeps_the_points_around_pinned_groups() -> None:
    h = SyncHistory(initialization_must_read_to_end=False, max_points=8)
    h.pin(TP, [35])
    h.update(sync(0, 0))
    for i in range(1, 40):  # every link off the line: nothing merges (Java's syncs: no line either)
        h.update(sync(i * 10, i * 11))
    h.mark_read_to_end()
    kept = [u for u, _, _ in h.points(TP)]
    assert len(kept) <= 9 and 30 in kept and 40 in kept
    assert h.translate(TP, 35) == Translation(34, 4, "+1")


# --- the oracle -----------------------------------------------------------------------------------------


@dataclass
class Copy:
    """A source partition copied by precise (or Java) writers; ``target[i]`` is the source offset copied
    to target offset i, or None for something else there (a transaction marker, another producer)."""

    source: list[int]
    target: list[int | None] = field(default_factory=list)
    topic: list[OffsetSync] = field(default_factory=list)
    writers: list[bytes | None] = field(default_factory=list)  # the writer id of each sync in `topic`
    crashed: bool = False
    extras: bool = False
    sessions: list[OffsetSyncWriter] = field(default_factory=list)

    def send(self, writer: OffsetSyncWriter, max_n: int = 10**9) -> None:
        """The writer's pending syncs reach the topic, with its id when it is a precise one."""
        if writer not in self.sessions:
            self.sessions.append(writer)
        wid = self.sessions.index(writer).to_bytes(8) if writer.precise else None
        taken = writer.take_pending(max_n)
        self.topic += taken
        self.writers += [wid] * len(taken)

    def read(self) -> tuple[SyncHistory, OffsetSyncStore]:
        """The whole topic read by a `SyncHistory` and by Java's store."""
        hist, java = SyncHistory(False), OffsetSyncStore(False)
        for s, wid in zip(self.topic, self.writers, strict=True):
            hist.update(s, wid)
            java.update(s)
        hist.mark_read_to_end()
        java.mark_read_to_end()
        return hist, java

    def positions(self) -> dict[int, list[int]]:
        out: dict[int, list[int]] = {}
        for pos, up in enumerate(self.target):
            if up is not None:
                out.setdefault(up, []).append(pos)
        return out


STEP = st.tuples(
    st.sampled_from(["batch"] * 6 + ["extra", "promote", "send", "crash", "stop"]), st.integers(1, 30)
)


@st.composite
def copies(draw: st.DrawFn) -> tuple[Copy, int, bool]:
    gaps = draw(st.lists(st.sampled_from([1, 1, 1, 1, 1, 2, 3, 7]), min_size=1, max_size=250))
    source, up = [], draw(st.integers(0, 1000))
    for g in gaps:
        source.append(up)
        up += g
    lag = draw(st.sampled_from([0, 1, 3, 10, 100]))
    precise = draw(st.booleans())
    refuse = draw(st.sets(st.integers(0, len(source) - 1), max_size=5))
    copy = Copy(source)
    writer = OffsetSyncWriter(lag, precise=precise)
    pos = 0
    for action, n in [*draw(st.lists(STEP, max_size=40)), ("batch", len(source))]:
        if action == "batch" and pos < len(source):
            batch = [source[i] for i in range(pos, min(pos + n, len(source))) if i not in refuse]
            pos = min(pos + n, len(source))
            if batch:
                writer.on_ack_batch(TP, batch[0], len(copy.target), len(batch), batch)
                copy.target += batch
        elif action == "extra":
            copy.target.append(None)
            copy.extras = True
        elif action == "promote":
            writer.promote_delayed()
        elif action == "send":
            copy.send(writer, draw(st.integers(1, 10)))
        elif action in ("crash", "stop"):
            if action == "stop":  # a clean stop sends everything
                writer.promote_delayed()
                copy.send(writer)
            else:  # unsent syncs are lost, and the copy restarts from an older stored position
                copy.crashed = True
                pos = draw(st.integers(max(0, pos - 40), pos))
            writer = OffsetSyncWriter(lag, precise=precise)
    writer.promote_delayed()
    copy.send(writer)
    return copy, lag, precise


def reread_forward(copy: Copy, g: int, t: int) -> tuple[bool, int]:
    """(no record at or after `g` is skipped, records before `g` read again) for a consumer at target `t`."""
    where = copy.positions()
    skipped = any(max(ps) < t for u, ps in where.items() if u >= g)
    again = len({up for up in copy.target[t:] if up is not None and up < g})
    return not skipped, again


def reread_back(copy: Copy, h: int, u: int) -> tuple[bool, int]:
    """The same for a consumer that read the target up to `h` and resumes on the source at `u`: no record
    it has not read, copied or not (refused by the target), after the last one it read, lies before `u`."""
    read = {up for up in copy.target[:h] if up is not None}
    copied = {up for up in copy.target if up is not None}
    last = max(read, default=-1)
    skipped = any(x < u for x in copied - read) or any(last < x < u for x in copy.source if x not in read)
    again = len([x for x in read if x >= u])
    return not skipped, again


@settings(max_examples=600, deadline=None)
@given(copies(), st.sets(st.integers(0, 60), max_size=4), st.data())
def test_translation_never_skips_and_stays_within_its_bound(
    case: tuple[Copy, int, bool], holes: set[int], data: st.DataObject
) -> None:
    """Through writers (precise or Java's), a syncs topic with records missing, and a `SyncHistory` with a
    small cap: no record is ever skipped, forward or back; re-reads stay within the reported bound (unless a
    writer crashed: its duplicates are at-least-once's, not translation's) and never exceed what Java's
    algorithm gives on the same syncs; 0 where nothing but the newest link is in doubt."""
    copy, lag, precise = case
    cap = data.draw(st.sampled_from([4, 8, 256]), label="cap")
    hist, java = SyncHistory(False, max_points=cap), OffsetSyncStore(False)
    probes = sorted({copy.source[0] - 1} | {u + d for u in copy.source for d in (-1, 0, 1)})
    probes = [g for g in probes if g <= copy.source[-1] + 1]
    hist.pin(TP, data.draw(st.lists(st.sampled_from(probes), max_size=3), label="pins"))
    for i, s in enumerate(copy.topic):
        if i in holes:
            hist.gap()
            continue
        hist.update(s, copy.writers[i])
        java.update(s)
    hist.mark_read_to_end()
    java.mark_read_to_end()
    clean = not copy.crashed and not copy.extras and not holes and precise and cap == 256
    kept = [s for i, s in enumerate(copy.topic) if i not in holes]
    distinct = sorted({s.upstream_offset for s in kept})
    # beyond the newest sync a group may sit past records never copied (refused): the bound counts offsets
    newest = distinct[-1] if distinct else None
    # the link into the newest sync is confirmed only by a later one: the +1 rule there
    exact_up_to = distinct[-2] if len(distinct) > 1 else newest
    for g in probes:
        t = hist.translate(TP, g)
        j = java.translate_downstream("g", TP, g)
        if t is None:
            assert j is None or j < 0, g
            continue
        ok, again = reread_forward(copy, g, t.offset)
        assert ok, (g, t)
        if not copy.crashed:
            assert again <= t.reread_bound, (g, t, again)
            assert j is not None and j >= 0
            assert again <= reread_forward(copy, g, j)[1], (g, t, j)
            # Java's writer may drop syncs (a delayed one replaces an unsent trigger): no lag bound there
            if precise and not holes and cap == 256 and newest is not None and g <= newest:
                assert t.reread_bound <= max(lag, 0), (g, t)
        if clean and exact_up_to is not None and g <= exact_up_to:
            assert again == 0 and t.reread_bound == 0, (g, t)
    for h in range(len(copy.target) + 1):
        b = hist.translate_back(TP, h)
        if b is None:
            continue
        ok, again = reread_back(copy, h, b.offset)
        assert ok, (h, b)
        if not copy.crashed:
            assert again <= b.reread_bound, (h, b, again)


# --- two writers on one partition (review of #15) -------------------------------------------------------


def test_syncs_of_an_older_writer_after_a_precise_one_are_not_interpolated() -> None:
    """A rolling upgrade: the partition moves from a precise writer to a worker still running a Java-style
    writer (an older mirror). Its syncs carry no edge, and its delayed sync replaced the trigger after a
    compacted range (source 20..24), so the link over the jump must not be interpolated."""
    copy = Copy(list(range(20)) + list(range(25, 200)))
    new = OffsetSyncWriter(100, precise=True)
    new.on_ack_batch(TP, 0, 0, 10)
    new.promote_delayed()
    copy.target += list(range(10))
    copy.send(new)
    old = OffsetSyncWriter(100)  # the partition moved to an older worker
    old.on_ack_batch(TP, 10, 10, 10)
    copy.send(old, 10)
    old.on_ack_batch(TP, 25, 20, 5)
    old.promote_delayed()  # Java: the delayed (29, 24) replaces the unsent (25, 20)
    copy.target += list(range(10, 20)) + list(range(25, 30))
    copy.send(old, 10)
    old.on_ack_batch(TP, 30, 25, 170)
    old.promote_delayed()
    copy.target += list(range(30, 200))
    copy.send(old)
    h = copy.read()[0]
    for g in range(0, 200):
        t = h.translate(TP, g)
        assert t is not None
        assert reread_forward(copy, g, t.offset)[0], (g, t, copy.topic)


def test_a_zombie_writer_behind_the_new_owner_is_not_interpolated_to_the_new_owners_sync() -> None:
    """A paused worker (a zombie) wakes after its partition's new owner copied past it, writes one batch
    and a sync, and dies: the link from its sync to the new owner's next one is not one copy."""
    copy = Copy(list(range(1000)))
    zombie, owner = OffsetSyncWriter(100, precise=True), OffsetSyncWriter(100, precise=True)
    zombie.on_ack_batch(TP, 0, 0, 101)  # 0..100 at 0..100
    copy.target += list(range(101))
    zombie.promote_delayed()
    copy.send(zombie)
    owner.on_ack_batch(TP, 50, 101, 251)  # the new owner restarts from stored progress 50: 50..300
    copy.target += list(range(50, 301))
    owner.promote_delayed()
    copy.send(owner)
    zombie.on_ack_batch(TP, 101, 352, 1)  # the zombie wakes: 101 at 352, its sync, then it is fenced
    copy.target += [101]
    zombie.promote_delayed()
    copy.send(zombie)
    owner.on_ack_batch(TP, 301, 353, 699)
    copy.target += list(range(301, 1000))
    owner.promote_delayed()
    copy.send(owner)
    h, java = copy.read()
    for g in range(301, 1000):  # Java's +1 rule itself skips below: the owner copied 102..300 before 352
        t = h.translate(TP, g)
        assert t is not None
        j = java.translate_downstream("g", TP, g)
        assert j is not None and reread_forward(copy, g, j)[0], (g, j)
        assert reread_forward(copy, g, t.offset)[0], (g, t, copy.topic)


@st.composite
def shared_copies(draw: st.DrawFn) -> Copy:
    """A partition copied by a precise writer while other writers copy runs of it to the same target: a
    zombie (behind or ahead), a worker of an older mirror or Java MM2 (no writer id), a later session."""
    gaps = draw(st.lists(st.sampled_from([1, 1, 1, 1, 2, 7]), min_size=60, max_size=120))
    source, up = [], 0
    for g in gaps:
        source.append(up)
        up += g
    lag = draw(st.sampled_from([0, 3, 10, 100, 100]))
    copy = Copy(source)
    writer = OffsetSyncWriter(lag, precise=True)
    others: list[OffsetSyncWriter] = []
    pos = 0
    for action, n in [*draw(st.lists(STEP, max_size=30)), ("batch", len(source))]:
        if action == "batch" and pos < len(source):
            batch = source[pos : pos + n]
            pos = min(pos + n, len(source))
            writer.on_ack_batch(TP, batch[0], len(copy.target), len(batch), batch)
            copy.target += batch
        elif action == "extra" and pos > 0:  # a zombie copies a run from near `pos`
            start = draw(st.integers(max(0, pos - 60), min(pos + 20, len(source) - 1)))
            if not others or draw(st.booleans()):
                others.append(OffsetSyncWriter(lag, precise=draw(st.booleans())))
            other = draw(st.sampled_from(others))
            batch = source[start : start + n]
            other.on_ack_batch(TP, batch[0], len(copy.target), len(batch), batch)
            copy.target += batch
            other.promote_delayed()
            copy.send(other, draw(st.integers(1, 10)))
        elif action == "crash" and pos < len(source):  # the partition moves to another worker and back
            writer.promote_delayed()
            copy.send(writer)
            other = OffsetSyncWriter(lag, precise=draw(st.booleans()))  # an older or newer version
            for _ in range(draw(st.integers(1, 4))):
                batch = source[pos : pos + draw(st.integers(1, 30))]
                if batch:
                    other.on_ack_batch(TP, batch[0], len(copy.target), len(batch), batch)
                    copy.target += batch
                    pos += len(batch)
                if draw(st.booleans()):
                    other.promote_delayed()
                copy.send(other, draw(st.integers(1, 10)))
            other.promote_delayed()
            copy.send(other)
            writer = OffsetSyncWriter(lag, precise=True)
        elif action == "promote":
            writer.promote_delayed()
        elif action in ("send", "stop"):
            copy.send(writer, draw(st.integers(1, 10)))
    writer.promote_delayed()
    copy.send(writer)
    return copy


@settings(max_examples=300, deadline=None)
@given(shared_copies())
def test_other_writers_never_make_translation_skip_where_javas_rule_does_not(copy: Copy) -> None:
    """Syncs of several writers interleaved in the topic (a zombie, a rolling upgrade): a zombie that writes
    behind the new owner can make even Java's +1 rule (or a sync of the zombie's) skip records, but
    interpolation never skips a record that Java's algorithm on the same syncs would not."""
    hist, java = copy.read()
    for g in sorted({u + d for u in copy.source for d in (-1, 0, 1)}):
        t, j = hist.translate(TP, g), java.translate_downstream("g", TP, g)
        if t is None or t.method != "line" or j is None or j < 0 or not reread_forward(copy, g, j)[0]:
            continue
        assert reread_forward(copy, g, t.offset)[0], (g, t, j)


def test_precise_writer_does_not_repeat_a_promoted_sync_as_an_edge() -> None:
    """The flush made the last record (3) a sync; the jump after it needs no edge: repeating (3, 3) would
    read as a break marker, losing the link into it (found by the oracle, not a skip: a re-read)."""
    w = OffsetSyncWriter(3, precise=True)
    w.on_ack_batch(TP, 0, 0, 4)
    w.promote_delayed()
    w.on_ack_batch(TP, 5, 4, 1)
    assert w.take_pending() == [sync(0, 0), sync(0, 0), sync(3, 3), sync(5, 4)]
