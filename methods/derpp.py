"""DER++: replay of past images with the logits they had and their labels.

Buzzega, Boschini, Porrello, Abati & Calderara, "Dark Experience for General Continual
Learning: a Strong, Simple Baseline", NeurIPS 2020. A reservoir buffer (Vitter, 1985) keeps
(image, label, logits) of the training stream; every step adds

    alpha * MSE(logits of buffer batch 1 now, their stored logits)
    + beta * CE(logits of buffer batch 2 now, their labels)

to the task loss, the two buffer batches drawn independently. After each update the step's
images enter the reservoir with the logits of the step's forward pass (the network's output
before that update, as in the authors' code), so the buffer fills from the first stage on.

On this engine: the buffer holds the raw uint8 images (what the engine's batches are before
preprocessing; replayed through the same preprocessing, unaugmented under ``train.augment:
rrc``), on the device. Heads grow here (a new task's head, or a class-incremental head's new
rows), so a stored logit vector is as wide as the head was when it was stored; the MSE runs
over those columns only (the authors' heads have every class's column from the start). A
task-incremental buffer sample is scored by its own task's head (the model's padded
mixed-task forward). Avalanche 0.6 has DER only as a strategy of its own (a training loop,
``avalanche.training.supervised.DER``), whose logit buffer is class-balanced and filled at
the end of each experience; its reservoir ``ReservoirSamplingBuffer`` stores datasets, not
per-step logits: neither fits, so the reservoir is written here (``Reservoir``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Optional

import torch
import torch.nn.functional as F

from benchmark.config import Range
from benchmark.errors import UserError
from benchmark.training.method import EngineView, Method, register_method
from tasks.cache import MappedImages


def take_rows(images: Any, index: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``images[index]`` as a uint8 tensor on ``device`` (a disk-mapped split is read)."""
    if isinstance(images, MappedImages):
        return images.gather(index.cpu()).to(device)
    return images[index.to(images.device)].to(device)


def fit_size(images: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """uint8 images resized to a buffer's (H, W) when a later task's images differ in size
    (bicubic, rounded; a buffer holds one size). Same size: unchanged."""
    if tuple(images.shape[-2:]) == tuple(shape[-2:]):
        return images
    resized = F.interpolate(images.float(), size=tuple(shape[-2:]), mode="bicubic", align_corners=False)
    return resized.round().clamp(0, 255).to(torch.uint8)


def current_raw_images(strategy: EngineView) -> torch.Tensor:
    """The uint8 images of the step's batch, before preprocessing, from the engine's loader."""
    loader = strategy.dataloader
    index = getattr(loader, "last_indices", None)
    if index is None or not getattr(loader, "tensors", None):
        raise UserError(
            "derpp keeps the raw images of the engine's own batches; a method that replaces the engine's "
            "loader (replay) cannot be composed with it"
        )
    return take_rows(loader.tensors[0], index, strategy.device)


class Reservoir:
    """Reservoir sampling of (image, label, task label, logits) rows into ``size`` slots: item n
    of the stream (from 0) takes slot n while n < size, then a uniform slot of 0..n if that is
    below ``size`` (each item seen so far stays with probability size / (n + 1))."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.seen = 0
        self.images: Optional[torch.Tensor] = None  # uint8 [size, 3, H, W]
        self.labels: Optional[torch.Tensor] = None
        self.tasks: Optional[torch.Tensor] = None
        self.logits: Optional[torch.Tensor] = None  # float32 [size, widest head so far]
        self.widths: Optional[torch.Tensor] = None  # columns of each row's logits that are real

    def __len__(self) -> int:
        return min(self.seen, self.size)

    @torch.no_grad()
    def add(self, images, labels, tasks, logits, generator: torch.Generator) -> None:
        n, device = len(labels), labels.device
        if self.images is None:
            self._allocate(images, logits.shape[1], device)
        self._widen(logits.shape[1])
        rank = torch.arange(self.seen, self.seen + n)
        draw = (torch.rand(n, generator=generator, dtype=torch.float64) * (rank + 1)).long()
        slot = torch.where(rank < self.size, rank, draw)
        keep = torch.nonzero(slot < self.size).flatten()
        # within one batch a later item overwrites an earlier one in the same slot, as in sequence
        last = torch.full((self.size,), -1, dtype=torch.long).scatter_reduce(0, slot[keep], keep, "amax")
        slots = torch.nonzero(last >= 0).flatten()
        items = last[slots].to(device)
        slots = slots.to(device)
        self.images[slots] = fit_size(images[items], self.images.shape)
        self.labels[slots], self.tasks[slots] = labels[items], tasks[items]
        self.logits[slots] = 0.0
        self.logits[slots, : logits.shape[1]] = logits[items].float()
        self.widths[slots] = logits.shape[1]
        self.seen += n

    def _allocate(self, images: torch.Tensor, width: int, device: torch.device) -> None:
        self.images = torch.zeros((self.size, *images.shape[1:]), dtype=torch.uint8, device=device)
        self.labels = torch.zeros(self.size, dtype=torch.long, device=device)
        self.tasks = torch.zeros(self.size, dtype=torch.long, device=device)
        self.logits = torch.zeros(self.size, width, device=device)
        self.widths = torch.zeros(self.size, dtype=torch.long, device=device)

    def _widen(self, width: int) -> None:
        if width > self.logits.shape[1]:  # a head grew: earlier rows' extra columns are not real
            self.logits = F.pad(self.logits, (0, width - self.logits.shape[1]))

    def sample(self, k: int, generator: torch.Generator) -> torch.Tensor:
        """Positions of ``k`` distinct filled slots (all of them when fewer)."""
        return torch.randperm(len(self), generator=generator)[:k].to(self.labels.device)

    def state(self) -> dict[str, Any]:
        names = ("images", "labels", "tasks", "logits", "widths")
        return {"seen": self.seen, **{k: getattr(self, k) for k in names if getattr(self, k) is not None}}

    def load(self, state: dict[str, Any], device: torch.device) -> None:
        self.seen = int(state["seen"])
        for key in ("images", "labels", "tasks", "logits", "widths"):
            setattr(self, key, state[key].to(device) if key in state else None)


def masked_mse(outputs: torch.Tensor, stored: torch.Tensor, widths: torch.Tensor) -> torch.Tensor:
    """Mean squared difference over each row's real columns (all of them: ``F.mse_loss``)."""
    width = stored.shape[1]
    if outputs.shape[1] < width:  # cannot happen while heads only grow; said if it does
        raise ValueError(f"buffer logits have {width} columns, the model gives {outputs.shape[1]}")
    mask = torch.arange(width, device=stored.device)[None, :] < widths[:, None]
    diff = (outputs[:, :width].float() - stored) * mask
    return diff.pow(2).sum() / mask.sum().clamp(min=1)


@register_method("derpp")
class DERPP(Method):
    """DER++: a reservoir buffer of past images with their logits (MSE) and labels (cross-entropy)."""

    paper = "Buzzega et al., NeurIPS 2020 (Dark Experience for General Continual Learning)"

    @classmethod
    def refuse_distributed(cls) -> Optional[str]:
        return (
            "its reservoir buffer is filled from the batches each process sees, so every process would keep "
            "a different buffer"
        )

    @dataclass
    class Params:
        mem_size: Annotated[int, Range(low=2)] = 500  # buffer slots (the paper's middle size)
        batch_size_mem: Annotated[int, Range(low=2)] = 32  # each of the two buffer batches per step
        alpha: Annotated[float, Range(low=0)] = 0.1  # logit MSE weight
        beta: Annotated[float, Range(low=0)] = 0.5  # buffer cross-entropy weight

    def __init__(self, params: Optional[DERPP.Params] = None) -> None:
        super().__init__(params)
        self.buffer = Reservoir(self.params.mem_size)
        self.generator = torch.Generator()
        self.last_terms = (0.0, 0.0)

    def compose_check(self, parts: list[Method]) -> Optional[str]:
        if any(p.name == "replay" for p in parts):
            return "derpp keeps the raw images of the engine's own batches, which replay replaces"
        return super().compose_check(parts)

    def before_training_exp(self, strategy: EngineView, **kwargs) -> None:
        self.generator.manual_seed(strategy.seed * 1000 + strategy.stage_index)  # resume-exact draws

    def before_backward(self, strategy: EngineView, **kwargs) -> None:
        if len(self.buffer) < 2:  # BatchNorm towers cannot train on one image
            return
        b, p = self.buffer, self.params
        first, second = b.sample(p.batch_size_mem, self.generator), b.sample(p.batch_size_mem, self.generator)
        with strategy.autocast():
            out1 = strategy.model(strategy.preprocess(b.images[first]), b.tasks[first])
            out2 = strategy.model(strategy.preprocess(b.images[second]), b.tasks[second])
        mse = masked_mse(out1, b.logits[first], b.widths[first])
        ce = F.cross_entropy(out2.float(), b.labels[second])
        strategy.loss += p.alpha * mse + p.beta * ce
        self.last_terms = (mse.detach(), ce.detach())  # type: ignore[assignment]

    def after_training_iteration(self, strategy: EngineView, **kwargs) -> None:
        images = current_raw_images(strategy)
        tasks = strategy.mb_task_id.to(strategy.device)
        self.buffer.add(images, strategy.mb_y, tasks, strategy.mb_output.detach(), self.generator)

    def state_dict(self) -> dict[str, Any]:
        """The reservoir (images, labels, task labels, logits, their widths, items seen)."""
        return self.buffer.state()

    def load_state_dict(self, state: dict[str, Any], context) -> None:
        self.buffer.load(state, context.device)
