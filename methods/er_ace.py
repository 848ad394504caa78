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

from benchmark.config import Range
from benchmark.training.method import EngineView, Method, register_method


@register_method("er_ace")
class ERACE(Method):
    """Experience replay with asymmetric cross-entropy (Avalanche's ClassBalancedBuffer and ACECriterion)."""

    paper = "Caccia et al., ICLR 2022 (New insights on reducing abrupt representation change in online CL)"

    @classmethod
    def refuse_distributed(cls) -> Optional[str]:
        return (
            "its asymmetric cross-entropy is over the classes present in the batch, which differ between a "
            "process's share and the whole batch"
        )

    @dataclass
    class Params:
        mem_size: Annotated[int, Range(low=1)] = 200  # Avalanche's default
        batch_size_mem: Annotated[int, Range(low=1)] = 32  # buffer samples per step (Avalanche: 10)

    def __init__(self, params: Optional[ERACE.Params] = None) -> None:
        super().__init__(params)
        self.storage: Any = None  # Avalanche's ClassBalancedBuffer, built in setup()
        self.criterion: Any = None  # Avalanche's ACECriterion
        self.buffer: Optional[list[torch.Tensor]] = None  # (images, labels, task labels) on the device
        self.generator = torch.Generator()

    def setup(self) -> None:
        """Avalanche's buffer and loss (imported only when a stage trains)."""
        from avalanche.training.regularization import ACECriterion
        from avalanche.training.storage_policy import ClassBalancedBuffer

        self.storage = ClassBalancedBuffer(max_size=self.params.mem_size, adaptive_size=True)
        self.criterion = ACECriterion()

    def before_training_exp(self, strategy: EngineView, **kwargs) -> None:
        from benchmark.training.avalanche_state import _samples

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
        from benchmark.training.avalanche_state import save_class_groups

        return save_class_groups(self.storage)

    def load_state_dict(self, state: dict[str, Any], context) -> None:
        from benchmark.training.avalanche_state import load_class_groups

        load_class_groups(self.storage, state)
