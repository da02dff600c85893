"""``mirror offsets failback``: move consumer groups from ``--from`` to ``--to`` when both replicate to each
other (a failback after a failover, or an active-active consumer changing clusters).

Per partition the group committed on ``--from`` (`mirror.mm2.group_move`): a copy of a ``--to`` topic goes
back to its original through the flow ``<to>-><from>``'s offset syncs read in reverse; a topic the flow
``<from>-><to>`` copies goes to its copy through that flow's syncs. Both clusters must be reachable. A group
with active members on either cluster is refused (its consumers must stop first); a partition already at
or past the new offset on ``--to`` is left alone. ``--dry-run`` prints the plan and changes nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Sequence
from typing import Any, TextIO

from mirror.cli.offsets import print_table, read_sync_history
from mirror.config import FlowSettings, Settings
from mirror.errors import MirrorError
from mirror.kafka import Admin
from mirror.kafka.groups import Groups
from mirror.mm2.filters import TopicFilter
from mirror.mm2.group_move import Move, plan_moves
from mirror.mm2.policy import ReplicationPolicy, should_replicate_topic
from mirror.mm2.sync_history import SyncHistory
from mirror.replication.topology import make_policy

__all__ = ["CLI_MAX_POINTS", "run_failback"]

EXIT_OK, EXIT_FAILURE, EXIT_CONFIG = 0, 1, 2
CLI_MAX_POINTS = 1 << 16
"""Points per partition a one-shot read keeps (the checkpoint job keeps fewer, and pins its groups)."""


async def _syncs(
    settings: Settings, flow: FlowSettings | None, policy: ReplicationPolicy, err: TextIO
) -> SyncHistory | None:
    if flow is None:
        return None
    try:
        return await read_sync_history(settings, flow, policy, max_points=CLI_MAX_POINTS)
    except (MirrorError, TimeoutError) as exc:
        print(f"mirror: cannot read the offset syncs of {flow.name}: {exc}", file=err)
        return None


async def run_failback(settings: Settings, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    leaving, joining = args.source, args.target
    forward_flow, back_flow = (
        flow if flow is not None and flow.enabled else None
        for flow in (settings.flows.get(f"{leaving}->{joining}"), settings.flows.get(f"{joining}->{leaving}"))
    )
    if forward_flow is None and back_flow is None:
        print(f"mirror: no enabled flow between {leaving} and {joining} in the configuration", file=err)
        return EXIT_CONFIG
    any_flow = forward_flow or back_flow
    assert any_flow is not None
    policy = make_policy(any_flow)
    forward, back = await asyncio.gather(
        _syncs(settings, forward_flow, policy, err), _syncs(settings, back_flow, policy, err)
    )
    topic_filter = TopicFilter(forward_flow.topics, forward_flow.topics_exclude) if forward_flow else None

    def replicated(topic: str) -> bool:
        return topic_filter is not None and should_replicate_topic(
            policy, topic_filter, topic, leaving, joining
        )

    admins = {
        alias: Admin(settings.cluster(alias), f"{leaving}->{joining}|mirror-offsets-failback|admin")
        for alias in (leaving, joining)
    }
    try:
        await asyncio.gather(*(a.start() for a in admins.values()))
        groups = {alias: Groups(a) for alias, a in admins.items()}
        code = EXIT_OK
        report: list[dict[str, Any]] = []
        for group in args.groups:
            outcome = await _one_group(
                groups, group, args, (forward, back, replicated, policy), out=out, err=err
            )
            report.append(outcome)
            if outcome["result"] not in ("moved", "planned", "nothing to change"):
                code = EXIT_FAILURE
        if args.json:
            print(json.dumps(report, indent=2), file=out)
        return code
    finally:
        await asyncio.gather(*(a.close() for a in admins.values()))


async def _one_group(
    groups: dict[str, Groups],
    group: str,
    args: argparse.Namespace,
    context: tuple[SyncHistory | None, SyncHistory | None, Any, ReplicationPolicy],
    *,
    out: TextIO,
    err: TextIO,
) -> dict[str, Any]:
    leaving, joining = args.source, args.target
    forward, back, replicated, policy = context
    for alias in (leaving, joining):
        description = await groups[alias].describe(group)
        if description.is_active:
            print(
                f"mirror: group {group!r} has {len(description.members)} active member(s) on {alias} "
                f"(state {description.state}): stop its consumers first; nothing was changed",
                file=err,
            )
            return {"group": group, "result": f"refused: active on {alias}", "partitions": []}
    committed = await groups[leaving].fetch_offsets(group)
    offsets = {tp: (c.offset, c.metadata) for tp, c in committed.offsets.items()}
    moves = plan_moves(
        offsets,
        policy=policy,
        leaving=leaving,
        joining=joining,
        forward=forward,
        back=back,
        replicated=replicated,
    )
    current = await groups[joining].fetch_offsets(group)
    plan: dict[tuple[str, int], tuple[int, str]] = {}
    rows: list[tuple[Move, int | None, str]] = []
    for move in moves:
        action, now = _action(move, current.offsets, current.errors)
        if action == "set" and move.new_topic is not None and move.new_offset is not None:
            plan[(move.new_topic, move.partition)] = (move.new_offset, move.metadata)
        rows.append((move, now, action))
    untranslated = [m for m in moves if not m.translated and m.how != "not replicated"]
    if not args.json:
        verb = "would change" if args.dry_run else "changes"
        print(
            f"group {group}: {leaving} -> {joining}: {verb} {len(plan)} of {len(moves)} partition(s)",
            file=out,
        )
        _table(rows, out)
    result = "planned" if args.dry_run else "nothing to change"
    if untranslated:
        result = f"incomplete: {len(untranslated)} partition(s) cannot be translated"
    if plan and not args.dry_run:
        outcome = await groups[joining].alter_offsets(group, plan)
        if outcome.group_active:
            print(f"mirror: group {group!r} became active on {joining}; nothing was changed", file=err)
            result = f"refused: active on {joining}"
        else:
            for (topic, partition), error in sorted(outcome.errors.items()):
                print(f"mirror: {group} {topic}-{partition} not changed: {error}", file=err)
            if outcome.errors:
                result = f"failed: {len(outcome.errors)} partition(s)"
            elif not untranslated:
                result = "moved"
            if not args.json:
                print(f"committed {len(outcome.committed)} partition(s)", file=out)
    if args.dry_run and not args.json:
        print("dry run: nothing was changed", file=out)
    return {"group": group, "result": result, "partitions": [_row_json(*r) for r in rows]}


def _action(
    move: Move, offsets: dict[tuple[str, int], Any], errors: dict[tuple[str, int], MirrorError]
) -> tuple[str, int | None]:
    if not move.translated or move.new_topic is None or move.new_offset is None:
        return f"skip ({move.how})", None
    tp = (move.new_topic, move.partition)
    now = offsets.get(tp)
    now_offset = None if now is None else now.offset
    if tp in errors:
        return f"skip ({errors[tp]})", now_offset
    if now_offset is not None and now_offset >= move.new_offset:
        return ("keep (already there)" if now_offset == move.new_offset else "keep (ahead)"), now_offset
    return "set", now_offset


def _table(rows: Sequence[tuple[Move, int | None, str]], out: TextIO) -> None:
    print_table(
        ("TOPIC", "PARTITION", "OFFSET", "NEW TOPIC", "CURRENT", "NEW", "RE-READ BOUND", "ACTION"),
        [
            (m.topic, m.partition, m.offset, m.new_topic or "-", now, m.new_offset, m.reread_bound, action)
            for m, now, action in rows
        ],
        out,
    )


def _row_json(move: Move, current: int | None, action: str) -> dict[str, Any]:
    return {
        "topic": move.topic,
        "partition": move.partition,
        "offset": move.offset,
        "new_topic": move.new_topic,
        "new_offset": move.new_offset,
        "current_offset": current,
        "reread_bound": move.reread_bound,
        "how": move.how,
        "action": action,
    }
