"""deploy/ and the Dockerfile: they parse, lint, use only metrics the service exports and only settings
the configuration knows; the Dockerfile's own commands work."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import yaml
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from mirror import metrics
from mirror.config import load_settings
from mirror.service.http import HttpServer

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
BASE = DEPLOY / "kubernetes" / "base"
ALERTS = DEPLOY / "prometheus" / "alerts.yaml"
DASHBOARD = DEPLOY / "grafana" / "mirror-dashboard.json"
DOCKERFILE = ROOT / "Dockerfile"

_METRIC = re.compile(r"\bmirror_[a-z0-9_]+\b")
_SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created")}


# --- helpers shared with tests/integration/test_observability.py ----------------------------------------


def alert_exprs() -> list[str]:
    rules = yaml.safe_load(ALERTS.read_text())
    return [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


def dashboard_exprs() -> list[str]:
    dash = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    exprs += [v["query"]["query"] for v in dash["templating"]["list"] if v.get("type") == "query"]
    return exprs


def metric_names(exprs: Iterable[str]) -> set[str]:
    """The mirror_* series names PromQL expressions read."""
    return {name for expr in exprs for name in _METRIC.findall(expr)}


def exported_names(exposition: str) -> set[str]:
    """Every series name an exposition declares (with a counter's _total, a histogram's _bucket...)."""
    names = set()
    for family in text_string_to_metric_families(exposition):
        names.add(family.name)
        names.update(family.name + suffix for suffix in _SUFFIXES.get(family.type, ()))
    return names


def sampled_names(exposition: str) -> set[str]:
    """The series names that have at least one sample in an exposition."""
    return {s.name for family in text_string_to_metric_families(exposition) for s in family.samples}


def registry_names() -> set[str]:
    names = set()
    for family in metrics.REGISTRY.collect():
        names.add(family.name)
        names.update(family.name + suffix for suffix in _SUFFIXES.get(family.type, ()))
    return names


# --- YAML/JSON, metric names ----------------------------------------------------------------------------


def _yaml_files() -> Iterator[Path]:
    yield from sorted(DEPLOY.rglob("*.yaml"))
    yield from sorted(DEPLOY.rglob("*.yml"))


def test_every_yaml_and_json_file_parses() -> None:
    """Every YAML document and the dashboard JSON under deploy/ parse."""
    files = list(_yaml_files())
    assert len(files) >= 7, files
    for path in files:
        docs = list(yaml.safe_load_all(path.read_text()))
        assert docs and all(isinstance(d, dict) for d in docs), path
    json.loads(DASHBOARD.read_text())


def test_alerts_and_dashboard_use_only_exported_metrics() -> None:
    """Every mirror_* name in the alert rules and the dashboard is a series the registry exports."""
    used = metric_names(alert_exprs()) | metric_names(dashboard_exprs())
    assert len(used) >= 15, used
    assert used - registry_names() == set()


def test_registry_renders_with_the_expected_families() -> None:
    """The registry renders and declares the issue's metrics (records, bytes, ages, lag, state...)."""
    text = generate_latest(metrics.REGISTRY).decode()
    names = exported_names(text)
    for name in (
        "mirror_records_total",
        "mirror_bytes_total",
        "mirror_record_age_seconds_bucket",
        "mirror_replication_latency_seconds_bucket",
        "mirror_checkpoint_latency_seconds_bucket",
        "mirror_replication_lag_records",
        "mirror_replication_lag_seconds",
        "mirror_offset_syncs_total",
        "mirror_checkpoints_total",
        "mirror_heartbeat_timestamp_seconds",
        "mirror_topics",
        "mirror_partitions",
        "mirror_task_state",
        "mirror_errors_total",
        "mirror_task_restarts_total",
        "mirror_cluster_reachable",
        "mirror_ready",
    ):
        assert name in names, name


def test_alert_rules_are_complete() -> None:
    """Each rule has a name, an expression, a severity and a summary; the issue's four alerts exist."""
    rules = [r for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]]
    for rule in rules:
        assert set(rule) >= {"alert", "expr", "labels", "annotations"}, rule
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule
        assert rule["annotations"]["summary"], rule
        assert re.fullmatch(r"\d+[smh]", rule.get("for", "0s")), rule
    names = {r["alert"] for r in rules}
    assert {"MirrorReplicationLagHigh", "MirrorHeartbeatsStale", "MirrorCheckpointsStale"} <= names
    assert "MirrorTaskFailed" in names
    assert len(names) == len(rules)


def test_dashboard_panels_are_well_formed() -> None:
    """Panels have unique ids, each target an expression and a refId, on the templated data source."""
    dash = json.loads(DASHBOARD.read_text())
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dash["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)) and all(t["expr"] for t in panel["targets"]), panel["title"]


# --- Kubernetes manifests -------------------------------------------------------------------------------


def _base_docs() -> dict[str, dict[str, Any]]:
    kustomization = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    docs = {}
    for name in kustomization["resources"]:
        for doc in yaml.safe_load_all((BASE / name).read_text()):
            docs[doc["kind"]] = doc
    return docs


def test_kustomization_lists_existing_files() -> None:
    """Every resource and generator file of the base exists, and the base has the issue's objects."""
    kustomization = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    for name in kustomization["resources"]:
        assert (BASE / name).is_file(), name
    for generator in kustomization["configMapGenerator"]:
        for name in generator["files"]:
            assert (BASE / name).is_file(), name
    assert set(_base_docs()) >= {"Deployment", "Service", "PodDisruptionBudget", "ServiceMonitor", "Secret"}


def test_deployment_probes_security_and_wiring() -> None:
    """Probes hit /healthz and /readyz on the named port; non-root as in the image; selectors match."""
    docs = _base_docs()
    deployment, service = docs["Deployment"], docs["Service"]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert {"name": "http", "containerPort": 8080, "protocol": "TCP"} in container["ports"]
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == _dockerfile_uid()
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    for selector in (
        deployment["spec"]["selector"]["matchLabels"],
        service["spec"]["selector"],
        docs["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"],
    ):
        assert selector.items() <= labels.items()
    (endpoint,) = docs["ServiceMonitor"]["spec"]["endpoints"]
    assert endpoint["port"] == service["spec"]["ports"][0]["name"] == "http"
    assert endpoint["path"] == "/metrics"
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert volumes["config"]["configMap"]["name"] == "mirror-config"
    config_path = container["args"][container["args"].index("--config") + 1]
    assert config_path == f"{mounts['config']['mountPath']}/mm2.properties"


def test_example_config_and_environment_load_without_warnings() -> None:
    """The ConfigMap's mm2.properties with the Deployment's env (the Secret's password) is a valid config."""
    docs = _base_docs()
    (container,) = docs["Deployment"]["spec"]["template"]["spec"]["containers"]
    secret = docs["Secret"]["stringData"]
    env = {}
    for item in container["env"]:
        if "value" in item:
            env[item["name"]] = item["value"]
        else:
            ref = item["valueFrom"]["secretKeyRef"]
            assert ref["name"] == docs["Secret"]["metadata"]["name"]
            env[item["name"]] = secret[ref["key"]]
    loaded = load_settings(BASE / "mm2.properties", env=env)
    assert loaded.warnings == []
    settings = loaded.settings
    assert settings.service.http_host == "0.0.0.0"
    assert settings.service.http_port == 8080
    west = settings.cluster("west")
    assert west.sasl_password is not None
    assert west.sasl_password.get_secret_value() == secret["west-sasl-password"]
    assert west.sasl_username == secret["west-sasl-username"]
    assert [f.name for f in settings.replicating_flows()] == ["east->west"]


# --- Dockerfile -----------------------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def _dockerfile_uid() -> int:
    (user,) = [args for word, args in dockerfile_instructions() if word == "USER"]
    return int(user.split(":")[0])


def test_hadolint_passes() -> None:
    """hadolint (a dev dependency) finds nothing in the Dockerfile."""
    beside = Path(sys.executable).with_name("hadolint")
    hadolint = str(beside) if beside.exists() else shutil.which("hadolint")
    assert hadolint, "hadolint missing: pip install -c constraints.txt -e '.[dev]'"
    result = subprocess.run(
        [hadolint, str(DOCKERFILE)], check=False, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_invariants() -> None:
    """Multi-stage slim build, locked deps cached before the source, non-root, entrypoint, healthcheck."""
    steps = dockerfile_instructions()
    words = [w for w, _ in steps]
    args = dict(reversed(steps))  # first occurrence of each instruction
    froms = [a for w, a in steps if w == "FROM"]
    assert len(froms) >= 2 and froms[-1].startswith("${PYTHON_IMAGE}")
    assert "ARG" in words and "PYTHON_IMAGE=python:3.11-slim" in args["ARG"]
    copies = [a for w, a in steps if w == "COPY"]
    deps_copy = next(i for i, (w, a) in enumerate(steps) if w == "COPY" and "constraints.txt" in a)
    deps_install = next(i for i, (w, a) in enumerate(steps) if w == "RUN" and "-c constraints.txt -r" in a)
    source_copy = next(i for i, (w, a) in enumerate(steps) if w == "COPY" and a.startswith("mirror "))
    assert deps_copy < deps_install < source_copy
    assert "pyproject.toml" in steps[deps_copy][1]
    assert any("--from=build" in c for c in copies)
    user = [a for w, a in steps if w == "USER"][-1]
    assert user.split(":")[0] not in {"0", "root"}
    assert words.index("USER") > max(i for i, w in enumerate(words) if w == "FROM")
    assert json.loads(args["ENTRYPOINT"]) == ["mirror"]
    assert "8080" in args["EXPOSE"].split()
    health = args["HEALTHCHECK"]
    assert "/healthz" in health and "urllib" in health and "curl" not in health and "wget" not in health


def test_dockerfile_environment_is_known_to_the_config() -> None:
    """The image's MIRROR_* variables are valid settings and make the HTTP server listen on all addresses."""
    env = {}
    for word, arguments in dockerfile_instructions():
        if word == "ENV":
            for item in shlex.split(arguments):
                name, _, value = item.partition("=")
                env[name] = value
    mirror_env = {k: v for k, v in env.items() if k.startswith("MIRROR_")}
    assert mirror_env["MIRROR_SERVICE__HTTP_HOST"] == "0.0.0.0"
    config = BASE / "mm2.properties"
    credentials = {"MIRROR_CLUSTERS__west__SASL_USERNAME": "u", "MIRROR_CLUSTERS__west__SASL_PASSWORD": "p"}
    loaded = load_settings(config, env={**mirror_env, **credentials})
    assert loaded.warnings == []
    assert loaded.settings.service.http_host == "0.0.0.0"
    assert loaded.settings.service.http_port == 8080


def test_dockerfile_requirements_command(tmp_path: Path) -> None:
    """The RUN line that writes requirements.txt yields pyproject's dependencies, each pinned in
    constraints.txt (so the dependency layer is the locked set)."""
    run = next(a for w, a in dockerfile_instructions() if w == "RUN" and "requirements.txt" in a)
    command = run.split("&&")[0].strip()
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    subprocess.run(
        command.replace("python ", f"{shlex.quote(sys.executable)} ", 1), shell=True, check=True, cwd=tmp_path
    )
    requirements = (tmp_path / "requirements.txt").read_text().split("\n")
    expected = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert [r for r in requirements if r] == expected
    pinned = {
        line.split("==")[0].lower().replace("_", "-")
        for line in (ROOT / "constraints.txt").read_text().splitlines()
        if "==" in line
    }
    for requirement in expected:
        name = re.split(r"[\[<>=!~ ]", requirement)[0].lower().replace("_", "-")
        assert name in pinned, f"{name} is not locked in constraints.txt"


async def test_dockerfile_healthcheck_command() -> None:
    """The HEALTHCHECK command exits 0 against a live /healthz and non-zero when nothing answers."""
    health = next(a for w, a in dockerfile_instructions() if w == "HEALTHCHECK")
    command = json.loads(health[health.index("CMD") + 3 :].strip())
    assert command[0] == "python"
    command[0] = sys.executable
    server = HttpServer(SimpleNamespace(flows=[], id="test"), "127.0.0.1", 0)  # type: ignore[arg-type]
    await server.start()
    try:
        ok = await _run(command, {"MIRROR_SERVICE__HTTP_PORT": str(server.port)})
    finally:
        await server.close()
    down = await _run(command, {"MIRROR_SERVICE__HTTP_PORT": str(server.port)})
    assert ok == 0
    assert down != 0


async def _run(command: list[str], env: dict[str, str]) -> int:
    proc = await asyncio.create_subprocess_exec(
        *command,
        env={**os.environ, **env},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    return await asyncio.wait_for(proc.wait(), 30)
