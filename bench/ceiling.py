"""The ceiling: the broker's own produce rate for the same records, with Kafka's ProducerPerformance tool.

``org.apache.kafka.tools.ProducerPerformance`` lives in ``org.apache.kafka:kafka-tools``, resolved from Maven
Central with ``tools.pom.xml`` (next to this module) into the harness's cache, like the broker jars.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from mirror.local.kafka import HarnessError, cache_dir

_POM = Path(__file__).resolve().parent / "tools.pom.xml"
_SUMMARY = re.compile(r"(\d+) records sent, ([\d.]+) records/sec \(([\d.]+) MB/sec\)")


def resolve_tools(version: str) -> Path:
    """The directory of the kafka-tools jars (``java -cp DIR/*``)."""
    libs = cache_dir() / f"kafka-tools-{version}" / "libs"
    if (libs / ".complete").exists():
        return libs
    mvn = shutil.which("mvn")
    if mvn is None:
        raise HarnessError("'mvn' is not on PATH: the benchmark resolves kafka-tools with Maven")
    tmp = libs.with_name(f"libs.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    cmd = [mvn, "-q", "-B", "-f", str(_POM), f"-Dkafka.version={version}"]
    cmd += ["dependency:copy-dependencies", f"-DoutputDirectory={tmp}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
    if proc.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise HarnessError(f"maven could not resolve kafka-tools {version}:\n{proc.stdout}{proc.stderr}")
    shutil.rmtree(libs, ignore_errors=True)
    tmp.rename(libs)
    (libs / ".complete").touch()
    return libs


@dataclass(frozen=True)
class Ceiling:
    records: int
    records_per_s: float
    mb_per_s: float


def producer_performance(
    libs: Path,
    bootstrap: str,
    topic: str,
    *,
    records: int,
    size: int,
    producer: dict[str, str],
    payload: Path,
) -> Ceiling:
    """Run ProducerPerformance at full speed (``--throughput -1``) with the replicators' producer settings."""
    props = [f"bootstrap.servers={bootstrap}", *(f"{k}={v}" for k, v in producer.items())]
    cmd = ["java", "-Xms256M", "-Xmx1G", "-cp", f"{libs}/*", "org.apache.kafka.tools.ProducerPerformance"]
    cmd += ["--topic", topic, "--num-records", str(records), "--throughput", "-1"]
    cmd += ["--payload-file", str(payload), "--payload-delimiter", "\n"]
    cmd += ["--producer-props", *props]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, check=False)
    matches = _SUMMARY.findall(proc.stdout)
    if proc.returncode != 0 or not matches:
        raise HarnessError(f"ProducerPerformance failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    sent, rate, _mb = matches[-1]
    return Ceiling(int(sent), float(rate), float(rate) * size / 1e6)
