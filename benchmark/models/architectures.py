"""The suite's own model architectures (open_clip JSON configs in ``configs/``) and the
cache folder of the models it pretrains."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from benchmark.config import ModelConfig

SUITE_CONFIGS = Path(__file__).parent / "configs"  # the suite's own architectures, open_clip JSON


def suite_model_names() -> list[str]:
    return sorted(p.stem for p in SUITE_CONFIGS.glob("*.json"))


def suite_model_config(name: str) -> dict[str, Any]:
    return json.loads((SUITE_CONFIGS / f"{name}.json").read_text())


def default_cache_dir(cfg: ModelConfig) -> Path:
    root = cfg.cache_dir or os.environ.get("LDIFS_BENCH_CACHE") or Path.home() / ".cache" / "ldifs-bench"
    return Path(root)
