"""ER-ACE: experience replay with the asymmetric cross-entropy, from Avalanche's parts.

Avalanche 0.6 ships ER-ACE as a strategy (``avalanche.training.supervised.ER_ACE``), a
training template of its own, which cannot sit on this suite's engine beside other methods.
Its two parts are reusable and are used here unchanged: the class-balanced buffer
(``ClassBalancedBuffer``, updated with each stage's data before the stage trains, as the
strategy does) and the loss (``ACECriterion``). The plugin only wires them to the engine:
from the second stage on, every step draws ``batch_size_mem`` buffer samples, and the
step's task loss is ACE of the current batch (cross-entropy over the classes present in it
only, so new classes do not push old logits down) and the buffer batch (cross-entropy over
all classes). Composes with every other method (``ldifs+er_ace``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Optional

import torch
from avalanche.training.regularization import ACECriterion
from avalanche.training.storage_policy import ClassBalancedBuffer, ReservoirSamplingBuffer

from benchmark.config import Range
from benchmark.training.method import EngineView, Method, register_method
from methods.avalanche_plugins import _buffer_dataset, _samples


@register_method("er_ace")
class ERACE(Method):
    """Experience replay with asymmetric cross-entropy (Avalanche's ClassBalancedBuffer and ACECriterion)."""

    paper = "Caccia et al., ICLR 2022 (New insights on reducing abrupt representation change in online CL)"

    @dataclass
    class Params:
        mem_size: Annotated[int, Range(low=1)] = 200  # Avalanche's default
        batch_size_mem: Annotated[int, Range(low=1)] = 32  # buffer samples per step (Avalanche: 10)

    def __init__(self, params: Optional[ERACE.Params] = None) -> None:
        super().__init__(params)
        self.storage = ClassBalancedBuffer(max_size=self.params.mem_size, adaptive_size=True)
        self.criterion = ACECriterion()
        self.buffer: Optional[list[torch.Tensor]] = None  # (images, labels, task labels) on the device
        self.generator = torch.Generator()

    def before_training_exp(self, strategy: EngineView, **kwargs) -> None:
        self.storage.post_adapt(strategy, strategy.experience)  # before training: the stage's classes too
        images, labels, tasks = _samples(self.storage.buffer)
        replay = strategy.stage_index > 1 and len(labels) >= self.params.batch_size_mem
        self.buffer = [t.to(strategy.device) for t in (images, labels, tasks)] if replay else None
        self.generator.manual_seed(strategy.seed * 1000 + strategy.stage_index)

    def task_loss(self, strategy: EngineView) -> Optional[torch.Tensor]:
        if self.buffer is None:
            return None  # the first stage: plain cross-entropy, as the strategy does
        images, labels, tasks = self.buffer
        idx = torch.randperm(len(labels), generator=self.generator)[: self.params.batch_size_mem].to(labels.device)
        with strategy.autocast():
            out = strategy.model(strategy.preprocess(images[idx]), tasks[idx])
        return self.criterion(strategy.mb_output.float(), strategy.mb_y, out.float(), labels[idx])

    def after_training_exp(self, strategy: EngineView, **kwargs) -> None:
        self.buffer = None

    def state_dict(self) -> dict[str, Any]:
        """The buffer per class, as tensors (rebuilt into Avalanche's buffers on load)."""
        groups = {}
        for label, group in self.storage.buffer_groups.items():
            images, labels, tasks = _samples(group.buffer)
            groups[int(label)] = {"max_size": int(group.max_size), "weights": group._buffer_weights}
            groups[int(label)].update(images=images, labels=labels, task_labels=tasks)
        return {"groups": groups, "seen": sorted(int(c) for c in self.storage.seen_classes)}

    def load_state_dict(self, state: dict[str, Any], context) -> None:
        self.storage.seen_classes = set(state["seen"])
        self.storage.buffer_groups = {}
        for label, saved in state["groups"].items():
            group = ReservoirSamplingBuffer(saved["max_size"])
            group.buffer = _buffer_dataset(saved["images"], saved["labels"], saved["task_labels"])
            group._buffer_weights = saved["weights"]
            self.storage.buffer_groups[int(label)] = group
