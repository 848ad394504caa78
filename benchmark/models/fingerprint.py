"""Bit-level hashes of a model's first computations (weights, preprocessing, a forward,
three AdamW steps): the part of ``python -m benchmark.tools.fingerprint`` that every CPU run
also records in its manifest (``cpu_fingerprint``). Two hosts whose lines agree computed
those steps bit for bit alike."""

from __future__ import annotations

import copy
import hashlib
import os
from collections.abc import Iterator

import torch

RANDOM_IMAGES = 8
STEPS = 3


def tensor_hash(t: torch.Tensor) -> str:
    """16 hex digits of the sha256 of the tensor's float32 bytes (order-sensitive, bit-exact)."""
    return hashlib.sha256(t.detach().float().cpu().contiguous().numpy().tobytes()).hexdigest()[:16]


def _flat(module: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in module.parameters()])


def header() -> list[str]:
    """What decides which kernels run: torch, its thread count and CPU capability, oneDNN, the pins."""
    from benchmark.determinism import PINS

    mkldnn = torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled
    pins = ", ".join(f"{k}={os.environ.get(k, '')}" for k in PINS)
    return [
        f"torch {torch.__version__} threads {torch.get_num_threads()} "
        f"capability {torch.backends.cpu.get_cpu_capability()} onednn {mkldnn}",
        f"pins {pins}",
    ]


def quick_lines(visual: torch.nn.Module, preprocess) -> Iterator[str]:
    """Weights, preprocessing and forward of 8 random images, three AdamW steps (< 1 s on a CPU).

    The steps run on a copy: ``visual`` is left as it was."""
    yield f"weights {tensor_hash(_flat(visual))}"
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (RANDOM_IMAGES, 3, 32, 32), generator=g, dtype=torch.uint8)
    with torch.no_grad():
        visual.eval()
        pre = preprocess(images)
        out = visual(pre)
    yield f"preprocess {tensor_hash(pre)}"
    yield f"forward {tensor_hash(out)}"
    model = copy.deepcopy(visual).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for step in range(STEPS):
        loss = model(pre).pow(2).mean()  # [8, D] -> scalar: any differentiable function will do
        opt.zero_grad()
        loss.backward()
        opt.step()
        yield f"step {step} loss {loss.item()!r} weights {tensor_hash(_flat(model))}"


def digest(lines: list[str]) -> str:
    """The sha256 (16 hex digits) of fingerprint lines, as manifests record it."""
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16]
