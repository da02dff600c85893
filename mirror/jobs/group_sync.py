"""Group offset sync of a flow (``sync.group.offsets.enabled``; Java `MirrorCheckpointTask.syncGroupOffset`,
docs/mm2-compat.md §5): the latest checkpoints are written into target groups that are idle (empty) or
absent there; never into a group with active members, never moving a partition backwards."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from mirror import metrics
from mirror.errors import MirrorError
from mirror.kafka.groups import CommittedOffset, Groups
from mirror.mm2.records import Checkpoint
from mirror.types import TP

__all__ = ["GroupOffsetSync", "bounded", "plan_group_sync"]

T = TypeVar("T")

_CONCURRENCY = 8  # group requests in flight per round


def plan_group_sync(
    checkpoints: Mapping[TP, Checkpoint],
    target_offsets: Mapping[TP, CommittedOffset],
    unknown: Iterable[TP] = (),
) -> dict[TP, tuple[int, str]]:
    """Offsets to write into an idle target group: each checkpoint's downstream offset, except where the
    group already is at or past it (never backwards) or its current offset is `unknown` (an error)."""
    skip = set(unknown)
    plan: dict[TP, tuple[int, str]] = {}
    for tp, checkpoint in checkpoints.items():
        current = target_offsets.get(tp)
        if tp in skip or (current is not None and current.offset >= checkpoint.downstream_offset):
            continue
        plan[tp] = (checkpoint.downstream_offset, checkpoint.metadata)
    return plan


async def bounded(
    items: Sequence[str], call: Callable[[str], Awaitable[T]], limit: int = _CONCURRENCY
) -> list[T | MirrorError]:
    """`call(item)` for every item, at most `limit` at a time; MirrorErrors are returned, not raised."""
    semaphore = asyncio.Semaphore(limit)
    results: list[T | MirrorError] = []

    async def one(index: int, item: str) -> None:
        async with semaphore:
            try:
                results[index] = await call(item)
            except MirrorError as exc:
                results[index] = exc

    results = [MirrorError("not run")] * len(items)
    async with asyncio.TaskGroup() as tg:
        for index, item in enumerate(items):
            tg.create_task(one(index, item))
    return results


class GroupOffsetSync:
    """The group offset sync of one flow; ``on_error`` sees the text of every error (the job's
    ``last_error``)."""

    def __init__(self, labels: tuple[str, str], log: Any, on_error: Callable[[str], None]) -> None:
        self.synced = 0  # group offsets written
        self._labels = labels
        self._log = log
        self._on_error = on_error

    async def sync(
        self,
        target_groups: Groups,
        groups: Sequence[str],
        checkpoints: Callable[[str], Mapping[TP, Checkpoint]],
    ) -> dict[str, str]:
        """Write each group's latest ``checkpoints`` into it on the target where it is idle or absent.

        Returns what happened per group: "synced", "up-to-date", "active" (left alone) or an error.
        """
        outcomes = await bounded(groups, lambda g: self._sync_group(target_groups, g, checkpoints(g)))
        result: dict[str, str] = {}
        for group, outcome in zip(groups, outcomes, strict=True):
            if isinstance(outcome, MirrorError):
                self._on_error(str(outcome))
                self._log.warning("cannot sync offsets of group", group=group, error=str(outcome))
                result[group] = str(outcome)
            else:
                result[group] = outcome
        return result

    async def _sync_group(
        self, target_groups: Groups, group: str, checkpoints: Mapping[TP, Checkpoint]
    ) -> str:
        description = await target_groups.describe(group)
        if description.is_active:
            return "active"
        # Always read the current offsets, even of a group DescribeGroups does not know (a KIP-848 group
        # answers GROUP_ID_NOT_FOUND there): a commit must never move a partition backwards.
        current = await target_groups.fetch_offsets(group)
        plan = plan_group_sync(checkpoints, current.offsets, current.errors)
        if not plan:
            return "up-to-date"
        outcome = await target_groups.alter_offsets(group, plan)
        if outcome.group_active:
            return "active"
        if outcome.committed:
            self.synced += len(outcome.committed)
            metrics.group_offsets_synced_total.labels(*self._labels).inc(len(outcome.committed))
        if outcome.errors:
            (topic, partition), err = next(iter(outcome.errors.items()))
            self._on_error(str(err))
            self._log.warning(
                "target refused some group offsets",
                group=group,
                partitions=len(outcome.errors),
                first=f"{topic}-{partition}",
                error=str(err),
            )
        return "synced"
