"""aiokafka and broker errors as `mirror.errors` exceptions, with TLS and SASL failures diagnosed."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from typing import Final

import aiokafka.errors as ke

from mirror.config import ClusterSettings
from mirror.errors import (
    AuthenticationFailed,
    AuthorizationFailed,
    KafkaRequestFailed,
    KafkaUnavailable,
    MirrorError,
    ProducerFenced,
    RecordRejected,
    TlsFailed,
)
from mirror.kafka import _internals
from mirror.kafka.client_args import client_kwargs

_AUTH_ERRORS = (
    ke.TopicAuthorizationFailedError,
    ke.GroupAuthorizationFailedError,
    ke.ClusterAuthorizationFailedError,
    ke.TransactionalIdAuthorizationFailed,
)


def as_mirror_error(exc: BaseException, cluster: ClusterSettings | None = None) -> MirrorError:
    """Map an aiokafka (or socket) error onto the `mirror` error tree; with ``cluster``, authentication and
    TLS failures name it."""
    if isinstance(exc, MirrorError):
        return exc
    if isinstance(exc, ke.ProducerFenced):
        return ProducerFenced(str(exc))
    security = security_failure(exc, cluster)
    if security is not None:
        return security
    named = named_resources(exc)
    if isinstance(exc, ke.TopicAuthorizationFailedError) and named is not None:
        return denied_error(cluster, "use", f"topic {named}", exc)
    if isinstance(exc, ke.GroupAuthorizationFailedError) and named is not None:
        return denied_error(cluster, "use", f"consumer group {named}", exc)
    if isinstance(exc, _AUTH_ERRORS):
        return AuthorizationFailed(
            f"{_where(cluster)}{type(exc).__name__}: {exc}", code=getattr(exc, "errno", -1)
        )
    if isinstance(exc, (ke.KafkaConnectionError, ke.NodeNotReadyError, ke.KafkaTimeoutError, OSError)):
        return KafkaUnavailable(f"{type(exc).__name__}: {exc}")
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return KafkaUnavailable("request timed out")
    if isinstance(exc, ke.KafkaError):
        return KafkaRequestFailed(
            f"{type(exc).__name__}: {exc}", code=getattr(exc, "errno", -1), retriable=True
        )
    return MirrorError(f"{type(exc).__name__}: {exc}")


@contextlib.asynccontextmanager
async def errors_translated(cluster: ClusterSettings | None = None) -> AsyncIterator[None]:
    """Translate aiokafka errors raised inside; with ``cluster``, a failed bootstrap (which aiokafka reports
    without its cause) is diagnosed with one direct connection, so that a refused password or an untrusted
    certificate says so instead of "Unable to bootstrap"."""
    try:
        yield
    except (ke.KafkaError, OSError, TimeoutError) as exc:
        err = as_mirror_error(exc, cluster)
        if (
            cluster is not None
            and isinstance(err, KafkaUnavailable)
            and isinstance(exc, ke.KafkaConnectionError | ke.NodeNotReadyError | OSError)
        ):
            err = await diagnose(cluster) or err
        raise err from exc


# --- authentication, TLS and authorization failures ----------------------------------------------------

#: OpenSSL alert reasons meaning the broker did not accept our client certificate (or got none).
_CLIENT_CERT_REJECTED = (
    "SSLV3_ALERT_BAD_CERTIFICATE",
    "SSLV3_ALERT_CERTIFICATE_UNKNOWN",
    "TLSV13_ALERT_CERTIFICATE_REQUIRED",
    "TLSV1_ALERT_UNKNOWN_CA",
    "TLSV1_ALERT_ACCESS_DENIED",
    "SSLV3_ALERT_HANDSHAKE_FAILURE",
)
_TLS_ALERT_RECORD = 0x15  # first byte of a TLS alert record: a TLS listener answering a non-TLS client


def _where(cluster: ClusterSettings | None) -> str:
    return f"cluster {cluster.alias}: " if cluster is not None else ""


def named_resources(exc: BaseException) -> str | None:
    """The resource(s) an aiokafka authorization error was raised for (its first argument), quoted; None
    when the argument is a message rather than names."""
    arg = exc.args[0] if exc.args else None
    if isinstance(arg, set | frozenset | list | tuple) and arg:
        return ", ".join(f"'{item}'" for item in sorted(map(str, arg)))
    if isinstance(arg, str) and arg and not any(c.isspace() for c in arg):
        return f"'{arg}'"
    return None


def denied_error(
    cluster: ClusterSettings | None, operation: str, resource: str, exc: BaseException
) -> AuthorizationFailed:
    """An authorization error naming the cluster, the operation and the resource."""
    return AuthorizationFailed(
        f"{_where(cluster)}not authorized to {operation} {resource} ({type(exc).__name__}): "
        "grant the operation to this client's principal (ACLs), or leave the resource out of the flow",
        code=getattr(exc, "errno", -1),
    )


def security_failure(exc: BaseException, cluster: ClusterSettings | None) -> MirrorError | None:
    """The authentication or TLS failure behind a connection error (looking at its causes), or None."""
    where = _where(cluster)
    protocol = cluster.security_protocol if cluster is not None else "?"
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ke.SaslAuthenticationFailed | ke.AuthenticationFailedError):
            return AuthenticationFailed(
                f"{where}authentication failed ({_sasl(cluster)}): {_detail(current)}"
            )
        if isinstance(current, ke.UnsupportedSaslMechanismError):
            mechanism = cluster.sasl_mechanism if cluster is not None else "?"
            return AuthenticationFailed(
                f"{where}authentication failed ({_sasl(cluster)}): the broker does not enable SASL "
                f"mechanism {mechanism} on this listener (sasl.mechanism)"
            )
        if isinstance(current, ke.IllegalSaslStateError | ke.AuthenticationMethodNotSupported):
            return AuthenticationFailed(
                f"{where}authentication failed ({_sasl(cluster)}): {_detail(current)}"
            )
        if isinstance(current, ssl.SSLCertVerificationError):
            reason = (
                getattr(current, "verify_message", None) or getattr(current, "reason", None) or str(current)
            )
            hint = (
                "the certificate does not name this host: fix the broker certificate or disable the check "
                "with ssl.endpoint.identification.algorithm= (ssl_check_hostname: false)"
                if "mismatch" in str(reason)
                else "trust the CA that signed it (ssl.truststore.location / ssl.truststore.certificates / "
                "ssl_cafile)"
            )
            return TlsFailed(f"{where}TLS: the broker's certificate is not trusted ({reason}); {hint}")
        if isinstance(current, ssl.SSLEOFError | ssl.SSLZeroReturnError):
            return None  # the connection ended (a broker restarting): unavailable, not a TLS problem
        if isinstance(current, ssl.SSLError):
            reason = getattr(current, "reason", None) or str(current)
            if reason in _CLIENT_CERT_REJECTED:
                return TlsFailed(
                    f"{where}TLS: the broker rejected our client certificate ({reason}): it requires one "
                    "signed by a CA it trusts (ssl.keystore.location / ssl.keystore.key / ssl_certfile)"
                )
            if reason == "WRONG_VERSION_NUMBER":
                return TlsFailed(
                    f"{where}TLS: the listener does not speak TLS ({reason}); check security.protocol "
                    f"({protocol}) and the port"
                )
            return TlsFailed(f"{where}TLS handshake failed ({reason})")
        if isinstance(current, asyncio.IncompleteReadError) and current.partial[:1] == bytes(
            [_TLS_ALERT_RECORD]
        ):
            return TlsFailed(
                f"{where}TLS: the listener speaks TLS but security.protocol is {protocol}; "
                "use SSL or SASL_SSL for it"
            )
        current = current.__cause__ or current.__context__
    return None


def _sasl(cluster: ClusterSettings | None) -> str:
    if cluster is None:
        return "SASL"
    return f"SASL {cluster.sasl_mechanism} as user '{cluster.sasl_username}'"


def _detail(exc: BaseException) -> str:
    text = str(exc.args[0]) if exc.args and isinstance(exc.args[0], str) else type(exc).__name__
    return text or type(exc).__name__


async def diagnose(cluster: ClusterSettings, timeout: float = 5.0) -> MirrorError | None:
    """Connect (and authenticate) once to each bootstrap server, directly, to find out why clients cannot:
    the authentication or TLS failure, or None when connecting works or fails for another reason."""
    try:
        kwargs = client_kwargs(cluster, "admin")
    except MirrorError as exc:
        return exc
    for server in cluster.bootstrap_servers:
        host, _, port = server.rpartition(":")
        try:
            conn = await asyncio.wait_for(
                _internals.open_connection(
                    host.strip("[]"),
                    int(port),
                    client_id="mirror-diagnose",
                    request_timeout_ms=int(timeout * 1000),
                    ssl_context=kwargs.get("ssl_context"),
                    security_protocol=cluster.security_protocol,
                    sasl_mechanism=kwargs.get("sasl_mechanism"),
                    sasl_plain_username=kwargs.get("sasl_plain_username"),
                    sasl_plain_password=kwargs.get("sasl_plain_password"),
                ),
                timeout,
            )
        except (ke.KafkaError, OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
            failure = security_failure(exc, cluster)
            if failure is not None:
                return failure
            continue
        conn.close()
        return None
    return None


# --- error codes in responses ----------------------------------------------------------------------------

#: Error codes with a `KafkaRequestFailed.kind` of their own (a caller acts on them, e.g. config sync).
_KINDS: Final = {
    ke.UnsupportedVersionError.errno: "unsupported_version",  # 35
    ke.PolicyViolationError.errno: "policy_violation",  # 44
}


def error_for_code(
    code: int,
    what: str,
    message: str | None = None,
    *,
    cluster: ClusterSettings | None = None,
    denied_as: tuple[str, str] | None = None,
) -> MirrorError:
    """The `mirror.errors` exception for a broker error code (not 0) answered to ``what``, with the
    broker's ``message`` if any. Every error code of a response becomes an error here.

    ``denied_as`` = (operation, resource) names an authorization failure; a code this aiokafka does not
    know stays a retriable `KafkaRequestFailed` carrying the code."""
    cls = ke.for_code(code)
    if cls is ke.UnknownError:
        detail = f": {message}" if message else ""
        return KafkaRequestFailed(f"{what}: broker error code {code}{detail}", code=code, retriable=True)
    if denied_as is not None and issubclass(cls, _AUTH_ERRORS):
        return denied_error(cluster, *denied_as, cls())
    text = f"{what}: {message or cls.description or f'broker error code {code}'}"
    if code in _KINDS:
        return KafkaRequestFailed(text, code=code, retriable=True, kind=_KINDS[code])
    return as_mirror_error(cls(text), cluster)


# --- produce errors ------------------------------------------------------------------------------------


class InvalidRecordError(ke.BrokerResponseError):  # type: ignore[misc]
    """INVALID_RECORD (87): the broker refused a record of the batch (say, a null key on a compacted
    topic). aiokafka 0.14 has no class for it and would report a retriable UnknownError."""

    errno = 87
    message = "INVALID_RECORD"
    description = "This record has failed the validation on broker and hence will be rejected."
    retriable = False


_internals.register_error(InvalidRecordError)

#: Produce errors that mean the target will never accept this batch as it is: retrying is useless and
#: skipping it would lose records (`RecordRejected`).
_REFUSED = (
    InvalidRecordError,
    ke.InvalidTimestampError,
    ke.MessageSizeTooLargeError,
    ke.RecordListTooLargeError,
    ke.RecordTooLargeError,
    ke.CorruptRecordException,
    ke.PolicyViolationError,
    ke.UnsupportedForMessageFormatError,
    ke.InvalidTopicError,
)


#: Refusals for the batch's size rather than for one of its records: smaller batches may pass.
_TOO_LARGE = (ke.MessageSizeTooLargeError, ke.RecordListTooLargeError)


def delivery_error(exc: BaseException) -> MirrorError:
    """The error of a produce the target did not acknowledge: a batch it refuses for good is a
    `RecordRejected`, a topic it does not let us write names the topic."""
    if isinstance(exc, _REFUSED):
        reason = f"{type(exc).__name__}: {getattr(exc, 'description', '') or exc}"
        return RecordRejected(reason, too_large=isinstance(exc, _TOO_LARGE))
    if isinstance(exc, ke.TopicAuthorizationFailedError) and named_resources(exc) is not None:
        return denied_error(None, "WRITE to", f"topic {named_resources(exc)}", exc)
    return as_mirror_error(exc)
