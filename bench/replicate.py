"""Benchmark: replicate N records of S bytes A -> B with `mirror` against real local brokers.

    .venv/bin/python -m bench.replicate --records 1000000 --size 1024 --partitions 6

Starts two fresh KRaft clusters (mirror.local.kafka), fills a topic on A before timing, then runs
`mirror run` as its own process and times it until B holds every record. Reports records/s, MB/s and
the mirror process's CPU seconds (user+sys from /proc). Machines here are shared and noisy: compare
ratios measured in the same run (e.g. against Java MirrorMaker 2), not absolute numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from mirror.local.kafka import LocalKafka

TOPIC = "bench"


class Result(NamedTuple):
    tool: str
    records: int
    seconds: float
    cpu_seconds: float

    def report(self, size: int) -> dict[str, object]:
        return {
            "tool": self.tool,
            "records": self.records,
            "record_bytes": size,
            "seconds": round(self.seconds, 2),
            "records_per_s": round(self.records / self.seconds),
            "mb_per_s": round(self.records * size / self.seconds / 1e6, 1),
            "cpu_seconds": round(self.cpu_seconds, 2),
            "cpu_us_per_record": round(self.cpu_seconds / self.records * 1e6, 2),
        }


async def fill(bootstrap: str, records: int, size: int, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(TOPIC, partitions, 1)])
    await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, max_batch_size=1024 * 1024, linger_ms=20, acks=1)
    await producer.start()
    value = os.urandom(size)
    per = records // partitions
    try:
        for p in range(partitions):
            sent = 0
            while sent < per:
                batch = producer.create_batch()
                while sent < per and batch.append(key=b"k%d" % sent, value=value, timestamp=None) is not None:
                    sent += 1
                await producer.send_batch(batch, TOPIC, partition=p)
        await producer.flush()
    finally:
        await producer.stop()


async def target_count(bootstrap: str, topic: str) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        parts = consumer.partitions_for_topic(topic) or set()
        if not parts:
            return 0
        ends = await consumer.end_offsets([TopicPartition(topic, p) for p in parts])
        return sum(ends.values())
    finally:
        await consumer.stop()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime + stime (children of a JVM are threads)


#: mm2.properties lines both benchmarks share: single-broker clusters, progress flushed every 5 s.
SINGLE_BROKER = """replication.factor = 1
offset-syncs.topic.replication.factor = 1
offset.storage.replication.factor = 1
status.storage.replication.factor = 1
config.storage.replication.factor = 1
heartbeats.topic.replication.factor = 1
checkpoints.topic.replication.factor = 1
B.offset.flush.interval.ms = 5000
"""


def properties(a: str, b: str) -> str:
    return f"""clusters = A, B
A.bootstrap.servers = {a}
B.bootstrap.servers = {b}
A->B.enabled = true
A->B.topics = {TOPIC}
B->A.enabled = false
emit.heartbeats.enabled = false
emit.checkpoints.enabled = false
sync.topic.acls.enabled = false
{SINGLE_BROKER}service.http.port = 0
"""


def start_mirror(config: Path, log: Path, with_metrics: bool = True) -> subprocess.Popen[bytes]:
    module = "mirror" if with_metrics else "bench.nometrics"  # the same mirror, metric updates no-ops
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", module, "run", "--config", str(config), "--log-format", "json"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )


async def measure(tool: str, proc: subprocess.Popen[bytes], b: str, records: int, remote: str) -> Result:
    t0 = time.monotonic()
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{tool} exited early with {proc.returncode}")
            if await target_count(b, remote) >= records:
                break
            await asyncio.sleep(0.25)
        elapsed = time.monotonic() - t0
        cpu = cpu_seconds(proc.pid)
        return Result(tool, records, elapsed, cpu)
    finally:
        proc.terminate()
        proc.wait(60)


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument(
        "--no-metrics", action="store_true", help="baseline: run mirror with metric updates as no-ops"
    )
    args = parser.parse_args()
    records = args.records - args.records % args.partitions
    workdir = Path(tempfile.mkdtemp(prefix="mirror-bench-"))
    try:
        await run(args, records, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


async def run(args: argparse.Namespace, records: int, workdir: Path) -> None:
    with LocalKafka(workdir / "kafka") as kafka:
        kafka.add("A", "B")
        a, b = kafka["A"].bootstrap_servers, kafka["B"].bootstrap_servers
        t0 = time.monotonic()
        await fill(a, records, args.size, args.partitions)
        print(f"filled {records} x {args.size} B in {time.monotonic() - t0:.1f}s", file=sys.stderr)
        config = workdir / "mm2.properties"
        config.write_text(properties(a, b))
        proc = start_mirror(config, workdir / "mirror.log", with_metrics=not args.no_metrics)
        tool = "mirror (no metrics)" if args.no_metrics else "mirror"
        result = await measure(tool, proc, b, records, f"A.{TOPIC}")
        print(json.dumps(result.report(args.size)))


if __name__ == "__main__":
    asyncio.run(main())
