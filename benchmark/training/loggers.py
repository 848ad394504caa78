"""Avalanche's optional experiment loggers: which package each needs, checked before any
work (light: no Avalanche import). The loggers themselves: ``benchmark.training.wandb_logger``
and ``benchmark.training.engine.make_loggers``."""

from __future__ import annotations

from benchmark.errors import UserError

PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb"}  # logger -> the package it needs


def check_logger_packages(loggers: list[str]) -> None:
    """Refuse, before any work, a logger whose package is not installed (they are optional:
    ``pip install ldifs-bench[loggers]``)."""
    import importlib.util

    for name in loggers:
        package = PACKAGES.get(name)
        if package and importlib.util.find_spec(package) is None:
            raise UserError(f"loggers: {name} needs the {package} package: pip install {package}")
