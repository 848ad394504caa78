"""Avalanche's optional experiment loggers, made to work with the installed libraries.

Avalanche 0.6's ``WandBLogger`` calls two functions that newer wandb releases removed
(``wandb.util.generate_id``, ``wandb.viz.CustomChart``); this subclass passes its own run
id and logs scalars itself. It runs offline unless ``WANDB_MODE`` says otherwise (a run
needs no network; ``wandb sync`` uploads later), writing under the run's own folder."""

from __future__ import annotations

import os
import uuid

from avalanche.logging import WandBLogger

from benchmark.errors import UserError


class OfflineWandBLogger(WandBLogger):
    """WandBLogger for wandb >= 0.18: scalar metrics only, offline by default, silent."""

    def __init__(self, folder: str) -> None:
        import wandb

        os.makedirs(folder, exist_ok=True)
        params = {
            "id": uuid.uuid4().hex[:12],
            "mode": os.environ.get("WANDB_MODE", "offline"),
            "settings": wandb.Settings(silent=True, console="off"),
        }
        super().__init__(project_name="ldifs-bench", run_name=None, save_code=False, dir=folder, params=params)

    def log_single_metric(self, name, value, x_plot) -> None:  # noqa: ANN001  Avalanche's signature
        # No ``step=``: wandb drops any step lower than one already logged, and the loss
        # (counted in iterations) and the accuracies (counted in stages) interleave.
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            self.wandb.log({name: value, f"{name}/x": x_plot})


PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb"}  # logger -> the package it needs


def check_logger_packages(loggers: list[str]) -> None:
    """Refuse, before any work, a logger whose package is not installed (they are optional:
    ``pip install ldifs-bench[loggers]``)."""
    import importlib.util

    for name in loggers:
        package = PACKAGES.get(name)
        if package and importlib.util.find_spec(package) is None:
            raise UserError(f"loggers: {name} needs the {package} package: pip install {package}")
