"""`mirror.kafka.errors.error_for_code`: the one mapping of broker error codes to `mirror.errors`."""

from __future__ import annotations

from mirror.config import ClusterSettings
from mirror.errors import AuthorizationFailed, KafkaRequestFailed
from mirror.kafka.errors import error_for_code


def test_a_code_aiokafka_does_not_know_keeps_its_number() -> None:
    err = error_for_code(9999, "describe group g")
    assert isinstance(err, KafkaRequestFailed) and err.code == 9999 and err.retriable
    assert str(err) == "describe group g: broker error code 9999"


def test_codes_a_caller_acts_on_have_their_kind() -> None:
    assert error_for_code(44, "alter configs of topic t", "no").kind == "policy_violation"  # type: ignore[attr-defined]
    assert error_for_code(35, "create ACLs").kind == "unsupported_version"  # type: ignore[attr-defined]


def test_an_authorization_code_names_operation_and_resource_when_asked() -> None:
    cluster = ClusterSettings(alias="B", bootstrap_servers=["b:9092"])
    err = error_for_code(29, "create topic t", cluster=cluster, denied_as=("CREATE", "topic 't'"))
    assert isinstance(err, AuthorizationFailed)
    assert str(err).startswith("cluster B: not authorized to CREATE topic 't'")
    plain = error_for_code(29, "create topic t")
    assert isinstance(plain, AuthorizationFailed) and "create topic t" in str(plain)


def test_other_codes_are_translated_with_the_brokers_message() -> None:
    err = error_for_code(15, "fetch offsets of group g")  # COORDINATOR_NOT_AVAILABLE
    assert isinstance(err, KafkaRequestFailed) and err.code == 15
    assert "fetch offsets of group g" in str(err)
