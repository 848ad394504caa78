"""open_clip models: loading by name, tag, file or folder, and the suite's own configs."""

from __future__ import annotations

import contextlib
import hashlib
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
    weights_sha256: str = ""  # of the weights the run starts from (``weights_digest``), for the manifest


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
        from benchmark.models.pretrain import check_shipped_record

        check_shipped_record(cfg)  # a shipped model whose record is lost: one line, never a silent pretraining
    elif not cfg.name.startswith("hf-hub:"):
        import open_clip

        known = open_clip.list_models()
        if cfg.name not in known:
            raise UserError(
                f"unknown model {cfg.name!r}; valid choices: open_clip architectures such as "
                f"{', '.join(known[:6])}, ... ({len(known)} in all, see open_clip.list_models()), "
                f"suite models {', '.join(suite_model_names())}, or local-dir:PATH / hf-hub:ID"
            )
        tag_activation(cfg.name, cfg.pretrained)  # an activation the tag's weights were not trained with
        looks_like_file = os.sep in cfg.pretrained or cfg.pretrained.endswith((".pt", ".pth", ".bin", ".safetensors"))
        if looks_like_file and not os.path.isfile(cfg.pretrained):
            raise UserError(f"checkpoint file {cfg.pretrained!r} (model.pretrained) does not exist")


def load_clip(cfg: ModelConfig, device: torch.device, progress: bool = True) -> ClipBundle:
    """Load the model the config names; every route ends in open_clip's own loader."""
    check_model_config(cfg)
    if cfg.name.startswith(("local-dir:", "hf-hub:")):
        return _from_open_clip(cfg.name, None, device, cfg.name)
    if cfg.pretrained == "suite":
        from benchmark.models.pretrain import ensure_pretrained, shipped_model

        folder = shipped_model(cfg)  # the repository's fixed artifact when the config is the shipped one
        # manifests name the folder relative to the suite (shipped) or the model cache (pretrained):
        # a published manifest must not carry one machine's absolute paths
        source = f"suite-shipped {cfg.name} at {_suite_relative(folder)}" if folder else ""
        if folder is None:
            folder = ensure_pretrained(cfg, default_cache_dir(cfg), progress=progress)
            source = f"suite-pretrained {cfg.name} in the model cache ({Path(folder).name})"
        return _from_open_clip(f"local-dir:{folder}", None, device, source)
    pretrained = None if cfg.pretrained in ("", "none") else cfg.pretrained
    quick_gelu = tag_activation(cfg.name, pretrained)
    source = f"{cfg.name} pretrained={cfg.pretrained}"
    if quick_gelu is not None:
        source += f" ({'QuickGELU' if quick_gelu else 'GELU'}, the activation the weights were trained with)"
    return _from_open_clip(cfg.name, pretrained, device, source, quick_gelu)


def _suite_relative(folder: os.PathLike | str) -> str:
    """``folder`` relative to the directory holding the ``benchmark`` package (a checkout's
    root, or site-packages for an installed wheel)."""
    root = Path(__file__).resolve().parents[2]
    try:
        return Path(folder).resolve().relative_to(root).as_posix()
    except ValueError:
        return Path(folder).name


def tag_activation(name: str, pretrained: Optional[str]) -> Optional[bool]:
    """Whether an open_clip architecture + pretrained tag must be built with QuickGELU
    (None: not a registered tag, e.g. a checkpoint file, random weights, a schema name).

    OpenAI's CLIP (Radford et al., 2021) and several later releases were trained with
    QuickGELU, x * sigmoid(1.702 x). open_clip 2.x forced it for the ``openai`` tag; open_clip
    3.x builds the architecture's own activation (GELU for ``ViT-B-32``) and only warns, so
    every feature would be computed with an activation the weights never saw. The tag's
    pretrained config says which one the weights need (``quick_gelu``); asking for the other
    one explicitly (a ``...-quickgelu`` name with a tag its plain architecture trained with
    GELU) is refused.
    """
    import open_clip
    from open_clip.pretrained import get_pretrained_cfg

    if not pretrained or name.startswith(("local-dir:", "hf-hub:")):
        return None
    tag = get_pretrained_cfg(name, pretrained)
    plain = name[: -len("-quickgelu")] if name.endswith("-quickgelu") else ""
    base = get_pretrained_cfg(plain, pretrained) if plain and not tag else {}
    if base and not base.get("quick_gelu", False):
        valid = ", ".join(t for m, t in open_clip.list_pretrained() if m == name)
        raise UserError(
            f"model {name!r} builds QuickGELU but pretrained tag {pretrained!r} was trained with GELU; "
            f"valid: {plain!r} for this tag, or {name!r} with a QuickGELU tag ({valid or 'none'})"
        )
    if not tag:  # a file, or an unknown tag (``_weights_error`` names the valid ones)
        return None
    # the registry's word on the weights; the architecture's config may say otherwise (roberta-ViT-B-32)
    return bool(tag.get("quick_gelu", False))


def activation_kwargs(quick_gelu: Optional[bool]) -> dict:
    """``open_clip.create_model`` keywords that build the activation ``tag_activation`` chose."""
    if quick_gelu is None:
        return {}
    # force_quick_gelu edits the config before open_clip's own tag check (no mismatch warning);
    # a model keyword overrides the config's QuickGELU for a GELU-trained tag
    return {"force_quick_gelu": True} if quick_gelu else {"quick_gelu": False}


def weights_digest(model: nn.Module) -> str:
    """sha256 of a model's state_dict: every tensor in name order, its name, dtype, shape and
    bytes (contiguous, on the CPU), so the digest names the weights whatever the device or
    memory layout. Recorded in manifest.json: the weights a run started from."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}\n".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _from_open_clip(
    name: str, pretrained: Optional[str], device: torch.device, source: str, quick_gelu: Optional[bool] = None
) -> ClipBundle:
    import open_clip

    from_hub = name.startswith("hf-hub:") or bool(pretrained and not os.path.isfile(pretrained))
    extra = activation_kwargs(quick_gelu)
    try:
        with quiet_root_logger(), _hub_access(from_hub) as offline:
            model = open_clip.create_model(name, pretrained=pretrained, device=device, **extra)
            tokenizer = open_clip.get_tokenizer(name)
    except Exception as e:  # noqa: BLE001  a corrupt file fails in pickle, torch, safetensors...: all user input
        raise UserError(_weights_error(name, pretrained, e) + (HUB_OFFLINE if offline else "")) from None
    pp = getattr(model.visual, "preprocess_cfg", {}) or {}
    size = model.visual.image_size
    size = size[0] if isinstance(size, (tuple, list)) else size
    mean = tuple(pp.get("mean", OPENAI_MEAN))
    std = tuple(pp.get("std", OPENAI_STD))
    digest = weights_digest(model)
    model = model.to(memory_format=torch.channels_last)  # matches BatchPreprocess's output
    return ClipBundle(model.eval(), tokenizer, int(size), mean, std, source, digest)


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
