"""``mirror demo``: two local clusters, a topic full of records on A, mirrored live to B."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from mirror import metrics
from mirror.config import load_settings
from mirror.kafka import Admin, NewTopicSpec, Writer
from mirror.local.kafka import LocalKafka
from mirror.service.worker import Worker

TOPIC = "orders"


def demo_properties(a: str, b: str, http_port: int) -> str:
    return f"""# written by `mirror demo`: the same file runs Java MirrorMaker 2 unchanged
clusters = A, B
A.bootstrap.servers = {a}
B.bootstrap.servers = {b}
A->B.enabled = true
A->B.topics = .*
replication.factor = 1
heartbeats.topic.replication.factor = 1
checkpoints.topic.replication.factor = 1
offset-syncs.topic.replication.factor = 1
offset.storage.replication.factor = 1
status.storage.replication.factor = 1
config.storage.replication.factor = 1
refresh.topics.interval.seconds = 5
B.offset.flush.interval.ms = 1000
A.offset.flush.interval.ms = 1000
service.http.port = {http_port}
"""


async def _fill(bootstrap_settings: Admin, writer: Writer, records: int, partitions: int) -> None:
    await bootstrap_settings.create_topics([NewTopicSpec(TOPIC, partitions, 1, {"retention.ms": "86400000"})])
    now = int(time.time() * 1000)
    per_partition = records // partitions
    for p in range(partitions):
        for i in range(per_partition + (1 if p < records % partitions else 0)):
            key = f"customer-{i % 1000}".encode()
            await writer.send(TOPIC, key, b"x" * 100, p, now, headers=[("origin", b"demo")])
    await writer.flush()


def _copied(remote_topic: str) -> int:
    """Records acknowledged by the target for one remote topic, from the replication counters."""
    return int(
        sum(
            sample.value
            for family in metrics.records_total.collect()
            for sample in family.samples
            if sample.name.endswith("_total") and sample.labels.get("topic") == remote_topic
        )
    )


async def run_demo(records: int, partitions: int) -> int:
    console = Console()
    console.print(
        "[bold]mirror demo[/]: starting Kafka clusters A and B on loopback (jars from Maven Central) ..."
    )
    kafka = await asyncio.to_thread(LocalKafka)
    try:
        t0 = time.monotonic()
        await asyncio.to_thread(kafka.add, "A", "B")
        a, b = kafka["A"].bootstrap_servers, kafka["B"].bootstrap_servers
        console.print(
            f"Kafka {kafka.dist.version}: A at {a}, B at {b} (started in {time.monotonic() - t0:.1f}s)"
        )
        config = Path(tempfile.mkdtemp(prefix="mirror-demo-")) / "mm2.properties"
        config.write_text(demo_properties(a, b, 0))
        settings = load_settings(config).settings
        source = settings.cluster("A")
        admin, writer = Admin(source, "mirror-demo"), Writer(source, "mirror-demo", {})
        await admin.start()
        await writer.start()
        try:
            console.print(f"producing {records:,} records into {TOPIC} ({partitions} partitions) on A ...")
            await _fill(admin, writer, records, partitions)
        finally:
            await writer.close()
            await admin.close()
        worker = Worker(settings)
        run = asyncio.create_task(worker.run())
        started = time.monotonic()
        columns = (TextColumn("A.orders on B"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        copied = 0
        with Progress(*columns, console=console) as bar:
            job = bar.add_task("copy", total=records)
            while not run.done():
                copied = _copied(f"A.{TOPIC}")
                bar.update(job, completed=copied)
                if copied >= records:
                    break
                await asyncio.sleep(0.2)
        elapsed = time.monotonic() - started
        worker.stop()
        with contextlib.suppress(asyncio.CancelledError):
            await run
        console.print(
            f"[green]done[/]: {copied:,} records copied A -> B into topic A.{TOPIC} "
            f"in {elapsed:.1f}s ({copied / max(elapsed, 1e-9):,.0f} records/s, including start-up).\n"
            f"Progress went to B's mm2-offsets.A.internal, heartbeats to B's 'heartbeats'.\n"
            f"The clusters are stopped now. The configuration the demo ran (a Java mm2.properties):\n"
            f"{config}\n"
            f"Next: README.md 'Running it' for your own clusters; `mirror run --http-port 8080` serves "
            f"/metrics and /status."
        )
        return 0
    finally:
        await asyncio.to_thread(kafka.close)
