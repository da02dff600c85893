"""``mirror cutover``: wait for the copy to complete, verify it, move consumer groups to the target.

Exit 0 when the cutover completed (or a dry run found nothing in the way), 1 when it refused (the reason
is printed; nothing half done), 2 on a configuration error.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, TextIO

from rich.console import Console
from rich.table import Table

from mirror.cli.verify import pick_flow, report_json
from mirror.config import ConfigError, Settings
from mirror.migration.cutover import CutoverOptions, CutoverReport, cutover

__all__ = ["run_cutover"]

EXIT_OK, EXIT_FAILURE = 0, 1


async def run_cutover(
    settings: Settings, args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    """Entry point of ``mirror cutover``."""
    out = out or sys.stdout
    err = err or sys.stderr
    flow = pick_flow(settings, args.source, args.target)
    if not args.topic:
        raise ConfigError("--topic", None, "at least one source topic to move")
    for key, value in (("--max-lag", args.max_lag), ("--quiet", args.quiet), ("--timeout", args.timeout)):
        if value < 0:
            raise ConfigError(key, value, "a number >= 0")
    options = CutoverOptions(
        topics=args.topic,
        groups=args.group,
        max_lag=args.max_lag,
        quiet_seconds=args.quiet,
        timeout=args.timeout,
        dry_run=args.dry_run,
        sample=args.sample,
    )

    def say(line: str) -> None:
        print(f"mirror cutover: {line}", file=err, flush=True)

    report = await cutover(settings, flow, options, say)
    if args.json:
        print(json.dumps(_report_json(report), indent=2), file=out)
    else:
        _print(report, out)
    return EXIT_OK if report.completed else EXIT_FAILURE


def _print(report: CutoverReport, out: TextIO) -> None:
    console = Console(file=out, width=160 if not out.isatty() else None)
    title = f"cutover {report.flow}" + (" (dry run)" if report.dry_run else "")
    steps = Table(title=title, title_justify="left")
    steps.add_column("STEP")
    steps.add_column("RESULT")
    for step in report.steps:
        steps.add_row(step.name, ("ok: " if step.ok else "REFUSED: ") + step.detail)
    console.print(steps)
    if report.changes:
        groups = Table(title="group offsets on the target", title_justify="left")
        for column in ("GROUP", "TOPIC", "PARTITION", "UPSTREAM", "CURRENT", "NEW", "ACTION"):
            groups.add_column(column, justify="left" if column in ("GROUP", "TOPIC", "ACTION") else "right")
        for c in report.changes:
            current = "-" if c.current is None else str(c.current)
            groups.add_row(
                c.group,
                c.topic,
                str(c.partition),
                str(c.upstream_offset),
                current,
                str(c.downstream_offset),
                c.action,
            )
        console.print(groups)
    if report.refused:
        console.print(f"refused: {report.refused}; nothing else was changed")
    elif report.dry_run:
        console.print("dry run: nothing was written")
    else:
        console.print(
            "cutover complete: start the consumers on the target; they resume from the committed offsets"
        )


def _report_json(report: CutoverReport) -> dict[str, Any]:
    return {
        "flow": report.flow,
        "dry_run": report.dry_run,
        "completed": report.completed,
        "refused": report.refused,
        "steps": [{"name": s.name, "ok": s.ok, "detail": s.detail} for s in report.steps],
        "group_offsets": [
            {
                "group": c.group,
                "topic": c.topic,
                "partition": c.partition,
                "upstream_offset": c.upstream_offset,
                "downstream_offset": c.downstream_offset,
                "current_offset": c.current,
                "action": c.action,
            }
            for c in report.changes
        ],
        "verify": None if report.verify is None else report_json(report.verify),
    }
