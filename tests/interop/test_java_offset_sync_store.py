"""Java MM2's own OffsetSyncStore, fed the scenarios of `store_scenarios`, gives exactly the committed
JAVA_STORE_VECTORS of tests/unit/mm2/test_offset_translation.py (which our store is checked against).

The generator is tests/interop/java/OffsetSyncStoreVectors.java, run against the connect-mirror jars from
Maven (`resolve_mirrormaker`). To regenerate the vectors (e.g. for another connect-mirror version, set
with MIRROR_MM2_VERSION, or after changing `store_scenarios`):

    python -m tests.interop.test_java_offset_sync_store --print

prints the `JAVA_STORE_VECTORS = {...}` assignment, formatted as in the test module: paste it over the
old one (and update the version named in the comment above it).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from mirror.local.kafka import Distribution, resolve_mirrormaker
from tests.interop.test_java_client import tool
from tests.unit.mm2.test_offset_translation import JAVA_STORE_VECTORS, store_scenarios

JAVA_SOURCE = Path(__file__).parent / "java" / "OffsetSyncStoreVectors.java"
MAIN_CLASS = "org.apache.kafka.connect.mirror.OffsetSyncStoreVectors"
LINE_LENGTH = 110

Runs = list[tuple[int, int, int]]
Translations = list[tuple[int, int | None]]
Vectors = dict[str, tuple[Runs, Translations]]


def java_vectors(mm2: Distribution, workdir: Path) -> Vectors:
    """Compile the generator and run it over `store_scenarios()`."""
    classes = workdir / "classes"
    proc = subprocess.run(
        [tool("javac"), "-cp", mm2.classpath, "-d", str(classes), str(JAVA_SOURCE)],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert proc.returncode == 0, f"javac failed:\n{proc.stderr}"
    scenarios = [
        {"name": name, "must_read": must_read, "read_at": read_at, "syncs": syncs}
        for name, must_read, read_at, syncs in store_scenarios()
    ]
    proc = subprocess.run(
        [tool("java"), "-cp", f"{classes}:{mm2.classpath}", MAIN_CLASS],
        input=json.dumps(scenarios),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert proc.returncode == 0, f"OffsetSyncStoreVectors failed:\n{proc.stderr[-3000:]}"
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    return {
        name: (
            [(i, up, down) for i, up, down in v["runs"]],
            [(g, translated) for g, translated in v["translations"]],
        )
        for name, v in out.items()
    }


def test_java_store_gives_the_committed_vectors(mirrormaker: Distribution, tmp_path: Path) -> None:
    """Every committed slot run and translation is what Java's OffsetSyncStore computes today."""
    actual = java_vectors(mirrormaker, tmp_path)
    assert list(actual) == list(JAVA_STORE_VECTORS)
    for name, (runs, translations) in JAVA_STORE_VECTORS.items():
        assert actual[name][0] == runs, f"{name}: slots differ from Java's"
        assert actual[name][1] == translations, f"{name}: translations differ from Java's"


def _items(items: list[str], indent: int) -> list[str]:
    """A list literal as ruff formats it: on one line if it fits (with the trailing comma), else one
    item a line."""
    pad = " " * indent
    one_line = f"{pad}[{', '.join(items)}],"
    if len(one_line) <= LINE_LENGTH:
        return [one_line]
    return [f"{pad}[", *(f"{pad}    {item}," for item in items), f"{pad}],"]


def render(vectors: Vectors) -> str:
    """The `JAVA_STORE_VECTORS` assignment as it stands in tests/unit/mm2/test_offset_translation.py."""
    lines = [
        "JAVA_STORE_VECTORS: dict[str, tuple[list[tuple[int, int, int]], list[tuple[int, int | None]]]] = {"
    ]
    for name, (runs, translations) in vectors.items():
        lines.append(f'    "{name}": (')
        lines += _items([f"({i}, {up}, {down})" for i, up, down in runs], 8)
        lines += _items([f"({g}, {t})" for g, t in translations], 8)
        lines.append("    ),")
    lines.append("}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if argv != ["--print"]:
        print(f"usage: python -m tests.interop.test_java_offset_sync_store --print\n\n{__doc__}")
        return 2
    with tempfile.TemporaryDirectory() as workdir:
        print(render(java_vectors(resolve_mirrormaker(), Path(workdir))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
