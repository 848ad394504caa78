"""open_clip models: loading by name, tag, file or folder, and the suite's own configs."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import urllib.parse
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
import torch.nn as nn

from benchmark.config import ModelConfig
from benchmark.errors import UserError
from benchmark.logs import quiet_root_logger
from benchmark.models.architectures import default_cache_dir, suite_model_names
from benchmark.models.preprocess import OPENAI_MEAN, OPENAI_STD


@dataclass
class ClipBundle:
    """A loaded CLIP model with what the suite needs beside it."""

    model: nn.Module  # open_clip CLIP: .visual, .encode_text, .logit_scale
    tokenizer: Callable[[list[str]], torch.Tensor]
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    source: str  # how it was loaded, for the manifest


def check_model_config(cfg: ModelConfig) -> None:
    """Refuse an unknown model or a missing local folder/file before any work starts
    (open_clip is imported only to check an open_clip architecture's name: a suite model's
    check stays instant)."""
    if cfg.name.startswith("local-dir:"):  # a schema brings its own weights: pretrained is ignored
        folder = Path(cfg.name[len("local-dir:") :])
        if not (folder / "open_clip_config.json").is_file():
            raise UserError(
                f"model folder {str(folder)!r} has no open_clip_config.json; a local-dir: model needs "
                "open_clip_config.json and open_clip_pytorch_model.bin (or .safetensors) inside"
            )
    elif cfg.pretrained == "suite" and not cfg.name.startswith("hf-hub:"):
        if cfg.name not in suite_model_names():
            raise UserError(
                f"model.pretrained=suite needs a suite model config; unknown model {cfg.name!r}; "
                f"valid choices: {', '.join(suite_model_names())}"
            )
    elif not cfg.name.startswith("hf-hub:"):
        import open_clip

        known = open_clip.list_models()
        if cfg.name not in known:
            raise UserError(
                f"unknown model {cfg.name!r}; valid choices: open_clip architectures such as "
                f"{', '.join(known[:6])}, ... ({len(known)} in all, see open_clip.list_models()), "
                f"suite models {', '.join(suite_model_names())}, or local-dir:PATH / hf-hub:ID"
            )
        looks_like_file = os.sep in cfg.pretrained or cfg.pretrained.endswith((".pt", ".pth", ".bin", ".safetensors"))
        if looks_like_file and not os.path.isfile(cfg.pretrained):
            raise UserError(f"checkpoint file {cfg.pretrained!r} (model.pretrained) does not exist")


def load_clip(cfg: ModelConfig, device: torch.device, progress: bool = True) -> ClipBundle:
    """Load the model the config names; every route ends in open_clip's own loader."""
    check_model_config(cfg)
    if cfg.name.startswith(("local-dir:", "hf-hub:")):
        return _from_open_clip(cfg.name, None, device, cfg.name)
    if cfg.pretrained == "suite":
        from benchmark.models.pretrain import ensure_pretrained

        folder = ensure_pretrained(cfg, default_cache_dir(cfg), progress=progress)
        return _from_open_clip(f"local-dir:{folder}", None, device, f"suite-pretrained {cfg.name} at {folder}")
    pretrained = None if cfg.pretrained in ("", "none") else cfg.pretrained
    return _from_open_clip(cfg.name, pretrained, device, f"{cfg.name} pretrained={cfg.pretrained}")


def _from_open_clip(name: str, pretrained: Optional[str], device: torch.device, source: str) -> ClipBundle:
    import open_clip

    from_hub = name.startswith("hf-hub:") or bool(pretrained and not os.path.isfile(pretrained))
    try:
        with quiet_root_logger(), _hub_access(from_hub) as offline:
            model = open_clip.create_model(name, pretrained=pretrained, device=device)
            tokenizer = open_clip.get_tokenizer(name)
    except Exception as e:  # noqa: BLE001  a corrupt file fails in pickle, torch, safetensors...: all user input
        raise UserError(_weights_error(name, pretrained, e) + (HUB_OFFLINE if offline else "")) from None
    pp = getattr(model.visual, "preprocess_cfg", {}) or {}
    size = model.visual.image_size
    size = size[0] if isinstance(size, (tuple, list)) else size
    mean = tuple(pp.get("mean", OPENAI_MEAN))
    std = tuple(pp.get("std", OPENAI_STD))
    model = model.to(memory_format=torch.channels_last)  # matches BatchPreprocess's output
    return ClipBundle(model.eval(), tokenizer, int(size), mean, std, source)


HUB_OFFLINE = " (the Hugging Face Hub is unreachable from here, so only its local cache was searched)"


@contextlib.contextmanager
def _hub_access(from_hub: bool) -> Iterator[bool]:
    """Around a model load from the Hugging Face Hub: when the Hub cannot be reached, use
    its local cache only (huggingface_hub's offline mode) instead of retrying for half a
    minute, and keep its retry warnings off the console. Yields whether it went offline."""
    if not from_hub:
        yield False
        return
    import huggingface_hub.constants as hub

    saved, hub_log = hub.HF_HUB_OFFLINE, logging.getLogger("huggingface_hub")
    level = hub_log.level
    hub.HF_HUB_OFFLINE = saved or not _reachable(hub.ENDPOINT)
    hub_log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield hub.HF_HUB_OFFLINE and not saved
    finally:
        hub.HF_HUB_OFFLINE = saved
        hub_log.setLevel(level)


def _reachable(url: str, timeout: float = 3.0) -> bool:
    """Whether a TCP connection to the URL's host opens within ``timeout`` seconds."""
    parsed = urllib.parse.urlparse(url)
    try:
        with socket.create_connection((parsed.hostname or "", parsed.port or 443), timeout=timeout):
            return True
    except OSError:
        return False


def _weights_error(name: str, pretrained: Optional[str], err: Exception) -> str:
    """Explain a failed load: which weights, where open_clip looked, how to place them."""
    import open_clip

    cache = os.environ.get("HF_HUB_CACHE") or os.environ.get("HF_HOME") or "~/.cache/huggingface"
    first = str(err).splitlines()[0][:200]
    if pretrained and not os.path.isfile(pretrained):
        tags = [t for m, t in open_clip.list_pretrained() if m == name]
        if pretrained not in tags:
            return (
                f"unknown pretrained tag {pretrained!r} for model {name!r}; valid choices: "
                f"{', '.join(tags) or '(none)'}, or a checkpoint file path"
            )
        return (
            f"weights {name}/{pretrained} could not be loaded ({first}); open_clip looked in the Hugging Face "
            f"cache {cache} and the network is unreachable: download them on a connected machine "
            f"(open_clip.create_model('{name}', pretrained='{pretrained}')) and copy the cache, or pass "
            f"model.pretrained=/path/to/checkpoint.pt"
        )
    return f"could not load model {name!r} (pretrained={pretrained!r}): {first}"
