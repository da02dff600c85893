"""TLS material for local test clusters: a CA, loopback server certificates and client certificates.

Generated with ``cryptography`` (ECDSA P-256 keys, a few milliseconds each) into a directory of the harness,
once per :class:`CertificateAuthority`; certificates are cached by name. Every file a broker or a client
may want is written: PEM certificates and keys, PEM key+chain bundles, and PKCS12 stores.
"""

from __future__ import annotations

import datetime
import ipaddress
import threading
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

#: Password of every PKCS12 store and encrypted key written here (test material, not a secret).
STORE_PASSWORD = "harness-store-pass"

_LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class IssuedCert:
    """One certificate and its key, in every form a Kafka broker or client may want."""

    name: str
    cert: Path  # PEM: the certificate, then the CA's
    key: Path  # PEM: unencrypted PKCS#8 private key
    encrypted_key: Path  # PEM: PKCS#8 private key encrypted with STORE_PASSWORD
    bundle: Path  # PEM: key then chain (Python's load_cert_chain(bundle) reads both)
    pkcs12: Path  # PKCS12 store with key and chain, password STORE_PASSWORD


class CertificateAuthority:
    """A self-signed CA in ``directory`` that issues certificates on demand (cached by name)."""

    def __init__(self, directory: Path, name: str = "mirror-test-ca") -> None:
        self.directory = directory
        self.name = name
        directory.mkdir(parents=True, exist_ok=True)
        self._key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.datetime.now(datetime.UTC)
        self._cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self._key.public_key()), critical=False)
            .sign(self._key, hashes.SHA256())
        )
        self.ca_file = directory / "ca.pem"
        self.ca_file.write_bytes(self._cert.public_bytes(serialization.Encoding.PEM))
        self._issued: dict[str, IssuedCert] = {}
        self._lock = threading.Lock()

    @property
    def ca_pem(self) -> str:
        return self.ca_file.read_text()

    def issue(self, name: str, *, server: bool = False) -> IssuedCert:
        """A certificate with common name ``name``; ``server`` adds the loopback names and addresses."""
        with self._lock:
            if name not in self._issued:
                self._issued[name] = self._issue(name, server)
            return self._issued[name]

    def _issue(self, name: str, server: bool) -> IssuedCert:
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        usage = [ExtendedKeyUsageOID.CLIENT_AUTH] + ([ExtendedKeyUsageOID.SERVER_AUTH] if server else [])
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(self._cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usage), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()), critical=False
            )
        )
        if server:
            names: list[x509.GeneralName] = []
            for host in _LOOPBACK:
                try:
                    names.append(x509.IPAddress(ipaddress.ip_address(host)))
                except ValueError:
                    names.append(x509.DNSName(host))
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        cert = builder.sign(self._key, hashes.SHA256())
        pem = serialization.Encoding.PEM
        chain = cert.public_bytes(pem) + self._cert.public_bytes(pem)
        plain_key = key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        encrypted_key = key.private_bytes(
            pem,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(STORE_PASSWORD.encode()),
        )
        store = pkcs12.serialize_key_and_certificates(
            name.encode(),
            key,
            cert,
            [self._cert],
            serialization.BestAvailableEncryption(STORE_PASSWORD.encode()),
        )
        files = IssuedCert(
            name=name,
            cert=self.directory / f"{name}.crt.pem",
            key=self.directory / f"{name}.key.pem",
            encrypted_key=self.directory / f"{name}.key.enc.pem",
            bundle=self.directory / f"{name}.pem",
            pkcs12=self.directory / f"{name}.p12",
        )
        files.cert.write_bytes(chain)
        _write_private(files.key, plain_key)
        _write_private(files.encrypted_key, encrypted_key)
        _write_private(files.bundle, plain_key + chain)
        _write_private(files.pkcs12, store)
        return files

    def truststore_pkcs12(self) -> Path:
        """A PKCS12 store holding only this CA's certificate (password STORE_PASSWORD)."""
        path = self.directory / "ca-truststore.p12"
        if not path.exists():
            data = pkcs12.serialize_java_truststore(
                [pkcs12.PKCS12Certificate(self._cert, b"ca")],
                serialization.BestAvailableEncryption(STORE_PASSWORD.encode()),
            )
            path.write_bytes(data)
        return path


def _write_private(path: Path, data: bytes) -> None:
    path.touch(mode=0o600, exist_ok=True)
    path.write_bytes(data)
