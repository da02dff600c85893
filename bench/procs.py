"""CPU seconds and peak RSS of a process and its descendants, from /proc (Linux only)."""

from __future__ import annotations

import os
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


def _descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for task in Path(f"/proc/{p}/task").glob("*/children"):
            try:
                todo.extend(int(c) for c in task.read_text().split())
            except OSError:
                continue
    return out


def cpu_seconds(pid: int) -> float:
    """user+sys of the tree (JVM threads are included in the JVM's own counters; reaped children too)."""
    total = 0.0
    for p in _descendants(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # utime, stime, cutime, cstime (fields 14-17 of stat(5), after the command name)
        total += sum(int(f) for f in fields[11:15]) / _TICKS
    return total


def peak_rss_mb(pid: int) -> float:
    """Sum of VmHWM (peak resident set) over the tree, in MB."""
    total_kb = 0
    for p in _descendants(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total_kb += int(line.split()[1])
        except OSError:
            continue
    return total_kb / 1024
