"""The public API: what a notebook imports from ``benchmark`` without deep imports."""

import subprocess
import sys
from pathlib import Path

import pytest

import benchmark


def test_public_names_resolve_to_the_suite_objects():
    from benchmark.config import RunConfig, load_yaml
    from benchmark.reporting import metrics
    from benchmark.run.runner import run
    from benchmark.training.method import Method, register_method
    from tasks.base import register_task

    assert benchmark.RunConfig is RunConfig and benchmark.load_config is load_yaml
    assert benchmark.run_benchmark is run and benchmark.metrics is metrics
    assert benchmark.Method is Method and benchmark.register_method is register_method
    assert benchmark.register_task is register_task
    from methods import METHODS

    assert "ldifs" in METHODS


def test_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        benchmark.nope  # noqa: B018


def test_importing_the_package_is_cheap():
    """``import benchmark`` loads neither torch nor the registries (lazy re-exports)."""
    code = "import sys, benchmark; print('torch' in sys.modules, 'methods' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.split() == ["False", "False"]
