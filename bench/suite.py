"""``python -m bench [--quick|--full]``: mirror against Java MirrorMaker 2 and the broker's produce ceiling.

For each workload: start a source cluster A and preload one topic (12 partitions); then, ``--runs`` times,
alternating the order, replicate it with `mirror` and with Java MM2, each into a *fresh* target cluster, from
the same ``mm2.properties`` (same ``tasks.max``, consumer fetch sizes, producer batching and compression).
Each run measures:

- backlog drain: records/s and MB/s from the first record seen on the target to the last one, the tool's
  CPU seconds (user+sys of its process tree, /proc) over that window, per million records;
- then, with the tool caught up, a fixed-rate load: a producer on A writes ``--rate`` records/s (into a topic
  of the run's own, so every run drains the same preloaded batches) stamped with
  the wall clock; a consumer on B takes receive time - record timestamp: p50/p99 replication latency;
- the tool's peak RSS (VmHWM) over the whole run.

The ceiling is Kafka's own ProducerPerformance writing the same records with the same producer settings
into a fresh cluster. Results: ``bench/results/latest.{json,md,png}`` (medians over runs).

``--wan-ms N --wan-side source|target``: N ms of round-trip time between the tools and that cluster, through
a toxiproxy latency proxy (`bench.wan`); the benchmark's own clients connect directly.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bench import procs, report
from bench.ceiling import producer_performance, resolve_tools
from bench.replicate import SINGLE_BROKER
from bench.wan import Toxiproxy
from mirror.local.kafka import LocalKafka, LocalKafkaCluster, resolve_mirrormaker

RESULTS = Path(__file__).resolve().parent / "results"
TOOLS = ("mirror", "java-mm2")


@dataclass(frozen=True)
class Workload:
    name: str
    records: int
    size: int
    compression: str = "none"  # of the source batches, and of the target producers (both tools alike)
    partitions: int = 12
    source_batch: int = 1024 * 1024  # the preload producer's batch.size: the source's batches

    @property
    def topic(self) -> str:
        return f"bench-{self.name}"

    def latency_topic(self, seq: int) -> str:
        """Run ``seq``'s fixed-rate load goes here, not into the preloaded topic: every run drains the same
        batches (the loads of earlier runs are small batches the next tool would otherwise drain too)."""
        return f"bench-{self.name}-load{seq}"


FULL: tuple[Workload, ...] = (
    Workload("1KB", 1_000_000, 1024),
    Workload("100B", 5_000_000, 100),
    Workload("100B-zstd", 2_000_000, 100, "zstd"),
    Workload("10KB", 100_000, 10 * 1024),
    Workload("1KB-16KB-batches", 1_000_000, 1024, source_batch=16 * 1024),
)
QUICK: tuple[Workload, ...] = (
    Workload("1KB", 200_000, 1024),
    Workload("100B", 1_000_000, 100),
    Workload("100B-zstd", 500_000, 100, "zstd"),
    Workload("10KB", 20_000, 10 * 1024),
    Workload("1KB-16KB-batches", 200_000, 1024, source_batch=16 * 1024),
)


@dataclass
class Wan:
    """The latency proxy between the tools and one side's cluster (``--wan-ms``, ``--wan-side``)."""

    proxy: Toxiproxy
    rtt_ms: int
    side: str  # "source" (cluster A) or "target" (the run's B)

    def add(self, kafka: LocalKafka, name: str) -> LocalKafkaCluster:
        """Start cluster ``name``, behind the proxy when it is on the proxied side."""
        proxied = (name == "A") == (self.side == "source")
        cluster = kafka.add(name, proxied=proxied)[0]
        if proxied:
            self.proxy.proxy(name, cluster.proxy_port, cluster.proxied_port, self.rtt_ms)
        return cluster

    def address(self, cluster: LocalKafkaCluster) -> str:
        """Where the tools reach ``cluster``: the proxy when it is proxied."""
        return cluster.proxied_bootstrap_servers if cluster.proxied else cluster.bootstrap_servers


@dataclass
class Run:
    tool: str
    workload: str
    records: int
    drain_seconds: float
    records_per_s: float
    mb_per_s: float
    cpu_s_per_m_records: float
    peak_rss_mb: float
    latency_p50_ms: float
    latency_p99_ms: float
    latency_records: int
    startup_seconds: float
    extra: dict[str, Any] = field(default_factory=dict)


# --- data ------------------------------------------------------------------------------------------


def payloads(size: int) -> list[bytes]:
    """Distinct hex values (about 2:1 compressible, like text), more bytes in all than one 1 MiB batch."""
    count = max(256, 4 * 1024 * 1024 // size)
    raw = os.urandom(count * size // 2 + 1).hex().encode()
    return [raw[i * size : (i + 1) * size] for i in range(count)]


async def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        await admin.close()


async def fill(bootstrap: str, w: Workload) -> None:
    await create_topic(bootstrap, w.topic, w.partitions)
    codec = None if w.compression == "none" else w.compression
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, max_batch_size=w.source_batch, acks=1, compression_type=codec
    )
    await producer.start()
    values = payloads(w.size)
    try:
        for p in range(w.partitions):
            per = w.records // w.partitions + (p < w.records % w.partitions)
            sent = 0
            while sent < per:
                batch = producer.create_batch()
                while sent < per:
                    v = values[(sent * 7 + p) % len(values)]
                    if batch.append(key=b"k%d" % sent, value=v, timestamp=None) is None:
                        break
                    sent += 1
                await producer.send_batch(batch, w.topic, partition=p)
        await producer.flush()
    finally:
        await producer.stop()


# --- the two tools ---------------------------------------------------------------------------------


def properties(a: str, b: str, w: Workload, tasks: int, *, http_port: int, load_topic: str) -> str:
    """One mm2.properties for both tools: the same tasks, fetch sizes, producer batching, compression."""
    return f"""clusters = A, B
A.bootstrap.servers = {a}
B.bootstrap.servers = {b}
A->B.enabled = true
A->B.topics = {w.topic}, {load_topic}
B->A.enabled = false
tasks.max = {tasks}
emit.heartbeats.enabled = false
emit.checkpoints.enabled = false
sync.group.offsets.enabled = false
sync.topic.acls.enabled = false
sync.topic.configs.enabled = false
refresh.topics.interval.seconds = 5
{SINGLE_BROKER}A.consumer.max.partition.fetch.bytes = 4194304
A.consumer.fetch.max.bytes = 67108864
A.consumer.max.poll.records = 100000
{producer_lines(w)}
service.http.port = {http_port}
"""


def producer_settings(w: Workload) -> dict[str, str]:
    return {
        "batch.size": str(1024 * 1024),
        "linger.ms": "5",
        "compression.type": w.compression,
        "acks": "all",
        "max.request.size": str(4 * 1024 * 1024),
    }


def producer_lines(w: Workload) -> str:
    return "\n".join(f"B.producer.{k} = {v}" for k, v in producer_settings(w).items())


def start_tool(tool: str, config: Path, log: Path, mirror_workers: int) -> subprocess.Popen[bytes]:
    if tool == "mirror":
        cmd = [sys.executable, "-m", "mirror", "run", "--config", str(config), "--log-format", "json"]
        if mirror_workers > 1:
            cmd += ["--workers", str(mirror_workers)]
    else:
        # the heap of Kafka's bin/connect-mirror-maker.sh
        cp = resolve_mirrormaker().classpath
        cmd = ["java", "-Xms256M", "-Xmx2G", "-XX:+UseG1GC", "-Djava.awt.headless=true", "-cp", cp]
        cmd += ["org.apache.kafka.connect.mirror.MirrorMaker", str(config)]
    with log.open("wb") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def stop_tool(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


# --- measurements ----------------------------------------------------------------------------------


class TargetWatch:
    """A topic's total end offset (one open client, polled)."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.topic = topic
        self.consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        self.tps: list[TopicPartition] = []

    async def __aenter__(self) -> TargetWatch:
        await self.consumer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.consumer.stop()

    async def count(self) -> int:
        if not self.tps:
            await self.consumer._client.force_metadata_update()
            parts = self.consumer.partitions_for_topic(self.topic) or set()
            self.tps = [TopicPartition(self.topic, p) for p in sorted(parts)]
            if not self.tps:
                return 0
        try:  # end_offsets may block while a new topic's leaders are unknown: retry
            ends = await asyncio.wait_for(self.consumer.end_offsets(self.tps), 5)
        except TimeoutError:
            self.tps = []
            return 0
        return sum(ends.values())


async def drain(
    proc: subprocess.Popen[bytes], b: str, w: Workload, expected: int, timeout: float
) -> tuple[float, float, float, float, int]:
    """Wait until B has ``expected`` records: (startup s, drain s, records in the drain window, CPU s in
    it, records written beyond ``expected``, i.e. duplicates)."""
    t_start = time.monotonic()
    async with TargetWatch(b, f"A.{w.topic}") as watch:
        first: tuple[float, int, float] | None = None
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the tool exited early with {proc.returncode}")
            now = time.monotonic()
            if now - t_start > timeout:
                raise RuntimeError(f"not replicated after {timeout:.0f}s")
            n = await watch.count()
            if n > 0 and first is None:
                first = (now, n, procs.cpu_seconds(proc.pid))
            if n >= expected:
                assert first is not None
                t0, n0, cpu0 = first
                cpu = procs.cpu_seconds(proc.pid) - cpu0
                # settle: a tool that re-copies records (e.g. a task restarted at start-up) finishes
                # doing so before the fixed-rate load starts; its extra records are reported
                last = -1
                while n != last:
                    last = n
                    await asyncio.sleep(2)
                    n = await watch.count()
                return t0 - t_start, now - t0, float(expected - n0), cpu, n - expected
            await asyncio.sleep(0.1)


async def latency(
    a: str, b: str, w: Workload, topic: str, *, rate: int, seconds: float, warmup: float
) -> tuple[list[float], int]:
    """Produce ``rate`` rec/s into ``topic`` on A for ``seconds`` stamped with the wall clock; latencies
    (ms) seen on B of the records produced after the first ``warmup`` seconds (both tools and the brokers
    settle from the drain, the new topic's clients connect)."""
    codec = None if w.compression == "none" else w.compression
    remote = f"A.{topic}"
    consumer = AIOKafkaConsumer(bootstrap_servers=b, enable_auto_commit=False, fetch_max_wait_ms=100)
    producer = AIOKafkaProducer(bootstrap_servers=a, linger_ms=0, acks=1, compression_type=codec)
    await consumer.start()
    await producer.start()
    tps = [TopicPartition(remote, p) for p in range(w.partitions)]
    consumer.assign(tps)
    await consumer.seek_to_end(*tps)
    for tp in tps:
        await consumer.position(tp)
    values = payloads(w.size)
    seen: dict[bytes, float] = {}  # load record key -> latency of its first copy
    produced = 0

    async def consume() -> None:
        while True:
            data = await consumer.getmany(timeout_ms=200)
            now_ms = time.time() * 1000
            for recs in data.values():
                for r in recs:
                    if r.key is not None and r.key.startswith(b"L") and r.key not in seen:
                        seen[r.key] = now_ms - r.timestamp

    reader = asyncio.create_task(consume())
    try:
        t0 = time.monotonic()
        while (elapsed := time.monotonic() - t0) < seconds:
            due = int(elapsed * rate)
            ts = int(time.time() * 1000)
            while produced < due:
                value = values[produced % len(values)]
                key = b"L%d" % produced
                await producer.send(topic, value, key, produced % w.partitions, timestamp_ms=ts)
                produced += 1
            await asyncio.sleep(0.005)
        await producer.flush()
        deadline = time.monotonic() + 30
        while len(seen) < produced and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.1)
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
        await producer.stop()
        await consumer.stop()
    warm = int(warmup * rate)
    return [ms for key, ms in seen.items() if int(key[1:]) >= warm], produced


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- one run ---------------------------------------------------------------------------------------


def fresh_cluster(kafka: LocalKafka, name: str, wan: Wan | None = None) -> LocalKafkaCluster:
    return wan.add(kafka, name) if wan else kafka.add(name)[0]


def drop_cluster(kafka: LocalKafka, name: str, wan: Wan | None = None) -> None:
    if wan is not None:
        wan.proxy.remove(name)
    cluster = kafka.clusters.pop(name)
    cluster.stop()
    shutil.rmtree(cluster.workdir, ignore_errors=True)


async def one_run(
    kafka: LocalKafka, tool: str, w: Workload, args: argparse.Namespace, seq: int, *, wan: Wan | None
) -> Run:
    name = f"B{seq}"
    target = await asyncio.to_thread(fresh_cluster, kafka, name, wan)
    a, b = kafka["A"].bootstrap_servers, target.bootstrap_servers
    work = kafka.base_dir / f"run{seq}"
    work.mkdir()
    config = work / "mm2.properties"
    tool_a, tool_b = (wan.address(kafka["A"]), wan.address(target)) if wan else (a, b)
    load_topic = w.latency_topic(seq)
    await create_topic(a, load_topic, w.partitions)
    config.write_text(properties(tool_a, tool_b, w, args.tasks, http_port=free_port(), load_topic=load_topic))
    async with TargetWatch(a, w.topic) as source:
        expected = await source.count()
    proc = start_tool(tool, config, work / f"{tool}.log", args.mirror_workers)
    spy = None
    if args.profile and tool == "mirror":  # py-spy over the drain (pip install py-spy)
        args.profile.mkdir(parents=True, exist_ok=True)
        out = args.profile / f"{w.name}-{seq}.txt"
        cmd = [
            str(Path(sys.executable).with_name("py-spy")),
            "record",
            "--pid",
            str(proc.pid),
            "--subprocesses",
            "--format",
            "raw",
            "-o",
            str(out),
        ]
        spy = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: ASYNC220
    try:
        startup, seconds, counted, cpu, duplicates = await drain(proc, b, w, expected, args.timeout)
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(60)
        print(f"[{w.name}] {tool}: drained in {seconds:.1f}s; fixed-rate load", file=sys.stderr, flush=True)
        # the latency is the replication path's, not the brokers' writeback of the drain: a tool that
        # drains faster would otherwise meet more of it in its latency window
        await asyncio.to_thread(os.sync)
        samples, produced = await asyncio.wait_for(
            latency(
                a, b, w, load_topic, rate=args.rate, seconds=args.latency_seconds, warmup=args.latency_warmup
            ),
            args.latency_seconds + 90,
        )
        rss = procs.peak_rss_mb(proc.pid)
    except Exception:
        print((work / f"{tool}.log").read_text(errors="replace")[-3000:], file=sys.stderr)
        raise
    finally:
        stop_tool(proc)
        await asyncio.to_thread(drop_cluster, kafka, name, wan)
        shutil.rmtree(work, ignore_errors=True)
    run = Run(
        tool=tool,
        workload=w.name,
        records=expected,
        drain_seconds=round(seconds, 2),
        records_per_s=round(counted / seconds),
        mb_per_s=round(counted * w.size / seconds / 1e6, 1),
        cpu_s_per_m_records=round(cpu / counted * 1e6, 2),
        peak_rss_mb=round(rss, 1),
        latency_p50_ms=round(percentile(samples, 0.50), 1),
        latency_p99_ms=round(percentile(samples, 0.99), 1),
        latency_records=len(samples),
        startup_seconds=round(startup, 1),
        extra={"latency_produced": produced, "duplicates": duplicates},
    )
    print(json.dumps(asdict(run)), file=sys.stderr, flush=True)
    return run


async def ceiling(kafka: LocalKafka, w: Workload, seq: int) -> dict[str, float]:
    name = f"C{seq}"
    cluster = await asyncio.to_thread(fresh_cluster, kafka, name)
    try:
        await create_topic(cluster.bootstrap_servers, w.topic, w.partitions)
        payload = kafka.base_dir / f"payload-{w.name}.txt"
        payload.write_bytes(b"\n".join(payloads(w.size)))
        libs = await asyncio.to_thread(resolve_tools, kafka.dist.version)
        result = await asyncio.to_thread(
            producer_performance,
            libs,
            cluster.bootstrap_servers,
            w.topic,
            records=max(w.records, 1_000_000),  # at least 1M: JVM warm-up is part of its run
            size=w.size,
            producer=producer_settings(w),
            payload=payload,
        )
    finally:
        await asyncio.to_thread(drop_cluster, kafka, name)
    out = {"records_per_s": round(result.records_per_s), "mb_per_s": round(result.mb_per_s, 1)}
    print(json.dumps({"ceiling": w.name, **out}), file=sys.stderr, flush=True)
    return out


def median_of(runs: list[Run]) -> dict[str, float]:
    keys = (
        "records_per_s",
        "mb_per_s",
        "cpu_s_per_m_records",
        "peak_rss_mb",
        "latency_p50_ms",
        "latency_p99_ms",
        "startup_seconds",
    )
    return {k: round(statistics.median(getattr(r, k) for r in runs), 2) for k in keys}


def machine() -> dict[str, object]:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    java = subprocess.run(["java", "-version"], capture_output=True, text=True, check=False).stderr
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_gb": round(mem_kb / 1024 / 1024, 1),
        "python": platform.python_version(),
        "java": java.splitlines()[0] if java else "?",
        "load_avg_at_start": os.getloadavg()[0],
    }


async def run_suite(args: argparse.Namespace) -> dict[str, Any]:
    workloads = QUICK if args.quick else FULL
    if args.workload:
        workloads = tuple(w for w in workloads if w.name in args.workload)
    resolve_mirrormaker()  # resolve (download) before any timing
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    base = Path(tempfile.mkdtemp(prefix="mirror-bench-"))
    results: dict[str, Any] = {
        "started": started,
        "machine": machine(),
        "settings": {
            "mode": "quick" if args.quick else "full",
            "runs": args.runs,
            "tasks_max": args.tasks,
            "mirror_workers": args.mirror_workers,
            "latency_rate": args.rate,
            "latency_seconds": args.latency_seconds,
            "latency_warmup_seconds": args.latency_warmup,
            "producer": producer_settings(Workload("x", 0, 0)),
            "wan": {"rtt_ms": args.wan_ms, "side": args.wan_side} if args.wan_ms else None,
        },
        "workloads": [],
    }
    seq = 0
    wan: Wan | None = None
    try:
        if args.wan_ms:
            proxy = await asyncio.to_thread(Toxiproxy, base / "toxiproxy.log")
            wan = Wan(proxy, args.wan_ms, args.wan_side)
        with LocalKafka(base / "kafka") as kafka:
            for w in workloads:
                await asyncio.to_thread(fresh_cluster, kafka, "A", wan)
                t0 = time.monotonic()
                await fill(kafka["A"].bootstrap_servers, w)
                await asyncio.to_thread(os.sync)  # the preload's writeback does not land in the first run
                took = time.monotonic() - t0
                print(f"[{w.name}] filled {w.records} x {w.size} B in {took:.1f}s", file=sys.stderr)
                tools = tuple(args.tools)
                runs: dict[str, list[Run]] = {t: [] for t in tools}
                for i in range(args.runs):
                    order = tools if i % 2 == 0 else tools[::-1]
                    for tool in order:
                        seq += 1
                        runs[tool].append(await one_run(kafka, tool, w, args, seq, wan=wan))
                ceil = await ceiling(kafka, w, seq) if not args.no_ceiling else None
                drop_cluster(kafka, "A", wan)
                results["workloads"].append(
                    {
                        **asdict(w),
                        "ceiling": ceil,
                        "median": {t: median_of(rs) for t, rs in runs.items()},
                        "runs": [asdict(r) for rs in runs.values() for r in rs],
                    }
                )
    finally:
        if wan is not None:
            wan.proxy.close()
        shutil.rmtree(base, ignore_errors=True)
    return results


def _terminate(_sig: int, _frame: object) -> None:
    raise KeyboardInterrupt  # unwinds through the `finally`s: brokers and tools are stopped, dirs removed


def main() -> None:
    signal.signal(signal.SIGTERM, _terminate)
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="smaller workloads (default: 1 run each)")
    size.add_argument(
        "--full",
        action="store_true",
        help="1M x 1 KB, 5M x 100 B, 2M x 100 B zstd, 100k x 10 KB, 1M x 1 KB in 16 KB batches (default)",
    )
    parser.add_argument("--runs", type=int, help="runs per tool and workload (quick: 1, full: 3)")
    parser.add_argument(
        "--workload",
        action="append",
        help="only these workloads (1KB, 100B, 100B-zstd, 10KB, 1KB-16KB-batches)",
    )
    parser.add_argument("--tasks", type=int, default=2, help="tasks.max for both tools (default 2)")
    parser.add_argument("--mirror-workers", type=int, default=1, help="mirror run --workers N (default 1)")
    parser.add_argument("--rate", type=int, default=10_000, help="fixed-rate load, records/s (default 10000)")
    parser.add_argument("--latency-seconds", type=float, help="fixed-rate load duration (quick 10, full 30)")
    parser.add_argument(
        "--latency-warmup",
        type=float,
        default=5.0,
        help="seconds at the start of the fixed-rate load not counted in the latency (default 5)",
    )
    parser.add_argument("--timeout", type=float, default=900, help="per drain, seconds")
    parser.add_argument("--no-ceiling", action="store_true", help="skip the ProducerPerformance ceiling")
    parser.add_argument("--tools", nargs="+", choices=TOOLS, default=list(TOOLS), help="default: both")
    parser.add_argument("--profile", type=Path, help="write py-spy profiles of mirror's drains here")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results directory (default bench/results)")
    parser.add_argument(
        "--wan-ms",
        type=int,
        default=0,
        help="round-trip ms added between the tools and one cluster (toxiproxy)",
    )
    parser.add_argument(
        "--wan-side", choices=("source", "target"), default="source", help="the cluster behind --wan-ms"
    )
    args = parser.parse_args()
    if args.wan_ms < 0:
        parser.error(f"--wan-ms {args.wan_ms}: must be 0 (no proxy) or a positive number of milliseconds")
    args.runs = args.runs or (1 if args.quick else 3)
    args.latency_seconds = args.latency_seconds or (10.0 if args.quick else 30.0)
    results = asyncio.run(run_suite(args))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latest.json").write_text(json.dumps(results, indent=2) + "\n")
    table = report.markdown(results)
    (args.out / "latest.md").write_text(table)
    report.chart(results, args.out / "latest.png")
    print(table)
