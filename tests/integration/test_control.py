"""Operator control against real brokers: pause and resume (the control topic), progress show and reset."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import Array, Boolean, Float64, Int16, Int32, Schema, String

from mirror.cli import progress as progress_cli
from mirror.cli.control import run_control
from mirror.cli.progress import run_progress
from mirror.local.kafka import LocalKafkaCluster
from mirror.service.worker import Worker

from .support import (
    MirrorProcess,
    Rec,
    all_partitions_advance,
    consume,
    create_topic,
    end_offsets,
    http_get,
    joined,
    mm2_properties,
    own_cluster_fixtures,
    produce,
    running,
    serving,
    settings_for,
    steady_load,
    wait_for,
)
from .test_replication import _dedupe_resent_tail

BASE_TS = 1_700_000_000_000


def _args(command: str, flow: str, **kw: Any) -> argparse.Namespace:
    defaults: dict[str, Any] = {
        "topics": None,
        "json": False,
        "dry_run": False,
        "to_earliest": False,
        "to_latest": False,
        "to_offset": None,
        "to_timestamp": None,
        "progress_command": None,
    }
    return argparse.Namespace(command=command, flow=flow, **{**defaults, **kw})


def _paused_here(worker: Worker) -> int:
    return sum(len(task.paused()) for runner in worker.flows for task in runner.tasks.values())


# operator controls live in the flow's control topic and outlive a test: later tests of the session
# would inherit a throttle or a pause of flow A->B
own_clusters, cluster_a, cluster_b = own_cluster_fixtures("CA", "CB")


async def test_progress_reset_to_a_timestamp_recopies_exactly_the_records_from_then_on(
    cluster_a: LocalKafkaCluster,
    cluster_b: LocalKafkaCluster,
    topic: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`progress reset --to-timestamp T` on a paused topic: after resume the target holds every record once,
    then again exactly those with a timestamp >= T, in order; refused while the topic is not paused."""
    a, b = cluster_a.bootstrap_servers, cluster_b.bootstrap_servers
    await create_topic(a, topic, 2)
    sent: dict[int, list[Rec]] = {
        p: [(b"k%d" % i, b"v%d-%d" % (p, i), (), BASE_TS + i * 1000) for i in range(100)] for p in range(2)
    }
    await produce(a, topic, sent)
    settings = settings_for(tmp_path, {"A": a, "B": b}, ["A->B"], **{"A->B.topics": topic})
    remote = f"A.{topic}"
    monkeypatch.setattr(progress_cli, "SETTLED", 1.0)  # the settling wait, shortened for the test
    async with running(settings) as worker:
        copied = await consume(b, remote, {0: 100, 1: 100}, timeout=60)
        assert copied == sent
        # workers run the flow and the topic is not paused: refused
        reset = _args(
            "progress", "A->B", progress_command="reset", topics=topic, to_timestamp=str(BASE_TS + 60_000)
        )
        assert await run_progress(settings, reset) == 1
        assert "refused: topics not paused" in capsys.readouterr().out

        assert await run_control(settings, _args("pause", "A->B", topics=topic)) == 0
        await wait_for(lambda: _ready(_paused_here(worker) == 2), timeout=10)
        await asyncio.sleep(1.2)  # SETTLED, as shortened above
        # the stored progress is at the end (the paused partitions' progress is stored at once)
        show = _args("progress", "A->B", progress_command="show", topics=topic, json=True)
        assert await run_progress(settings, show) == 0
        shown = capsys.readouterr().out
        assert shown.count('"stored": 100') == 2 and shown.count('"lag": 0') == 2, shown

        dry = _args(
            "progress", "A->B", progress_command="reset", topics=topic, to_timestamp=str(BASE_TS + 60_000)
        )
        dry.dry_run = True
        assert await run_progress(settings, dry) == 0
        assert "dry run" in capsys.readouterr().out
        assert await run_progress(settings, reset) == 0
        assert "reset" in capsys.readouterr().out
        await asyncio.sleep(1.0)  # nothing may flow while paused, reset or not
        assert await consume(b, remote, {0: 100, 1: 100}, timeout=5) == sent

        assert await run_control(settings, _args("resume", "A->B")) == 0
        expected = {p: recs + recs[60:] for p, recs in sent.items()}
        got = await consume(b, remote, {0: 140, 1: 140}, timeout=60)
        assert got == expected


async def _ready(value: bool) -> bool:
    return value


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def _post(port: int, path: str, body: dict[str, Any], token: str | None) -> tuple[int, str]:
    headers = {"X-Mirror-Operator": "test-operator"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"http://127.0.0.1:{port}{path}", json=body, headers=headers) as r,
    ):
        return r.status, await r.text()


async def _cli(*argv: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "mirror",
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def _watch(
    b: str, paused: str, flowing: str, until: asyncio.Event
) -> tuple[float, list[tuple[float, int]]]:
    """Watch the remote topics until ``until`` is set: (the wall-clock time ``paused`` last grew, the
    records of ``flowing`` over time)."""
    last_change = time.time()
    before = await end_offsets(b, paused, PARTS)
    marks: list[tuple[float, int]] = []
    while not until.is_set():
        now = await end_offsets(b, paused, PARTS)
        if now != before:
            last_change, before = time.time(), now
        marks.append((time.monotonic(), sum((await end_offsets(b, flowing, PARTS)).values())))
        await asyncio.sleep(0.1)
    return last_change, marks


PARTS = 3


@pytest.mark.parametrize("mode", ["at-least-once", "exactly-once"])
async def test_pause_stops_a_topic_on_every_worker_survives_a_restart_and_resume_loses_nothing(
    mode: str, cluster_a: LocalKafkaCluster, cluster_b: LocalKafkaCluster, topic: str, tmp_path: Path
) -> None:
    """Two worker processes under load: `mirror pause --topics` stops that topic on the target within 5 s
    while the other flows; it stays paused across a worker restart (shown in /status, /readyz stays 200);
    `POST /control/resume` (bearer token) resumes it; in the end the target holds every record once."""
    a, b = cluster_a.bootstrap_servers, cluster_b.bootstrap_servers
    paused, flowing = f"{topic}-p", f"{topic}-f"
    await create_topic(a, paused, PARTS)
    await create_topic(a, flowing, PARTS)
    token_file = tmp_path / "token"
    token_file.write_text("s3cret-token\n")
    base = mm2_properties(
        {"A": a, "B": b},
        ["A->B"],
        **{"A->B.topics": f"{topic}-.*", "tasks.max": "4", "service.control.token.file": str(token_file)},
        **({"A->B.exactly.once.support": "required"} if mode == "exactly-once" else {}),
    )
    ports = [_free_port(), _free_port()]
    configs = []
    for i, port in enumerate(ports):
        path = tmp_path / f"mm2-{i}.properties"
        path.write_text(base.replace("service.http.port = 0", f"service.http.port = {port}"))
        configs.append(path)
    workers = [MirrorProcess(configs[i], tmp_path / f"worker-{i}.log") for i in range(2)]
    sent: dict[str, dict[int, list[Rec]]] = {t: {p: [] for p in range(PARTS)} for t in (paused, flowing)}
    stop = asyncio.Event()
    loads = [
        asyncio.create_task(steady_load(a, t, PARTS, stop, sent[t], burst=30, gap=0.05))
        for t in (paused, flowing)
    ]
    remote_p, remote_f = f"A.{paused}", f"A.{flowing}"
    try:
        try:
            for w in workers:
                w.start()
            for w in workers:
                await joined(w, "mm2-tasks.A.internal")
            await all_partitions_advance(b, remote_p, PARTS, 60)
            await all_partitions_advance(b, remote_f, PARTS, 60)

            done = asyncio.Event()
            watcher = asyncio.create_task(_watch(b, remote_p, remote_f, done))
            code, out = await _cli("pause", "A->B", "--topics", paused, "-c", str(configs[0]))
            assert code == 0, out
            await asyncio.sleep(8.0)
            done.set()
            last_growth, marks = await watcher
            docs = [json.loads((await http_get(port, "/status"))[1]) for port in ports]
            written = docs[0]["flows"][0]["paused"][0]["at"]  # when `mirror pause` wrote the control record
            reaction = last_growth - written
            print(f"pause: {remote_p} last grew {reaction:.2f} s after the pause was written")
            assert reaction < 5.0, f"{remote_p} still grew {reaction:.1f} s after the pause"
            recent = [n for t, n in marks if t >= marks[-1][0] - 3]
            assert recent[-1] > recent[0], f"{remote_f} stopped too"

            assert sum(t["paused_partitions"] for d in docs for t in d["flows"][0]["tasks"]) == PARTS
            for d in docs:
                flow = next(f for f in d["flows"] if f["flow"] == "A->B")
                assert [p["topics"] for p in flow["paused"]] == [paused]
                assert "via cli" in flow["paused"][0]["by"]
                assert flow["lag"].get(paused, {"paused": True})["paused"] is True
            assert [(await http_get(port, "/readyz"))[0] for port in ports] == [200, 200]
            metrics = "".join([(await http_get(port, "/metrics"))[1] for port in ports])
            gauges = [
                line
                for line in metrics.splitlines()
                if line.startswith("mirror_partition_paused{") and f'topic="{remote_p}"' in line
            ]
            assert len(gauges) == PARTS and all(line.endswith(" 1.0") for line in gauges), gauges

            # a restart keeps it paused
            held = await end_offsets(b, remote_p, PARTS)
            code, _ = workers[0].terminate()
            assert code == 0
            since = workers[0].log.stat().st_size
            workers[0].start()
            await joined(workers[0], "mm2-tasks.A.internal", since)
            await all_partitions_advance(b, remote_f, PARTS, 60)
            assert await end_offsets(b, remote_p, PARTS) == held, "the paused topic moved across a restart"

            # resume over HTTP: the token is required
            body = {"flow": "A->B", "topics": paused}
            assert (await _post(ports[1], "/control/resume", body, None))[0] == 401
            assert (await _post(ports[1], "/control/resume", body, "wrong"))[0] == 401
            status, text = await _post(ports[1], "/control/resume", body, "s3cret-token")
            assert status == 200, text
            t1 = time.monotonic()
            await all_partitions_advance(b, remote_p, PARTS, 30)
            took = time.monotonic() - t1
            print(f"resume: every partition of {remote_p} advanced {took:.2f} s after the request")
            assert "test-operator via http" in workers[1].log.read_text()
        finally:
            stop.set()
            await asyncio.gather(*loads)
        for t, remote in ((paused, remote_p), (flowing, remote_f)):
            expected = sent[t]
            got = await consume(
                b,
                remote,
                {p: len(r) for p, r in expected.items()},
                90,
                {p: r[-1] for p, r in expected.items()},
                isolation_level="read_committed",
            )
            assert got == expected, f"{remote}: lost, duplicated or reordered records"
    finally:
        _stop_all(workers)


async def test_a_task_whose_target_partition_is_unwritable_is_stuck_and_named_in_readyz(
    cluster_a: LocalKafkaCluster, cluster_b: LocalKafkaCluster, topic: str, tmp_path: Path
) -> None:
    """The target made (nearly) unwritable for the task's producer (a produce quota of 1 byte/s: the broker
    holds its answers back for seconds at a time): after task.stuck.timeout.seconds the task is restarted
    and counted, and /readyz names it as stuck; once the quota is gone it moves, /readyz is 200 again, and
    nothing was lost."""
    a, b = cluster_a.bootstrap_servers, cluster_b.bootstrap_servers
    await create_topic(a, topic, 1)
    first = {0: [(b"k%d" % i, b"v%d" % i, (), BASE_TS + i) for i in range(10)]}
    await produce(a, topic, first)
    extra = {
        "A->B.topics": topic,
        "A->B.task.stuck.timeout.seconds": "3",
        "sync.topic.configs.enabled": "false",
    }
    settings = settings_for(tmp_path, {"A": a, "B": b}, ["A->B"], **extra)
    remote = f"A.{topic}"
    async with running(settings) as worker, serving(worker) as server:
        assert await consume(b, remote, {0: 10}, timeout=60) == first
        producer = "A->B|MirrorSourceConnector-0|replication-producer"
        await _produce_quota(b, producer, 1.0)
        more = {0: [(b"k%d" % i, b"v%d" % i + b"x" * 2000, (), BASE_TS + i) for i in range(10, 60)]}
        await produce(a, topic, more)
        t0 = time.monotonic()

        async def stuck() -> str | None:
            status, body = await http_get(server.port, "/readyz")
            reasons = json.loads(body)["reasons"]
            named = [r for r in reasons if "task 0 is stuck: no progress for 3 s in " in r]
            return named[0] if status == 503 and named else None

        reason = await wait_for(stuck, timeout=30)
        print(
            f"stuck: /readyz named the task {time.monotonic() - t0:.1f} s after the records arrived: {reason}"
        )

        async def restarted() -> dict[str, Any] | None:
            task: dict[str, Any] = json.loads((await http_get(server.port, "/status"))[1])["flows"][0][
                "tasks"
            ][0]
            return task if task["restarts"] >= 1 else None

        task = await wait_for(restarted, timeout=20)
        assert task["stuck"] is not None
        metrics = (await http_get(server.port, "/metrics"))[1]
        assert 'mirror_errors_total{kind="stuck",source="A",target="B"}' in metrics

        await _produce_quota(b, producer, None)
        await wait_for(lambda: _readyz_ok(server.port), timeout=60)
        got = await consume(b, remote, {0: 60}, timeout=60)
        assert _dedupe_resent_tail(got[0], first[0] + more[0]) == first[0] + more[0]


class _AlterClientQuotasResponseV0(Response):  # type: ignore[misc]
    API_KEY, API_VERSION = 49, 0
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        (
            "entries",
            Array(
                ("error_code", Int16),
                ("error_message", String("utf-8")),
                ("entity", Array(("entity_type", String("utf-8")), ("entity_name", String("utf-8")))),
            ),
        ),
    )


class _AlterClientQuotasRequestV0(RequestStruct):  # type: ignore[misc]
    API_KEY, API_VERSION = 49, 0
    RESPONSE_TYPE = _AlterClientQuotasResponseV0
    SCHEMA = Schema(
        (
            "entries",
            Array(
                ("entity", Array(("entity_type", String("utf-8")), ("entity_name", String("utf-8")))),
                ("ops", Array(("key", String("utf-8")), ("value", Float64), ("remove", Boolean))),
            ),
        ),
        ("validate_only", Boolean),
    )


class _AlterClientQuotas(Request[_AlterClientQuotasRequestV0]):  # type: ignore[misc]
    API_KEY = 49

    def __init__(self, client_id: str, rate: float | None) -> None:
        self._entry = ([("client-id", client_id)], [("producer_byte_rate", rate or 0.0, rate is None)])

    def build(self, request_struct_class: Any) -> Any:
        return request_struct_class([self._entry], False)


async def _produce_quota(bootstrap: str, client_id: str, rate: float | None) -> None:
    """Set (or, with None, remove) a produce quota of ``rate`` bytes/s for one client id."""
    client = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await client.start()
    try:
        node = next(iter(client._client.cluster.brokers())).nodeId
        response = await client._client.send(node, _AlterClientQuotas(client_id, rate))
        assert all(entry[0] == 0 for entry in response.entries), response
    finally:
        await client.close()


async def _readyz_ok(port: int) -> bool:
    return (await http_get(port, "/readyz"))[0] == 200


async def test_a_throttle_holds_the_flow_to_its_rate_over_two_workers(
    cluster_a: LocalKafkaCluster, cluster_b: LocalKafkaCluster, topic: str, tmp_path: Path
) -> None:
    """throttle.bytes.per.second = 50000 with two worker processes and a backlog: the flow copies
    50000 value bytes/s (+-15 %) over 30 s; `mirror throttle` raises it at run time without a restart."""
    a, b = cluster_a.bootstrap_servers, cluster_b.bootstrap_servers
    partitions, size, rate = 6, 1000, 50_000
    await create_topic(a, topic, partitions)
    backlog = {
        p: [(b"k%d" % i, b"%06d" % i + b"x" * (size - 6), (), BASE_TS + i) for i in range(1500)]
        for p in range(partitions)
    }
    await produce(a, topic, backlog)
    config = tmp_path / "mm2.properties"
    extra = {"A->B.topics": topic, "tasks.max": "4", "throttle.bytes.per.second": str(rate)}
    config.write_text(mm2_properties({"A": a, "B": b}, ["A->B"], **extra))
    workers = [MirrorProcess(config, tmp_path / f"worker-{i}.log") for i in range(2)]
    remote = f"A.{topic}"

    async def copied() -> int:
        return sum((await end_offsets(b, remote, partitions)).values()) * size

    try:
        for w in workers:
            w.start()
        for w in workers:
            await joined(w, "mm2-tasks.A.internal")
        await wait_for(copied, timeout=60)
        await asyncio.sleep(3)  # past the rebalance of the second worker's join
        t0, c0 = time.monotonic(), await copied()
        await asyncio.sleep(30)
        measured = (await copied() - c0) / (time.monotonic() - t0)
        print(
            f"throttle {rate} bytes/s, two workers: measured {measured:.0f} bytes/s ({measured / rate:.1%})"
        )
        assert abs(measured / rate - 1) <= 0.15, f"{measured:.0f} bytes/s for a limit of {rate}"

        code, out = await _cli("throttle", "A->B", "--bytes-per-second", str(2 * rate), "-c", str(config))
        assert code == 0, out
        await asyncio.sleep(2)
        t1, c1 = time.monotonic(), await copied()
        await asyncio.sleep(10)
        raised = (await copied() - c1) / (time.monotonic() - t1)
        print(f"throttle raised to {2 * rate} bytes/s at run time: measured {raised:.0f} bytes/s")
        assert abs(raised / (2 * rate) - 1) <= 0.25, f"{raised:.0f} bytes/s for a limit of {2 * rate}"
    finally:
        # the run-time limit outlives this test in the control topic: back to the configured one
        code, out = await _cli("throttle", "A->B", "--configured", "-c", str(config))
        _stop_all(workers)
    assert code == 0, out


async def test_sighup_reloads_the_config_and_a_bad_edit_is_refused(
    cluster_a: LocalKafkaCluster, cluster_b: LocalKafkaCluster, topic: str, tmp_path: Path
) -> None:
    """SIGHUP after adding a topic pattern and changing an interval: the process (same pid) copies the new
    topic too and goes on with the old one without loss or duplicates; a bad edit is refused with the
    error `validate` gives, and the running configuration keeps copying."""
    a, b = cluster_a.bootstrap_servers, cluster_b.bootstrap_servers
    old, new = f"{topic}-a", f"{topic}-b"
    await create_topic(a, old, 2)
    await create_topic(a, new, 2)
    port = _free_port()
    config = tmp_path / "mm2.properties"
    text = mm2_properties({"A": a, "B": b}, ["A->B"], **{"A->B.topics": old}).replace(
        "service.http.port = 0", f"service.http.port = {port}"
    )
    config.write_text(text)
    worker = MirrorProcess(config, tmp_path / "worker.log")

    def records(start: int, n: int) -> dict[int, list[Rec]]:
        return {
            p: [(b"k%d" % i, b"v%d-%d" % (p, i), (), BASE_TS + i) for i in range(start, start + n)]
            for p in (0, 1)
        }

    async def digest() -> str:
        return str(json.loads((await http_get(port, "/status"))[1])["config"])

    try:
        worker.start()
        await joined(worker, "mm2-tasks.A.internal")
        sent_old, sent_new = records(0, 50), records(0, 50)
        await produce(a, old, sent_old)
        await produce(a, new, sent_new)
        assert await consume(b, f"A.{old}", {0: 50, 1: 50}, timeout=60) == sent_old
        before = await digest()
        assert worker.proc is not None
        pid = worker.proc.pid

        config.write_text(
            text.replace(f"A->B.topics = {old}", f"A->B.topics = {topic}-.*").replace(
                "refresh.topics.interval.seconds = 1", "refresh.topics.interval.seconds = 2"
            )
        )
        worker.proc.send_signal(signal.SIGHUP)
        assert await consume(b, f"A.{new}", {0: 50, 1: 50}, timeout=60) == sent_new
        more = records(50, 50)
        await produce(a, old, more)
        expected = {p: sent_old[p] + more[p] for p in (0, 1)}
        assert (
            await consume(
                b, f"A.{old}", {0: 100, 1: 100}, timeout=60, last={p: r[-1] for p, r in more.items()}
            )
            == expected
        )
        reloaded = await wait_for(digest, timeout=30)
        assert reloaded != before and worker.proc.pid == pid and worker.proc.poll() is None
        log_text = worker.log.read_text()
        assert '"config reloaded; restarting the worker in place"' in log_text
        assert "flows.A->B.topics" in log_text and "flows.A->B.refresh_topics_interval_seconds" in log_text

        config.write_text(text + "tasks.max = abc\n")
        worker.proc.send_signal(signal.SIGHUP)
        await wait_for(lambda: _logged(worker.log, '"config reload refused'), timeout=30)
        assert "tasks.max: invalid value 'abc'" in worker.log.read_text()
        last = records(100, 20)
        await produce(a, new, last)
        expected_new = {p: sent_new[p] + last[p] for p in (0, 1)}
        assert (
            await consume(b, f"A.{new}", {0: 70, 1: 70}, timeout=60, last={p: r[-1] for p, r in last.items()})
            == expected_new
        )
        assert await digest() == reloaded and worker.proc.poll() is None
    finally:
        _stop_all([worker])


async def _logged(log: Path, text: str) -> bool:
    return text in await asyncio.to_thread(log.read_text)


def _stop_all(workers: list[MirrorProcess]) -> None:
    """SIGTERM every worker process still running (each must stop cleanly)."""
    for w in workers:
        if w.proc is not None and w.proc.poll() is None:
            code, _ = w.terminate()
            assert code == 0, f"{w.log.name}: exit {code}"


async def test_a_throttled_task_copies_a_record_larger_than_its_fetch_size_and_what_follows(
    cluster_a: LocalKafkaCluster, cluster_b: LocalKafkaCluster, topic: str, tmp_path: Path
) -> None:
    """A 100 kB record at a throttle of 20 kB/s, in one task with a busy partition next to it: the
    throttled fetch size (about 20 kB per partition) is smaller than the record, yet it arrives, with
    everything around it, once and in order (the broker returns the whole batch when its partition is the
    first of a fetch; aiokafka shuffles the partitions per request). The 5 s its throttle makes the task
    wait for it is longer than the task's stuck timeout (2 s): a throttled task is slow, not stuck."""
    a, b = cluster_a.bootstrap_servers, cluster_b.bootstrap_servers
    await create_topic(a, topic, 2)
    busy = [(b"k%d" % i, b"%04d" % i + b"s" * 96, (), BASE_TS + i) for i in range(300)]
    around = [(b"k%d" % i, b"%04d" % i + b"s" * 96, (), BASE_TS + i) for i in range(20)]
    big = (b"big", b"B" * 100_000, (), BASE_TS + 10)
    sent = {0: busy, 1: [*around[:10], big, *around[10:]]}
    await produce(a, topic, sent)
    extra = {
        "A->B.topics": topic,
        "tasks.max": "1",
        "throttle.bytes.per.second": "20000",
        "task.stuck.timeout.seconds": "2",
    }
    settings = settings_for(tmp_path, {"A": a, "B": b}, ["A->B"], **extra)
    remote = f"A.{topic}"
    start = time.monotonic()
    async with running(settings) as worker:
        got = await consume(b, remote, {0: 300, 1: 21}, timeout=30)
        took = time.monotonic() - start
        restarts = sum(t.status.restarts for r in worker.flows for t in r.tasks.values())
    assert got == sent, {p: len(recs) for p, recs in got.items()}
    assert restarts == 0
    print(f"a 100 kB record and 30 kB around it at 20 kB/s: copied in {took:.1f} s")


async def test_pauses_landing_on_buffered_records_of_a_throttled_exactly_once_flow_lose_and_repeat_nothing(
    cluster_a: LocalKafkaCluster, cluster_b: LocalKafkaCluster, topic: str, tmp_path: Path
) -> None:
    """Exactly once, throttled (each fetch hands out part of what the consumer holds; the rest stays
    buffered), the topic paused and resumed again and again, a resume followed at once by a pause: the
    consumer drops what it held of a paused partition and reads on from the next record not handed out,
    so a read_committed consumer of the target sees every record once, in order."""
    a, b = cluster_a.bootstrap_servers, cluster_b.bootstrap_servers
    await create_topic(a, topic, 2)
    sent = {
        p: [(b"k%d" % i, b"%d-%05d" % (p, i) + b"v" * 90, (), BASE_TS + i) for i in range(3000)]
        for p in (0, 1)
    }
    await produce(a, topic, sent)
    extra = {
        "A->B.topics": topic,
        "tasks.max": "1",
        "throttle.bytes.per.second": "60000",
        "A->B.exactly.once.support": "required",
    }
    settings = settings_for(tmp_path, {"A": a, "B": b}, ["A->B"], **extra)
    remote = f"A.{topic}"
    pause, resume = _args("pause", "A->B", topics=topic), _args("resume", "A->B")
    async with running(settings) as worker:
        await all_partitions_advance(b, remote, 2, timeout=30)
        t0 = time.monotonic()
        for gap in (0.7, 0.3, 0.0, 0.5, 0.2):
            assert await run_control(settings, pause) == 0
            await asyncio.sleep(gap)
            assert await run_control(settings, resume) == 0
            await asyncio.sleep(0.4)
        toggled = time.monotonic() - t0
        got = await consume(b, remote, {0: 3000, 1: 3000}, timeout=30, isolation_level="read_committed")
        restarts = sum(t.status.restarts for r in worker.flows for t in r.tasks.values())
    assert {p: len(r) for p, r in got.items()} == {0: 3000, 1: 3000}
    assert got == sent
    assert restarts == 0
    print(f"five pauses and resumes in {toggled:.1f} s of a 10 s copy")
