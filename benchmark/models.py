"""open_clip models: loading by name, tag, file or folder; feature taps per architecture."""
from __future__ import annotations

import contextlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from benchmark.config import ModelConfig
from benchmark.errors import UserError

SUITE_CONFIGS = Path(__file__).parent / "model_configs"
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass
class ClipBundle:
    """A loaded CLIP model with what the suite needs beside it."""

    model: nn.Module  # open_clip CLIP: .visual, .encode_text, .logit_scale
    tokenizer: Callable[[list[str]], torch.Tensor]
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    source: str  # how it was loaded, for the manifest


def suite_model_names() -> list[str]:
    return sorted(p.stem for p in SUITE_CONFIGS.glob("*.json"))


def suite_model_config(name: str) -> dict[str, Any]:
    return json.loads((SUITE_CONFIGS / f"{name}.json").read_text())


def default_cache_dir(cfg: ModelConfig) -> Path:
    root = cfg.cache_dir or os.environ.get("LDIFS_BENCH_CACHE") or Path.home() / ".cache" / "ldifs-bench"
    return Path(root)


def check_model_config(cfg: ModelConfig) -> None:
    """Refuse an unknown model or a missing local folder/file before any work starts."""
    import open_clip

    if cfg.name.startswith("local-dir:"):  # a schema brings its own weights: pretrained is ignored

        folder = Path(cfg.name[len("local-dir:"):])
        if not (folder / "open_clip_config.json").is_file():
            raise UserError(f"model folder {str(folder)!r} has no open_clip_config.json; a local-dir: model needs "
                            "open_clip_config.json and open_clip_pytorch_model.bin (or .safetensors) inside")
    elif cfg.pretrained == "suite" and not cfg.name.startswith("hf-hub:"):
        if cfg.name not in suite_model_names():
            raise UserError(f"model.pretrained=suite needs a suite model config; unknown model {cfg.name!r}; "
                            f"valid choices: {', '.join(suite_model_names())}")
    elif not cfg.name.startswith("hf-hub:"):
        known = open_clip.list_models()
        if cfg.name not in known:
            raise UserError(f"unknown model {cfg.name!r}; valid choices: open_clip architectures such as "
                            f"{', '.join(known[:6])}, ... ({len(known)} in all, see open_clip.list_models()), "
                            f"suite models {', '.join(suite_model_names())}, or local-dir:PATH / hf-hub:ID")
        looks_like_file = os.sep in cfg.pretrained or cfg.pretrained.endswith((".pt", ".pth", ".bin", ".safetensors"))
        if looks_like_file and not os.path.isfile(cfg.pretrained):
            raise UserError(f"checkpoint file {cfg.pretrained!r} (model.pretrained) does not exist")


def load_clip(cfg: ModelConfig, device: torch.device, progress: bool = True) -> ClipBundle:
    """Load the model the config names; every route ends in open_clip's own loader."""
    check_model_config(cfg)
    if cfg.name.startswith(("local-dir:", "hf-hub:")):
        return _from_open_clip(cfg.name, None, device, cfg.name)
    if cfg.pretrained == "suite":
        from benchmark.pretrain import ensure_pretrained

        folder = ensure_pretrained(cfg, default_cache_dir(cfg), progress=progress)
        return _from_open_clip(f"local-dir:{folder}", None, device, f"suite-pretrained {cfg.name} at {folder}")
    pretrained = None if cfg.pretrained in ("", "none") else cfg.pretrained
    return _from_open_clip(cfg.name, pretrained, device, f"{cfg.name} pretrained={cfg.pretrained}")


def _from_open_clip(name: str, pretrained: Optional[str], device: torch.device, source: str) -> ClipBundle:
    import open_clip

    try:
        with quiet_root_logger():
            model = open_clip.create_model(name, pretrained=pretrained, device=device)
    except Exception as e:  # noqa: BLE001  a corrupt file fails in pickle, torch, safetensors...: all user input
        raise UserError(_weights_error(name, pretrained, e)) from None
    tokenizer = open_clip.get_tokenizer(name)
    pp = getattr(model.visual, "preprocess_cfg", {}) or {}
    size = model.visual.image_size
    size = size[0] if isinstance(size, (tuple, list)) else size
    mean = tuple(pp.get("mean", OPENAI_MEAN))
    std = tuple(pp.get("std", OPENAI_STD))
    model = model.to(memory_format=torch.channels_last)  # matches BatchPreprocess's output
    return ClipBundle(model.eval(), tokenizer, int(size), mean, std, source)


def _weights_error(name: str, pretrained: Optional[str], err: Exception) -> str:
    """Explain a failed load: which weights, where open_clip looked, how to place them."""
    import open_clip

    cache = os.environ.get("HF_HUB_CACHE") or os.environ.get("HF_HOME") or "~/.cache/huggingface"
    first = str(err).splitlines()[0][:200]
    if pretrained and not os.path.isfile(pretrained):
        tags = [t for m, t in open_clip.list_pretrained() if m == name]
        if pretrained not in tags:
            return (f"unknown pretrained tag {pretrained!r} for model {name!r}; valid choices: "
                    f"{', '.join(tags) or '(none)'}, or a checkpoint file path")
        return (f"weights {name}/{pretrained} could not be loaded ({first}); open_clip looked in the Hugging Face "
                f"cache {cache} and the network is unreachable: download them on a connected machine "
                f"(open_clip.create_model('{name}', pretrained='{pretrained}')) and copy the cache, or pass "
                f"model.pretrained=/path/to/checkpoint.pt")
    return f"could not load model {name!r} (pretrained={pretrained!r}): {first}"


@contextlib.contextmanager
def quiet_root_logger():
    """open_clip logs to the root logger (e.g. 'no weights found' while pretraining)."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def bf16_autocast(device: torch.device, enabled: bool = True):
    """bf16 autocast on CUDA (training and evaluation alike); a no-op on other devices."""
    if enabled and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


# ----------------------------------------------------------------------------- preprocessing

class BatchPreprocess(nn.Module):
    """uint8 [B, 3, h, w] on the device -> normalised float at the model's resolution.

    Done in one batched call on the device rather than per image on the CPU: the per-image
    pipeline caps GPU fine-tuning at half speed on small-image datasets (REFERENCE.md).
    """

    def __init__(self, image_size: int, mean: tuple, std: tuple) -> None:
        super().__init__()
        self.image_size = image_size
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1) * 255.0, persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1) * 255.0, persistent=False)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        if x.shape[-1] != self.image_size or x.shape[-2] != self.image_size:
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bicubic", align_corners=False)
        # channels_last: faster convolutions on CPUs (mkldnn) and on GPUs (tensor cores)
        return ((x - self.mean) / self.std).contiguous(memory_format=torch.channels_last)


# ----------------------------------------------------------------------------- taps

@dataclass
class Tap:
    """One intermediate feature map of the image tower that LDIFS compares."""

    name: str
    module: nn.Module
    token_major: bool  # True: ViT residual stream laid out [B, tokens, width] after fixing
    seq_first: bool = False  # the module emits [tokens, B, width] (open_clip without batch_first)


def image_taps(visual: nn.Module) -> list[Tap]:
    """The 5 LDIFS taps of an image tower (Mukhoti et al. 2024, Sec. 4).

    ViT: ``ln_pre`` and the residual stream after every quarter of the blocks (3, 6, 9, 12
    for ViT-B). ModifiedResNet: the stem's output and the 4 stages. timm towers (ConvNeXt
    and others): the stem and every stage of the trunk.
    """
    from open_clip.modified_resnet import ModifiedResNet
    from open_clip.transformer import VisionTransformer

    if isinstance(visual, VisionTransformer):
        blocks = visual.transformer.resblocks
        n = len(blocks)
        idx = sorted({max(1, round(n * q / 4)) - 1 for q in (1, 2, 3, 4)})
        seq_first = not getattr(visual.transformer, "batch_first", True)
        return [Tap("ln_pre", visual.ln_pre, True, seq_first)] + [
            Tap(f"block{i + 1}", blocks[i], True, seq_first) for i in idx]
    if isinstance(visual, ModifiedResNet):
        return [Tap("stem", visual.avgpool, False)] + [
            Tap(f"layer{i}", getattr(visual, f"layer{i}"), False) for i in range(1, 5)]
    trunk = getattr(visual, "trunk", None)
    if trunk is not None and hasattr(trunk, "stages"):
        stem = getattr(trunk, "stem", None)
        taps = [Tap("stem", stem, False)] if stem is not None else []
        return taps + [Tap(f"stage{i}", s, False) for i, s in enumerate(trunk.stages)]
    raise UserError(f"no LDIFS feature taps are declared for image tower {type(visual).__name__}; "
                    "supported: open_clip VisionTransformer, ModifiedResNet, timm towers with .trunk.stages "
                    "(add a branch to benchmark.models.image_taps)")


class TapRecorder:
    """Forward hooks that keep the taps' outputs of the last forward pass, in tap order."""

    def __init__(self, taps: list[Tap]) -> None:
        self.taps = taps
        self.outputs: list[Optional[torch.Tensor]] = [None] * len(taps)
        self._handles = [t.module.register_forward_hook(self._hook(i)) for i, t in enumerate(taps)]

    def _hook(self, i: int):
        def hook(_module, _inputs, output):
            out = output[0] if isinstance(output, tuple) else output
            self.outputs[i] = out.transpose(0, 1) if self.taps[i].seq_first else out
        return hook

    def take(self) -> list[torch.Tensor]:
        outs, self.outputs = self.outputs, [None] * len(self.taps)
        if any(o is None for o in outs):
            raise RuntimeError("a feature tap did not fire: was the image tower run since the last take()?")
        return outs  # type: ignore[return-value]

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []
