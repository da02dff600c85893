"""Partition -> task assignment: a pure function that every worker computes the same way."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from mirror.replication.assignment import assign_partitions, task_for_partition

topics = st.text(alphabet="abcxyz.-_0123", min_size=1, max_size=12)


@given(st.sets(st.tuples(topics, st.integers(0, 63)), max_size=200), st.integers(1, 16))
def test_every_partition_goes_to_exactly_one_task(partitions: set[tuple[str, int]], tasks: int) -> None:
    shares = assign_partitions(partitions, tasks)
    assert len(shares) == tasks
    assert set().union(*shares) == partitions
    assert sum(len(s) for s in shares) == len(partitions)


@given(topics, st.integers(0, 1000), st.integers(1, 32), st.sets(st.tuples(topics, st.integers(0, 9))))
def test_a_partitions_task_does_not_depend_on_the_other_topics(
    topic: str, partition: int, tasks: int, others: set[tuple[str, int]]
) -> None:
    alone = assign_partitions({(topic, partition)}, tasks)
    crowded = assign_partitions(others | {(topic, partition)}, tasks)
    index = task_for_partition(topic, partition, tasks)
    assert (topic, partition) in alone[index] and (topic, partition) in crowded[index]


def test_partitions_of_one_topic_spread_round_robin() -> None:
    shares = assign_partitions({("orders", p) for p in range(12)}, 4)
    assert [len(s) for s in shares] == [3, 3, 3, 3]
