"""mm2.properties client keys that become ClusterSettings fields: connection, SASL (JAAS) and TLS stores."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

_PLAIN_LOGIN = "org.apache.kafka.common.security.plain.PlainLoginModule"
_SCRAM_LOGIN = "org.apache.kafka.common.security.scram.ScramLoginModule"
_JAAS_ALLOWED = f'{_PLAIN_LOGIN} or {_SCRAM_LOGIN} required username="..." password="...";'
_JAAS_LINE = re.compile(
    r"\s*(?P<module>[\w.$]+)\s+(?:required|requisite|sufficient|optional)(?P<options>.*);\s*", re.DOTALL
)
_JAAS_OPTION = re.compile(r'\s*(?P<name>[\w.]+)\s*=\s*(?:"(?P<quoted>(?:[^"\\]|\\.)*)"|(?P<bare>[^\s";]+))')


def _parse_jaas(value: str, _context: Mapping[str, str]) -> dict[str, Any]:
    """``sasl.jaas.config`` of the Plain or Scram login module -> username and password."""
    line = _JAAS_LINE.fullmatch(value)
    if line is None or line["module"] not in (_PLAIN_LOGIN, _SCRAM_LOGIN):
        raise ValueError(_JAAS_ALLOWED)
    options: dict[str, str] = {}
    rest = line["options"]
    while rest.strip():
        option = _JAAS_OPTION.match(rest)
        if option is None:
            raise ValueError(_JAAS_ALLOWED)
        quoted = option["quoted"]
        options[option["name"]] = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else option["bare"]
        rest = rest[option.end() :]
    if "username" not in options or "password" not in options:
        raise ValueError(_JAAS_ALLOWED)
    return {"sasl_username": options["username"], "sasl_password": options["password"]}


_STORE_TYPES = ("JKS", "PKCS12", "PEM")


def _store_type(type_key: str, location_key: str) -> Callable[[str, Mapping[str, str]], dict[str, Any]]:
    """``ssl.*store.type``: JKS (Java's default), PKCS12 or PEM; others get the keytool conversion command."""

    def convert(value: str, context: Mapping[str, str]) -> dict[str, Any]:
        if value.upper() not in _STORE_TYPES:
            location = context.get(location_key, "<store>")
            raise ValueError(
                f"JKS, PKCS12 or PEM; {value} stores cannot be read here: convert it to PKCS12 with "
                f"keytool -importkeystore -srckeystore {location} -srcstoretype {value} "
                f"-destkeystore {location}.p12 -deststoretype PKCS12"
            )
        return {}

    return convert


def _store_location(
    pem_field: str, store_field: str, type_key: str
) -> Callable[[str, Mapping[str, str]], dict[str, Any]]:
    """A PEM location (``type=PEM``) is a PEM file; a JKS or PKCS12 one is read by mirror.kafka.tls."""

    def convert(value: str, context: Mapping[str, str]) -> dict[str, Any]:
        store_type = context.get(type_key, "JKS").strip().upper()
        if store_type == "PEM":
            return {pem_field: value}
        if store_type in _STORE_TYPES:
            return {store_field: value}
        return {}  # the type key reports the problem

    return convert


def _check_hostname(value: str, _context: Mapping[str, str]) -> dict[str, Any]:
    if value.lower() not in ("", "https"):
        raise ValueError("https or empty (no host name check)")
    return {"ssl_check_hostname": value.lower() == "https"}


def _to(field_name: str) -> Callable[[str, Mapping[str, str]], dict[str, Any]]:
    return lambda value, _context: {field_name: value}


@dataclass(frozen=True)
class ClusterKey:
    """How one Java client key becomes ClusterSettings fields."""

    fields: tuple[str, ...]
    convert: Callable[[str, Mapping[str, str]], dict[str, Any]]  # (value, the cluster's other keys) -> fields


#: Java client key -> ClusterSettings fields. Other per-cluster keys are kept verbatim in `properties`.
CLUSTER_KEYS: dict[str, ClusterKey] = {
    "bootstrap.servers": ClusterKey(("bootstrap_servers",), _to("bootstrap_servers")),
    "security.protocol": ClusterKey(("security_protocol",), _to("security_protocol")),
    "sasl.mechanism": ClusterKey(("sasl_mechanism",), _to("sasl_mechanism")),
    "sasl.jaas.config": ClusterKey(("sasl_username", "sasl_password"), _parse_jaas),
    "ssl.truststore.location": ClusterKey(
        ("ssl_cafile", "ssl_truststore_location"),
        _store_location("ssl_cafile", "ssl_truststore_location", "ssl.truststore.type"),
    ),
    "ssl.truststore.type": ClusterKey((), _store_type("ssl.truststore.type", "ssl.truststore.location")),
    "ssl.truststore.password": ClusterKey(("ssl_truststore_password",), _to("ssl_truststore_password")),
    "ssl.truststore.certificates": ClusterKey(
        ("ssl_truststore_certificates",), _to("ssl_truststore_certificates")
    ),
    "ssl.keystore.location": ClusterKey(
        ("ssl_certfile", "ssl_keystore_location"),
        _store_location("ssl_certfile", "ssl_keystore_location", "ssl.keystore.type"),
    ),
    "ssl.keystore.type": ClusterKey((), _store_type("ssl.keystore.type", "ssl.keystore.location")),
    "ssl.keystore.password": ClusterKey(("ssl_keystore_password",), _to("ssl_keystore_password")),
    "ssl.keystore.certificate.chain": ClusterKey(
        ("ssl_keystore_certificate_chain",), _to("ssl_keystore_certificate_chain")
    ),
    "ssl.keystore.key": ClusterKey(("ssl_keystore_key",), _to("ssl_keystore_key")),
    "ssl.key.password": ClusterKey(("ssl_password",), _to("ssl_password")),
    "ssl.endpoint.identification.algorithm": ClusterKey(("ssl_check_hostname",), _check_hostname),
}
