"""WAN latency for the benchmark: a toxiproxy latency proxy between the replicator and one cluster.

``python -m bench --wan-ms N --wan-side source|target`` puts N ms of round-trip time (N/2 each way, a
toxiproxy ``latency`` toxic per direction) between the replicator (mirror or Java MM2) and that side's
cluster. The cluster is started with a second listener advertised at the proxy's port
(`mirror.local.kafka.LocalKafkaCluster.proxied`), so the replicator's every connection to it, not only the
bootstrap one, passes the proxy; the benchmark's own clients (preload, counting, latency probes) use the
direct listener. The proxy adds latency only, no bandwidth limit, and its own CPU on the same machine.

toxiproxy (Shopify/toxiproxy) is built once with ``go install`` from the Go module proxy into
``${MIRROR_CACHE_DIR:-~/.cache/mirror}/tools/bin/toxiproxy-server`` (as deploy/tools.sh does for its tools)
and kept there; ``MIRROR_TOXIPROXY`` names another binary.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from mirror.local.kafka import HarnessError, cache_dir, free_port

TOXIPROXY_MODULE = "github.com/Shopify/toxiproxy/v2"
TOXIPROXY_VERSION = "v2.12.0"


def _go() -> str:
    go = shutil.which("go") or "/usr/local/go/bin/go"
    if not Path(go).exists():
        raise HarnessError("--wan-ms needs toxiproxy, built with Go (1.22+): no `go` found")
    return go


def _built_version(go: str, binary: Path) -> bool:
    info = subprocess.run([go, "version", "-m", str(binary)], capture_output=True, text=True, check=False)
    return any(
        line.split()[1:3] == [TOXIPROXY_MODULE, TOXIPROXY_VERSION]
        for line in info.stdout.splitlines()
        if line.strip().startswith("mod")
    )


def toxiproxy_server() -> Path:
    """The toxiproxy server binary: ``MIRROR_TOXIPROXY``, or the cached build (built on first use)."""
    if named := os.environ.get("MIRROR_TOXIPROXY"):
        return Path(named)
    binary = cache_dir() / "tools" / "bin" / "toxiproxy-server"
    go = _go()
    if binary.exists() and _built_version(go, binary):
        return binary
    binary.parent.mkdir(parents=True, exist_ok=True)
    print(f"building toxiproxy {TOXIPROXY_VERSION} into {binary.parent}", file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "GOBIN": tmp, "GOTOOLCHAIN": "local"}
        subprocess.run(
            [go, "install", f"{TOXIPROXY_MODULE}/cmd/server@{TOXIPROXY_VERSION}"], env=env, check=True
        )
        shutil.move(Path(tmp) / "server", binary)
    return binary


class Toxiproxy:
    """One toxiproxy server on loopback (its HTTP API on a free port); proxies with latency toxics."""

    def __init__(self, log: Path) -> None:
        self.port = free_port()
        self.api = f"http://127.0.0.1:{self.port}"
        binary = toxiproxy_server()
        with log.open("wb") as out:
            self._proc = subprocess.Popen(
                [str(binary), "-host", "127.0.0.1", "-port", str(self.port)],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 30
        while True:
            try:
                self._call("GET", "/version")
                return
            except (urllib.error.URLError, ConnectionError):
                if self._proc.poll() is not None or time.monotonic() > deadline:
                    self.close()
                    raise HarnessError(f"toxiproxy did not start (log: {log})") from None
                time.sleep(0.1)

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.api + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            text = response.read()
        return json.loads(text) if text else None

    def proxy(self, name: str, listen_port: int, upstream_port: int, rtt_ms: int) -> None:
        """Forward ``listen_port`` to ``upstream_port`` (loopback), adding ``rtt_ms`` round trip."""
        self._call(
            "POST",
            "/proxies",
            {
                "name": name,
                "listen": f"127.0.0.1:{listen_port}",
                "upstream": f"127.0.0.1:{upstream_port}",
                "enabled": True,
            },
        )
        for stream, ms in (("upstream", rtt_ms // 2), ("downstream", rtt_ms - rtt_ms // 2)):
            self._call(
                "POST",
                f"/proxies/{name}/toxics",
                {"name": f"wan-{stream}", "type": "latency", "stream": stream, "attributes": {"latency": ms}},
            )

    def remove(self, name: str) -> None:
        try:
            self._call("DELETE", f"/proxies/{name}")
        except urllib.error.HTTPError as exc:
            if exc.code != 404:
                raise

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
