"""`mirror.kafka._internals`: the aiokafka private APIs are checked when the module is imported."""

from __future__ import annotations

import aiokafka
import pytest

from mirror.kafka import _internals


def test_the_installed_aiokafka_is_the_one_the_internals_were_written_against() -> None:
    _internals._check_version(aiokafka.__version__)  # the import itself already did it


def test_another_release_series_fails_naming_both_versions() -> None:
    with pytest.raises(ImportError) as info:
        _internals._check_version("0.15.0")
    assert "aiokafka 0.15.0" in str(info.value)
    assert f"aiokafka {_internals.WRITTEN_FOR}" in str(info.value)


def test_a_missing_attribute_is_named() -> None:
    class Client:
        def __init__(self) -> None:
            self.other = 1

    with pytest.raises(ImportError, match=r"Client\._send_request is gone"):
        _internals._require(Client, "_send_request")
    with pytest.raises(ImportError, match=r"Client\.__init__ no longer uses _client"):
        _internals._require(Client, "_client", set_in="__init__")
    _internals._require(Client, "other", set_in="__init__")
