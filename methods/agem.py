"""A-GEM: the step's gradient projected so that it does not raise the loss on a memory.

Chaudhry, Ranzato, Rohrbach & Elhoseiny, "Efficient Lifelong Learning with A-GEM", ICLR
2019. After each stage a fixed number of its training samples join an episodic memory. From
the second stage on, every step first computes the reference gradient g_ref of the loss on
a memory batch, then the step's gradient g; when g . g_ref < 0 the update uses

    g - (g . g_ref / g_ref . g_ref) g_ref

(the projection onto the half-space where the memory's loss does not rise to first order),
else g unchanged. Both gradients are over every trained parameter (image tower and heads;
a head a batch does not reach has a zero gradient).

Avalanche's ``AGEMPlugin`` (0.6) implements the same rule but flattens gradients with
``p.grad.view(-1)``, which fails on the channels-last convolution weights of the suite's
towers, and draws its memory through per-sample data loaders and Python's global ``random``;
this file is the same algorithm with the memory as device tensors, ``reshape`` for the
flattening (the logical element order, whatever the memory layout), seeded draws, and the
same choices as Avalanche's plugin where the paper leaves them open: ``patterns_per_experience``
random samples of each stage's training data, and a memory batch of ``sample_size`` samples
balanced over the stages stored (``sample_size // stages`` from each).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Optional

import torch
import torch.nn.functional as F

from benchmark.config import Range
from benchmark.training.method import EngineView, Method, register_method
from methods.derpp import fit_size, take_rows


def agem_project(g: torch.Tensor, g_ref: torch.Tensor) -> torch.Tensor:
    """g projected when it conflicts with g_ref: g - (g.g_ref / g_ref.g_ref) g_ref if
    g.g_ref < 0, else g; computed without a host sync (a zero coefficient when no conflict)."""
    dot = torch.dot(g, g_ref)
    coefficient = torch.where(dot < 0, dot / torch.dot(g_ref, g_ref).clamp(min=1e-30), torch.zeros_like(dot))
    return g - coefficient * g_ref


def flat_gradients(params: list[torch.nn.Parameter]) -> torch.Tensor:
    """Every gradient as one vector in the parameters' logical element order (zeros for none)."""
    return torch.cat([p.grad.reshape(-1) if p.grad is not None else p.new_zeros(p.numel()) for p in params])


@register_method("agem")
class AGEM(Method):
    """A-GEM: each step's gradient projected so the loss on an episodic memory of past stages does not rise."""

    paper = "Chaudhry et al., ICLR 2019 (Efficient Lifelong Learning with A-GEM)"

    @classmethod
    def refuse_distributed(cls) -> Optional[str]:
        return (
            "it projects the summed gradient with a memory gradient each process computes on its own, after "
            "the sum: nothing keeps those equal across processes, so their weights could drift apart"
        )

    @dataclass
    class Params:
        patterns_per_experience: Annotated[int, Range(low=1)] = 200  # memory samples kept from each stage
        sample_size: Annotated[int, Range(low=2)] = 64  # memory batch per step (balanced over stages)

    def __init__(self, params: Optional[AGEM.Params] = None) -> None:
        super().__init__(params)
        self.memory: list[list[torch.Tensor]] = []  # per stage: [images uint8, labels, task labels]
        self.generator = torch.Generator()
        self.reference: Optional[torch.Tensor] = None

    def before_training_exp(self, strategy: EngineView, **kwargs) -> None:
        self.generator.manual_seed(strategy.seed * 1000 + strategy.stage_index)  # resume-exact draws

    def _params(self, strategy: EngineView) -> list[torch.nn.Parameter]:
        return [p for p in strategy.model.parameters() if p.requires_grad]

    def before_training_iteration(self, strategy: EngineView, **kwargs) -> None:
        if not self.memory:
            self.reference = None
            return
        images, labels, tasks = self._memory_batch(strategy.device)
        params = self._params(strategy)
        for p in params:
            p.grad = None
        with strategy.autocast():
            out = strategy.model(strategy.preprocess(images), tasks)
        F.cross_entropy(out.float(), labels).backward()
        self.reference = flat_gradients(params)
        for p in params:
            p.grad = None  # the step's own gradient starts from zero

    def _memory_batch(self, device: torch.device) -> list[torch.Tensor]:
        per_stage = max(1, self.params.sample_size // len(self.memory))
        parts = []
        for images, labels, tasks in self.memory:
            pick = torch.randperm(len(labels), generator=self.generator)[:per_stage].to(labels.device)
            parts.append((images[pick], labels[pick], tasks[pick]))
        return [torch.cat(column).to(device) for column in zip(*parts)]

    @torch.no_grad()
    def after_backward(self, strategy: EngineView, **kwargs) -> None:
        if self.reference is None:
            return
        params = self._params(strategy)
        projected = agem_project(flat_gradients(params), self.reference)
        start = 0
        for p in params:
            if p.grad is not None:  # copy_ maps the logical order back into any memory layout
                p.grad.copy_(projected[start : start + p.numel()].view_as(p))
            start += p.numel()

    @torch.no_grad()
    def after_training_exp(self, strategy: EngineView, **kwargs) -> None:
        from benchmark.training.engine import _tensors_of

        images, labels, tasks = _tensors_of(strategy.experience.dataset) or self._loader_tensors(strategy)
        pick = torch.randperm(len(labels), generator=self.generator)[: self.params.patterns_per_experience]
        device = strategy.device
        rows = take_rows(images, pick, device)
        rows = fit_size(rows, self.memory[0][0].shape) if self.memory else rows  # one size for every batch
        self.memory.append([rows, labels[pick].to(device), tasks[pick].to(device)])
        self.reference = None

    def _loader_tensors(self, strategy: EngineView) -> list[Any]:
        return list(strategy.dataloader.tensors)

    def state_dict(self) -> dict[str, Any]:
        """The episodic memory, one (images, labels, task labels) entry per stage."""
        return {"memory": [list(entry) for entry in self.memory]}

    def load_state_dict(self, state: dict[str, Any], context) -> None:
        self.memory = [[t.to(context.device) for t in entry] for entry in state["memory"]]
