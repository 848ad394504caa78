"""The suite's own model architectures (open_clip JSON configs in ``configs/``) and the
cache folder of the models it pretrains."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmark.config import ModelConfig
from benchmark.files import suite_cache_root

SUITE_CONFIGS = Path(__file__).parent / "configs"  # the suite's own architectures, open_clip JSON


def suite_model_names() -> list[str]:
    return sorted(p.stem for p in SUITE_CONFIGS.glob("*.json"))


def suite_model_config(name: str) -> dict[str, Any]:
    return json.loads((SUITE_CONFIGS / f"{name}.json").read_text())


def default_cache_dir(cfg: ModelConfig) -> Path:
    return Path(cfg.cache_dir) if cfg.cache_dir else suite_cache_root()


def has_batch_norm_tower(cfg: ModelConfig) -> bool:
    """True when the named model's image tower is a ModifiedResNet (BatchNorm layers, so
    a training batch needs 2 or more images); False when unknown (local-dir:, hf-hub:)."""
    if cfg.name.startswith(("local-dir:", "hf-hub:")):
        return False  # known only once loaded: the engine checks the loaded model
    if cfg.pretrained == "suite" and cfg.name in suite_model_names():
        model_cfg = suite_model_config(cfg.name)
    else:
        import open_clip

        model_cfg = open_clip.get_model_config(cfg.name) or {}
    return isinstance(model_cfg.get("vision_cfg", {}).get("layers"), (list, tuple))
