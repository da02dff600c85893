"""Real Apache Kafka on loopback: resolve the broker jars from Maven Central, run single-node KRaft clusters.

Serves the integration tests, ``mirror demo`` and the benchmark. Jars are resolved with the machine's
``mvn`` and the small pom next to this module, and cached outside the repository (``MIRROR_CACHE_DIR``,
default ``~/.cache/mirror``). ``MIRROR_KAFKA_VERSION`` selects a version; by default the newest 4.x
release that resolves is used. 3.9.x works too (static quorum, no share-coordinator settings).

Everything here is synchronous (subprocesses and sockets); async callers wrap it in ``asyncio.to_thread``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

#: Newest first; the first that resolves is the default.
KAFKA_VERSIONS = ("4.4.0", "4.3.1", "4.2.0", "4.1.1", "4.0.0")
#: Java MirrorMaker 2 (connect-mirror) is published later than the broker: 4.4.0 does not resolve yet.
MIRRORMAKER_VERSIONS = ("4.4.0", "4.3.1", "4.2.0", "4.1.1", "4.0.0")

_HERE = Path(__file__).resolve().parent
_READY_LINE = "Kafka Server started"


class HarnessError(RuntimeError):
    """The local Kafka harness could not do its job; the message says what is missing."""


def cache_dir() -> Path:
    return Path(os.environ.get("MIRROR_CACHE_DIR", Path.home() / ".cache" / "mirror"))


@dataclass(frozen=True)
class Distribution:
    """A resolved set of jars: ``classpath`` is passed to ``java -cp``."""

    artifact: str
    version: str
    libs: Path

    @property
    def classpath(self) -> str:
        return str(self.libs / "*")

    @property
    def major(self) -> int:
        return int(self.version.split(".")[0])


def _require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise HarnessError(
            f"'{tool}' is not on PATH: the local Kafka harness needs Java 17+ and Maven "
            "(apt-get install openjdk-17-jre-headless maven) to run real brokers"
        )
    return path


def _resolve(pom: str, artifact: str, version: str) -> Distribution:
    libs = cache_dir() / f"{artifact}-{version}" / "libs"
    marker = libs / ".complete"
    if marker.exists():
        return Distribution(artifact, version, libs)
    mvn = _require("mvn")
    _require("java")
    tmp = libs.with_name(f"libs.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    cmd = [
        mvn,
        "-q",
        "-B",
        "-f",
        str(_HERE / pom),
        f"-Dkafka.version={version}",
        "dependency:copy-dependencies",
        f"-DoutputDirectory={tmp}",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
    if proc.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-5:])
        raise HarnessError(f"maven could not resolve {artifact} {version}:\n{tail}")
    shutil.rmtree(libs, ignore_errors=True)
    tmp.rename(libs)
    marker.touch()
    return Distribution(artifact, version, libs)


def _resolve_first(pom: str, artifact: str, env_var: str, candidates: Sequence[str]) -> Distribution:
    wanted = os.environ.get(env_var)
    if wanted:
        return _resolve(pom, artifact, wanted)
    errors = []
    for version in candidates:
        try:
            return _resolve(pom, artifact, version)
        except HarnessError as exc:
            if "not on PATH" in str(exc):
                raise
            errors.append(str(exc))
    raise HarnessError("no Kafka version resolved:\n" + "\n".join(errors))


def resolve_kafka() -> Distribution:
    """The broker jars (``MIRROR_KAFKA_VERSION`` or the newest 4.x that resolves)."""
    return _resolve_first("broker.pom.xml", "kafka", "MIRROR_KAFKA_VERSION", KAFKA_VERSIONS)


def resolve_mirrormaker() -> Distribution:
    """Java MirrorMaker 2 jars (``MIRROR_MM2_VERSION`` or the newest that resolves)."""
    return _resolve_first("mirrormaker.pom.xml", "connect-mirror", "MIRROR_MM2_VERSION", MIRRORMAKER_VERSIONS)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class LocalKafkaCluster:
    """One single-node KRaft cluster (combined broker + controller) on loopback."""

    name: str
    dist: Distribution
    workdir: Path
    extra_config: Mapping[str, str] = field(default_factory=dict)
    heap: str = "768m"
    port: int = field(default_factory=free_port)
    controller_port: int = field(default_factory=free_port)
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _formatted: bool = field(default=False, init=False, repr=False)
    started_in: float = field(default=0.0, init=False)

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "server.log"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def server_properties(self) -> dict[str, str]:
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "inter.broker.listener.name": "PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(self.workdir / "data"),
            "num.partitions": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "5",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "5",
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "false",
            # Tests replicate records with explicit old timestamps; time-based retention would delete
            # them under the tests' feet (every 5 minutes). Topics that test retention set it themselves.
            "log.retention.ms": "-1",
        }
        if self.dist.major >= 4:
            props["share.coordinator.state.topic.replication.factor"] = "1"
            props["share.coordinator.state.topic.min.isr"] = "1"
        props.update(self.extra_config)
        return props

    def _java(self, *args: str) -> list[str]:
        return [_require("java"), *args]

    def _format(self, props_file: Path) -> None:
        cp = self.dist.classpath
        uuid = subprocess.run(
            self._java("-cp", cp, "kafka.tools.StorageTool", "random-uuid"),
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        ).stdout.strip()
        proc = subprocess.run(
            self._java("-cp", cp, "kafka.tools.StorageTool", "format", "-t", uuid, "-c", str(props_file)),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if proc.returncode != 0:
            raise HarnessError(f"cluster {self.name}: storage format failed:\n{proc.stdout}{proc.stderr}")
        self._formatted = True

    def launch(self) -> None:
        """Format storage (first time only) and start the broker process, without waiting."""
        if self.running:
            return
        self.workdir.mkdir(parents=True, exist_ok=True)
        props_file = self.workdir / "server.properties"
        props_file.write_text("".join(f"{k}={v}\n" for k, v in self.server_properties().items()))
        if not self._formatted:
            self._format(props_file)
        log = self.log_path.open("ab")
        self._started_at = time.monotonic()
        self._log_offset = self.log_path.stat().st_size
        self._proc = subprocess.Popen(
            self._java(
                f"-Xmx{self.heap}",
                "-Xss1m",
                "-XX:+UseG1GC",
                "-Djava.awt.headless=true",
                "-cp",
                self.dist.classpath,
                "kafka.Kafka",
                str(props_file),
            ),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()

    def wait_ready(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running:
                raise HarnessError(f"cluster {self.name} exited during start-up; log:\n{self.log_tail()}")
            with self.log_path.open("rb") as f:
                f.seek(self._log_offset)
                if _READY_LINE.encode() in f.read() and _port_open(self.port):
                    self.started_in = time.monotonic() - self._started_at
                    return
            time.sleep(0.1)
        raise HarnessError(f"cluster {self.name} not ready after {timeout:.0f}s; log:\n{self.log_tail()}")

    def start(self, timeout: float = 90.0) -> None:
        self.launch()
        self.wait_ready(timeout)

    def stop(self, timeout: float = 30.0) -> None:
        """Clean shutdown (SIGTERM); SIGKILL if it does not stop in time."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None

    def kill(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self._proc = None

    def restart(self, timeout: float = 90.0) -> None:
        self.stop()
        self.start(timeout)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


class LocalKafka:
    """A set of independent clusters named by alias, started in parallel, cleaned up on close.

    ``keep_logs_in``: on close, server logs are copied there (for failing tests) before the data is removed.
    """

    def __init__(self, base_dir: Path | None = None, dist: Distribution | None = None) -> None:
        self.dist = dist or resolve_kafka()
        self._own_dir = base_dir is None
        self.base_dir = base_dir or Path(tempfile.mkdtemp(prefix="mirror-kafka-"))
        self.clusters: dict[str, LocalKafkaCluster] = {}
        self._lock = threading.Lock()

    def add(self, *names: str, extra_config: Mapping[str, str] | None = None) -> list[LocalKafkaCluster]:
        """Start clusters (in parallel) and wait until all are ready."""
        new = []
        with self._lock:
            for name in names:
                if name in self.clusters:
                    raise HarnessError(f"cluster {name} already exists")
                cluster = LocalKafkaCluster(name, self.dist, self.base_dir / name, dict(extra_config or {}))
                self.clusters[name] = cluster
                new.append(cluster)
        for cluster in new:
            cluster.launch()
        for cluster in new:
            cluster.wait_ready()
        return new

    def __getitem__(self, name: str) -> LocalKafkaCluster:
        return self.clusters[name]

    def close(self, keep_logs_in: Path | None = None) -> None:
        for cluster in self.clusters.values():
            cluster.stop()
        if keep_logs_in is not None:
            keep_logs_in.mkdir(parents=True, exist_ok=True)
            for name, cluster in self.clusters.items():
                if cluster.log_path.exists():
                    shutil.copy(cluster.log_path, keep_logs_in / f"kafka-{name}.log")
        if self._own_dir:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def __enter__(self) -> LocalKafka:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextlib.contextmanager
def local_kafka(*names: str) -> Iterator[LocalKafka]:
    with LocalKafka() as kafka:
        kafka.add(*names)
        yield kafka
