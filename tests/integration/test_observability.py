"""Observability against real brokers: /metrics during replication, /readyz when a cluster goes away and
comes back, and `mirror status` while a load runs."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from mirror import metrics
from mirror.local.kafka import LocalKafkaCluster
from tests.unit.test_deploy import (
    alert_exprs,
    dashboard_exprs,
    exported_names,
    metric_names,
)

from .support import (
    Rec,
    consume,
    create_topic,
    http_get,
    list_topics,
    produce,
    running,
    serving,
    settings_for,
    wait_for,
)

Samples = list[tuple[str, dict[str, str], float]]

#: Series that only move when something goes wrong (or when a group is idle on the target): declared in
#: every scrape, but without samples in a healthy run.
EVENT_ONLY = {
    "mirror_errors_total",
    "mirror_task_restarts_total",
    "mirror_source_truncated_records_total",
    "mirror_group_offsets_synced_total",
    "mirror_fetch_errors_total",  # labelled by error: no series until one happens
    "mirror_produce_retries_total",
    "mirror_produce_refused_batches_total",
}


def samples(exposition: str) -> Samples:
    return [
        (s.name, dict(s.labels), s.value)
        for family in text_string_to_metric_families(exposition)
        for s in family.samples
    ]


def total(scraped: Samples, name: str, **labels: str) -> float:
    return sum(v for n, lbl, v in scraped if n == name and labels.items() <= lbl.items())


def series(scraped: Samples, name: str, **labels: str) -> list[tuple[dict[str, str], float]]:
    return [(lbl, v) for n, lbl, v in scraped if n == name and labels.items() <= lbl.items()]


def records(n: int, size: int, partition: int) -> list[Rec]:
    now = int(time.time() * 1000)
    return [(b"k%d" % i, bytes([partition]) * size, (), now) for i in range(n)]


async def commit_group(bootstrap: str, group: str, topic: str, offsets: dict[int, int]) -> None:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = {TopicPartition(topic, p): off for p, off in offsets.items()}
        consumer.assign(list(tps))  # a standalone commit: assign, never join
        await consumer.commit(tps)
    finally:
        await consumer.stop()


async def test_metrics_during_replication(
    cluster_a: LocalKafkaCluster, cluster_b: LocalKafkaCluster, topic: str, tmp_path: Path
) -> None:
    """Record and byte counts equal what was produced, lag reaches 0, the latency histograms and every
    metric the alerts and dashboard use are in the scrape.

    `/metrics` serves the process-wide registry, where earlier tests left their series; most of them are
    labelled by source and target only. So the clusters get aliases of this test's own: every series this
    test reads is one that only this worker can have written."""
    a, b = cluster_a.bootstrap_servers, cluster_b.bootstrap_servers
    suffix = uuid.uuid4().hex[:6]
    src, tgt = f"A{suffix}", f"B{suffix}"
    flow = f"{src}->{tgt}"
    remote, partitions, per_partition, size = f"{src}.{topic}", 3, 2_000, 100
    await create_topic(a, topic, partitions)
    first = {p: records(per_partition // 2, size, p) for p in range(partitions)}
    await produce(a, topic, first)
    await commit_group(a, f"{topic}-group", topic, {p: 500 for p in range(partitions)})
    settings = settings_for(
        tmp_path,
        {src: a, tgt: b},
        [flow],
        **{
            f"{flow}.topics": topic,
            f"{flow}.groups": f"{topic}-group",
            "emit.checkpoints.interval.seconds": "1",
            "refresh.groups.interval.seconds": "1",
        },
    )
    ours = {"source": src, "target": tgt}
    before = samples(generate_latest(metrics.REGISTRY).decode())
    assert not [n for n, lbl, _ in before if lbl.get("source") in (src, tgt)], "aliases not unique"
    async with running(settings) as worker, serving(worker) as server:
        await produce(a, topic, {p: records(per_partition // 2, size, p) for p in range(partitions)})
        produced = partitions * per_partition

        async def caught_up() -> Samples | None:
            status, body = await http_get(server.port, "/metrics")
            assert status == 200
            scraped = samples(body)
            lags = series(scraped, "mirror_replication_lag_records", topic=remote)
            done = (
                total(scraped, "mirror_records_total", topic=remote) >= produced
                and len(lags) == partitions
                and all(v == 0 for _, v in lags)
                and total(scraped, "mirror_checkpoints_total", **ours) > 0
                and series(scraped, "mirror_heartbeat_timestamp_seconds", **ours)
                and len(series(scraped, "mirror_cluster_reachable", **ours)) == 2
            )
            return scraped if done else None

        scraped = await wait_for(caught_up, timeout=45)

        async def at_rest() -> Samples | None:
            """Nothing in produce requests, nothing fetched and not handed out (the heartbeats flowing
            through may be, now and then)."""
            scraped = samples((await http_get(server.port, "/metrics"))[1])
            idle = [
                series(scraped, name, **ours)
                for name in ("mirror_produce_in_flight_batches", "mirror_fetch_buffered_bytes")
            ]
            return scraped if all(values and all(v == 0 for _, v in values) for values in idle) else None

        rest = await wait_for(at_rest, timeout=15)
        _, body = await http_get(server.port, "/metrics")

    assert total(scraped, "mirror_records_total", topic=remote) == produced
    for p in range(partitions):
        assert total(scraped, "mirror_records_total", topic=remote, partition=str(p)) == per_partition
    assert total(scraped, "mirror_bytes_total", topic=remote) == produced * size
    assert all(v == 0 for _, v in series(scraped, "mirror_replication_lag_seconds", topic=remote))
    for histogram in ("mirror_replication_latency_seconds", "mirror_record_age_seconds"):
        assert total(scraped, f"{histogram}_count", **ours) > 0, histogram
        assert total(scraped, f"{histogram}_sum", **ours) > 0, histogram
    assert total(scraped, "mirror_checkpoint_latency_seconds_count", **ours) > 0
    assert total(scraped, "mirror_offset_syncs_total", **ours) > 0
    # the data path's clients: what they sent and how long it took, and nothing left over at rest
    for name in (
        "mirror_fetch_requests_total",
        "mirror_fetch_request_seconds_count",
        "mirror_produce_requests_total",
        "mirror_produce_request_seconds_count",
    ):
        assert total(rest, name, **ours) > 0, name
    assert total(rest, "mirror_fetch_request_seconds_count", **ours) <= total(
        rest, "mirror_fetch_requests_total", **ours
    )
    assert total(rest, "mirror_produce_batches_total", **ours) >= total(
        rest, "mirror_produce_requests_total", **ours
    ), "a request carries at least one batch"
    assert total(scraped, "mirror_task_state", **ours, task="0", state="running") == 1
    assert total(scraped, "mirror_cluster_reachable", **ours, cluster=src) == 1
    assert total(scraped, "mirror_cluster_reachable", **ours, cluster=tgt) == 1
    assert total(scraped, "mirror_ready") == 1
    # the topic and every heartbeats topic of the source (mirrored whatever the filter): `heartbeats`,
    # which the worker's own heartbeat flow (tgt->src) writes, and those earlier tests' reverse flows
    # left there (say `B.heartbeats`)
    heartbeats = [t for t in await list_topics(a) if t == "heartbeats" or t.endswith(".heartbeats")]
    assert "heartbeats" in heartbeats
    assert total(scraped, "mirror_topics", **ours) == 1 + len(heartbeats)

    used = metric_names(alert_exprs()) | metric_names(dashboard_exprs())
    assert used - exported_names(body) == set(), "alerts/dashboard use series the service does not export"
    # sampled by this worker: its flow's series (the state series carry no source only for mirror_ready,
    # which the scrape computes from this worker)
    sampled = {n for n, lbl, _ in samples(body) if lbl.get("source") == src or "source" not in lbl}
    assert used - EVENT_ONLY - sampled == set(), "series without samples in a healthy run"


async def test_readyz_follows_a_lost_cluster(
    cluster_a: LocalKafkaCluster, cluster_b: LocalKafkaCluster, topic: str, tmp_path: Path
) -> None:
    """/readyz turns 503 naming the lost cluster when B stops, and 200 again once B is back."""
    a, b = cluster_a.bootstrap_servers, cluster_b.bootstrap_servers
    await create_topic(a, topic, 1)
    settings = settings_for(tmp_path, {"A": a, "B": b}, ["A->B"], **{"A->B.topics": topic})

    async with running(settings) as worker, serving(worker) as server:

        async def ready() -> bool:
            return (await http_get(server.port, "/readyz"))[0] == 200

        await wait_for(ready, timeout=30)
        try:
            await asyncio.to_thread(cluster_b.stop)

            async def not_ready() -> str | None:
                status, body = await http_get(server.port, "/readyz")
                return body if status == 503 and "cluster B unreachable" in body else None

            body = await wait_for(not_ready, timeout=20)
            assert "flow A->B" in body
            _, text = await http_get(server.port, "/status")
            assert '"reachable": false' in text
        finally:
            await asyncio.to_thread(cluster_b.start)
        try:
            await wait_for(ready, timeout=45)
        except AssertionError as exc:
            body = (await http_get(server.port, "/readyz"))[1]
            raise AssertionError(f"still not ready 45 s after B returned: {body}") from exc
        # and it replicates again
        again = records(10, 10, 0)
        await produce(a, topic, {0: again})
        got = await consume(b, f"A.{topic}", {0: 10}, timeout=30)
        assert got[0] == again  # the topic was empty until now: these ten, once each


async def test_status_command_shows_lag_per_topic_while_a_load_runs(
    cluster_a: LocalKafkaCluster, cluster_b: LocalKafkaCluster, topic: str, tmp_path: Path
) -> None:
    """`mirror status --url` prints the lag of the topic being copied; --watch keeps redrawing."""
    a, b = cluster_a.bootstrap_servers, cluster_b.bootstrap_servers
    await create_topic(a, topic, 2)
    await produce(a, topic, {p: records(15_000, 50, p) for p in range(2)})
    # a throttled flow (the data path copies 1.5 MB in well under a second), so that copying takes
    # seconds and the lag can be seen
    settings = settings_for(
        tmp_path,
        {"A": a, "B": b},
        ["A->B"],
        **{"A->B.topics": topic, "A->B.throttle.bytes.per.second": "100000"},
    )
    env = {**os.environ, "COLUMNS": "200", "PYTHONUNBUFFERED": "1"}
    async with running(settings) as worker, serving(worker) as server:
        url = f"http://127.0.0.1:{server.port}"
        load = asyncio.create_task(_load(a, topic))
        try:

            async def lag_shown() -> str | None:
                proc = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "mirror", "status", "--url", url,
                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
                )  # fmt: skip
                out, err = await asyncio.wait_for(proc.communicate(), 30)
                assert proc.returncode == 0, err.decode()
                text = out.decode()
                for line in text.splitlines():
                    cells = [c.strip() for c in line.split("│") if c.strip()]
                    if cells[:3] == ["A->B", topic, f"A.{topic}"] and int(cells[4].replace(",", "")) > 0:
                        return text
                return None

            text = await wait_for(lag_shown, timeout=40, interval=0.5)
            assert "lag per topic" in text and "A->B" in text and "running" in text

            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "mirror", "status", "--url", url, "--watch", "0.5",
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
            )  # fmt: skip
            assert proc.stdout is not None
            shown = b""
            while b"updated" not in shown:  # a frame is printed (piped: each in turn): past its start-up
                line = await asyncio.wait_for(proc.stdout.readline(), 30)
                assert line, "mirror status --watch ended before drawing a frame"
                shown += line
            proc.send_signal(2)  # SIGINT, as Ctrl-C: the way to leave --watch
            out, err = await asyncio.wait_for(proc.communicate(), 30)
            assert proc.returncode == 0, err.decode()
            assert f"A.{topic}" in (shown + out).decode()
        finally:
            load.cancel()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mirror", "status", "--url", url,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 1
    assert err.decode().startswith("mirror: cannot reach") and "Traceback" not in err.decode()


async def _load(bootstrap: str, topic: str) -> None:
    """A steady trickle of records while the test looks at the status."""
    while True:
        await produce(bootstrap, topic, {0: records(500, 50, 0), 1: records(500, 50, 1)})
        await asyncio.sleep(0.2)


async def test_status_shows_every_worker_of_the_group_and_its_tasks(
    cluster_a: LocalKafkaCluster, cluster_b: LocalKafkaCluster, topic: str, tmp_path: Path
) -> None:
    """Each worker's /status (and `mirror status`) lists the whole group as Kafka assigned it."""
    a, b = cluster_a.bootstrap_servers, cluster_b.bootstrap_servers
    await create_topic(a, topic, 2)
    settings = settings_for(tmp_path, {"A": a, "B": b}, ["A->B"], **{"A->B.topics": topic, "tasks.max": "2"})
    env = {**os.environ, "COLUMNS": "200"}
    async with running(settings) as one, running(settings) as two, serving(one) as server:
        url = f"http://127.0.0.1:{server.port}"

        async def two_workers_one_task_each() -> dict[str, Any] | None:
            doc: dict[str, Any] = json.loads((await http_get(server.port, "/status"))[1])
            workers = doc["groups"].get("B", {}).get("workers", [])
            # both hold tasks: one each (the tasks topic may have more partitions, from earlier tests:
            # tasks.max=2 leaves those unassigned)
            if len(workers) == 2 and all(w["tasks"] for w in workers):
                return doc
            return None

        doc = await wait_for(two_workers_one_task_each, timeout=60, interval=0.5)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "mirror", "status", "--url", url,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), 30)
    group = doc["groups"]["B"]
    assert group["group"] == settings.service.group and group["state"] == "Stable"
    tasks = sorted(t for w in group["workers"] for t in w["tasks"])
    task_count = next(f["task_count"] for f in doc["flows"] if f["flow"] == "A->B")
    assert task_count == 2 and tasks == ["mm2-tasks.A.internal/0", "mm2-tasks.A.internal/1"]
    assert [w["this"] for w in group["workers"]].count(True) == 1
    # distinct, though both run in this process
    assert sorted(w["worker"] for w in group["workers"]) == sorted([one.id, two.id])
    assert proc.returncode == 0, err.decode()
    assert "workers (the whole group" in out.decode() and "mm2-tasks.A.internal/1" in out.decode()
