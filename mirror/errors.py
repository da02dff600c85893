"""The exceptions of `mirror`. Kafka client errors are translated into these in `mirror.kafka` only."""

from __future__ import annotations


class MirrorError(Exception):
    """Base of every error `mirror` raises on purpose."""

    #: A retriable error is logged, counted and retried with backoff; it never stops the service.
    retriable: bool = False
    #: A short machine-readable kind, used as the ``kind`` label of ``mirror_errors_total``.
    kind: str = "internal"


class KafkaUnavailable(MirrorError):
    """A cluster cannot be reached, or a request to it timed out."""

    retriable = True
    kind = "unavailable"


class KafkaRequestFailed(MirrorError):
    """A broker answered a request with an error (per topic or per request)."""

    def __init__(
        self, message: str, *, code: int = -1, retriable: bool = True, kind: str = "request"
    ) -> None:
        super().__init__(message)
        self.code = code
        self.retriable = retriable
        self.kind = kind


class AuthorizationFailed(KafkaRequestFailed):
    """The principal is not allowed to do this. Retried (ACLs may be fixed), reported in health."""

    def __init__(self, message: str, *, code: int = -1) -> None:
        super().__init__(message, code=code, retriable=True, kind="authorization")


class AuthenticationFailed(MirrorError):
    """A cluster refused our credentials (SASL). Retried with backoff (a rotated secret may come back);
    the message names the cluster, the mechanism and the user, never the password."""

    retriable = True
    kind = "authentication"


class TlsFailed(MirrorError):
    """TLS to a cluster failed: untrusted or mismatched certificate, client certificate refused, or TLS
    material (stores, PEM files) that cannot be loaded. The message names the cluster."""

    retriable = True
    kind = "tls"


class ProducerFenced(MirrorError):
    """Another instance of this task took over (exactly-once mode): stop the task here."""

    kind = "fenced"
