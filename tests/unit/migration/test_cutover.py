"""The pure parts of `cutover`."""

from __future__ import annotations

from mirror.migration.cutover import lag_by_partition


def test_lag_counts_from_the_stored_progress_or_the_log_start() -> None:
    ends = {("t", 0): 100, ("t", 1): 50, ("t", 2): 0, ("t", 3): 80}
    stored = {("t", 0): 89, ("t", 3): 79}
    begins = {("t", 0): 0, ("t", 1): 20, ("t", 2): 0, ("t", 3): 0}
    assert lag_by_partition(stored, begins, ends) == {("t", 0): 10, ("t", 1): 30, ("t", 2): 0, ("t", 3): 0}


def test_progress_past_the_end_is_no_lag() -> None:
    """A source log cut below the progress (re-created topic): nothing to wait for, verify says the rest."""
    assert lag_by_partition({("t", 0): 500}, {("t", 0): 0}, {("t", 0): 10}) == {("t", 0): 0}
