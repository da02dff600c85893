"""Topic-config and ACL admin calls aiokafka 0.14 lacks (docs/mm2-compat.md §4).

- `incremental_alter_topic_configs`: IncrementalAlterConfigs (API key 44) v0, the non-flexible schema,
  which Kafka 2.3+ (and 4.x) accepts. Only the listed properties change: whatever else is set on the
  target topic (e.g. an excluded ``min.insync.replicas``) stays as it is, unlike the legacy AlterConfigs.
- `describe_topic_acls`: DescribeAcls for every TOPIC resource pattern; None when the cluster has no
  authorizer (SECURITY_DISABLED).
- `create_acls`: CreateAcls with all bindings in one request (aiokafka's wrapper carries one binding).

Broker error codes come back as `mirror.errors` values (`mirror.kafka.errors.error_for_code`) per topic
or per binding; only a cluster that cannot be reached raises (`KafkaUnavailable`), so one bad topic never
hides the others.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Final

import aiokafka.errors as ke
from aiokafka.protocol.admin import (
    CreateAclsRequest_v0,
    CreateAclsRequest_v1,
    DescribeAclsRequest_v0,
    DescribeAclsRequest_v1,
)
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import Array, Boolean, Int8, Int16, Int32, Schema, String

from mirror.errors import KafkaRequestFailed, KafkaUnavailable, MirrorError
from mirror.kafka.admin import Admin
from mirror.kafka.errors import as_mirror_error, error_for_code

__all__ = [
    "AclBinding",
    "AclOperation",
    "AclPermission",
    "PatternType",
    "ResourceType",
    "create_acls",
    "describe_topic_acls",
    "incremental_alter_topic_configs",
]

_TOPIC_RESOURCE: Final = 2  # ConfigResource type of a topic (DescribeConfigs / IncrementalAlterConfigs)
_OPS: Final = {"SET": 0, "DELETE": 1, "APPEND": 2, "SUBTRACT": 3}
_UNSUPPORTED_VERSION: Final = ke.UnsupportedVersionError.errno  # 35
_SECURITY_DISABLED: Final = ke.SecurityDisabled.errno  # 54


def _unsupported(what: str, exc: BaseException) -> MirrorError:
    return KafkaRequestFailed(
        f"{what}: the broker does not support it ({exc})",
        code=_UNSUPPORTED_VERSION,
        retriable=True,
        kind="unsupported_version",
    )


async def _send(admin: Admin, request: Any, what: str) -> Any:
    """Send `request` to any broker; a request the broker cannot take raises an "unsupported_version"
    `KafkaRequestFailed`, other failures their translated error."""
    try:
        return await admin.raw_request(request)
    except (ke.IncompatibleBrokerVersion, NotImplementedError) as exc:
        # Not advertised at all / no version both sides speak (`Request.prepare`).
        raise _unsupported(what, exc) from exc
    except (ke.KafkaError, OSError, TimeoutError) as exc:
        raise as_mirror_error(exc) from exc


# --- IncrementalAlterConfigs v0 (non-flexible) ---------------------------------------------------------


class IncrementalAlterConfigsResponse_v0(Response):  # type: ignore[misc]
    API_KEY = 44
    API_VERSION = 0
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        (
            "responses",
            Array(
                ("error_code", Int16),
                ("error_message", String("utf-8")),
                ("resource_type", Int8),
                ("resource_name", String("utf-8")),
            ),
        ),
    )


class IncrementalAlterConfigsRequest_v0(RequestStruct):  # type: ignore[misc]
    API_KEY = 44
    API_VERSION = 0
    RESPONSE_TYPE = IncrementalAlterConfigsResponse_v0
    SCHEMA = Schema(
        (
            "resources",
            Array(
                ("resource_type", Int8),
                ("resource_name", String("utf-8")),
                (
                    "configs",
                    Array(("name", String("utf-8")), ("config_operation", Int8), ("value", String("utf-8"))),
                ),
            ),
        ),
        ("validate_only", Boolean),
    )


class IncrementalAlterConfigsRequest(Request[IncrementalAlterConfigsRequest_v0]):  # type: ignore[misc]
    """``resources``: (resource type, name, [(config name, operation, value or None)])."""

    API_KEY = 44

    def __init__(
        self,
        resources: Sequence[tuple[int, str, Sequence[tuple[str, int, str | None]]]],
        validate_only: bool = False,
    ) -> None:
        self._resources = [(rtype, name, list(configs)) for rtype, name, configs in resources]
        self._validate_only = validate_only

    def build(self, request_struct_class: Any) -> Any:
        return request_struct_class(self._resources, self._validate_only)


async def incremental_alter_topic_configs(
    admin: Admin,
    ops: Mapping[str, Sequence[tuple[str, str, str | None]]],
    validate_only: bool = False,
) -> dict[str, MirrorError | None]:
    """Apply (config name, "SET" | "DELETE" | "APPEND" | "SUBTRACT", value) operations per topic in one
    IncrementalAlterConfigs request. Returns per topic None (applied) or its error; a request the broker
    rejects as a whole (unsupported version, not authorized) is that error for every topic. Raises only
    `KafkaUnavailable`. Topics without operations are not sent."""
    wanted = {topic: list(topic_ops) for topic, topic_ops in ops.items() if topic_ops}
    if not wanted:
        return {}
    request = IncrementalAlterConfigsRequest(
        [
            (_TOPIC_RESOURCE, topic, [(name, _OPS[op], value) for name, op, value in topic_ops])
            for topic, topic_ops in wanted.items()
        ],
        validate_only,
    )
    try:
        response = await _send(admin, request, "alter topic configs")
    except KafkaUnavailable:
        raise
    except MirrorError as exc:
        return dict.fromkeys(wanted, exc)
    result: dict[str, MirrorError | None] = {}
    for code, message, _rtype, name in response.responses:
        if name in wanted:
            result[name] = error_for_code(code, f"alter configs of topic {name}", message) if code else None
    for topic in wanted:
        result.setdefault(topic, KafkaRequestFailed(f"alter configs of topic {topic}: no answer"))
    return result


# --- ACLs ------------------------------------------------------------------------------------------------


class ResourceType(IntEnum):
    UNKNOWN = 0
    ANY = 1
    TOPIC = 2
    GROUP = 3
    CLUSTER = 4
    TRANSACTIONAL_ID = 5
    DELEGATION_TOKEN = 6
    USER = 7


class PatternType(IntEnum):
    UNKNOWN = 0
    ANY = 1
    MATCH = 2
    LITERAL = 3
    PREFIXED = 4


class AclOperation(IntEnum):
    UNKNOWN = 0
    ANY = 1
    ALL = 2
    READ = 3
    WRITE = 4
    CREATE = 5
    DELETE = 6
    ALTER = 7
    DESCRIBE = 8
    CLUSTER_ACTION = 9
    DESCRIBE_CONFIGS = 10
    ALTER_CONFIGS = 11
    IDEMPOTENT_WRITE = 12
    CREATE_TOKENS = 13
    DESCRIBE_TOKENS = 14


class AclPermission(IntEnum):
    UNKNOWN = 0
    ANY = 1
    DENY = 2
    ALLOW = 3


def _enum(cls: type[IntEnum], code: int) -> Any:
    try:
        return cls(code)
    except ValueError:
        return cls(0)  # UNKNOWN: a code newer than this table


@dataclass(frozen=True, order=True, slots=True)
class AclBinding:
    """One ACL: (resource type, name, pattern type) and (principal, host, operation, permission)."""

    resource_type: ResourceType
    name: str
    pattern_type: PatternType
    principal: str
    host: str
    operation: AclOperation
    permission: AclPermission

    def __str__(self) -> str:
        return (
            f"{self.permission.name} {self.principal} from {self.host} {self.operation.name} "
            f"on {self.resource_type.name}:{self.name} ({self.pattern_type.name})"
        )


class _DescribeTopicAcls(Request[DescribeAclsRequest_v0 | DescribeAclsRequest_v1]):  # type: ignore[misc]
    """Every ACL on TOPIC resources, any pattern type (Java MM2's ``ANY_TOPIC_ACL`` filter)."""

    API_KEY = 29

    def build(self, request_struct_class: Any) -> Any:
        any_op, any_permission = AclOperation.ANY, AclPermission.ANY
        if request_struct_class.API_VERSION < 1:
            return request_struct_class(ResourceType.TOPIC, None, None, None, any_op, any_permission)
        return request_struct_class(
            ResourceType.TOPIC, None, PatternType.ANY, None, None, any_op, any_permission
        )


async def describe_topic_acls(admin: Admin) -> list[AclBinding] | None:
    """Every ACL on topic resources of the cluster; None when it has no authorizer (SECURITY_DISABLED).

    Raises the request's error otherwise (e.g. `AuthorizationFailed` without DESCRIBE on the cluster)."""
    response = await _send(admin, _DescribeTopicAcls(), "describe topic ACLs")
    if response.error_code == _SECURITY_DISABLED:
        return None
    if response.error_code:
        raise error_for_code(response.error_code, "describe topic ACLs", response.error_message)
    bindings = []
    for resource in response.resources:
        if len(resource) == 3:  # v0: no pattern type, always LITERAL
            rtype, name, acls = resource
            pattern = int(PatternType.LITERAL)
        else:
            rtype, name, pattern, acls = resource
        bindings += [
            AclBinding(
                _enum(ResourceType, rtype),
                name,
                _enum(PatternType, pattern),
                principal,
                host,
                _enum(AclOperation, operation),
                _enum(AclPermission, permission),
            )
            for principal, host, operation, permission in acls
        ]
    return bindings


class _CreateAcls(Request[CreateAclsRequest_v0 | CreateAclsRequest_v1]):  # type: ignore[misc]
    """CreateAcls with many bindings in one request (the protocol allows it; aiokafka's wrapper does not)."""

    API_KEY = 30

    def __init__(self, bindings: Sequence[AclBinding]) -> None:
        self._bindings = list(bindings)

    def build(self, request_struct_class: Any) -> Any:
        if request_struct_class.API_VERSION < 1:
            if any(b.pattern_type != PatternType.LITERAL for b in self._bindings):
                raise ke.IncompatibleBrokerVersion("CreateAcls v0 only takes LITERAL resource patterns")
            return request_struct_class(
                [
                    (b.resource_type, b.name, b.principal, b.host, b.operation, b.permission)
                    for b in self._bindings
                ]
            )
        return request_struct_class(
            [
                (b.resource_type, b.name, b.pattern_type, b.principal, b.host, b.operation, b.permission)
                for b in self._bindings
            ]
        )


async def create_acls(admin: Admin, bindings: Sequence[AclBinding]) -> list[MirrorError | None]:
    """Create `bindings` (creating an existing ACL is a no-op); per binding, in order, None or its error.
    A request rejected as a whole gives its error for every binding; raises only `KafkaUnavailable`."""
    if not bindings:
        return []
    try:
        response = await _send(admin, _CreateAcls(bindings), "create ACLs")
    except KafkaUnavailable:
        raise
    except MirrorError as exc:
        return [exc] * len(bindings)
    answers = list(response.creation_responses)
    results: list[MirrorError | None] = []
    for index, binding in enumerate(bindings):
        if index >= len(answers):
            results.append(KafkaRequestFailed(f"create ACL {binding}: no answer"))
            continue
        code, message = answers[index]
        results.append(error_for_code(code, f"create ACL {binding}", message) if code else None)
    return results
