"""Security without brokers: key/trust stores (JKS, PKCS12, PEM, inline) into SSL contexts, checked with real
TLS handshakes on loopback; config providers and secret files; redaction; error classification; the
harness's secured broker settings.

``data/security/*.jks`` were written by Java 17's keytool (so the JKS reader is checked against Java, not
against itself): ``client.jks`` (store password ``store-pw``, key password ``key-pw``), ``same.jks`` (one
password, ``same-pw``, for both) hold the key and chain of ``CN=client``, issued by ``CN=mirror-test-ca``;
``trust.jks`` (``trust-pw``) holds that CA as a trusted certificate.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiokafka.errors as ke
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from mirror.config import ClusterSettings, ConfigError, load_settings, redacted
from mirror.errors import AuthenticationFailed, AuthorizationFailed, KafkaUnavailable, MirrorError, TlsFailed
from mirror.kafka import Pending, as_mirror_error, client_kwargs, security_failure, tls
from mirror.local.certs import STORE_PASSWORD, CertificateAuthority
from mirror.local.kafka import Distribution, HarnessError, LocalKafkaCluster, Security

DATA = Path(__file__).parent / "data" / "security"
SCRAM = "org.apache.kafka.common.security.scram.ScramLoginModule"
SECRET = "S3cret-Scram-Pa55"


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> CertificateAuthority:
    return CertificateAuthority(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> CertificateAuthority:
    return CertificateAuthority(tmp_path_factory.mktemp("other-ca"), "other-ca")


def cluster(**fields: Any) -> ClusterSettings:
    return ClusterSettings(alias="A", bootstrap_servers=["127.0.0.1:9093"], **fields)


def _public(pem_key: str) -> bytes:
    key = serialization.load_pem_private_key(pem_key.encode(), None)
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _cert_public(pem_cert: str) -> bytes:
    return (
        x509.load_pem_x509_certificate(pem_cert.encode())
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


def _cn(pem_cert: str) -> str:
    cert = x509.load_pem_x509_certificate(pem_cert.encode())
    return str(cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value)


# --- JKS, as Java's keytool writes it ----------------------------------------------------------------------


def test_jks_keystore_from_keytool() -> None:
    """The key decrypts (Sun's KeyProtector), matches its certificate, and the chain is leaf first."""
    content = tls.read_store(str(DATA / "client.jks"), "store-pw", "key-pw")
    assert content.key is not None
    assert [_cn(c) for c in content.chain] == ["client", "mirror-test-ca"]
    assert _public(content.key) == _cert_public(content.chain[0])
    assert content.trusted == ()


def test_jks_key_password_defaults_to_the_store_password() -> None:
    content = tls.read_store(str(DATA / "same.jks"), "same-pw", None)
    assert content.key is not None and _public(content.key) == _cert_public(content.chain[0])


def test_jks_truststore_with_and_without_its_password() -> None:
    for password in ("trust-pw", None):  # Java reads a truststore without a password (no integrity check)
        content = tls.read_store(str(DATA / "trust.jks"), password)
        assert [_cn(c) for c in content.trusted] == ["mirror-test-ca"]
        assert content.key is None


@pytest.mark.parametrize(
    ("store", "password", "key_password", "message"),
    [
        ("client.jks", "wrong", "key-pw", "the JKS store password is wrong"),
        ("client.jks", "store-pw", "wrong", "the JKS private key password is wrong"),
        ("client.jks", "store-pw", None, "the JKS private key password is wrong"),
        ("trust.jks", "wrong", None, "the JKS store password is wrong"),
    ],
)
def test_jks_wrong_passwords(store: str, password: str, key_password: str | None, message: str) -> None:
    with pytest.raises(tls.StoreError, match=message) as info:
        tls.read_store(str(DATA / store), password, key_password)
    assert "store-pw" not in str(info.value) and "wrong" not in str(info.value).replace("is wrong", "")


def test_damaged_and_unsupported_stores(tmp_path: Path) -> None:
    truncated = tmp_path / "truncated.jks"
    truncated.write_bytes((DATA / "client.jks").read_bytes()[:300])
    with pytest.raises(tls.StoreError, match="truncated or damaged"):
        tls.read_store(str(truncated), "store-pw", "key-pw")
    jceks = tmp_path / "old.jceks"
    jceks.write_bytes(bytes.fromhex("cececece00000002") + b"\0" * 40)
    with pytest.raises(
        tls.StoreError, match=r"JCEKS store.*keytool -importkeystore -srckeystore .*old\.jceks"
    ):
        tls.read_store(str(jceks), "pw")
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"not a store")
    with pytest.raises(tls.StoreError, match="is not a JKS, PKCS12 or PEM store"):
        tls.read_store(str(junk), "pw")
    with pytest.raises(tls.StoreError, match=r"cannot read .*missing.jks.*No such file"):
        tls.read_store(str(tmp_path / "missing.jks"), "pw")


# --- PKCS12 and PEM ----------------------------------------------------------------------------------------


def test_pkcs12_keystore_and_truststore(ca: CertificateAuthority) -> None:
    issued = ca.issue("p12-client")
    content = tls.read_store(str(issued.pkcs12), STORE_PASSWORD)
    assert content.key is not None and _public(content.key) == _cert_public(content.chain[0])
    assert [_cn(c) for c in content.chain] == ["p12-client", "mirror-test-ca"]
    trust = tls.read_store(str(ca.truststore_pkcs12()), STORE_PASSWORD)
    assert [_cn(c) for c in trust.trusted] == ["mirror-test-ca"] and trust.key is None
    with pytest.raises(tls.StoreError, match="the password is wrong"):
        tls.read_store(str(issued.pkcs12), "nope")


def test_store_type_comes_from_the_content(ca: CertificateAuthority, tmp_path: Path) -> None:
    """As Java's keystore.type.compat: a PKCS12 file named .jks (or declared JKS) still works."""
    renamed = tmp_path / "really-pkcs12.jks"
    renamed.write_bytes(ca.issue("p12-client").pkcs12.read_bytes())
    assert tls.sniff(renamed.read_bytes()) == "PKCS12"
    assert tls.sniff((DATA / "client.jks").read_bytes()) == "JKS"
    assert tls.read_store(str(renamed), STORE_PASSWORD).key is not None


def test_encrypted_pem_key(ca: CertificateAuthority) -> None:
    issued = ca.issue("pem-client")
    text = issued.encrypted_key.read_text() + issued.cert.read_text()
    content = tls._read_pem(text, STORE_PASSWORD)
    assert content.key is not None and _public(content.key) == _cert_public(content.chain[0])
    with pytest.raises(tls.StoreError, match=r"ssl\.key\.password\) is wrong or missing"):
        tls._read_pem(text, None)


def test_store_reads_are_cached_until_the_file_changes(ca: CertificateAuthority, tmp_path: Path) -> None:
    path = tmp_path / "store.p12"
    path.write_bytes(ca.issue("cached-a").pkcs12.read_bytes())
    first = tls.read_store(str(path), STORE_PASSWORD)
    assert tls.read_store(str(path), STORE_PASSWORD) is first
    path.write_bytes(ca.issue("cached-b-longer-name").pkcs12.read_bytes())
    assert _cn(tls.read_store(str(path), STORE_PASSWORD).chain[0]) == "cached-b-longer-name"


# --- SSL contexts, checked by real TLS handshakes -------------------------------------------------------


@pytest.fixture(scope="module")
def tls_server(ca: CertificateAuthority) -> Iterator[int]:
    """A loopback TLS server requiring a client certificate from ``ca``; it answers the client's common
    name.

    Blocking sockets in a thread: a refused handshake sends its TLS alert before the connection closes, as
    a broker does (an asyncio server closes the transport without sending it, and a client without a
    certificate would see only the connection end, so the refusal could not be checked)."""
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(ca.ca_file))
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    server_cert = ca.issue("broker", server=True)
    server_ctx.load_cert_chain(str(server_cert.bundle))
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    port = listener.getsockname()[1]
    done = threading.Event()

    def serve() -> None:
        while not done.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            conn.settimeout(5)
            try:
                with server_ctx.wrap_socket(conn, server_side=True) as tls_conn:
                    peer: Any = tls_conn.getpeercert() or {}
                    name = dict(item[0] for item in peer.get("subject", ())).get("commonName", "?")
                    tls_conn.sendall(name.encode())
            except (ssl.SSLError, OSError):
                conn.close()  # a refused handshake: OpenSSL sent its alert already

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield port
    done.set()
    thread.join(5)
    listener.close()


async def handshake(port: int, ctx: ssl.SSLContext) -> str:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx)
    try:
        return (await asyncio.wait_for(reader.read(100), 5)).decode()
    finally:
        writer.close()


def _forms(ca: CertificateAuthority, tmp_path: Path) -> dict[str, dict[str, Any]]:
    issued = ca.issue("mirror")
    return {
        "pem files": {"ssl_cafile": str(ca.ca_file), "ssl_certfile": str(issued.bundle)},
        "pem cert and key files, encrypted key": {
            "ssl_cafile": str(ca.ca_file),
            "ssl_certfile": str(issued.cert),
            "ssl_keyfile": str(issued.encrypted_key),
            "ssl_password": STORE_PASSWORD,
        },
        "pkcs12 stores": {
            "ssl_truststore_location": str(ca.truststore_pkcs12()),
            "ssl_truststore_password": STORE_PASSWORD,
            "ssl_keystore_location": str(issued.pkcs12),
            "ssl_keystore_password": STORE_PASSWORD,
        },
        "inline pem": {
            "ssl_truststore_certificates": ca.ca_pem,
            "ssl_keystore_certificate_chain": issued.cert.read_text(),
            "ssl_keystore_key": issued.key.read_text(),
        },
    }


@pytest.mark.parametrize(
    "form", ["pem files", "pem cert and key files, encrypted key", "pkcs12 stores", "inline pem"]
)
async def test_client_context_forms_handshake(
    form: str, ca: CertificateAuthority, tls_server: int, tmp_path: Path
) -> None:
    settings = cluster(security_protocol="SSL", **_forms(ca, tmp_path)[form])
    ctx = client_kwargs(settings, "admin")["ssl_context"]
    assert await handshake(tls_server, ctx) == "mirror"


async def test_untrusted_server_and_missing_client_certificate(
    ca: CertificateAuthority, other_ca: CertificateAuthority, tls_server: int
) -> None:
    untrusting = tls.client_context(cluster(security_protocol="SSL", ssl_cafile=str(other_ca.ca_file)))
    with pytest.raises(ssl.SSLCertVerificationError) as info:
        await handshake(tls_server, untrusting)
    err = security_failure(info.value, cluster(security_protocol="SSL"))
    assert isinstance(err, TlsFailed) and err.kind == "tls"
    assert str(err).startswith("cluster A: TLS: the broker's certificate is not trusted")
    # without a client certificate: TLS 1.3 ends the client's handshake before the server checked it, so
    # the refusal arrives as the server's alert on the first read
    no_cert = tls.client_context(cluster(security_protocol="SSL", ssl_cafile=str(ca.ca_file)))
    with pytest.raises(ssl.SSLError) as refused:
        await handshake(tls_server, no_cert)
    assert refused.value.reason == "TLSV13_ALERT_CERTIFICATE_REQUIRED", refused.value
    err = security_failure(refused.value, cluster(security_protocol="SSL"))
    assert isinstance(err, TlsFailed) and err.kind == "tls"
    assert str(err).startswith(
        "cluster A: TLS: the broker rejected our client certificate (TLSV13_ALERT_CERTIFICATE_REQUIRED)"
    )


def test_client_context_failures_name_cluster_and_key(ca: CertificateAuthority, tmp_path: Path) -> None:
    missing = cluster(security_protocol="SSL", ssl_truststore_location=str(tmp_path / "nope.jks"))
    with pytest.raises(TlsFailed, match=r"^cluster A: A\.ssl\.truststore\.location: cannot read"):
        tls.client_context(missing)
    wrong = cluster(
        security_protocol="SSL",
        ssl_cafile=str(ca.ca_file),
        ssl_keystore_location=str(DATA / "client.jks"),
        ssl_keystore_password="guess-1",
        ssl_password="guess-2",
    )
    with pytest.raises(TlsFailed) as info:
        tls.client_context(wrong)
    assert str(info.value).startswith("cluster A: A.ssl.keystore.location: the JKS store password is wrong")
    assert "guess" not in str(info.value)
    with pytest.raises(TlsFailed, match="cannot load the CA file"):
        tls.client_context(cluster(security_protocol="SSL", ssl_cafile=str(tmp_path / "ca.pem")))
    half = cluster(security_protocol="SSL", ssl_cafile=str(ca.ca_file), ssl_keystore_key="x")
    with pytest.raises(TlsFailed, match="go together"):
        tls.client_context(half)


def test_jks_stores_from_mm2_properties(tmp_path: Path) -> None:
    """An unchanged Java config with JKS stores loads; the SSL context trusts the store's CA."""
    path = tmp_path / "mm2.properties"
    path.write_text(
        "clusters = A, B\nA.bootstrap.servers = a:9093\nB.bootstrap.servers = b:9092\n"
        "A.security.protocol = SSL\n"
        f"A.ssl.truststore.location = {DATA / 'trust.jks'}\nA.ssl.truststore.password = trust-pw\n"
        f"A.ssl.keystore.location = {DATA / 'client.jks'}\nA.ssl.keystore.password = store-pw\n"
        "A.ssl.key.password = key-pw\n"
    )
    settings = load_settings(path, env={}).settings
    a = settings.cluster("A")
    assert a.ssl_truststore_location == str(DATA / "trust.jks")
    assert a.ssl_keystore_location == str(DATA / "client.jks")
    ctx = tls.client_context(a)
    assert ["mirror-test-ca" in str(c["subject"]) for c in ctx.get_ca_certs()] == [True]
    dump = redacted(settings)["clusters"]["A"]
    assert (
        dump["ssl_keystore_password"] == dump["ssl_truststore_password"] == dump["ssl_password"] == "********"
    )


# --- config providers and secret files -----------------------------------------------------------------


PROVIDERS = """\
config.providers = file, dir, env
config.providers.file.class = org.apache.kafka.common.config.provider.FileConfigProvider
config.providers.dir.class = org.apache.kafka.common.config.provider.DirectoryConfigProvider
config.providers.env.class = org.apache.kafka.common.config.provider.EnvVarConfigProvider
"""


def _mm2(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mm2.properties"
    path.write_text("clusters = A, B\nA.bootstrap.servers = a:9093\nB.bootstrap.servers = b:9092\n" + text)
    return path


def test_config_providers_file_dir_and_env(tmp_path: Path) -> None:
    creds = tmp_path / "creds.properties"
    creds.write_text("user = mirror\npassword = " + SECRET + "\n")
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "keystore-password").write_text("ks-" + SECRET)
    path = _mm2(
        tmp_path,
        PROVIDERS + "A.security.protocol = SASL_SSL\nA.sasl.mechanism = SCRAM-SHA-512\n"
        f'A.sasl.jaas.config = {SCRAM} required username="${{file:{creds}:user}}" '
        f'password="${{file:{creds}:password}}";\n'
        f"A.ssl.keystore.password = ${{dir:{secrets}:keystore-password}}\n"
        "A.ssl.key.password = ${env:KEY_PASSWORD}\n"
        "B.client.id = ${unknown:left-as-written}\n",
    )
    settings = load_settings(path, env={"KEY_PASSWORD": "env-" + SECRET}).settings
    a = settings.cluster("A")
    assert a.sasl_username == "mirror"
    assert a.sasl_password is not None and a.sasl_password.get_secret_value() == SECRET
    assert (
        a.ssl_keystore_password is not None and a.ssl_keystore_password.get_secret_value() == "ks-" + SECRET
    )
    assert a.ssl_password is not None and a.ssl_password.get_secret_value() == "env-" + SECRET
    assert settings.cluster("B").properties["client.id"] == "${unknown:left-as-written}"
    assert SECRET not in str(redacted(settings)) and SECRET not in repr(settings)


@pytest.mark.parametrize(
    ("line", "env", "message"),
    [
        ("A.ssl.key.password = ${env:NOT_SET}", {}, "environment variable NOT_SET is not set"),
        ("A.ssl.key.password = ${file:/nonexistent/x.properties:pw}", {}, "No such file"),
        ("A.ssl.key.password = ${dir:/nonexistent:pw}", {}, "No such file"),
        ("A.ssl.key.password = ${dir:/etc:../passwd}", {}, "a file name in the directory"),
    ],
)
def test_unresolvable_variables_name_the_key_not_the_value(
    tmp_path: Path, line: str, env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(_mm2(tmp_path, PROVIDERS + line + "\n"), env=env)
    assert info.value.key == "A.ssl.key.password"
    assert info.value.value is None
    assert message in str(info.value)


def test_env_provider_allowlist_and_unknown_provider_classes(tmp_path: Path) -> None:
    text = PROVIDERS + "config.providers.env.param.allowlist.pattern = MIRROR_.*\n"
    with pytest.raises(ConfigError, match=r"does not match the provider.s allowlist.pattern"):
        load_settings(_mm2(tmp_path, text + "A.ssl.key.password = ${env:HOME}\n"), env={"HOME": "/root"})
    bad = "config.providers = vault\nconfig.providers.vault.class = com.example.Vault\n"
    with pytest.raises(ConfigError, match=r"config.providers.vault.class: unsupported config provider"):
        load_settings(_mm2(tmp_path, bad), env={})


def test_secret_files_in_yaml_and_environment(tmp_path: Path) -> None:
    """``<secret>_file`` reads Kubernetes/Docker secret mounts (a trailing newline is dropped)."""
    password_file = tmp_path / "a-password"
    password_file.write_text(SECRET + "\n")
    config = tmp_path / "mirror.yaml"
    config.write_text(
        "clusters:\n"
        "  A:\n"
        "    bootstrap_servers: a:9093\n"
        "    security_protocol: SASL_SSL\n"
        "    sasl_mechanism: SCRAM-SHA-512\n"
        "    sasl_username: mirror\n"
        f"    sasl_password_file: {password_file}\n"
        "  B: {bootstrap_servers: 'b:9092'}\n"
    )
    env = {"MIRROR_CLUSTERS__B__SSL_KEYSTORE_PASSWORD_FILE": str(password_file)}
    settings = load_settings(config, env=env).settings
    a = settings.cluster("A")
    assert a.sasl_password is not None and a.sasl_password.get_secret_value() == SECRET
    b = settings.cluster("B")
    assert b.ssl_keystore_password is not None and b.ssl_keystore_password.get_secret_value() == SECRET
    dump = redacted(settings)["clusters"]["A"]
    assert dump["sasl_password_file"] == str(password_file)  # where, not what
    assert SECRET not in str(redacted(settings))


def test_secret_file_problems(tmp_path: Path) -> None:
    config = tmp_path / "mirror.yaml"
    config.write_text(
        "clusters:\n  A: {bootstrap_servers: 'a:1', ssl_password_file: /nonexistent/pw, ssl_password: x}\n"
    )
    with pytest.raises(ConfigError, match=r"clusters.A.ssl_password_file: invalid value \(both set\)"):
        load_settings(config, env={})
    config.write_text("clusters:\n  A: {bootstrap_servers: 'a:1', ssl_password_file: /nonexistent/pw}\n")
    with pytest.raises(ConfigError, match=r"clusters.A.ssl_password_file: cannot read '/nonexistent/pw'"):
        load_settings(config, env={})


# --- errors: authentication, TLS, authorization --------------------------------------------------------


SASL_CLUSTER = {
    "security_protocol": "SASL_SSL",
    "sasl_mechanism": "SCRAM-SHA-512",
    "sasl_username": "mirror",
    "sasl_password": SECRET,
}


@pytest.mark.parametrize(
    ("exc", "kind", "text"),
    [
        (
            ke.SaslAuthenticationFailed(
                "Authentication failed due to invalid credentials with SASL mechanism"
            ),
            AuthenticationFailed,
            "cluster A: authentication failed (SASL SCRAM-SHA-512 as user 'mirror'): Authentication failed",
        ),
        (
            ke.UnsupportedSaslMechanismError(object()),
            AuthenticationFailed,
            "does not enable SASL mechanism SCRAM-SHA-512",
        ),
        (
            ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed"),
            TlsFailed,
            "cluster A: TLS: the broker's certificate is not trusted",
        ),
        (
            asyncio.IncompleteReadError(b"\x15\x03\x03", 352518912),
            TlsFailed,
            "the listener speaks TLS but security.protocol is SASL_SSL",
        ),
    ],
)
def test_security_failures_are_classified(exc: BaseException, kind: type[MirrorError], text: str) -> None:
    settings = cluster(**SASL_CLUSTER)
    wrapped = ke.KafkaConnectionError("Connection at 127.0.0.1:9093 closed")
    wrapped.__cause__ = exc
    for candidate in (exc, wrapped):
        err = as_mirror_error(candidate, settings)
        assert isinstance(err, kind), err
        assert text in str(err)
        assert SECRET not in str(err)


def test_client_certificate_rejection_and_plain_errors() -> None:
    alert = ssl.SSLError(1, "[SSL: SSLV3_ALERT_BAD_CERTIFICATE] sslv3 alert bad certificate")
    alert.reason = "SSLV3_ALERT_BAD_CERTIFICATE"
    err = security_failure(alert, cluster(security_protocol="SSL"))
    assert isinstance(err, TlsFailed) and "rejected our client certificate" in str(err)
    assert security_failure(ke.KafkaConnectionError("refused"), cluster()) is None
    assert isinstance(
        as_mirror_error(ke.KafkaConnectionError("Unable to bootstrap"), cluster()), KafkaUnavailable
    )


def test_authorization_errors_name_topic_and_operation() -> None:
    err = as_mirror_error(ke.TopicAuthorizationFailedError("orders"), cluster())
    assert isinstance(err, AuthorizationFailed) and err.kind == "authorization"
    assert str(err).startswith(
        "cluster A: not authorized to use topic 'orders' (TopicAuthorizationFailedError)"
    )
    group = as_mirror_error(ke.GroupAuthorizationFailedError("g1"))
    assert "not authorized to use consumer group 'g1'" in str(group)
    # a message rather than a name keeps the message
    assert "fetch offsets of g: x" in str(
        as_mirror_error(ke.TopicAuthorizationFailedError("fetch offsets of g: x"))
    )


async def test_produce_denied_names_write_and_topic() -> None:
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    future.set_exception(ke.TopicAuthorizationFailedError("A.orders"))
    with pytest.raises(AuthorizationFailed, match=r"not authorized to WRITE to topic 'A.orders'"):
        await Pending(future).ack()


async def test_flow_start_failures_logged_once_and_reported() -> None:
    """A wrong password retried with backoff: one log line per distinct error, every failure reported."""
    from mirror.service import worker  # noqa: PLC0415

    failures: list[MirrorError] = []
    attempts = 0
    stopping = asyncio.Event()

    async def attempt() -> None:
        nonlocal attempts
        attempts += 1
        if attempts == 4:
            stopping.set()
        raise AuthenticationFailed("cluster A: authentication failed (SASL PLAIN as user 'u'): bad")

    logged: list[str] = []
    original = worker.log

    class Capture:
        def error(self, event: str, **kw: Any) -> None:
            logged.append(f"error {event} {kw['error']}")

        def warning(self, event: str, **kw: Any) -> None:
            logged.append(f"warning {event}")

        def debug(self, event: str, **kw: Any) -> None:
            logged.append("debug")

    worker.log = Capture()
    old_min = worker._BACKOFF_MIN
    worker._BACKOFF_MIN = 0.001
    try:
        assert not await worker._retrying("flow A->B start", attempt, stopping, failures.append)
    finally:
        worker.log = original
        worker._BACKOFF_MIN = old_min
    assert len(failures) == 4 and all(f.kind == "authentication" for f in failures)
    assert logged[0].startswith("error flow A->B start failed, retrying cluster A: authentication failed")
    assert logged[1:] == ["debug"] * 3


# --- the harness's secured brokers (configuration only, no JVM) ----------------------------------------


def _broker(tmp_path: Path, security: Security, ca: CertificateAuthority | None) -> LocalKafkaCluster:
    dist = Distribution("kafka", "4.4.0", tmp_path)
    return LocalKafkaCluster("S", dist, tmp_path / "S", security=security, tls=ca)


def test_harness_sasl_plain_with_standard_authorizer(tmp_path: Path) -> None:
    security = Security.sasl_plaintext(
        {"admin": "admin-pw", "alice": "alice-pw"}, authorizer=True, super_users=["User:admin"]
    )
    broker = _broker(tmp_path, security, None)
    props = broker.server_properties()
    assert (
        props["listener.security.protocol.map"]
        == "CONTROLLER:PLAINTEXT,INTERNAL:PLAINTEXT,CLIENT:SASL_PLAINTEXT"
    )
    assert props["authorizer.class.name"] == "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
    assert props["super.users"] == "User:ANONYMOUS;User:admin"
    assert 'user_alice="alice-pw"' in props["listener.name.client.plain.sasl.jaas.config"]
    assert broker.internal_bootstrap_servers != broker.bootstrap_servers
    client = broker.client_properties("alice")
    assert client["security.protocol"] == "SASL_PLAINTEXT" and client["sasl.mechanism"] == "PLAIN"
    assert 'username="alice" password="alice-pw"' in client["sasl.jaas.config"]
    with pytest.raises(HarnessError, match="no SASL user 'bob'"):
        broker.client_properties("bob")


def test_harness_tls_listeners(tmp_path: Path, ca: CertificateAuthority) -> None:
    mtls = _broker(tmp_path, Security.mtls(), ca).server_properties()
    assert mtls["listener.name.client.ssl.client.auth"] == "required"
    assert mtls["listener.name.client.ssl.keystore.type"] == "PKCS12"
    scram = _broker(tmp_path, Security.sasl_ssl({"alice": "pw"}), ca)
    assert scram.server_properties()["listener.name.client.sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    client = scram.client_properties("alice", certificate="mirror")
    assert client["ssl.truststore.location"] == str(ca.ca_file)
    assert Path(client["ssl.keystore.location"]).exists()
    assert pkcs12.load_pkcs12(
        ca.issue("broker", server=True).pkcs12.read_bytes(), STORE_PASSWORD.encode()
    ).key
    with pytest.raises(HarnessError):
        Security("SASL_SSL", None)
    with pytest.raises(HarnessError, match="must not contain"):
        Security.sasl_ssl({"alice": "a,b"})


def test_security_from_the_environment_with_client_overrides(tmp_path: Path) -> None:
    """The same settings as MIRROR_* variables; per-cluster and per-flow client overrides still apply."""
    path = _mm2(tmp_path, "A->B.consumer.max.poll.records = 77\nB.producer.linger.ms = 9\n")
    env = {
        "MIRROR_CLUSTERS__A__SECURITY_PROTOCOL": "SASL_SSL",
        "MIRROR_CLUSTERS__A__SASL_MECHANISM": "SCRAM-SHA-256",
        "MIRROR_CLUSTERS__A__SASL_USERNAME": "mirror",
        "MIRROR_CLUSTERS__A__SASL_PASSWORD": SECRET,
        "MIRROR_CLUSTERS__A__SSL_TRUSTSTORE_LOCATION": str(DATA / "trust.jks"),
        "MIRROR_CLUSTERS__A__CONSUMER__fetch.max.wait.ms": "123",
    }
    settings = load_settings(path, env=env).settings
    a, flow = settings.cluster("A"), settings.flows["A->B"]
    consumer = client_kwargs(a, "consumer", flow.consumer)
    assert consumer["security_protocol"] == "SASL_SSL" and consumer["sasl_mechanism"] == "SCRAM-SHA-256"
    assert consumer["sasl_plain_username"] == "mirror" and consumer["sasl_plain_password"] == SECRET
    assert consumer["fetch_max_wait_ms"] == 123 and consumer["max_poll_records"] == 77
    assert isinstance(consumer["ssl_context"], ssl.SSLContext)
    producer = client_kwargs(settings.cluster("B"), "producer", flow.producer)
    assert producer["linger_ms"] == 9 and "ssl_context" not in producer
    assert SECRET not in repr(settings) and SECRET not in str(redacted(settings))
