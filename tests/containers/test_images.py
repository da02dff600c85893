"""The shipped image, run as users run it: our Dockerfile's image against two Kafka containers, configured by
a mounted ``mm2.properties`` and a mounted secret, on the host's network (fixtures in conftest.py)."""

from __future__ import annotations

import asyncio
import contextlib
import stat
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from testcontainers.core.container import DockerContainer

from mirror.local.kafka import free_port
from tests.containers.conftest import (
    SASL_PASSWORD,
    SASL_USER,
    KafkaContainer,
    is_podman,
    logs,
    wait_for_line,
)
from tests.integration.support import (
    Rec,
    all_partitions_advance,
    consume,
    consume_all,
    create_topic,
    http_get,
    mm2_properties,
    produce,
    steady_load,
    wait_for,
)
from tests.integration.test_rejected_records import stored_progress
from tests.integration.test_replication import _dedupe_resent_tail, make_records, spread

pytestmark = pytest.mark.timeout(600)  # the first test builds both images (from scratch in CI: ~1 min)

SECRETS = "/etc/mirror/secrets"
TASKS = "mm2-tasks.A.internal"


def write_config(tmp_path: Path, a: KafkaContainer, b: KafkaContainer, topic: str, **extra: str) -> Path:
    """mm2.properties for A->B; A's SASL password is read from a mounted secret file (a Kubernetes or
    Docker secret), through Java's DirectoryConfigProvider. Returns the directory to mount."""
    config = tmp_path / "config"
    secrets = config / "secrets"
    secrets.mkdir(parents=True)
    (secrets / "a-password").write_text(SASL_PASSWORD)
    jaas = (
        f'org.apache.kafka.common.security.plain.PlainLoginModule required username="{SASL_USER}" '
        f'password="${{dir:{SECRETS}:a-password}}";'
    )
    settings = {
        "A->B.topics": topic,
        "config.providers": "dir",
        "config.providers.dir.class": "org.apache.kafka.common.config.provider.DirectoryConfigProvider",
        "A.security.protocol": "SASL_PLAINTEXT",
        "A.sasl.mechanism": "PLAIN",
        "A.sasl.jaas.config": jaas,
        **extra,
    }
    (config / "mm2.properties").write_text(
        mm2_properties({"A": a.bootstrap_servers, "B": b.bootstrap_servers}, ["A->B"], **settings)
    )
    # The container runs as uid 10001: the mounted files must be readable by others (pytest's directories
    # are private to their owner).
    readable = stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH
    for path in (config, secrets):
        path.chmod(readable | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH | stat.S_IWUSR)
    for path in (config / "mm2.properties", secrets / "a-password"):
        path.chmod(readable)
    return config


def mirror_container(image: str, config: Path, port: int) -> DockerContainer:
    """The image's own entry point and command (`mirror run --config /etc/mirror/mm2.properties`)."""
    return (
        DockerContainer(image)
        .with_kwargs(network_mode="host")
        .with_env("MIRROR_SERVICE__HTTP_PORT", str(port))
        .with_volume_mapping(str(config / "mm2.properties"), "/etc/mirror/mm2.properties", "ro")
        .with_volume_mapping(str(config / "secrets"), SECRETS, "ro")
    )


async def answer(port: int, path: str) -> tuple[int, str] | None:
    with contextlib.suppress(aiohttp.ClientError, OSError):
        return await http_get(port, path)
    return None


def metric_sum(text: str, name: str, **labels: str) -> float:
    want = [f'{k}="{v}"' for k, v in labels.items()]
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name + "{") and all(w in line for w in want)
    )


def healthy(engine: Any, container: DockerContainer, timeout: float) -> dict[str, Any]:
    """The image's HEALTHCHECK, run by the engine, until it reports healthy. Docker runs it on its own
    schedule (every 30 s); podman schedules it with systemd timers, and machines without systemd (CI's)
    have none, so there the test asks podman's own API to run it now (`podman healthcheck run`): the same
    command from the image, recorded in the container's state the same way."""
    wrapped = container.get_wrapped_container()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if is_podman(engine):
            engine.api.get(f"{engine.api.base_url}/v4.0.0/libpod/containers/{wrapped.id}/healthcheck")
        wrapped.reload()
        health: dict[str, Any] = wrapped.attrs["State"].get("Health") or {}
        if health.get("Status") == "healthy":
            return health
        time.sleep(1)
    raise AssertionError(f"not healthy within {timeout}s: {wrapped.attrs['State'].get('Health')}")


async def test_the_image_replicates_serves_health_and_stops_cleanly_as_a_non_root_user(
    engine: Any,
    mirror_image: str,
    source_kafka: KafkaContainer,
    target_kafka: KafkaContainer,
    topic: str,
    tmp_path: Path,
) -> None:
    a, b = source_kafka.internal_bootstrap_servers, target_kafka.bootstrap_servers
    await create_topic(a, topic, 3)
    records = spread(make_records(3_000, seed=31), 3)
    await produce(a, topic, records)
    port = free_port()
    config = write_config(tmp_path, source_kafka, target_kafka, topic)
    mirror = mirror_container(mirror_image, config, port)
    await asyncio.to_thread(mirror.start)
    wrapped = mirror.get_wrapped_container()
    try:
        # A's client listener takes only SASL: records flowing prove the secret was read from the mount.
        assert await consume_all(b, f"A.{topic}", records, 120) == records

        # The HTTP port of the process in the container (host network: the container's port is ours).
        ready = await wait_for(lambda: answer(port, "/readyz"), timeout=60)
        assert ready[0] == 200, ready
        alive = await answer(port, "/healthz")
        assert alive is not None and alive[0] == 200, alive
        metrics = await answer(port, "/metrics")
        assert metrics is not None and metrics[0] == 200
        assert "mirror_ready 1.0" in metrics[1]
        assert metric_sum(metrics[1], "mirror_records_total", topic=f"A.{topic}") == 3_000

        health = await asyncio.to_thread(healthy, engine, mirror, 90)
        assert health["Log"] and health["Log"][-1]["ExitCode"] == 0, health

        # The service runs as the image's non-root user (the mirror process itself, pid 1).
        code, status = await asyncio.to_thread(wrapped.exec_run, ["cat", "/proc/1/status"])
        assert code == 0
        uid_line = next(line for line in status.decode().splitlines() if line.startswith("Uid:"))
        assert uid_line.split()[1:] == ["10001"] * 4, uid_line
        _, cmdline = await asyncio.to_thread(wrapped.exec_run, ["cat", "/proc/1/cmdline"])
        assert b"/opt/mirror/bin/mirror" in cmdline, cmdline

        # `mirror validate` inside the image: connects, plans, shows the secret redacted.
        code, out = await asyncio.to_thread(
            wrapped.exec_run, ["mirror", "validate", "--config", "/etc/mirror/mm2.properties"]
        )
        text = out.decode(errors="replace")
        assert code == 0, text
        assert "ok cluster A" in text and "ok cluster B" in text and "********" in text, text
        assert SASL_PASSWORD not in text

        # SIGTERM (the engine's stop): exit 0 within seconds, progress stored.
        t0 = time.monotonic()
        await asyncio.to_thread(wrapped.stop, timeout=30)
        took = time.monotonic() - t0
        wrapped.reload()
        output = logs(mirror)
        assert wrapped.attrs["State"]["ExitCode"] == 0, output[-3000:]
        assert took < 20, f"container stop took {took:.1f}s"
        assert "Traceback" not in output
        assert SASL_PASSWORD not in output
        assert await stored_progress(b, topic) == {p: len(r) - 1 for p, r in records.items()}
        print(f"\ncontainer stop (SIGTERM) took {took:.1f} s, exit code 0")
    finally:
        await asyncio.to_thread(mirror.stop)  # removes the container


async def test_two_mirror_containers_share_the_tasks_and_one_takes_over_when_the_other_is_killed(
    mirror_image: str,
    source_kafka: KafkaContainer,
    target_kafka: KafkaContainer,
    topic: str,
    tmp_path: Path,
) -> None:
    partitions = 4
    a, b = source_kafka.internal_bootstrap_servers, target_kafka.bootstrap_servers
    remote = f"A.{topic}"
    await create_topic(a, topic, partitions)
    config = write_config(tmp_path, source_kafka, target_kafka, topic, **{"tasks.max": "2"})
    workers = [mirror_container(mirror_image, config, free_port()) for _ in range(2)]
    sent: dict[int, list[Rec]] = {p: [] for p in range(partitions)}
    stop = asyncio.Event()
    load = asyncio.create_task(steady_load(a, topic, partitions, stop, sent))
    try:
        try:
            for worker in workers:
                await asyncio.to_thread(worker.start)
            # each worker runs one of the two tasks
            for worker in workers:
                await asyncio.to_thread(wait_for_line, worker, '"tasks assigned"', f"{TASKS}/", timeout=90)
            await all_partitions_advance(b, remote, partitions, 60)

            killed, survivor = workers
            since = len(logs(survivor))
            await asyncio.to_thread(killed.get_wrapped_container().kill)  # SIGKILL
            t0 = time.monotonic()
            await asyncio.to_thread(
                wait_for_line,
                survivor,
                '"tasks assigned"',
                f"{TASKS}/0",
                f"{TASKS}/1",
                timeout=60,
                since=since,
            )
            await all_partitions_advance(b, remote, partitions, 60)
            recovery = time.monotonic() - t0
        finally:
            stop.set()
            await load
        got = await consume(
            b, remote, {p: len(r) for p, r in sent.items()}, 120, {p: r[-1] for p, r in sent.items()}
        )
        missing = {p: sorted(int(r[0][1:]) for r in set(recs) - set(got[p])) for p, recs in sent.items()}
        assert not any(missing.values()), (
            f"records lost: { ({p: (len(m), m[:5], m[-5:]) for p, m in missing.items() if m}) }; "
            f"killed worker's output:\n{logs(killed)[-4000:]}\nsurvivor's:\n{logs(survivor)[-4000:]}"
        )
        for p, recs in sent.items():
            assert _dedupe_resent_tail(got[p], recs) == recs, f"partition {p} reordered records"
        survivor_container = survivor.get_wrapped_container()
        await asyncio.to_thread(survivor_container.stop, timeout=30)
        survivor_container.reload()
        assert survivor_container.attrs["State"]["ExitCode"] == 0, logs(survivor)[-3000:]
        total = sum(len(r) for r in sent.values())
        duplicates = sum(len(got[p]) - len(r) for p, r in sent.items())
        print(
            f"\ncontainers: {total} records, {duplicates} duplicates; every partition advanced again "
            f"{recovery:.1f} s after the SIGKILL"
        )
        # as for processes (README: 9-12 s measured, the session timeout is 10 s), with room for a slow box
        assert recovery < 30, f"recovery after SIGKILL took {recovery:.1f}s"
    finally:
        for worker in workers:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(worker.stop)
