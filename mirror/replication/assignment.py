"""Which task of a flow copies which source partition: a pure function every worker computes alike."""

from __future__ import annotations

import zlib
from collections.abc import Iterable

from mirror.types import TP

__all__ = ["assign_partitions", "task_for_partition"]


def task_for_partition(topic: str, partition: int, tasks: int) -> int:
    """Partition -> task, a pure function every worker computes alike (docs/guarantees.md).

    Round-robin inside a topic, offset by a stable hash of the topic name, so partitions of many
    small topics spread over the tasks and a partition never changes task while ``tasks`` is fixed.
    """
    return (zlib.crc32(topic.encode()) + partition) % tasks


def assign_partitions(partitions: Iterable[TP], tasks: int) -> list[set[TP]]:
    """The share of ``partitions`` of each of ``tasks`` tasks (by `task_for_partition`)."""
    out: list[set[TP]] = [set() for _ in range(tasks)]
    for topic, partition in partitions:
        out[task_for_partition(topic, partition, tasks)].add((topic, partition))
    return out
