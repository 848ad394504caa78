"""ldifs-bench: continual fine-tuning of CLIP-style models, and how much they forget.

The public API, for notebooks and scripts (imported lazily, so ``import benchmark`` is cheap
and the reporting layer never pays for torch)::

    import benchmark
    cfg = benchmark.load_config("my.yaml")          # or benchmark.RunConfig()
    run_dir = benchmark.run_benchmark(cfg)        # what ``python run_benchmark.py`` does

Layers (each imports only those listed before it; ``tests/benchmark/test_layers.py``):
kernel (config, errors, registry, files, logs, rundir) < tasks < models < training <
evaluation < methods < run; reporting sits on the kernel alone.
"""

from __future__ import annotations

import importlib
from typing import Any

from benchmark.determinism import pin_cpu_kernels

pin_cpu_kernels()  # before any torch kernel runs: the same numbers on every x86 CPU

_EXPORTS = {
    "run_benchmark": "benchmark.run.runner",
    "load_config": "benchmark.config",
    "RunConfig": "benchmark.config",
    "UserError": "benchmark.errors",
    "Method": "benchmark.training.method",
    "register_method": "benchmark.training.method",
    "register_task": "tasks.base",
    "Task": "tasks.base",
    "metrics": "benchmark.reporting",
}
_RENAMED = {"load_config": "load_yaml", "run_benchmark": "run"}  # run: benchmark.run is the app layer

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'benchmark' has no attribute {name!r}")
    module = importlib.import_module(_EXPORTS[name])
    if name in ("run_benchmark", "register_method", "Method"):
        importlib.import_module("methods")  # the registries are filled before anything runs
        importlib.import_module("tasks")
    return getattr(module, _RENAMED.get(name, name))
