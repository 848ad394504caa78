"""GDumb through Avalanche's GDumbPlugin, with the model kept where the scheduler owns it.

GDumb (Prabhu, Torr & Dokania, ECCV 2020): a greedy class-balanced memory of everything
seen, and at each stage the model trained from its initial state on the memory alone.
Avalanche's ``GDumbPlugin`` does both: its ``ClassBalancedBuffer`` becomes the stage's
dataset, and it resets ``strategy.model`` to a deep copy of the first stage's model. That
last step replaces the model object, while this suite's scheduler adds heads to, and
evaluates, the object it built. The adapter lets the plugin run unchanged, then copies the
reset image tower back into the scheduler's model, and resets the head rows to the values
they were initialised with when their classes arrived (zero-shot or LP rows, per
``head_init``): "from scratch" here means from the pre-trained model and its initial heads.
Runs in both scenarios (task-incremental: the memory balances class labels across tasks, and
each sample keeps its task label for the heads).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Annotated, Any, Optional

import torch

from benchmark.config import Range
from benchmark.training.method import register_method
from methods.avalanche_plugins import AvalancheMethod


@register_method("gdumb")
class GDumb(AvalancheMethod):
    """GDumb: retrain from the pre-trained model on a class-balanced memory each stage (Avalanche's GDumbPlugin)."""

    paper = "Prabhu, Torr & Dokania, ECCV 2020 (GDumb)"

    @classmethod
    def refuse_distributed(cls) -> Optional[str]:
        return (
            "Avalanche's GDumbPlugin replaces the model object and the stage's dataset every stage; that "
            "path was not checked under several processes"
        )

    plugin_class = "GDumbPlugin"  # imported when a stage trains

    @dataclass
    class Params:
        mem_size: Annotated[int, Range(low=1)] = 200  # Avalanche's default

    def __init__(self, params=None) -> None:
        super().__init__(params)
        self.initial_rows: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}  # head -> rows as first added

    def before_train_dataset_adaptation(self, strategy, **kwargs) -> None:
        live = strategy.model
        self._remember_new_rows(live)
        self.plugin.before_train_dataset_adaptation(strategy, **kwargs)
        if strategy.model is not live:  # the plugin's reset: its copy's weights into our model
            live.visual.load_state_dict(strategy.model.visual.state_dict())
            strategy.model = live
        with torch.no_grad():
            for key, (weight, bias) in self.initial_rows.items():
                live.heads[key].weight.copy_(weight)
                live.heads[key].bias.copy_(bias)

    def _remember_new_rows(self, model) -> None:
        """Rows of every head not seen before (a new task's head, a new group's classes)."""
        for key, head in model.heads.items():
            weight, bias = self.initial_rows.get(key, (head.weight.detach()[:0], head.bias.detach()[:0]))
            n = len(weight)
            self.initial_rows[key] = (
                torch.cat([weight, head.weight.detach()[n:]]).clone(),
                torch.cat([bias, head.bias.detach()[n:]]).clone(),
            )

    def state_dict(self) -> dict[str, Any]:
        """The memory per class and the initial head rows (the initial tower is the pre-trained one)."""
        from benchmark.training.avalanche_state import save_class_groups

        state = save_class_groups(self.plugin.storage_policy)
        return {**state, "rows": self.initial_rows, "started": self.plugin.init_model is not None}

    def load_state_dict(self, state: dict[str, Any], context) -> None:
        from benchmark.training.avalanche_state import load_class_groups

        load_class_groups(self.plugin.storage_policy, state)
        self.initial_rows = {k: (w.to(context.device), b.to(context.device)) for k, (w, b) in state["rows"].items()}
        if state["started"]:  # the plugin's initial model: the pre-trained tower
            initial = copy.deepcopy(context.model)
            initial.visual.load_state_dict(context.bundle.model.visual.state_dict())
            self.plugin.init_model = initial
