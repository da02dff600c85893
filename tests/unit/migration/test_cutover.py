"""The pure parts of `cutover`."""

from __future__ import annotations

from mirror.jobs.checkpoint import translate_group
from mirror.kafka.groups import CommittedOffset
from mirror.migration.cutover import lag_by_partition, nearest_sync_store
from mirror.mm2.filters import TopicFilter
from mirror.mm2.policy import DefaultReplicationPolicy


def test_lag_counts_from_the_stored_progress_or_the_log_start() -> None:
    ends = {("t", 0): 100, ("t", 1): 50, ("t", 2): 0, ("t", 3): 80}
    stored = {("t", 0): 89, ("t", 3): 79}
    begins = {("t", 0): 0, ("t", 1): 20, ("t", 2): 0, ("t", 3): 0}
    assert lag_by_partition(stored, begins, ends) == {("t", 0): 10, ("t", 1): 30, ("t", 2): 0, ("t", 3): 0}


def test_progress_past_the_end_is_no_lag() -> None:
    """A source log cut below the progress (re-created topic): nothing to wait for, verify says the rest."""
    assert lag_by_partition({("t", 0): 500}, {("t", 0): 0}, {("t", 0): 10}) == {("t", 0): 0}


def test_offsets_translate_from_the_nearest_of_all_syncs() -> None:
    syncs = {("t", 0): [(0, 0), (500, 510), (1000, 1012), (1100, 1113)], ("t", 1): [(100, 100)]}
    offsets = {("t", 0): CommittedOffset(1000), ("t", 1): CommittedOffset(50)}
    store = nearest_sync_store(syncs, offsets)
    assert store.translate_downstream("g", ("t", 0), 1000) == 1012  # on a sync: exact
    assert (
        nearest_sync_store(syncs, {("t", 0): CommittedOffset(1050)}).translate_downstream("g", ("t", 0), 1050)
        == 1013
    )  # past it: the record after the sync (re-read 1001..1049, skip nothing)
    assert store.translate_downstream("g", ("t", 1), 50) == -1  # before every sync: not translated
    assert store.translate_downstream("g", ("t", 2), 7) is None  # no sync at all
    items = translate_group(
        store,
        "g",
        offsets,
        policy=DefaultReplicationPolicy(),
        source_alias="A",
        target_alias="B",
        topic_filter=TopicFilter(["t"], []),
    )
    assert [(i.checkpoint.topic, i.checkpoint.downstream_offset, i.reread_bound) for i in items] == [
        ("A.t", 1012, 0)
    ]
