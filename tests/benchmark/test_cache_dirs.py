"""Where the suite caches: $LDIFS_BENCH_CACHE, else $XDG_CACHE_HOME/ldifs-bench, else ~/.cache/ldifs-bench."""

from __future__ import annotations

from pathlib import Path

from benchmark.config import ModelConfig
from benchmark.models.architectures import default_cache_dir
from tasks.cache import default_cache_dir as data_cache_dir


def test_xdg_cache_home_is_honoured_and_ldifs_bench_cache_wins(monkeypatch, tmp_path):
    monkeypatch.delenv("LDIFS_BENCH_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir(ModelConfig()) == tmp_path / "xdg" / "ldifs-bench"
    assert data_cache_dir() == tmp_path / "xdg" / "ldifs-bench" / "data"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/path")  # the spec: relative values are ignored
    assert default_cache_dir(ModelConfig()) == Path.home() / ".cache" / "ldifs-bench"
    monkeypatch.setenv("LDIFS_BENCH_CACHE", str(tmp_path / "mine"))
    assert default_cache_dir(ModelConfig()) == tmp_path / "mine" and data_cache_dir() == tmp_path / "mine" / "data"
    assert default_cache_dir(ModelConfig(cache_dir=str(tmp_path / "cfg"))) == tmp_path / "cfg"
