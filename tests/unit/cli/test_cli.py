"""The command line: exit codes and messages, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from mirror import __version__
from mirror.cli import main


def write(tmp_path: Path, text: str, name: str = "mm2.properties") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


GOOD = """clusters = A, B
A.bootstrap.servers = 127.0.0.1:1
B.bootstrap.servers = 127.0.0.1:2
B.sasl.jaas.config = org.apache.kafka.common.security.plain.PlainLoginModule required \
    username="u" password="s3cret";
B.security.protocol = SASL_PLAINTEXT
B.sasl.mechanism = PLAIN
A->B.enabled = true
"""


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert __version__ in capsys.readouterr().out


@pytest.mark.parametrize(
    "command", [[], ["run"], ["validate"], ["demo"], ["offsets", "failback"], ["offsets", "translate"]]
)
def test_help_on_every_command(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main([*command, "--help"])
    assert exc.value.code == 0
    assert "usage: mirror" in capsys.readouterr().out


def test_validate_offline_prints_settings_without_secrets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["validate", "--offline", "--config", str(write(tmp_path, GOOD))]) == 0
    out = capsys.readouterr().out
    assert "127.0.0.1:2" in out and "A->B" in out
    assert "s3cret" not in out


def test_bad_value_exits_2_naming_key_value_and_allowed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write(tmp_path, GOOD + "tasks.max = many\n")
    assert main(["validate", "--offline", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "tasks.max" in err and "many" in err and "integer" in err
    assert "Traceback" not in err


def test_missing_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--config", str(tmp_path / "nope.properties")]) == 2
    assert "nope.properties" in capsys.readouterr().err


def test_malformed_set_flag_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "--offline", "-c", str(write(tmp_path, GOOD)), "--set", "novalue"]) == 2
    assert "--set" in capsys.readouterr().err


def test_set_flag_overrides_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = str(write(tmp_path, GOOD))
    assert main(["validate", "--offline", "-c", config, "--set", "A->B.topics=orders.*"]) == 0
    assert "orders.*" in capsys.readouterr().out


def test_validate_reports_unreachable_cluster(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write(tmp_path, "clusters = A\nA.bootstrap.servers = 127.0.0.1:9\nadmin.timeout.ms = 2000\n")
    assert main(["validate", "-c", str(config)]) == 1
    assert "unreachable" in capsys.readouterr().out


def test_failback_without_a_flow_between_the_clusters_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`mirror offsets failback` needs a flow in one direction at least; both clusters must be known."""
    config = str(
        write(
            tmp_path,
            "clusters = A, B, C\nA.bootstrap.servers = x:1\nB.bootstrap.servers = x:2\n"
            "C.bootstrap.servers = x:3\nA->B.enabled = true\n",
        )
    )
    assert main(["offsets", "failback", "-g", "app", "--from", "A", "--to", "C", "-c", config]) == 2
    assert "no enabled flow between A and C" in capsys.readouterr().err
    assert main(["offsets", "failback", "-g", "app", "--from", "A", "--to", "Z", "-c", config]) == 2
    assert "unknown cluster 'Z'" in capsys.readouterr().err
