"""Device-side preprocessing: uint8 batches to normalised model input, and autocast."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F

from benchmark.models.augment import crop_resize, full_boxes

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


def bf16_autocast(device: torch.device, enabled: bool = True):
    """bf16 autocast on CUDA (training and evaluation alike); a no-op on other devices."""
    if enabled and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def resolve_precision(amp: str, device: torch.device) -> str:
    """``train.amp`` -> the precision a run computes in: ``bf16``, ``tf32`` or ``fp32``.

    auto is bf16 on CUDA and fp32 elsewhere; off is fp32's older name. bf16 and tf32 are
    CUDA's: on other devices they compute in fp32."""
    if device.type != "cuda" or amp in ("off", "fp32"):
        return "fp32"
    return "bf16" if amp in ("auto", "bf16") else amp


def run_autocast(amp: str, device: torch.device):
    """The autocast context of a run's forward passes, training and evaluation alike: bf16
    autocast when the run's precision is bf16, none for fp32 and TF32 (fp32 tensors)."""
    return bf16_autocast(device, resolve_precision(amp, device) == "bf16")


@contextlib.contextmanager
def matmul_precision(amp: str, device: torch.device) -> Iterator[None]:
    """For the run: TF32 matmuls and convolutions on (tf32) or off (fp32: strict IEEE fp32),
    restored after. bf16 leaves torch's settings as they are (autocast decides there)."""
    precision = resolve_precision(amp, device)
    if precision == "bf16" or device.type != "cuda":
        yield
        return
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = precision == "tf32"
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


class BatchPreprocess(nn.Module):
    """uint8 [B, 3, h, w] on the device -> normalised float at the model's resolution.

    Done in one batched call on the device rather than per image on the CPU: the per-image
    pipeline caps GPU fine-tuning at half speed on small-image datasets (docs/protocol.md, "Data path").
    """

    def __init__(self, image_size: int, mean: tuple, std: tuple, resize: str = "torch_bicubic") -> None:
        super().__init__()
        self.image_size = image_size
        self.resize = resize  # torch_bicubic | pil_bicubic (benchmark/models/augment.py)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1) * 255.0, persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1) * 255.0, persistent=False)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] == self.image_size and x.shape[-2] == self.image_size:
            x = x.float()
        elif self.resize == "torch_bicubic":
            x = F.interpolate(x.float(), size=(self.image_size, self.image_size), mode="bicubic", align_corners=False)
        else:
            x = crop_resize(x, full_boxes(len(x), *x.shape[-2:], x.device), self.image_size, self.resize)  # type: ignore[call-arg]
        return self.normalise(x)

    @torch.no_grad()
    def crops(self, x: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """Like ``forward``, but each sample's box [top, left, height, width] is what gets
        resized (the train augmentation); one batched call whatever the boxes."""
        return self.normalise(crop_resize(x, boxes, self.image_size, self.resize))

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        # channels_last: faster convolutions on CPUs (mkldnn) and on GPUs (tensor cores)
        return ((x - self.mean) / self.std).contiguous(memory_format=torch.channels_last)  # type: ignore[operator]
