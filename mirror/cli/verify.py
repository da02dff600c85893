"""``mirror verify``: compare a flow's source topics with their remote topics over the range already copied.

Exit 0 when every compared partition is identical, 1 when one differs (or a cluster cannot be read), 2 on
a configuration error. A table for people (a progress bar on a terminal), ``--json`` for scripts.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from mirror.config import ConfigError, FlowSettings, Settings
from mirror.migration.verify import PartitionCheck, VerifyReport, verify

__all__ = ["check_json", "pick_flow", "print_report", "report_json", "run_verify"]

EXIT_OK, EXIT_FAILURE = 0, 1
_SHOWN = 20  # differences listed per partition in the table


def pick_flow(settings: Settings, source: str | None, target: str | None) -> FlowSettings:
    """The flow ``source->target``; without them, the one enabled flow of the configuration."""
    if source is None and target is None:
        enabled = [f for f in settings.flows.values() if f.enabled]
        if len(enabled) != 1:
            names = ", ".join(f.name for f in enabled) or "none"
            raise ConfigError("--from/--to", None, f"one of the enabled flows ({names})")
        return enabled[0]
    name = f"{source}->{target}"
    flow = settings.flows.get(name)
    if flow is None or not flow.enabled:
        known = ", ".join(f.name for f in settings.flows.values() if f.enabled) or "none"
        raise ConfigError("--from/--to", name, f"an enabled flow ({known})")
    return flow


class _Bar:
    """A rich progress bar on stderr (only when it is a terminal)."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._task = progress.add_task("verifying", total=None)

    def total(self, records: int) -> None:
        self._progress.update(self._task, total=records)

    def advance(self, records: int) -> None:
        self._progress.advance(self._task, records)


@contextmanager
def _bar(enabled: bool) -> Iterator[_Bar | None]:
    console = Console(stderr=True)
    if not enabled or not console.is_terminal:
        yield None
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        yield _Bar(progress)


async def run_verify(settings: Settings, args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Entry point of ``mirror verify``."""
    out = out or sys.stdout
    flow = pick_flow(settings, args.source, args.target)
    if args.sample is not None and args.sample < 1:
        raise ConfigError("--sample", args.sample, "a number of records >= 1")
    with _bar(not args.json) as bar:
        report = await verify(
            settings,
            flow,
            args.topic or (),
            sample=args.sample,
            allow_duplicates=args.allow_duplicates,
            progress=bar,
        )
    if args.json:
        print(json.dumps(report_json(report), indent=2), file=out)
    else:
        print_report(report, out)
    return EXIT_OK if report.identical else EXIT_FAILURE


def print_report(report: VerifyReport, out: TextIO) -> None:
    console = Console(file=out, width=160 if not out.isatty() else None)
    table = Table(title=f"verify {report.flow}", title_justify="left")
    for column in ("TOPIC", "PARTITION", "REMOTE TOPIC", "SOURCE RANGE", "TARGET FROM", "RECORDS", "MATCHED"):
        table.add_column(column, justify="right" if column in ("PARTITION", "RECORDS", "MATCHED") else "left")
    table.add_column("STATE")
    for c in report.checks:
        o = c.outcome
        rng = f"{c.source_start}..{c.source_end - 1}" if c.source_end > c.source_start else "-"
        state = c.state + (f" ({_counts(c)})" if c.state in ("different", "duplicated") else "")
        flags = ", ".join(
            f for f in ("compacted" if c.compacted else "", "sampled" if c.sampled else "") if f
        )
        table.add_row(
            c.topic,
            str(c.partition),
            c.remote_topic,
            rng + (f" [{flags}]" if flags else ""),
            "-" if c.target_start is None else str(c.target_start),
            "-" if o is None else str(o.source_records),
            "-" if o is None else str(o.matched),
            state,
        )
    console.print(table)
    for c in report.checks:
        if c.note:
            console.print(f"{c.topic}-{c.partition}: {c.note}")
        if c.outcome is None or c.outcome.identical:
            continue
        console.print(f"{c.topic}-{c.partition} -> {c.remote_topic}-{c.partition}:")
        for d in c.outcome.differences[:_SHOWN]:
            where = []
            if d.source_offset is not None:
                where.append(f"source offset {d.source_offset}")
            if d.target_offset is not None:
                where.append(f"target offset {d.target_offset}")
            console.print(f"  {d.kind:<9}  {', '.join(where)}")
        more = sum(c.outcome.counts.values()) - min(len(c.outcome.differences), _SHOWN)
        if more > 0:
            console.print(f"  ... and {more} more (--json lists up to {len(c.outcome.differences)})")
    rate = report.records / report.seconds if report.seconds else 0.0
    verdict = "identical" if report.identical else "DIFFERENT"
    console.print(
        f"{verdict}: {report.records} source records in {len(report.checks)} partition(s) compared in "
        f"{report.seconds:.1f} s ({rate:,.0f} records/s)"
    )


def _counts(check: PartitionCheck) -> str:
    assert check.outcome is not None
    return ", ".join(f"{n} {kind}" for kind, n in sorted(check.outcome.counts.items()))


def check_json(check: PartitionCheck) -> dict[str, Any]:
    o = check.outcome
    return {
        "topic": check.topic,
        "partition": check.partition,
        "remote_topic": check.remote_topic,
        "state": check.state,
        "source_start": check.source_start,
        "source_end": check.source_end,
        "target_start": check.target_start,
        "compacted": check.compacted,
        "sampled": check.sampled,
        "note": check.note,
        "source_records": None if o is None else o.source_records,
        "target_records": None if o is None else o.target_records,
        "matched": None if o is None else o.matched,
        "first": None if o is None or o.first is None else {"source": o.first[0], "target": o.first[1]},
        "last": None if o is None or o.last is None else {"source": o.last[0], "target": o.last[1]},
        "counts": {} if o is None else dict(o.counts),
        "differences": []
        if o is None
        else [
            {"kind": d.kind, "source_offset": d.source_offset, "target_offset": d.target_offset}
            for d in o.differences
        ],
    }


def report_json(report: VerifyReport) -> dict[str, Any]:
    return {
        "flow": report.flow,
        "identical": report.identical,
        "allow_duplicates": report.allow_duplicates,
        "records": report.records,
        "seconds": round(report.seconds, 3),
        "partitions": [check_json(c) for c in report.checks],
    }
