"""Command-line parsing rules that need no VM."""

from __future__ import annotations

import pytest

from hypr_tui.commands import UsageError, _env_item, parse_cpus, parse_memory


@pytest.mark.parametrize("text, mib", [("256m", 256), ("1g", 1024), ("1G", 1024), ("524288k", 512),
                                       ("268435456", 256), ("512mb", 512)])
def test_memory(text, mib):
    assert parse_memory(text) == mib


@pytest.mark.parametrize("text", ["", "lots", "12x", "1m", "-5g"])
def test_bad_memory(text):
    with pytest.raises(UsageError, match="--memory"):
        parse_memory(text)


def test_cpus_round_up_to_whole_vcpus():
    assert parse_cpus("0.5") == 1
    assert parse_cpus("2") == 2
    assert parse_cpus("1.5") == 2
    for bad in ("0", "-1", "many", "100"):
        with pytest.raises(UsageError):
            parse_cpus(bad)


def test_env_items(monkeypatch):
    monkeypatch.setenv("FROM_HOST", "yes")
    monkeypatch.delenv("NOT_SET", raising=False)
    assert _env_item("A=b=c") == "A=b=c"
    assert _env_item("FROM_HOST") == "FROM_HOST=yes"
    assert _env_item("NOT_SET") is None
    for bad in ("=x", "A B=1", ""):
        with pytest.raises(UsageError, match="invalid environment variable"):
            _env_item(bad)
