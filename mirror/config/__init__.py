"""The configuration room: settings of mirror, read from mm2.properties, YAML, TOML, ``MIRROR_*`` environment
variables and ``--set`` overrides (docs/configuration.md).

Modules, lowest first: :mod:`~mirror.config.problems` (ConfigProblem, ConfigError, secrets masking),
:mod:`~mirror.config.layer` (ConfigLayer: one source before validation), :mod:`~mirror.config.properties`
(Java .properties syntax, config providers), :mod:`~mirror.config.security` (cluster connection keys: JAAS,
TLS stores), :mod:`~mirror.config.client_keys` (the Java client keys of consumers, producers and admin
clients), :mod:`~mirror.config.routing` (which mm2.properties key goes where), :mod:`~mirror.config.fields`
and :mod:`~mirror.config.models` (the pydantic models), :mod:`~mirror.config.sources` (file and environment
sources), :mod:`~mirror.config.validation` and :mod:`~mirror.config.load` (:func:`load_settings`,
:func:`redacted`).

Other packages import from here only.
"""

from mirror.config.fields import DEFAULT_REPLICATION_POLICY, IDENTITY_REPLICATION_POLICY
from mirror.config.load import LoadedSettings, config_digest, load_settings, redacted
from mirror.config.models import (
    SECRET_FILE_FIELDS,
    ClusterSettings,
    FlowSettings,
    SaslMechanism,
    SecurityProtocol,
    ServiceSettings,
    Settings,
)
from mirror.config.problems import MASK, ConfigError, ConfigProblem, is_secret_key

__all__ = [
    "DEFAULT_REPLICATION_POLICY",
    "IDENTITY_REPLICATION_POLICY",
    "MASK",
    "SECRET_FILE_FIELDS",
    "ClusterSettings",
    "ConfigError",
    "ConfigProblem",
    "FlowSettings",
    "LoadedSettings",
    "SaslMechanism",
    "SecurityProtocol",
    "ServiceSettings",
    "Settings",
    "config_digest",
    "is_secret_key",
    "load_settings",
    "redacted",
]
