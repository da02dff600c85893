"""Container tests: the images built from our Dockerfile and deploy/kafka/Dockerfile, run by testcontainers.

The engine is whatever Docker's client settings name: ``DOCKER_HOST`` (here podman's Docker API, prepared by
``eval "$(bash deploy/containers.sh)"``) or, unset, the default Docker engine. The base images come from
``MIRROR_PYTHON_IMAGE`` / ``MIRROR_DEBIAN_IMAGE`` (the script's local Debian image) or Docker Hub
(``python:3.11-slim``, ``debian:bookworm-slim``). Without an engine every test here fails saying how to get
one; ``-m "not containers"`` deselects them. Containers use the host's network (Linux).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from testcontainers.core.container import DockerContainer

from mirror.local.kafka import free_port, resolve_kafka

ROOT = Path(__file__).resolve().parents[2]
KAFKA_CONTEXT = ROOT / "deploy" / "kafka"
SASL_USER, SASL_PASSWORD = "mirror", "c0ntainer-s3cret"
BUILDS: list[str] = []  # one line per image built, for the summary at the end of the run


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/containers" in str(item.path):
            item.add_marker(pytest.mark.containers)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for line in BUILDS:
        terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def engine() -> Any:
    """A Docker API client of the engine the tests use; fails (not skips) without one."""
    import docker  # noqa: PLC0415 (testcontainers' dependency)

    where = os.environ.get("DOCKER_HOST", "the default Docker engine")
    try:
        client = docker.from_env()
        client.ping()
    except Exception as exc:
        pytest.fail(
            f"no container engine at {where} ({exc.__class__.__name__}: {exc}). tests/containers need one: "
            'on Debian as root `eval "$(bash deploy/containers.sh)"` (podman), elsewhere a running Docker; '
            "or deselect them with -m 'not containers'",
            pytrace=False,
        )
    return client


def is_podman(engine: Any) -> bool:
    return any("podman" in c.get("Name", "").lower() for c in engine.version().get("Components", []))


def _build(engine: Any, context: Path, tag: str, buildargs: dict[str, str]) -> Any:
    t0 = time.monotonic()
    # network_mode host: RUN steps reach PyPI and Debian as the host does (podman has no other network
    # here). The Docker API's build keeps HEALTHCHECK (podman builds the Docker format through it).
    image, _ = engine.images.build(
        path=str(context), tag=tag, buildargs=buildargs, network_mode="host", rm=True, forcerm=True
    )
    took = time.monotonic() - t0
    size = image.attrs.get("Size", 0) / 1e6
    BUILDS.append(f"container image {tag}: built in {took:.1f} s, {size:.0f} MB ({buildargs})")
    return image


@pytest.fixture(scope="session")
def mirror_image(engine: Any) -> str:
    """The image of our Dockerfile, built unchanged (only its base image may be a local one)."""
    args = {"PYTHON_IMAGE": os.environ["MIRROR_PYTHON_IMAGE"]} if "MIRROR_PYTHON_IMAGE" in os.environ else {}
    _build(engine, ROOT, "mirror-containers-test:latest", args)
    return "mirror-containers-test:latest"


@pytest.fixture(scope="session")
def kafka_image(engine: Any, tmp_path_factory: pytest.TempPathFactory) -> str:
    """deploy/kafka/Dockerfile with the broker jars the local harness resolves from Maven Central."""
    context = tmp_path_factory.mktemp("kafka-image")
    for name in ("Dockerfile", "kafka-start.sh"):
        shutil.copy(KAFKA_CONTEXT / name, context / name)
    libs = context / "libs"
    libs.mkdir()
    for jar in resolve_kafka().libs.glob("*.jar"):
        shutil.copy(jar, libs / jar.name)
    args = {"BASE_IMAGE": os.environ["MIRROR_DEBIAN_IMAGE"]} if "MIRROR_DEBIAN_IMAGE" in os.environ else {}
    _build(engine, context, "mirror-kafka-containers-test:latest", args)
    return "mirror-kafka-containers-test:latest"


@dataclass
class KafkaContainer:
    container: DockerContainer
    bootstrap_servers: str  # the listener `mirror` uses (SASL_PLAINTEXT with PLAIN where secured)
    internal_bootstrap_servers: str  # PLAINTEXT, for the tests' own clients


def _kafka(image: str, secured: bool) -> Iterator[KafkaContainer]:
    port, controller, internal = free_port(), free_port(), free_port()
    container = (
        DockerContainer(image)
        .with_kwargs(network_mode="host")
        .with_env("KAFKA_PORT", str(port))
        .with_env("KAFKA_CONTROLLER_PORT", str(controller))
        .with_env("KAFKA_INTERNAL_PORT", str(internal))
        .with_env("KAFKA_ADVERTISED_HOST", "127.0.0.1")
        # The tests' records carry old timestamps: time-based retention (checked every 5 minutes) would
        # delete them under the tests' feet, as it would in the local harness (mirror.local.kafka).
        .with_env("KAFKA_EXTRA_PROPERTIES", "log.retention.ms=-1")
    )
    if secured:
        container.with_env("KAFKA_SASL_PLAIN_USERS", f"{SASL_USER}:{SASL_PASSWORD}")
    with container:
        wait_for_line(container, "Kafka Server started", timeout=120)
        own = f"127.0.0.1:{internal}" if secured else f"127.0.0.1:{port}"
        yield KafkaContainer(container, f"127.0.0.1:{port}", own)


@pytest.fixture(scope="session")
def source_kafka(kafka_image: str) -> Iterator[KafkaContainer]:
    """Cluster A: clients authenticate with SASL PLAIN (user ``mirror``)."""
    yield from _kafka(kafka_image, secured=True)


@pytest.fixture(scope="session")
def target_kafka(kafka_image: str) -> Iterator[KafkaContainer]:
    """Cluster B: PLAINTEXT."""
    yield from _kafka(kafka_image, secured=False)


def logs(container: DockerContainer) -> str:
    out: bytes = container.get_wrapped_container().logs()
    return out.decode(errors="replace")


def wait_for_line(container: DockerContainer, *parts: str, timeout: float, since: int = 0) -> None:
    """Until a line of the container's output (after character ``since``) holds every one of ``parts``;
    fails with its output if the container exits or time runs out."""
    deadline = time.monotonic() + timeout
    wrapped = container.get_wrapped_container()
    while time.monotonic() < deadline:
        if any(all(part in line for part in parts) for line in logs(container)[since:].splitlines()):
            return
        wrapped.reload()
        if wrapped.status == "exited":
            raise AssertionError(f"container exited before {parts}; its output:\n{logs(container)[-3000:]}")
        time.sleep(0.25)
    raise AssertionError(f"no line with {parts} within {timeout}s; output:\n{logs(container)[-3000:]}")
