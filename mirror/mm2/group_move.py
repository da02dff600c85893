"""Where a consumer group's offsets on one cluster land on the other cluster of a replicated pair.

A group *leaves* cluster L for cluster J (a failback after a failover, or moving an active-active consumer).
Per partition it consumed on L:

- a copy of J's topic (``J.orders`` on L, written by the flow J->L): the flow's offset syncs read
  backwards give the offset on J's original ``orders`` (`SyncHistory.translate_back`); Java MM2 has no
  answer here;
- a topic the flow L->J copies (``orders`` on L, or a third cluster's ``C.orders``): the flow's offset
  syncs give the offset on J's copy (``L.orders``), as a checkpoint would (`SyncHistory.translate`);
- anything else has no counterpart on J.

Both directions never skip a record the group has not read, and carry their re-read bound
(docs/mm2-compat.md §5.1).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

from mirror.mm2.policy import ReplicationPolicy, checkpoint_topic_name
from mirror.mm2.sync_history import SyncHistory
from mirror.types import TP

__all__ = ["Move", "plan_moves"]


@dataclass(frozen=True, slots=True)
class Move:
    """One partition of a group: where it is committed on the cluster it leaves, and where it resumes.

    ``how``: "back" (a copy, to its original), "forward" (an original or a third cluster's copy, to the
    copy), or why there is no new offset ("not replicated", "no syncs", "before the first sync").
    """

    topic: str
    partition: int
    offset: int
    new_topic: str | None
    new_offset: int | None
    reread_bound: int | None
    how: str
    metadata: str = ""

    @property
    def translated(self) -> bool:
        return self.new_topic is not None and self.new_offset is not None


def plan_moves(
    offsets: Mapping[TP, tuple[int, str]],
    *,
    policy: ReplicationPolicy,
    leaving: str,
    joining: str,
    forward: SyncHistory | None,
    back: SyncHistory | None,
    replicated: Callable[[str], bool],
) -> list[Move]:
    """The moves of one group's committed `offsets` ((offset, metadata) per partition on `leaving`).

    `forward`: the offset syncs of the flow leaving->joining (None: no such flow, or unreadable), `back`:
    those of joining->leaving; `replicated(topic)`: the flow leaving->joining copies `topic`.
    """
    moves: list[Move] = []
    for (topic, partition), (offset, metadata) in sorted(offsets.items()):
        if offset < 0:
            continue
        base = Move(topic, partition, offset, None, None, None, "not replicated", metadata)
        if policy.topic_source(topic) == joining and (original := policy.upstream_topic(topic)) is not None:
            moves.append(_move(replace(base, how="back"), original, back))
        elif replicated(topic):
            new_topic = checkpoint_topic_name(policy, leaving, joining, topic)
            moves.append(_move(replace(base, how="forward"), new_topic, forward))
        else:
            moves.append(base)
    return moves


def _move(base: Move, new_topic: str, syncs: SyncHistory | None) -> Move:
    """`base` (untranslated, ``how`` the direction) translated to `new_topic` through `syncs`."""
    if syncs is None:
        return replace(base, how="no syncs")
    tp = (base.topic, base.partition)
    if base.how == "back":
        translated = syncs.translate_back((new_topic, base.partition), base.offset)
    else:
        translated = syncs.translate(tp, base.offset)
    if translated is None or translated.offset < 0:
        return replace(base, how="before the first sync")
    return replace(
        base, new_topic=new_topic, new_offset=translated.offset, reread_bound=translated.reread_bound
    )
