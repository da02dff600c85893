"""The only package that talks to aiokafka: builds clients from settings, translates its errors.

Everything above it sees `mirror` types (``SourceBatch``, ``Pending``, ``Ack``, ``ConfigEntry``) and
`mirror.errors` exceptions, never aiokafka's. One module, one job:

- `client_args`: aiokafka keyword arguments from cluster settings (Java client keys, TLS, SASL);
- `errors`: aiokafka and broker errors as `mirror.errors`, TLS and SASL failures diagnosed;
- `closing`: closing a client, bounded;
- `admin`: `Admin`, the one door for raw protocol requests;
- `records`, `reader`, `writer`: the data path (`SourceBatch`, `Reader`, `Writer`, acknowledgements);
- `compacted`: `read_compacted`;
- `groups`, `configs`: consumer-group, topic-config and ACL requests aiokafka lacks;
- `coordination`: worker membership through a consumer group;
- `tls`: TLS contexts from PEM, JKS and PKCS12;
- `_internals`: every aiokafka private API used, checked against the pinned aiokafka at import.
"""

from __future__ import annotations

from mirror.kafka.admin import Admin, ConfigEntry, NewTopicSpec
from mirror.kafka.client_args import client_kwargs
from mirror.kafka.closing import close_within
from mirror.kafka.compacted import read_compacted
from mirror.kafka.errors import as_mirror_error, denied_error, diagnose, errors_translated, security_failure
from mirror.kafka.reader import Reader
from mirror.kafka.records import Ack, RecordData, SourceBatch, SourceRecord
from mirror.kafka.writer import Pending, Writer

__all__ = [
    "Ack",
    "Admin",
    "ConfigEntry",
    "NewTopicSpec",
    "Pending",
    "Reader",
    "RecordData",
    "SourceBatch",
    "SourceRecord",
    "Writer",
    "as_mirror_error",
    "client_kwargs",
    "close_within",
    "denied_error",
    "diagnose",
    "errors_translated",
    "read_compacted",
    "security_failure",
]
