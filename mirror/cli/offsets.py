"""``mirror offsets translate | failover | failback``: where a consumer group resumes on another cluster.

Both read the checkpoints the flow ``<from>-><to>`` wrote on ``<to>`` (as Java's
``RemoteClusterUtils.translateOffsets`` does), so they work while ``<from>`` is down. ``translate`` prints
them; ``failover`` commits them to the group on ``<to>``, only if the group has no active members there
and never moving a partition backwards (``--dry-run`` shows what it would do).

``failback`` (`mirror.cli.failback`) moves groups between two clusters that replicate to each other.

The re-read bound (the most records a consumer failing over may see twice) comes from the offset syncs;
it is shown as ``?`` when they cannot be read (e.g. they live on ``<from>``, which is down).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

import structlog

from mirror.client import MirrorClient
from mirror.config import FlowSettings, Settings
from mirror.errors import MirrorError
from mirror.jobs.checkpoint import apply_offset_syncs
from mirror.kafka import Admin
from mirror.kafka.groups import Groups, read_partition
from mirror.mm2.policy import ReplicationPolicy
from mirror.mm2.records import Checkpoint
from mirror.mm2.sync_history import MAX_POINTS_PER_PARTITION, SyncHistory
from mirror.replication.topology import make_policy, offset_syncs_location
from mirror.types import TP

__all__ = [
    "OffsetRow",
    "print_table",
    "read_sync_history",
    "reread_bounds",
    "run_offsets",
    "upstream_partition",
]

log = structlog.get_logger(__name__)

EXIT_OK, EXIT_FAILURE, EXIT_CONFIG = 0, 1, 2
_SYNCS_TIMEOUT = 15.0


@dataclass(frozen=True, slots=True)
class OffsetRow:
    topic: str  # on the target cluster
    partition: int
    upstream_offset: int
    downstream_offset: int
    reread_bound: int | None
    metadata: str = ""


def upstream_partition(policy: ReplicationPolicy, source: str, target: str, checkpoint: Checkpoint) -> TP:
    """The source partition a checkpoint is about (the inverse of `checkpoint_topic_name`)."""
    topic = checkpoint.topic
    if policy.topic_source(topic) == source:
        upstream = policy.upstream_topic(topic)
        if upstream is not None:
            return upstream, checkpoint.partition
    return policy.format_remote_topic(target, topic), checkpoint.partition  # fail-back


def reread_bounds(
    checkpoints: Mapping[TP, Checkpoint],
    syncs: SyncHistory | None,
    policy: ReplicationPolicy,
    source: str,
    target: str,
) -> dict[TP, int | None]:
    """Per checkpoint, the most records a consumer resuming there may see twice, or None if unknown.

    When translating the checkpoint's upstream offset with the syncs gives its downstream offset, that
    translation's bound (docs/mm2-compat.md §5.1). Otherwise (the checkpoint job held syncs this read no
    longer sees, or the reverse): 0 when the checkpoint sits on a sync; else the group's upstream offset
    minus that of the sync it was translated from by Java's rule (the one whose downstream offset is the
    checkpoint's - 1). When the store no longer holds that sync, the newest older sync still bounds it from
    above: offsets grow together, so the sync used was at or after it upstream.
    """
    bounds: dict[TP, int | None] = {}
    for tp, cp in checkpoints.items():
        source_tp = upstream_partition(policy, source, target, cp)
        translated = syncs.translate(source_tp, cp.upstream_offset) if syncs else None
        if translated is not None and translated.offset == cp.downstream_offset:
            bounds[tp] = translated.reread_bound
            continue
        slots = syncs.java.syncs(source_tp) if syncs else None
        bound: int | None = None
        for sync in slots or ():
            if sync.upstream_offset > cp.upstream_offset or sync.downstream_offset > cp.downstream_offset:
                continue
            if sync.upstream_offset == cp.upstream_offset and sync.downstream_offset == cp.downstream_offset:
                bound = 0
                break
            if sync.downstream_offset < cp.downstream_offset:  # at or before the sync used
                distance = cp.upstream_offset - sync.upstream_offset
                bound = distance if bound is None else min(bound, distance)
        bounds[tp] = bound
    return bounds


async def read_sync_history(
    settings: Settings,
    flow: FlowSettings,
    policy: ReplicationPolicy,
    pins: Mapping[TP, int] | None = None,
    max_points: int = MAX_POINTS_PER_PARTITION,
) -> SyncHistory:
    """The flow's offset syncs, read from the beginning into a `SyncHistory`; `pins` (source partition ->
    upstream offset) keep the syncs around those offsets whatever the history's memory cap."""
    alias, topic = offset_syncs_location(flow, policy)
    client = f"{flow.name}|mirror-offsets|offset-syncs-consumer"
    async with asyncio.timeout(_SYNCS_TIMEOUT):
        records = await read_partition(settings.cluster(alias), topic, client, _SYNCS_TIMEOUT)
    history = SyncHistory(initialization_must_read_to_end=False, max_points=max_points)
    for tp, offset in (pins or {}).items():
        history.pin(tp, [offset])
    apply_offset_syncs(history, records or [])
    history.mark_read_to_end()
    return history


async def _rows(settings: Settings, args: argparse.Namespace, err: TextIO) -> list[OffsetRow]:
    flow = settings.flows[f"{args.source}->{args.target}"]
    policy = make_policy(flow)
    async with MirrorClient(settings.cluster(args.target), policy) as client:
        checkpoints = await client.remote_checkpoints(args.group, args.source)
    syncs: SyncHistory | None = None
    if checkpoints:
        try:
            pins = {
                upstream_partition(policy, args.source, args.target, cp): cp.upstream_offset
                for cp in checkpoints.values()
            }
            syncs = await read_sync_history(settings, flow, policy, pins)
        except (MirrorError, TimeoutError) as exc:
            print(f"mirror: re-read bounds unknown, cannot read the offset syncs: {exc}", file=err)
    bounds = reread_bounds(checkpoints, syncs, policy, args.source, args.target)
    return [
        OffsetRow(tp[0], tp[1], cp.upstream_offset, cp.downstream_offset, bounds[tp], cp.metadata)
        for tp, cp in sorted(checkpoints.items())
    ]


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]], out: TextIO) -> None:
    """Columns of numbers right-aligned, of text (TOPIC, ACTION) left-aligned."""
    cells = [list(headers)] + [["?" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    left = {i for i, h in enumerate(headers) if h in ("TOPIC", "NEW TOPIC", "ACTION")}
    for row in cells:
        line = "  ".join(
            c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )
        print(line.rstrip(), file=out)


def _no_checkpoints(args: argparse.Namespace, err: TextIO) -> int:
    print(
        f"mirror: no checkpoints of group {args.group!r} from {args.source} on {args.target} "
        f"(is the {args.source}->{args.target} flow running, and has the group committed offsets "
        "on replicated topics?)",
        file=err,
    )
    return EXIT_FAILURE


async def _translate(settings: Settings, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    rows = await _rows(settings, args, err)
    if not rows:
        return _no_checkpoints(args, err)
    if args.json:
        print(json.dumps([_row_json(r) for r in rows], indent=2), file=out)
        return EXIT_OK
    print(f"group {args.group}: offsets from {args.source} translated for {args.target}", file=out)
    print_table(
        ("TOPIC", "PARTITION", "UPSTREAM OFFSET", "DOWNSTREAM OFFSET", "RE-READ BOUND"),
        [(r.topic, r.partition, r.upstream_offset, r.downstream_offset, r.reread_bound) for r in rows],
        out,
    )
    return EXIT_OK


def _row_json(row: OffsetRow) -> dict[str, Any]:
    return {
        "topic": row.topic,
        "partition": row.partition,
        "upstream_offset": row.upstream_offset,
        "downstream_offset": row.downstream_offset,
        "reread_bound": row.reread_bound,
    }


async def _failover(settings: Settings, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    rows = await _rows(settings, args, err)
    if not rows:
        return _no_checkpoints(args, err)
    admin = Admin(settings.cluster(args.target), f"{args.source}->{args.target}|mirror-offsets|admin")
    try:
        await admin.start()
        groups = Groups(admin)
        description = await groups.describe(args.group)
        if description.is_active:
            print(
                f"mirror: group {args.group!r} has {len(description.members)} active member(s) on "
                f"{args.target} (state {description.state}): stop its consumers there first; "
                "nothing was changed",
                file=err,
            )
            return EXIT_FAILURE
        current = await groups.fetch_offsets(args.group)  # even if DescribeGroups does not know it
        plan: dict[TP, tuple[int, str]] = {}
        changes = []
        for row in rows:
            tp = (row.topic, row.partition)
            now = current.offsets.get(tp)
            error = current.errors.get(tp)
            if error is not None:
                action = f"skip ({error})"
            elif now is not None and now.offset >= row.downstream_offset:
                action = "keep (already there)" if now.offset == row.downstream_offset else "keep (ahead)"
            else:
                action = "set"
                plan[tp] = (row.downstream_offset, row.metadata)
            changes.append((row, None if now is None else now.offset, action))
        if args.json:
            print(json.dumps([_change_json(*c) for c in changes], indent=2), file=out)
        else:
            verb = "would change" if args.dry_run else "changes"
            print(
                f"group {args.group} on {args.target}: {verb} {len(plan)} of {len(rows)} partition(s)",
                file=out,
            )
            print_table(
                ("TOPIC", "PARTITION", "CURRENT", "NEW", "RE-READ BOUND", "ACTION"),
                [
                    (r.topic, r.partition, now, r.downstream_offset, r.reread_bound, a)
                    for r, now, a in changes
                ],
                out,
            )
        if args.dry_run:
            if not args.json:
                print("dry run: nothing was changed", file=out)
            return EXIT_OK
        result = await groups.alter_offsets(args.group, plan)
        if result.group_active:
            print(
                f"mirror: group {args.group!r} became active on {args.target}; nothing was changed", file=err
            )
            return EXIT_FAILURE
        for (topic, partition), error in sorted(result.errors.items()):
            print(f"mirror: {topic}-{partition} not changed: {error}", file=err)
        if not args.json:
            print(f"committed {len(result.committed)} partition(s)", file=out)
        return EXIT_FAILURE if result.errors else EXIT_OK
    finally:
        await admin.close()


def _change_json(row: OffsetRow, current: int | None, action: str) -> dict[str, Any]:
    return {**_row_json(row), "current_offset": current, "action": action}


async def run_offsets(
    settings: Settings, args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    """Entry point of ``mirror offsets`` (``args.offsets_command``: ``translate``, ``failover``,
    ``failback``)."""
    out = out or sys.stdout
    err = err or sys.stderr
    for alias in (args.source, args.target):
        if alias not in settings.clusters:
            known = ", ".join(settings.clusters)
            print(f"mirror: unknown cluster {alias!r} (the configuration has {known})", file=err)
            return EXIT_CONFIG
    if args.source == args.target:
        print("mirror: --from and --to must be different clusters", file=err)
        return EXIT_CONFIG
    if args.offsets_command == "translate":
        return await _translate(settings, args, out, err)
    if args.offsets_command == "failback":
        from mirror.cli.failback import run_failback  # noqa: PLC0415 (it builds on this module)

        return await run_failback(settings, args, out, err)
    return await _failover(settings, args, out, err)
