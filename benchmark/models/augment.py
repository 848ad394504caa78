"""Batched crop-and-resize on the device: CLIP's resize kernels and the authors' train crop.

Every image of a batch gets its own crop box, and the crop is resampled to the model's
resolution by two per-sample resampling matrices (rows then columns): one batched matmul
pair for the whole batch, whatever the boxes. Two kernels:

* ``torch_bicubic``: ``F.interpolate(mode="bicubic", align_corners=False)``'s
  (Keys cubic, a = -0.75, border pixels replicated, no antialiasing, no clamping);
  with the full image as the box this equals ``F.interpolate`` (tested).
* ``pil_bicubic``: PIL's ``Image.resize(BICUBIC)``, which CLIP's and open_clip's
  preprocessing use (a = -0.5, support widened by the scale when shrinking, weights
  normalised at the borders, horizontal pass first, each pass rounded and clamped to
  0..255 as PIL's 8-bit images are); it equals PIL's resize of the cropped image to the
  rounding of its fixed-point arithmetic (tested on whole images and on crops: at most 1
  grey level) where both axes grow (every crop of a stored 224 px image) or a square
  shrinks. Where one axis shrinks and the other grows, PIL may run its vertical pass
  first; this kernel always runs the horizontal one first (measured: up to 24 grey levels).

Both kernels read only the pixels inside each box, as torchvision's ``resized_crop`` does
(it crops, then resizes): the box's edges are the image's borders.

``rrc_boxes`` draws torchvision's ``RandomResizedCrop`` boxes (scale, log-uniform aspect
ratio, 10 tries, then the centre crop), which open_clip's train transform uses with scale
(0.9, 1.0) (Mukhoti et al. 2024 train through it; docs/protocol.md).
"""

from __future__ import annotations

import math

import torch

KERNELS = ("torch_bicubic", "pil_bicubic")
RRC_SCALE = (0.9, 1.0)  # open_clip's train transform (image_trainer's default scale)
RRC_RATIO = (3 / 4, 4 / 3)  # torchvision's default aspect-ratio range
RRC_TRIES = 10  # torchvision's attempts before falling back to the centre crop


def _cubic(t: torch.Tensor, a: float) -> torch.Tensor:
    """Keys' cubic convolution kernel with parameter ``a`` (support 2)."""
    t = t.abs()
    near = ((a + 2) * t - (a + 3)) * t * t + 1
    far = ((a * t - 5 * a) * t + 8 * a) * t - 4 * a
    return torch.where(t <= 1, near, torch.where(t < 2, far, torch.zeros_like(t)))


def resample_matrix(
    in_size: int, out_size: int, start: torch.Tensor, length: torch.Tensor, kernel: str
) -> torch.Tensor:
    """[B, out_size, in_size] weights mapping the span [start, start + length) of each
    sample's axis (pixel units) onto ``out_size`` output pixels."""
    scale = (length / out_size)[:, None, None]  # [B, 1, 1]
    out_pos = torch.arange(out_size, dtype=torch.float64, device=start.device)[None, :, None]
    src = torch.arange(in_size, dtype=torch.float64, device=start.device)[None, None, :]
    # Only pixels inside the box are read, as torchvision's resized_crop crops before it
    # resizes: the box's edges are the borders (PIL's box= argument would read beyond them).
    first, last = start[:, None, None], (start + length)[:, None, None] - 1  # [B, 1, 1]
    if kernel == "pil_bicubic":
        widen = scale.clamp_min(1.0)  # antialiasing: PIL stretches the kernel when shrinking
        center = start[:, None, None] + (out_pos + 0.5) * scale
        inside = (src >= first) & (src <= last)
        weights = _cubic((src + 0.5 - center) / widen, -0.5) * inside  # [B, out, in]
        return weights / weights.sum(-1, keepdim=True)
    # torch's bicubic: 4 taps around the source coordinate, indices clamped to the box's border
    coord = start[:, None, None] + (out_pos + 0.5) * scale - 0.5  # [B, out, 1]
    base = coord.floor()
    weights = torch.zeros(len(start), out_size, in_size, dtype=torch.float64, device=start.device)
    for tap in (-1, 0, 1, 2):
        index = torch.minimum(torch.maximum(base + tap, first), last).long()
        weights.scatter_add_(2, index, _cubic(coord - (base + tap), -0.75))
    return weights


def crop_resize(images: torch.Tensor, boxes: torch.Tensor, size: int, kernel: str) -> torch.Tensor:
    """uint8 or float [B, C, H, W] and boxes [B, 4] = (top, left, height, width) in pixels ->
    float [B, C, size, size] in 0..255, one crop per sample, resampled by ``kernel``."""
    if kernel not in KERNELS:
        raise ValueError(f"unknown resize kernel {kernel!r}; valid: {', '.join(KERNELS)}")
    x = images.float()
    boxes = boxes.to(x.device, torch.float64)
    rows = resample_matrix(x.shape[-2], size, boxes[:, 0], boxes[:, 2], kernel).float()
    cols = resample_matrix(x.shape[-1], size, boxes[:, 1], boxes[:, 3], kernel).float()
    x = x @ cols.transpose(1, 2)[:, None]  # horizontal pass first, as PIL
    if kernel == "pil_bicubic":
        x = x.round().clamp_(0, 255)
    x = rows[:, None] @ x
    return x.round().clamp_(0, 255) if kernel == "pil_bicubic" else x


def full_boxes(batch: int, height: int, width: int, device: torch.device) -> torch.Tensor:
    """The whole image as every sample's box."""
    return torch.tensor([0.0, 0.0, height, width], device=device).expand(batch, 4)


def rrc_boxes(
    batch: int,
    height: int,
    width: int,
    generator: torch.Generator,
    scale: tuple[float, float] = RRC_SCALE,
    ratio: tuple[float, float] = RRC_RATIO,
) -> torch.Tensor:
    """[B, 4] integer boxes drawn as torchvision's ``RandomResizedCrop.get_params`` does,
    all tries of all samples at once (on the CPU, from ``generator``)."""
    area = height * width
    target = area * torch.empty(batch, RRC_TRIES).uniform_(*scale, generator=generator)
    log_ratio = torch.empty(batch, RRC_TRIES).uniform_(math.log(ratio[0]), math.log(ratio[1]), generator=generator)
    aspect = log_ratio.exp()
    w = (target * aspect).sqrt().round()
    h = (target / aspect).sqrt().round()
    ok = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = ok.int().argmax(1, keepdim=True)  # the first try that fits, as torchvision stops there
    hb, wb = h.gather(1, first)[:, 0], w.gather(1, first)[:, 0]
    u = torch.rand(batch, 2, generator=generator)
    top, left = (u[:, 0] * (height - hb + 1)).floor(), (u[:, 1] * (width - wb + 1)).floor()
    fallback = ~ok.any(1)  # torchvision's fallback: the largest centre crop within the ratio range
    fh, fw = _fallback(height, width, ratio)
    hb, wb = torch.where(fallback, fh, hb), torch.where(fallback, fw, wb)
    top = torch.where(fallback, float((height - fh) // 2), top)
    left = torch.where(fallback, float((width - fw) // 2), left)
    return torch.stack([top, left, hb, wb], dim=1)


def _fallback(height: int, width: int, ratio: tuple[float, float]) -> tuple[int, int]:
    in_ratio = width / height
    if in_ratio < ratio[0]:
        return int(round(width / ratio[0])), width
    if in_ratio > ratio[1]:
        return height, int(round(height * ratio[1]))
    return height, width
