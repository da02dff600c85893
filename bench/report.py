"""The benchmark's Markdown table and PNG chart (throughput and latency side by side)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _ratio(a: float | None, b: float | None) -> str:
    if not a or not b:
        return "-"
    return f"{a / b:.2f}x"


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    s = results["settings"]
    lines = [
        f"Ran {results['started']} on {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB "
        f"(load average {m['load_avg_at_start']:.1f} at start), Python {m['python']}, {m['java']}. "
        f"Mode {s['mode']}: medians of {s['runs']} run(s) per tool, alternated; tasks.max={s['tasks_max']}, "
        f"mirror workers={s['mirror_workers']}; latency under {s['latency_rate']} rec/s for "
        f"{s['latency_seconds']:.0f} s"
        + (
            f" (the first {s['latency_warmup_seconds']:g} s not counted)."
            if s.get("latency_warmup_seconds")
            else "."
        )
        + (
            f" WAN: {s['wan']['rtt_ms']} ms round trip to the {s['wan']['side']} (toxiproxy)."
            if s.get("wan")
            else ""
        ),
        "",
        "| workload | tool | records/s | MB/s | CPU s / M rec | peak RSS MB | p50 ms | p99 ms | "
        "vs Java rec/s | vs ceiling |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for w in results["workloads"]:
        label = (
            f"{w['records'] / 1e6:g}M x {w['size']} B"
            + (f" {w['compression']}" if w["compression"] != "none" else "")
            + (
                f" in {w['source_batch'] // 1024} KB batches"
                if w.get("source_batch", 1 << 20) != 1 << 20
                else ""
            )
        )
        java = w["median"].get("java-mm2", {})
        ceil = w.get("ceiling") or {}
        for tool, med in w["median"].items():
            lines.append(
                f"| {label} | {tool} | {med['records_per_s']:,.0f} | {med['mb_per_s']:.1f} | "
                f"{med['cpu_s_per_m_records']:.1f} | {med['peak_rss_mb']:.0f} | "
                f"{med['latency_p50_ms']:.0f} | "
                f"{med['latency_p99_ms']:.0f} | {_ratio(med['records_per_s'], java.get('records_per_s'))} | "
                f"{_ratio(med['records_per_s'], ceil.get('records_per_s'))} |"
            )
        if ceil:
            lines.append(
                f"| {label} | ceiling (ProducerPerformance) | {ceil['records_per_s']:,.0f} | "
                f"{ceil['mb_per_s']:.1f} | | | | | | 1.00x |"
            )
    lines.append("")
    return "\n".join(lines)


def chart(results: dict[str, Any], path: Path) -> None:
    import matplotlib  # noqa: PLC0415 (bench-only dependency: pip install -e '.[bench]')

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    workloads = results["workloads"]
    names = [w["name"] for w in workloads]
    tools = list(workloads[0]["median"]) if workloads else []
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    width = 0.8 / (len(tools) + 1)
    for i, tool in enumerate(tools):
        xs = [j + i * width for j in range(len(names))]
        left.bar(xs, [w["median"][tool]["records_per_s"] / 1e3 for w in workloads], width, label=tool)
    ceilings = [(w.get("ceiling") or {}).get("records_per_s", 0) / 1e3 for w in workloads]
    xs = [j + len(tools) * width for j in range(len(names))]
    left.bar(xs, ceilings, width, label="ceiling", color="grey")
    left.set_xticks([j + width * len(tools) / 2 for j in range(len(names))], names)
    left.set_ylabel("thousand records/s (backlog drain)")
    left.set_title("Throughput")
    left.legend()
    lat_width = 0.8 / (2 * max(1, len(tools)))
    for i, tool in enumerate(tools):
        for k, q in enumerate(("p50", "p99")):
            xs = [j + (2 * i + k) * lat_width for j in range(len(names))]
            vals = [w["median"][tool][f"latency_{q}_ms"] for w in workloads]
            right.bar(xs, vals, lat_width, label=f"{tool} {q}", alpha=0.6 if q == "p50" else 1.0)
    right.set_xticks([j + lat_width * (2 * len(tools) - 1) / 2 for j in range(len(names))], names)
    right.set_ylabel("ms (receive time - record timestamp)")
    right.set_title(f"Latency at {results['settings']['latency_rate']} rec/s")
    right.legend()
    fig.suptitle(f"mirror vs Java MM2 on {results['machine']['cpu']}, {results['machine']['cores']} cores")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
