"""``mirror verify`` and ``mirror cutover`` on the command line: exit codes and messages, no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from mirror.cli import main

CONFIG = """clusters = A, B, C
A.bootstrap.servers = 127.0.0.1:9
B.bootstrap.servers = 127.0.0.1:9
C.bootstrap.servers = 127.0.0.1:9
A->B.enabled = true
{extra}
"""


def config(tmp_path: Path, extra: str = "") -> str:
    path = tmp_path / "mm2.properties"
    path.write_text(CONFIG.format(extra=extra))
    return str(path)


@pytest.mark.parametrize("command", ["verify", "cutover"])
def test_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    assert f"usage: mirror {command}" in capsys.readouterr().out


@pytest.mark.parametrize("command", [["verify"], ["cutover", "--topic", "orders"]])
def test_a_flow_that_is_not_enabled_exits_2_naming_the_enabled_ones(
    command: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*command, "-c", config(tmp_path), "--from", "A", "--to", "C"]) == 2
    err = capsys.readouterr().err
    assert "--from/--to" in err and "A->C" in err and "A->B" in err


def test_without_from_and_to_two_enabled_flows_are_ambiguous(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["verify", "-c", config(tmp_path, "B->C.enabled = true")]) == 2
    assert "A->B, B->C" in capsys.readouterr().err


def test_cutover_needs_a_topic_and_sane_numbers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cutover", "-c", config(tmp_path)]) == 2
    assert "--topic" in capsys.readouterr().err
    assert main(["cutover", "-c", config(tmp_path), "--topic", "t", "--timeout", "-1"]) == 2
    assert "--timeout" in capsys.readouterr().err
    assert main(["verify", "-c", config(tmp_path), "--sample", "0"]) == 2
    assert "--sample" in capsys.readouterr().err


@pytest.mark.parametrize(("command", "cluster"), [(["verify"], "B"), (["cutover", "--topic", "t"], "A")])
def test_an_unreachable_cluster_is_named_exit_1(
    command: list[str], cluster: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*command, "-c", config(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"mirror: cluster {cluster}: cannot") and "Traceback" not in err
