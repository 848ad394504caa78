"""Avalanche's W&B logger, made to work with the installed wandb.

Avalanche 0.6's ``WandBLogger`` calls two functions that newer wandb releases removed
(``wandb.util.generate_id``, ``wandb.viz.CustomChart``); this subclass passes its own run
id and logs scalars itself. It runs offline unless ``WANDB_MODE`` says otherwise (a run
needs no network; ``wandb sync`` uploads later), writing under the run's own folder."""

from __future__ import annotations

import os
import uuid
from typing import Optional

from avalanche.logging import WandBLogger


class OfflineWandBLogger(WandBLogger):
    """WandBLogger for wandb >= 0.18: scalars, and at a method's end its accuracy matrices as
    tables and heatmaps as images (:meth:`log_accuracy_matrix`); offline by default, silent."""

    def __init__(self, folder: str, run_name: Optional[str] = None) -> None:
        import wandb

        os.makedirs(folder, exist_ok=True)
        params = {
            "id": uuid.uuid4().hex[:12],
            "mode": os.environ.get("WANDB_MODE", "offline"),
            "settings": wandb.Settings(silent=True, console="off"),
        }
        super().__init__(project_name="ldifs-bench", run_name=run_name, save_code=False, dir=folder, params=params)

    def log_single_metric(self, name, value, x_plot) -> None:  # noqa: ANN001  Avalanche's signature
        # No ``step=``: wandb drops any step lower than one already logged, and the loss
        # (counted in iterations) and the accuracies (counted in stages) interleave.
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            self.wandb.log({name: value, f"{name}/x": x_plot})

    def after_training_exp(self, strategy, metric_values, **kwargs) -> None:  # noqa: ANN001  Avalanche's signature
        """Avalanche's version logs the stage count at ``step=self.step``, which stays 0 here
        (scalars are logged without a step): wandb warned "Tried to log to step 0 that is less
        than the current step" every stage. The same, without a step: wandb's own counter is
        monotonic."""
        for value in metric_values:
            self.log_metrics([value])
        self.wandb.log({"TrainingExperience": self.exp_count})
        self.exp_count += 1

    def log_accuracy_matrix(self, name: str, columns: list[str], rows: list[list], image: Optional[str] = None) -> None:
        """One accuracy matrix as a ``wandb.Table`` (a row per stage: ``stage``, then one
        column per task) and, when ``image`` names a PNG, its heatmap as a ``wandb.Image``."""
        logged = {f"{name}/matrix": self.wandb.Table(columns=columns, data=rows)}
        if image is not None:
            logged[f"{name}/heatmap"] = self.wandb.Image(image)
        self.wandb.log(logged)
