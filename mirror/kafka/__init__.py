"""The only package that talks to aiokafka: builds clients from settings, translates its errors.

Everything above it sees `mirror` types (``SourceBatch``, ``Pending``, ``Ack``, ``ConfigEntry``) and
`mirror.errors` exceptions, never aiokafka's. One module, one job:

- `client_args`: aiokafka keyword arguments from cluster settings (Java client keys, TLS, SASL);
- `errors`: aiokafka and broker errors as `mirror.errors`, TLS and SASL failures diagnosed;
- `closing`: closing a client, bounded;
- `admin`: `Admin`, the one door for raw protocol requests;
- `records`, `reader`, `writer`: the data path (`SourceBatch`, `Reader`, `Writer`, acknowledgements);
- `batches`, `send_queue`, `producer`: record batches as bytes; `BatchProducer` sends them pipelined;
- `compacted`: `read_compacted`;
- `topic_ids`: topics with their ids (Metadata v10+, which aiokafka lacks);
- `groups`, `configs`: consumer-group, topic-config and ACL requests aiokafka lacks;
- `coordination`: worker membership through a consumer group;
- `tls`: TLS contexts from PEM, JKS and PKCS12;
- `_internals`: every aiokafka private API used, checked against the pinned aiokafka at import.
"""

from __future__ import annotations

from mirror.kafka.admin import Admin, ConfigEntry, NewTopicSpec
from mirror.kafka.batches import SourceBatch
from mirror.kafka.client_args import client_kwargs
from mirror.kafka.closing import close_within
from mirror.kafka.compacted import CompactedRecord, read_compacted
from mirror.kafka.errors import as_mirror_error, denied_error, diagnose, errors_translated, security_failure
from mirror.kafka.producer import BatchProducer, Pending
from mirror.kafka.reader import Reader
from mirror.kafka.records import Ack, RecordData, SourceRecord
from mirror.kafka.topic_ids import TopicDescription, describe_topics
from mirror.kafka.writer import BatchWriter, Writer

__all__ = [
    "Ack",
    "Admin",
    "BatchProducer",
    "BatchWriter",
    "CompactedRecord",
    "ConfigEntry",
    "NewTopicSpec",
    "Pending",
    "Reader",
    "RecordData",
    "SourceBatch",
    "SourceRecord",
    "TopicDescription",
    "Writer",
    "as_mirror_error",
    "client_kwargs",
    "close_within",
    "denied_error",
    "describe_topics",
    "diagnose",
    "errors_translated",
    "read_compacted",
    "security_failure",
]
