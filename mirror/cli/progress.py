"""``mirror progress show | reset FLOW``: a flow's stored progress per source partition, and moving it.

``show`` prints per partition the stored position (the next source offset to copy), the source's log start
and end, and the lag. ``reset --topics REGEX --to-earliest|--to-latest|--to-offset N|--to-timestamp T``
rewrites the stored progress of those partitions (``--dry-run``: only print it), then announces the reset
in the flow's control topic, so a worker holding the partitions re-reads it before it copies them again.
It is refused unless every matching topic has been paused (``mirror pause``) for `SETTLED` seconds — by
then every worker obeys the pause and has stored what it had copied, so nothing overwrites the reset — or
no worker runs the flow.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from mirror.config import ConfigError, FlowSettings, Settings
from mirror.kafka import Admin, Reader
from mirror.kafka.groups import GroupDescription, Groups
from mirror.kafka.topic_ids import describe_topics
from mirror.replication.controls import Controls, compile_pattern
from mirror.replication.progress import ProgressStore
from mirror.replication.remote_topics import TopicSync
from mirror.replication.topology import make_policy, tasks_topic
from mirror.types import TP

__all__ = [
    "SETTLED",
    "ProgressRow",
    "add_progress_parsers",
    "refusal",
    "reset_positions",
    "run_progress",
    "running_workers",
]

EXIT_OK, EXIT_FAILURE = 0, 1
#: How long topics must have been paused before their progress may be reset (seconds): workers obey a
#: pause within about a second and store the paused partitions' progress as soon as their last
#: acknowledgements are in (at most Java's graceful-shutdown 5 s later).
SETTLED = 10.0


@dataclass(frozen=True)
class ProgressRow:
    """One source partition: the next offset to copy as stored (None: nothing stored), the source's log
    start and end, and the records between the stored position and the end."""

    topic: str
    partition: int
    stored: int | None
    start: int
    end: int

    @property
    def lag(self) -> int:
        return max(0, self.end - (self.stored if self.stored is not None else self.start))


def add_progress_parsers(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    config_args: Callable[[argparse.ArgumentParser], None],
) -> None:
    progress = sub.add_parser(
        "progress",
        help="show or reset a flow's stored progress per source partition",
        description="A flow's replication progress, as stored in its progress topic on the target.",
    )
    actions = progress.add_subparsers(dest="progress_command", required=True, metavar="ACTION")
    show = actions.add_parser("show", help="stored position, source log start and end, lag per partition")
    reset = actions.add_parser(
        "reset",
        help="move the stored progress of paused topics (or of a flow no worker runs)",
        description="Rewrite the stored progress of the partitions of --topics. Refused unless those "
        f"topics have been paused for {SETTLED:.0f} s (mirror pause) or no worker runs the flow.",
    )
    for parser in (show, reset):
        config_args(parser)
        parser.add_argument("flow", metavar="FLOW", help="the flow, e.g. 'A->B'")
        parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    show.add_argument("--topics", metavar="REGEX", help="only these source topics (a Java regex)")
    reset.add_argument("--topics", metavar="REGEX", required=True, help="the source topics (a Java regex)")
    to = reset.add_mutually_exclusive_group(required=True)
    to.add_argument("--to-earliest", action="store_true", help="copy again from the log start")
    to.add_argument("--to-latest", action="store_true", help="skip to the log end")
    to.add_argument("--to-offset", type=int, metavar="N", help="copy from offset N (clamped to the log)")
    to.add_argument(
        "--to-timestamp",
        metavar="T",
        help="copy from the first record at or after T (ISO 8601, e.g. 2026-01-31T12:00:00Z, or epoch ms)",
    )
    reset.add_argument("--dry-run", action="store_true", help="only print what would be stored")


# --- pure parts ------------------------------------------------------------------------------------------


def parse_timestamp(text: str) -> int:
    """``--to-timestamp``: epoch milliseconds, or an ISO 8601 time (UTC when it names no zone)."""
    if re.fullmatch(r"\d+", text):
        return int(text)
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError("--to-timestamp", text, "ISO 8601 (2026-01-31T12:00:00Z) or epoch ms") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


def reset_positions(
    rows: Sequence[ProgressRow],
    to: str,
    offset: int | None = None,
    by_time: Mapping[TP, int | None] | None = None,
) -> dict[TP, int]:
    """The next offset to copy per partition after a reset ``to`` ``earliest``, ``latest``, ``offset``
    (clamped to [log start, log end]) or ``timestamp`` (the first offset at or after it; the end when no
    record is that recent)."""
    out: dict[TP, int] = {}
    for row in rows:
        tp = (row.topic, row.partition)
        if to == "earliest":
            out[tp] = row.start
        elif to == "latest":
            out[tp] = row.end
        elif to == "offset":
            assert offset is not None
            out[tp] = min(max(offset, row.start), row.end)
        else:
            found = (by_time or {}).get(tp)
            out[tp] = row.end if found is None else max(found, row.start)
    return out


def running_workers(group: GroupDescription, tasks: str) -> list[str]:
    """The members of the workers' group that run the flow (its tasks topic ``tasks`` assigned to them).
    While the group rebalances the brokers show no member's assignment, and members still stopping their
    tasks store their progress: every member counts then."""
    if group.state in ("PreparingRebalance", "CompletingRebalance"):
        return sorted({m.client_id for m in group.members}) or [f"(the group is in {group.state})"]
    return sorted({m.client_id for m in group.members if any(t == tasks for t, _ in m.assignment)})


def refusal(
    topics: Sequence[str], controls: Controls, now: float, running: Sequence[str], settled: float = SETTLED
) -> str | None:
    """Why a reset of ``topics`` must not happen now (None: it may): neither paused for ``settled``
    seconds, nor the flow run by no worker (``running``: the workers that do)."""
    if not running:
        return None
    unpaused = [t for t in topics if not controls.is_paused(t)]
    if unpaused:
        shown = ", ".join(unpaused[:5]) + (" ..." if len(unpaused) > 5 else "")
        return (
            f"topics not paused: {shown}; workers run the flow ({', '.join(running)}): "
            f"pause them first (mirror pause {controls.flow} --topics ...)"
        )
    pauses = [
        p for p in controls.pauses.values() if any(compile_pattern(p.pattern).fullmatch(t) for t in topics)
    ]
    newest = max((p.at for p in pauses), default=0.0)
    if now - newest < settled:
        return f"paused only {max(0.0, now - newest):.0f} s ago: wait {settled - (now - newest):.0f} s more"
    return None


# --- the command -----------------------------------------------------------------------------------------


async def _rows(settings: Settings, flow: FlowSettings, pattern: re.Pattern[str] | None) -> list[ProgressRow]:
    source, target = settings.cluster(flow.source), settings.cluster(flow.target)
    source_admin = Admin(source, f"{flow.name}|progress-cli-source-admin")
    target_admin = Admin(target, f"{flow.name}|progress-cli-target-admin")
    reader = Reader(source, f"{flow.name}|progress-cli-reader", flow.consumer, "read_committed")
    try:
        await asyncio.gather(source_admin.start(), target_admin.start(), reader.start())
        plan = await TopicSync(flow, source_admin, target_admin, make_policy(flow)).plan()
        stored = await ProgressStore(flow, target).load()
        tps = sorted({(t, p) for t, n in plan.source_partitions.items() for p in range(n)} | set(stored))
        tps = [tp for tp in tps if pattern is None or pattern.fullmatch(tp[0])]
        starts, ends = await asyncio.gather(reader.beginning_offsets(tps), reader.end_offsets(tps))
    finally:
        await asyncio.gather(source_admin.close(), target_admin.close(), reader.close())
    return [
        ProgressRow(
            t, p, stored[(t, p)] + 1 if (t, p) in stored else None, starts.get((t, p), 0), ends.get((t, p), 0)
        )
        for t, p in tps
    ]


def _print_rows(rows: Sequence[ProgressRow], new: Mapping[TP, int] | None, as_json: bool) -> None:
    if as_json:
        docs = [{**asdict(r), "lag": r.lag} for r in rows]
        if new is not None:
            for doc, row in zip(docs, rows, strict=True):
                doc["new"] = new[(row.topic, row.partition)]
        print(json.dumps(docs, indent=2))
        return
    head = f"{'topic':<30} {'partition':>9} {'stored':>12} {'log start':>12} {'log end':>12} {'lag':>10}"
    print(head + (f" {'new':>12}" if new is not None else ""))
    for r in rows:
        line = f"{r.topic:<30} {r.partition:>9} {r.stored if r.stored is not None else '-':>12} "
        line += f"{r.start:>12} {r.end:>12} {r.lag:>10}"
        print(line + (f" {new[(r.topic, r.partition)]:>12}" if new is not None else ""))


async def run_progress(settings: Settings, args: argparse.Namespace) -> int:
    from mirror.cli.control import flow_of, open_channel, operator  # noqa: PLC0415

    flow = flow_of(settings, args.flow)
    pattern = None
    if args.topics is not None:
        try:
            pattern = compile_pattern(args.topics)
        except ValueError as exc:
            raise ConfigError("--topics", args.topics, f"a Java regex ({exc})") from None
    rows = await _rows(settings, flow, pattern)
    if args.progress_command == "show":
        _print_rows(rows, None, args.json)
        return EXIT_OK
    if not rows:
        print(f"{flow.name}: no source partition matches {args.topics!r}")
        return EXIT_FAILURE
    to = (
        "earliest"
        if args.to_earliest
        else "latest"
        if args.to_latest
        else "offset"
        if args.to_offset is not None
        else "timestamp"
    )
    by_time = None
    if to == "timestamp":
        ts = parse_timestamp(args.to_timestamp)
        reader = Reader(
            settings.cluster(flow.source), f"{flow.name}|progress-cli-reader", flow.consumer, "read_committed"
        )
        try:
            await reader.start()
            by_time = await reader.offsets_for_time([(r.topic, r.partition) for r in rows], ts)
        finally:
            await reader.close()
    new = reset_positions(rows, to, args.to_offset, by_time)
    async with open_channel(settings, flow) as (channel, admin):
        running = running_workers(await Groups(admin).describe(settings.service.group), tasks_topic(flow))
        why = refusal(sorted({r.topic for r in rows}), channel.controls, time.time(), running, SETTLED)
        if why is not None:
            print(f"{flow.name}: progress reset refused: {why}")
            return EXIT_FAILURE
        _print_rows(rows, new, args.json)
        if args.dry_run:
            print("(dry run: nothing stored)")
            return EXIT_OK
        ids = await _topic_ids(settings, flow)  # stored with the progress, as the workers store it
        store = ProgressStore(flow, settings.cluster(flow.target))
        await store.ensure_topic(admin)
        await store.start()
        try:
            await store.store(
                {tp: offset - 1 for tp, offset in new.items()}, {tp: ids.get(tp[0]) for tp in new}
            )
        finally:
            await store.close()
        await channel.announce_reset(args.topics, operator())
    print(f"{flow.name}: progress of {len(new)} partition(s) reset; workers re-read it before copying them")
    return EXIT_OK


async def _topic_ids(settings: Settings, flow: FlowSettings) -> dict[str, str | None]:
    """The source topics' ids now (None where the brokers give none)."""
    admin = Admin(settings.cluster(flow.source), f"{flow.name}|progress-cli-source-admin")
    try:
        await admin.start()
        return {name: d.topic_id for name, d in (await describe_topics(admin)).items()}
    finally:
        await admin.close()
