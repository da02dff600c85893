"""Real Apache Kafka on loopback: resolve the broker jars from Maven Central, run single-node KRaft clusters.

Serves the integration tests, ``mirror demo`` and the benchmark. Jars are resolved with the machine's
``mvn`` and the small pom next to this module, and cached outside the repository (``MIRROR_CACHE_DIR``,
default ``~/.cache/mirror``). ``MIRROR_KAFKA_VERSION`` selects a version; by default the newest 4.x
release that resolves is used. 3.9.x works too (static quorum, no share-coordinator settings).

Everything here is synchronous (subprocesses and sockets); async callers wrap it in ``asyncio.to_thread``.

Security (``LocalKafka.add(name, security=Security...)``): the client listener can be SSL (optionally with
client certificates required), SASL_SSL or SASL_PLAINTEXT (PLAIN or SCRAM users), optionally with the
StandardAuthorizer. Certificates come from one test CA per harness (`mirror.local.certs`), generated once.
The controller and inter-broker listeners stay PLAINTEXT on loopback; the inter-broker one is also
advertised (``internal_bootstrap_servers``) so that tests have an all-powerful oracle (its principal,
``User:ANONYMOUS``, is a super user when an authorizer runs, as the controller link needs).
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from mirror.local.certs import CertificateAuthority

#: Newest first; the first that resolves is the default.
KAFKA_VERSIONS = ("4.4.0", "4.3.1", "4.2.0", "4.1.1", "4.0.0")
#: Java MirrorMaker 2 (connect-mirror) is published later than the broker: 4.4.0 does not resolve yet.
MIRRORMAKER_VERSIONS = ("4.4.0", "4.3.1", "4.2.0", "4.1.1", "4.0.0")

_HERE = Path(__file__).resolve().parent
_READY_LINE = "Kafka Server started"
_STANDARD_AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
_LOGIN_MODULES = {
    "PLAIN": "org.apache.kafka.common.security.plain.PlainLoginModule",
    "SCRAM-SHA-256": "org.apache.kafka.common.security.scram.ScramLoginModule",
    "SCRAM-SHA-512": "org.apache.kafka.common.security.scram.ScramLoginModule",
}


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


Mechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
_UNSAFE = ',]"\\ '


@dataclass(frozen=True)
class Security:
    """How the client listener of a local cluster is secured.

    ``users`` (name -> password) are SASL users: SCRAM credentials are created when the storage is
    formatted, PLAIN users are listed in the listener's JAAS config (neither may contain ``,]"\\`` or
    blanks). With ``client_auth`` an SSL/SASL_SSL listener requires client certificates
    from the harness CA; their principal is ``User:<common name>``. ``authorizer`` runs Kafka's
    StandardAuthorizer with ``super_users`` (principals such as ``User:admin``; ``User:ANONYMOUS``, the
    PLAINTEXT controller and internal listeners, is always added). ``allow_everyone_if_no_acl_found``
    is Kafka's setting of that name.
    """

    protocol: Literal["SSL", "SASL_SSL", "SASL_PLAINTEXT"]
    mechanism: Mechanism | None = None
    users: Mapping[str, str] = field(default_factory=dict)
    client_auth: bool = False
    authorizer: bool = False
    super_users: tuple[str, ...] = ()
    allow_everyone_if_no_acl_found: bool = False

    def __post_init__(self) -> None:
        if self.protocol.startswith("SASL_") != (self.mechanism is not None):
            raise HarnessError(f"{self.protocol}: a SASL mechanism is needed exactly for SASL_* protocols")
        for name, password in self.users.items():
            if not name or any(c in _UNSAFE for c in name + password) or "=" in name:
                raise HarnessError(
                    f"SASL user {name!r}: names and passwords must not contain {_UNSAFE} (or = in names)"
                )

    @classmethod
    def sasl_ssl(
        cls,
        users: Mapping[str, str],
        mechanism: Mechanism = "SCRAM-SHA-512",
        *,
        client_auth: bool = False,
        authorizer: bool = False,
        super_users: Sequence[str] = (),
        allow_everyone_if_no_acl_found: bool = False,
    ) -> Security:
        """SASL over TLS (SCRAM-SHA-512 users by default)."""
        return cls(
            "SASL_SSL",
            mechanism,
            dict(users),
            client_auth,
            authorizer,
            tuple(super_users),
            allow_everyone_if_no_acl_found,
        )

    @classmethod
    def mtls(
        cls,
        *,
        authorizer: bool = False,
        super_users: Sequence[str] = (),
        allow_everyone_if_no_acl_found: bool = False,
    ) -> Security:
        """TLS with client certificates required (principal ``User:<common name>``)."""
        return cls("SSL", None, {}, True, authorizer, tuple(super_users), allow_everyone_if_no_acl_found)

    @classmethod
    def sasl_plaintext(
        cls,
        users: Mapping[str, str],
        mechanism: Mechanism = "PLAIN",
        *,
        authorizer: bool = False,
        super_users: Sequence[str] = (),
        allow_everyone_if_no_acl_found: bool = False,
    ) -> Security:
        """SASL without TLS (PLAIN users by default), e.g. ``authorizer=True, super_users=["User:admin"]``."""
        return cls(
            "SASL_PLAINTEXT",
            mechanism,
            dict(users),
            False,
            authorizer,
            tuple(super_users),
            allow_everyone_if_no_acl_found,
        )


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
    security: Security | None = None
    tls: CertificateAuthority | None = None  # needed by SSL and SASL_SSL listeners
    internal_port: int = field(default_factory=free_port)  # PLAINTEXT inter-broker listener (secured only)
    #: A second PLAINTEXT listener, ``PROXIED`` on ``proxied_port``, advertised at ``proxy_port``, where a
    #: proxy in front of it listens (the benchmark's WAN latency proxy, `bench.wan`): metadata sends a client
    #: that bootstrapped at ``proxied_bootstrap_servers`` back to the proxy, so all its traffic passes it.
    proxied: bool = False
    proxied_port: int = field(default_factory=free_port)
    proxy_port: int = field(default_factory=free_port)
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _formatted: bool = field(default=False, init=False, repr=False)
    started_in: float = field(default=0.0, init=False)

    @property
    def bootstrap_servers(self) -> str:
        """The client listener (secured as ``security`` says)."""
        return f"127.0.0.1:{self.port}"

    @property
    def internal_bootstrap_servers(self) -> str:
        """A PLAINTEXT listener without authentication (a super user under an authorizer): the tests'
        oracle. The same as ``bootstrap_servers`` for an unsecured cluster."""
        return self.bootstrap_servers if self.security is None else f"127.0.0.1:{self.internal_port}"

    @property
    def proxied_bootstrap_servers(self) -> str:
        """The proxy's address in front of the ``PROXIED`` listener (``proxied=True`` clusters)."""
        if not self.proxied:
            raise HarnessError(f"cluster {self.name} has no proxied listener (proxied=True)")
        return f"127.0.0.1:{self.proxy_port}"

    def client_properties(self, user: str | None = None, *, certificate: str | None = None) -> dict[str, str]:
        """Java client keys (as in mm2.properties, without the ``<alias>.`` prefix) to reach the client
        listener: the SASL ``user`` (one of ``security.users``) and, for client authentication, a client
        certificate issued by the harness CA for the common name ``certificate``. PEM files only."""
        security = self.security
        if security is None:
            return {"bootstrap.servers": self.bootstrap_servers}
        props = {"bootstrap.servers": self.bootstrap_servers, "security.protocol": security.protocol}
        if security.protocol in ("SSL", "SASL_SSL"):
            tls = self._tls()
            props["ssl.truststore.type"] = "PEM"
            props["ssl.truststore.location"] = str(tls.ca_file)
            if certificate is not None:
                props["ssl.keystore.type"] = "PEM"
                props["ssl.keystore.location"] = str(tls.issue(certificate).bundle)
        if security.mechanism is not None and user is not None:
            if user not in security.users:
                raise HarnessError(f"cluster {self.name} has no SASL user {user!r}")
            props["sasl.mechanism"] = security.mechanism
            props["sasl.jaas.config"] = (
                f'{_LOGIN_MODULES[security.mechanism]} required username="{user}" '
                f'password="{security.users[user]}";'
            )
        return props

    def _tls(self) -> CertificateAuthority:
        if self.tls is None:
            raise HarnessError(f"cluster {self.name}: a TLS listener needs the harness CA (tls=...)")
        return self.tls

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
        if self.proxied:
            if self.security is not None:
                raise HarnessError(f"cluster {self.name}: a proxied listener needs an unsecured cluster")
            props["listeners"] += f",PROXIED://127.0.0.1:{self.proxied_port}"
            props["advertised.listeners"] += f",PROXIED://127.0.0.1:{self.proxy_port}"
            props["listener.security.protocol.map"] += ",PROXIED:PLAINTEXT"
        if self.security is not None:
            props.update(self._security_properties(self.security))
        props.update(self.extra_config)
        return props

    def _security_properties(self, security: Security) -> dict[str, str]:
        """A secured CLIENT listener, a PLAINTEXT INTERNAL one (inter-broker, tests' oracle)."""
        internal = f"INTERNAL://127.0.0.1:{self.internal_port}"
        props = {
            "listeners": f"CLIENT://127.0.0.1:{self.port},{internal},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"CLIENT://127.0.0.1:{self.port},{internal}",
            "inter.broker.listener.name": "INTERNAL",
            "listener.security.protocol.map": (
                f"CONTROLLER:PLAINTEXT,INTERNAL:PLAINTEXT,CLIENT:{security.protocol}"
            ),
        }
        prefix = "listener.name.client."
        if security.protocol in ("SSL", "SASL_SSL"):
            tls = self._tls()
            from mirror.local.certs import STORE_PASSWORD  # noqa: PLC0415 (cryptography only when needed)

            server = tls.issue("broker", server=True)
            props |= {
                f"{prefix}ssl.keystore.type": "PKCS12",
                f"{prefix}ssl.keystore.location": str(server.pkcs12),
                f"{prefix}ssl.keystore.password": STORE_PASSWORD,
                f"{prefix}ssl.key.password": STORE_PASSWORD,
                f"{prefix}ssl.truststore.type": "PEM",
                f"{prefix}ssl.truststore.location": str(tls.ca_file),
                f"{prefix}ssl.client.auth": "required" if security.client_auth else "none",
                # client certificates carry only a common name: the principal is User:<that name>
                "ssl.principal.mapping.rules": "RULE:^CN=([^,]*)$/$1/,DEFAULT",
            }
        if security.mechanism is not None:
            mechanism = security.mechanism
            module = _LOGIN_MODULES[mechanism]
            users = (
                "".join(f' user_{name}="{password}"' for name, password in security.users.items())
                if mechanism == "PLAIN"
                else ""
            )
            props |= {
                f"{prefix}sasl.enabled.mechanisms": mechanism,
                f"{prefix}{mechanism.lower()}.sasl.jaas.config": f"{module} required{users};",
            }
        if security.authorizer:
            supers = dict.fromkeys(["User:ANONYMOUS", *security.super_users])
            props |= {
                "authorizer.class.name": _STANDARD_AUTHORIZER,
                "super.users": ";".join(supers),
                "allow.everyone.if.no.acl.found": str(security.allow_everyone_if_no_acl_found).lower(),
            }
        return props

    def _java(self, *args: str) -> list[str]:
        return [_require("java"), *args]

    def _format(self, props_file: Path) -> None:
        cp = self.dist.classpath
        cluster_id = _cluster_id()  # what `StorageTool random-uuid` prints, without starting a JVM for it
        scram: list[str] = []
        security = self.security
        if security is not None and security.mechanism is not None and security.mechanism.startswith("SCRAM"):
            for name, password in security.users.items():
                scram += ["--add-scram", f"{security.mechanism}=[name={name},password={password}]"]
        proc = subprocess.run(
            self._java(
                "-cp",
                cp,
                "kafka.tools.StorageTool",
                "format",
                "-t",
                cluster_id,
                "-c",
                str(props_file),
                *scram,
            ),
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

    def pause(self) -> None:
        """Freeze the broker (SIGSTOP to its process group): connections stay open, nothing answers,
        as in a network partition. Callers must `resume` it (in a ``finally``): a paused broker cannot
        even stop cleanly, and clusters are shared by a whole test session."""
        if not self.running:
            raise HarnessError(f"cluster {self.name} is not running: cannot pause it")
        assert self._proc is not None
        os.killpg(self._proc.pid, signal.SIGSTOP)  # its own process group: started with a new session

    def resume(self) -> None:
        """Let a paused broker run again (SIGCONT); harmless when it is not paused."""
        if self.running:
            assert self._proc is not None
            os.killpg(self._proc.pid, signal.SIGCONT)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def _cluster_id() -> str:
    """A random Kafka ``Uuid`` in its base64 form (never starting with '-', as Kafka's ``randomUuid``)."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


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
        self._tls: CertificateAuthority | None = None

    @property
    def tls(self) -> CertificateAuthority:
        """The harness's test CA (created on first use, in ``base_dir/tls``): it signs every broker
        certificate; ``tls.issue(name)`` gives client certificates with the common name ``name``."""
        with self._lock:
            if self._tls is None:
                from mirror.local.certs import CertificateAuthority  # noqa: PLC0415

                self._tls = CertificateAuthority(self.base_dir / "tls")
            return self._tls

    def add(
        self,
        *names: str,
        extra_config: Mapping[str, str] | None = None,
        security: Security | Mapping[str, Security | None] | None = None,
        proxied: bool = False,
    ) -> list[LocalKafkaCluster]:
        """Start clusters (in parallel) and wait until all are ready.

        ``security`` secures every new cluster's client listener alike, or, as a mapping, each named one
        its own way (clusters not in the mapping are unsecured). ``proxied`` gives each new cluster a
        listener advertised at a proxy's port (`LocalKafkaCluster.proxied`).
        """
        per_name = security if isinstance(security, Mapping) else dict.fromkeys(names, security)
        tls = (
            self.tls
            if any(s is not None and s.protocol != "SASL_PLAINTEXT" for s in per_name.values())
            else None
        )
        new = []
        with self._lock:
            for name in names:
                if name in self.clusters:
                    raise HarnessError(f"cluster {name} already exists")
                cluster = LocalKafkaCluster(
                    name,
                    self.dist,
                    self.base_dir / name,
                    dict(extra_config or {}),
                    security=per_name.get(name),
                    tls=tls,
                    proxied=proxied,
                )
                self.clusters[name] = cluster
                new.append(cluster)
        with ThreadPoolExecutor(max(1, len(new))) as pool:  # storage formats run in parallel too
            list(pool.map(LocalKafkaCluster.launch, new))
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
