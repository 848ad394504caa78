"""Shared fixtures: a micro config and a micro suite-pretrained CLIP cached once per session."""

from __future__ import annotations

import logging
import sys
import warnings

import pytest
import torch

from benchmark.config import RunConfig, from_dict

MICRO = {
    "sequence": "micro",
    "threads": 1,
    "methods": ["zeroshot", "finetune", "ldifs"],
    "model": {"name": "tiny-rn", "pretrained": "suite", "pretrain": {"images": 256, "epochs": 1, "batch_size": 64}},
    "train": {"lr": 1.0e-3, "batch_size": 32, "warmup_steps": 2, "train_limit": 64},
    "eval": {"lp_train_limit": 64, "test_limit": 48, "lp_max_iter": 20},
}


@pytest.fixture(autouse=True, scope="session")
def _quiet_and_small():
    # One thread: on shared 2-vCPU machines two OpenMP threads wait on each other (measured
    # 1.5-20x slower and erratic); one thread is steady.
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", module="avalanche|qpsolvers|open_clip")
    logging.getLogger().setLevel(logging.ERROR)


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory) -> str:
    """One cache folder per test session: the micro model is pretrained once (~1 s)."""
    return str(tmp_path_factory.mktemp("model-cache"))


@pytest.fixture
def micro_cfg(tmp_path, model_cache) -> RunConfig:
    cfg = from_dict(RunConfig, {**MICRO, "results_dir": str(tmp_path / "results"), "device": "cpu"})
    cfg.model.cache_dir = model_cache
    return cfg


@pytest.fixture
def registered_here():
    """Unregister only the methods the test registered (a --plugins file run in this process),
    and forget the plugin modules it imported: later tests see the suite's registry."""
    from methods import METHODS

    before_names, before_modules = set(METHODS.names()), set(sys.modules)
    yield
    for name in set(METHODS.names()) - before_names:
        METHODS.unregister(name)
    for module in set(sys.modules) - before_modules:
        if module.startswith("ldifs_bench_plugin_") or module.startswith("plugin_test_"):
            del sys.modules[module]
