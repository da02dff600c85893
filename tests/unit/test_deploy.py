"""deploy/ and the Dockerfile: they parse, lint, use only metrics the service exports and only settings
the configuration knows; `kustomize build` renders the Kubernetes base as the README describes it;
`promtool` checks and unit-tests the alert rules; the Dockerfile's own commands work. kustomize and promtool
come from deploy/tools.sh (run it once); without them those tests fail, they never skip."""

from __future__ import annotations

import asyncio
import functools
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

import pytest
import yaml
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from mirror import metrics
from mirror.config import load_settings
from mirror.local.kafka import cache_dir
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


# --- kustomize and promtool (installed by deploy/tools.sh) -----------------------------------------------

TOOLS_SCRIPT = "deploy/tools.sh"
ALERT_TESTS = DEPLOY / "prometheus" / "alerts.test.yaml"


def deploy_tool(name: str) -> str:
    """kustomize or promtool: $MIRROR_KUSTOMIZE / $MIRROR_PROMTOOL, else where deploy/tools.sh installs it.
    When it is missing the test fails (never skips) and says how to install it."""
    path = Path(os.environ.get(f"MIRROR_{name.upper()}") or cache_dir() / "tools" / "bin" / name)
    assert os.access(path, os.X_OK), (
        f"{name} not found at {path}: run `bash {TOOLS_SCRIPT}` once (installs kustomize and promtool there)"
    )
    return str(path)


def _run_tool(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    command = [deploy_tool(name), *args]
    return subprocess.run(command, check=False, capture_output=True, text=True, timeout=120, cwd=ROOT)


# --- Kubernetes manifests, as `kustomize build` renders them ---------------------------------------------


@functools.cache
def rendered_base() -> dict[str, dict[str, Any]]:
    """The objects `kustomize build deploy/kubernetes/base` renders, by kind (one of each)."""
    result = _run_tool("kustomize", "build", str(BASE.relative_to(ROOT)))
    assert result.returncode == 0, result.stderr
    docs: dict[str, dict[str, Any]] = {}
    for doc in yaml.safe_load_all(result.stdout):
        assert doc["kind"] not in docs, doc["kind"]
        docs[doc["kind"]] = doc
    return docs


def test_kustomize_renders_the_base() -> None:
    """`kustomize build` renders the README's objects, all with the base's labels and the image's tag."""
    docs = rendered_base()
    assert set(docs) == {
        "Deployment",
        "ConfigMap",
        "Secret",
        "Service",
        "PodDisruptionBudget",
        "ServiceMonitor",
    }
    for doc in docs.values():
        assert doc["metadata"]["labels"]["app.kubernetes.io/name"] == "mirror", doc["kind"]
    (container,) = docs["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "mirror:0.1.0"
    # the ConfigMap is generated from the example file (its name gets a hash of the content)
    config_map = docs["ConfigMap"]
    assert config_map["metadata"]["name"].startswith("mirror-config-")
    assert config_map["data"] == {"mm2.properties": (BASE / "mm2.properties").read_text()}


def test_rendered_deployment_probes_security_and_wiring() -> None:
    """Probes hit /healthz and /readyz on port 8080; non-root and read-only as in the image; 2 replicas;
    the selectors, the Service, the ServiceMonitor, the config mount and the Secret refer to each other."""
    docs = rendered_base()
    deployment, service = docs["Deployment"], docs["Service"]
    assert deployment["spec"]["replicas"] == 2
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert {"name": "http", "containerPort": 8080, "protocol": "TCP"} in container["ports"]
    assert container["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["resources"]["requests"]["cpu"] and container["resources"]["limits"]["memory"]
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
    # the Service also publishes not-ready pods (their metrics matter most then), on the container's port
    assert service["spec"]["publishNotReadyAddresses"] is True
    (port,) = service["spec"]["ports"]
    assert port["targetPort"] == "http" and port["port"] == 8080
    monitor = docs["ServiceMonitor"]["spec"]
    assert monitor["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    (endpoint,) = monitor["endpoints"]
    assert endpoint == {**endpoint, "port": port["name"], "path": "/metrics"}
    # --config names mm2.properties in the mounted (generated, renamed) ConfigMap
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert volumes["config"]["configMap"]["name"] == docs["ConfigMap"]["metadata"]["name"]
    config_path = container["args"][container["args"].index("--config") + 1]
    assert config_path == f"{mounts['config']['mountPath']}/mm2.properties"
    assert "mm2.properties" in docs["ConfigMap"]["data"]
    # the SASL credentials come from the Secret's keys
    refs = [e["valueFrom"]["secretKeyRef"] for e in container["env"] if "valueFrom" in e]
    assert refs
    for ref in refs:
        assert ref["name"] == docs["Secret"]["metadata"]["name"]
        assert ref["key"] in docs["Secret"]["stringData"]


def test_rendered_config_and_environment_load_without_warnings(tmp_path: Path) -> None:
    """The rendered ConfigMap's mm2.properties with the Deployment's env (the Secret's credentials) is a
    valid config: no warning, HTTP on all interfaces at the container's port, the SASL credentials set."""
    docs = rendered_base()
    (container,) = docs["Deployment"]["spec"]["template"]["spec"]["containers"]
    secret = docs["Secret"]["stringData"]
    env = {}
    for item in container["env"]:
        if "value" in item:
            env[item["name"]] = item["value"]
        else:
            env[item["name"]] = secret[item["valueFrom"]["secretKeyRef"]["key"]]
    assert {"MIRROR_CLUSTERS__west__SASL_USERNAME", "MIRROR_CLUSTERS__west__SASL_PASSWORD"} <= env.keys()
    config = tmp_path / "mm2.properties"
    config.write_text(docs["ConfigMap"]["data"]["mm2.properties"])
    loaded = load_settings(config, env=env)
    assert loaded.warnings == []
    settings = loaded.settings
    assert settings.service.http_host == "0.0.0.0"
    assert settings.service.http_port == container["ports"][0]["containerPort"] == 8080
    west = settings.cluster("west")
    assert west.sasl_password is not None
    assert west.sasl_password.get_secret_value() == secret["west-sasl-password"]
    assert west.sasl_username == secret["west-sasl-username"]
    assert [f.name for f in settings.replicating_flows()] == ["east->west"]


# --- Prometheus rules, checked and unit-tested by promtool ----------------------------------------------


def test_promtool_checks_the_alert_rules() -> None:
    """`promtool check rules` accepts deploy/prometheus/alerts.yaml (PromQL, templates, durations)."""
    result = _run_tool("promtool", "check", "rules", str(ALERTS.relative_to(ROOT)))
    assert result.returncode == 0, result.stdout + result.stderr
    count = sum(len(group["rules"]) for group in yaml.safe_load(ALERTS.read_text())["groups"])
    assert f"SUCCESS: {count} rules found" in result.stdout, result.stdout


def test_promtool_alert_unit_tests_pass() -> None:
    """`promtool test rules deploy/prometheus/alerts.test.yaml`: each alert fires once its condition held
    for its `for:`, with the expected labels and rendered annotations, and not for healthy series."""
    result = _run_tool("promtool", "test", "rules", str(ALERT_TESTS.relative_to(ROOT)))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout, result.stdout


def test_every_alert_has_unit_tests() -> None:
    """alerts.test.yaml tests every rule of alerts.yaml, each both firing and not firing."""
    tests = yaml.safe_load(ALERT_TESTS.read_text())
    assert tests["rule_files"] == [ALERTS.name]
    cases = [case for test in tests["tests"] for case in test["alert_rule_test"]]
    fires = {case["alertname"] for case in cases if case["exp_alerts"]}
    silent = {case["alertname"] for case in cases if not case["exp_alerts"]}
    names = {
        rule["alert"] for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]
    }
    assert fires == silent == names


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


@pytest.mark.parametrize(
    "dockerfile", [DOCKERFILE, ROOT / "deploy" / "kafka" / "Dockerfile"], ids=["mirror", "kafka"]
)
def test_hadolint_passes(dockerfile: Path) -> None:
    """hadolint (a dev dependency) finds nothing in our Dockerfile nor in the test Kafka image's."""
    beside = Path(sys.executable).with_name("hadolint")
    hadolint = str(beside) if beside.exists() else shutil.which("hadolint")
    assert hadolint, "hadolint missing: pip install -c constraints.txt -e '.[dev]'"
    result = subprocess.run(
        [hadolint, str(dockerfile)], check=False, capture_output=True, text=True, timeout=60
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


def test_the_readme_lists_every_exported_metric() -> None:
    """README *Metrics* names every family the registry exports (a counter with its ``_total``)."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("### Metrics") :]
    section = section[: section.index("\n### ", 1)]
    listed = set(re.findall(r"`(mirror_\w+)`", section))
    exported = {
        family.name + ("_total" if family.type == "counter" else "") for family in metrics.REGISTRY.collect()
    }
    assert exported - listed == set(), "add these to the README's metrics table"
    assert listed - exported == set(), "the README lists metrics the service does not export"
