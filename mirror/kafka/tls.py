"""TLS for Kafka clients: an ``ssl.SSLContext`` from a cluster's settings, whatever form Java would accept.

Java clients read trust and key material from JKS or PKCS12 stores, from PEM files (``*.type=PEM``) or from
PEM text inlined in the config (``ssl.truststore.certificates``, ``ssl.keystore.certificate.chain``,
``ssl.keystore.key``). Python's ``ssl`` module reads only PEM files, so stores are converted in memory:

- **PKCS12** with ``cryptography``;
- **JKS** by a small reader of Sun's format here (a trusted-certificate or private-key entry, the key
  protected with Sun's SHA-1 ``KeyProtector``, the store with its SHA-1 integrity digest). **JCEKS** and
  other types are refused with the ``keytool`` command that converts them to PKCS12.

As with Java's ``keystore.type.compat``, a store's format is recognised from its content, so a PKCS12 file
declared ``JKS`` (or the reverse) still works. A converted private key never touches the disk: it is handed
to OpenSSL through an anonymous in-memory file (``memfd``; elsewhere a private temporary file removed at
once). Converted material is cached per (file, size, mtime, passwords), so clients are cheap to build and a
replaced file is read again.

Every failure is a :class:`~mirror.errors.TlsFailed` naming the cluster and the key as written in
mm2.properties (``A.ssl.keystore.location``), with what to do about it; never a password or a key.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import ssl
import struct
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mirror.errors import TlsFailed

if TYPE_CHECKING:
    from mirror.config import ClusterSettings

#: Store types Java names, and what to do with the ones this module cannot read.
SUPPORTED_STORE_TYPES = ("JKS", "PKCS12", "PEM")
_JKS_MAGIC, _JCEKS_MAGIC = 0xFEEDFEED, 0xCECECECE
_JKS_KEY_ENTRY, _JKS_CERT_ENTRY = 1, 2
# 1.3.6.1.4.1.42.2.17.1.1, Sun's proprietary key protection of JKS private keys, as a DER OID.
_SUN_KEY_PROTECTOR = bytes.fromhex("060a2b060104012a02110101")


def conversion_hint(location: str, store_type: str) -> str:
    """The keytool command converting a store Java reads but we cannot into PKCS12."""
    return (
        f"convert it to PKCS12: keytool -importkeystore -srckeystore {location} -srcstoretype {store_type} "
        f"-destkeystore {Path(location).with_suffix('.p12')} -deststoretype PKCS12, then set the type to "
        "PKCS12 and the location to the new file"
    )


class StoreError(ValueError):
    """A store cannot be used; the message says why (and never contains a password)."""


@dataclass(frozen=True)
class StoreContent:
    """What a key or trust store holds, as PEM text."""

    trusted: tuple[str, ...]  # trusted-certificate entries
    key: str | None  # the first private key entry, unencrypted PKCS#8 PEM
    chain: tuple[str, ...]  # that key's certificate chain, leaf first


# --- reading stores ----------------------------------------------------------------------------------------


def read_store(path: str, password: str | None, key_password: str | None = None) -> StoreContent:
    """Read a JKS, PKCS12 or PEM store; StoreError if it cannot be read with these passwords."""
    try:
        stat = os.stat(path)
    except OSError as exc:
        raise StoreError(f"cannot read {path!r} ({exc.strerror})") from None
    return _read_store_cached(path, stat.st_size, stat.st_mtime_ns, password, key_password)


@functools.lru_cache(maxsize=64)
def _read_store_cached(
    path: str, _size: int, _mtime_ns: int, password: str | None, key_password: str | None
) -> StoreContent:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise StoreError(f"cannot read {path!r} ({exc.strerror})") from None
    kind = sniff(data)
    if kind == "JKS":
        return _read_jks(data, password, key_password)
    if kind == "PKCS12":
        return _read_pkcs12(data, password if password is not None else key_password)
    if kind == "PEM":
        return _read_pem(data.decode("utf-8", "replace"), key_password)
    if kind == "JCEKS":
        raise StoreError(
            f"{path!r} is a JCEKS store, which Python cannot read; {conversion_hint(path, 'JCEKS')}"
        )
    raise StoreError(f"{path!r} is not a JKS, PKCS12 or PEM store")


def sniff(data: bytes) -> str:
    """``JKS``, ``JCEKS``, ``PKCS12``, ``PEM`` or ``unknown``, from the first bytes."""
    if len(data) >= 4 and struct.unpack(">I", data[:4])[0] == _JKS_MAGIC:
        return "JKS"
    if len(data) >= 4 and struct.unpack(">I", data[:4])[0] == _JCEKS_MAGIC:
        return "JCEKS"
    if data[:1] == b"\x30":  # a DER SEQUENCE: PKCS12's PFX
        return "PKCS12"
    if b"-----BEGIN " in data[:4096]:
        return "PEM"
    return "unknown"


def _read_pkcs12(data: bytes, password: str | None) -> StoreContent:
    from cryptography.hazmat.primitives.serialization import pkcs12  # noqa: PLC0415 (import cost)

    try:
        loaded = pkcs12.load_pkcs12(data, password.encode() if password is not None else None)
    except ValueError:
        hint = "the password is wrong" if password is not None else "it needs a password"
        raise StoreError(f"cannot open the PKCS12 store: {hint} (or the file is damaged)") from None
    extra = tuple(_cert_pem(c.certificate) for c in loaded.additional_certs)
    if loaded.key is None:
        leaf = (_cert_pem(loaded.cert.certificate),) if loaded.cert is not None else ()
        return StoreContent(trusted=leaf + extra, key=None, chain=())
    chain = ((_cert_pem(loaded.cert.certificate),) if loaded.cert is not None else ()) + extra
    return StoreContent(trusted=extra, key=_key_pem(loaded.key), chain=chain)


def _read_pem(text: str, key_password: str | None) -> StoreContent:
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415
    from cryptography.x509 import load_pem_x509_certificates  # noqa: PLC0415

    blocks = _pem_blocks(text)
    certs = tuple(block for label, block in blocks if label == "CERTIFICATE")
    keys = [block for label, block in blocks if label.endswith("PRIVATE KEY")]
    if certs:
        try:
            load_pem_x509_certificates("".join(certs).encode())
        except ValueError as exc:
            raise StoreError(f"a PEM certificate cannot be parsed ({exc})") from None
    if not keys:
        return StoreContent(trusted=certs, key=None, chain=())
    password = key_password.encode() if key_password is not None else None
    try:
        key = serialization.load_pem_private_key(keys[0].encode(), password)
    except (ValueError, TypeError):
        hint = "the key password (ssl.key.password) is wrong or missing"
        raise StoreError(f"the PEM private key cannot be read: {hint}") from None
    return StoreContent(trusted=(), key=_key_pem(key), chain=certs)


def _pem_blocks(text: str) -> list[tuple[str, str]]:
    blocks = []
    rest = text
    while (start := rest.find("-----BEGIN ")) >= 0:
        label_end = rest.find("-----", start + 11)
        if label_end < 0:
            break
        label = rest[start + 11 : label_end]
        end_marker = f"-----END {label}-----"
        end = rest.find(end_marker, label_end)
        if end < 0:
            raise StoreError(f"a PEM block '{label}' has no END line")
        blocks.append((label, rest[start : end + len(end_marker)] + "\n"))
        rest = rest[end + len(end_marker) :]
    return blocks


def _cert_pem(cert: object) -> str:
    from cryptography.hazmat.primitives.serialization import Encoding  # noqa: PLC0415

    pem: bytes = cert.public_bytes(Encoding.PEM)  # type: ignore[attr-defined]
    return pem.decode()


def _key_pem(key: object) -> str:
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415

    pem: bytes = key.private_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return pem.decode()


class _Reader:
    """Big-endian reads over a JKS file (Java's DataInputStream)."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise StoreError("the JKS store is truncated or damaged")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def u16(self) -> int:
        value: int = struct.unpack(">H", self.take(2))[0]
        return value

    def u32(self) -> int:
        value: int = struct.unpack(">I", self.take(4))[0]
        return value

    def utf(self) -> str:
        return self.take(self.u16()).decode("utf-8", "replace")  # Java's modified UTF-8, close enough


def _read_jks(data: bytes, password: str | None, key_password: str | None) -> StoreContent:
    """Sun's JKS format (sun.security.provider.JavaKeyStore): version 1 or 2, then entries, then a SHA-1
    digest over (password as UTF-16BE, "Mighty Aphrodite", everything before the digest)."""
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415
    from cryptography.x509 import load_der_x509_certificate  # noqa: PLC0415

    reader = _Reader(data)
    reader.u32()  # magic, checked by sniff
    version = reader.u32()
    if version not in (1, 2):
        raise StoreError(f"unknown JKS version {version}")

    def cert() -> str:
        if version == 2:
            kind = reader.utf()
            if kind != "X.509":
                raise StoreError(f"the JKS store holds a {kind} certificate; only X.509 is supported")
        der = reader.take(reader.u32())
        try:
            return _cert_pem(load_der_x509_certificate(der))
        except ValueError:
            raise StoreError("a certificate in the JKS store cannot be parsed") from None

    trusted: list[str] = []
    keys: list[tuple[bytes, tuple[str, ...]]] = []
    for _ in range(reader.u32()):
        tag = reader.u32()
        reader.utf()  # alias
        reader.take(8)  # creation date
        if tag == _JKS_KEY_ENTRY:
            protected = reader.take(reader.u32())
            chain = tuple(cert() for _ in range(reader.u32()))
            keys.append((protected, chain))
        elif tag == _JKS_CERT_ENTRY:
            trusted.append(cert())
        else:
            raise StoreError(f"unknown JKS entry type {tag}")
    body_end = reader.pos
    digest = reader.take(20)
    if password is not None:
        expected = hashlib.sha1(  # the format's own integrity check
            password.encode("utf-16-be") + b"Mighty Aphrodite" + data[:body_end], usedforsecurity=False
        ).digest()
        if digest != expected:
            raise StoreError("the JKS store password is wrong (its integrity check failed)")
    if not keys:
        return StoreContent(trusted=tuple(trusted), key=None, chain=())
    protected, chain = keys[0]
    secret = key_password if key_password is not None else password
    if secret is None:
        raise StoreError("the JKS private key needs a password (ssl.key.password or ssl.keystore.password)")
    plain = _jks_recover_key(protected, secret)
    try:
        key = serialization.load_der_private_key(plain, None)
    except ValueError:
        raise StoreError("the JKS private key cannot be parsed") from None
    return StoreContent(trusted=tuple(trusted), key=_key_pem(key), chain=chain)


def _jks_recover_key(protected: bytes, password: str) -> bytes:
    """Undo sun.security.provider.KeyProtector: EncryptedPrivateKeyInfo{OID, salt(20) | data | check(20)},
    data XORed with the stream SHA1(pw, salt), SHA1(pw, previous), ...; check = SHA1(pw, plain key)."""
    encrypted = _encrypted_key_data(protected)
    if len(encrypted) < 40:
        raise StoreError("the JKS private key entry is damaged")
    pw = password.encode("utf-16-be")
    salt, body, check = encrypted[:20], encrypted[20:-20], encrypted[-20:]
    stream = bytearray()
    digest = salt
    while len(stream) < len(body):
        digest = hashlib.sha1(pw + digest, usedforsecurity=False).digest()
        stream += digest
    plain = bytes(a ^ b for a, b in zip(body, stream, strict=False))
    if hashlib.sha1(pw + plain, usedforsecurity=False).digest() != check:
        raise StoreError(
            "the JKS private key password is wrong (ssl.key.password, else ssl.keystore.password)"
        )
    return plain


def _encrypted_key_data(der: bytes) -> bytes:
    """The OCTET STRING of an EncryptedPrivateKeyInfo protected with Sun's KeyProtector."""
    outer, _ = _der_item(der, 0, 0x30)
    algorithm, rest = _der_item(der, outer, 0x30)
    if not der[algorithm:].startswith(_SUN_KEY_PROTECTOR):
        raise StoreError("the JKS private key uses an unknown protection; convert the store to PKCS12")
    start, end = _der_item(der, rest, 0x04)
    return der[start:end]


def _der_item(der: bytes, pos: int, tag: int) -> tuple[int, int]:
    """(start of the content, end of the item) of the DER item with ``tag`` at ``pos``."""
    if pos >= len(der) or der[pos] != tag:
        raise StoreError("the JKS private key entry is damaged")
    length, start = der[pos + 1], pos + 2
    if length & 0x80:
        count = length & 0x7F
        length = int.from_bytes(der[start : start + count], "big")
        start += count
    return start, start + length


# --- SSL contexts ------------------------------------------------------------------------------------------


def client_context(cluster: ClusterSettings) -> ssl.SSLContext:
    """The SSLContext for a cluster's SSL or SASL_SSL clients; TlsFailed when its material is unusable."""
    alias = cluster.alias
    try:
        ctx = _trust_context(cluster)
    except StoreError as exc:
        raise TlsFailed(f"cluster {alias}: {_trust_key(cluster)}: {exc}") from None
    ctx.check_hostname = cluster.ssl_check_hostname
    try:
        _load_client_certificate(ctx, cluster)
    except StoreError as exc:
        raise TlsFailed(f"cluster {alias}: {_key_key(cluster)}: {exc}") from None
    return ctx


def _secret(value: object) -> str | None:
    return None if value is None else str(value.get_secret_value())  # type: ignore[attr-defined]


def _trust_key(cluster: ClusterSettings) -> str:
    if cluster.ssl_truststore_certificates is not None:
        key = "ssl.truststore.certificates"
    elif cluster.ssl_truststore_location is not None:
        key = "ssl.truststore.location"
    else:
        key = "ssl.truststore.location (ssl_cafile)"
    return f"{cluster.alias}.{key}"


def _key_key(cluster: ClusterSettings) -> str:
    if cluster.ssl_keystore_key is not None:
        key = "ssl.keystore.key"
    elif cluster.ssl_keystore_location is not None:
        key = "ssl.keystore.location"
    else:
        key = "ssl.keystore.location (ssl_certfile/ssl_keyfile)"
    return f"{cluster.alias}.{key}"


def _trust_context(cluster: ClusterSettings) -> ssl.SSLContext:
    if cluster.ssl_truststore_certificates is not None:
        pems = [
            block
            for label, block in _pem_blocks(cluster.ssl_truststore_certificates)
            if label == "CERTIFICATE"
        ]
        return _context_trusting(pems, "ssl.truststore.certificates holds no PEM certificate")
    if cluster.ssl_truststore_location is not None:
        content = read_store(cluster.ssl_truststore_location, _secret(cluster.ssl_truststore_password))
        return _context_trusting(list(content.trusted), "the truststore holds no trusted certificate")
    try:
        return ssl.create_default_context(cafile=cluster.ssl_cafile)
    except (OSError, ssl.SSLError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise StoreError(f"cannot load the CA file {cluster.ssl_cafile!r} ({reason})") from None


def _context_trusting(pems: list[str], empty: str) -> ssl.SSLContext:
    if not pems:
        raise StoreError(empty)
    try:
        return ssl.create_default_context(cadata="".join(pems))
    except ssl.SSLError as exc:
        raise StoreError(f"the trusted certificates cannot be loaded ({exc})") from None


def _load_client_certificate(ctx: ssl.SSLContext, cluster: ClusterSettings) -> None:
    key_password = _secret(cluster.ssl_password)
    if cluster.ssl_keystore_key is not None or cluster.ssl_keystore_certificate_chain is not None:
        if cluster.ssl_keystore_key is None or cluster.ssl_keystore_certificate_chain is None:
            raise StoreError("ssl.keystore.key and ssl.keystore.certificate.chain go together")
        content = _read_pem(
            f"{_secret(cluster.ssl_keystore_key)}\n{cluster.ssl_keystore_certificate_chain}", key_password
        )
    elif cluster.ssl_keystore_location is not None:
        content = read_store(
            cluster.ssl_keystore_location, _secret(cluster.ssl_keystore_password), key_password
        )
    elif cluster.ssl_certfile is not None:
        try:
            ctx.load_cert_chain(cluster.ssl_certfile, cluster.ssl_keyfile, key_password)
        except (OSError, ssl.SSLError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise StoreError(
                f"cannot load the client certificate {cluster.ssl_certfile!r} ({reason}; "
                "an encrypted key needs ssl.key.password)"
            ) from None
        return
    else:
        return
    if content.key is None or not content.chain:
        raise StoreError("the keystore holds no private key with its certificate")
    with _in_memory_file(content.key + "".join(content.chain)) as path:
        try:
            ctx.load_cert_chain(path)
        except ssl.SSLError as exc:
            raise StoreError(f"the key and certificate do not go together ({exc.reason})") from None


@contextlib.contextmanager
def _in_memory_file(text: str) -> Iterator[str]:
    """A path OpenSSL can open whose content never reaches a disk where possible (Linux memfd)."""
    data = text.encode()
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("mirror-tls", os.MFD_CLOEXEC)
        try:
            os.write(fd, data)
            yield f"/proc/self/fd/{fd}"
        finally:
            os.close(fd)
        return
    with tempfile.TemporaryDirectory(prefix="mirror-tls-") as directory:  # 0700
        path = os.path.join(directory, "key.pem")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        yield path
