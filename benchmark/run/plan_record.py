"""Where ``--plan`` leaves a config's estimate, and what its run's manifest records of it
(benchmark/run/plan.py makes the estimate; apart from it so the manifest imports no runner)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from benchmark.config import RunConfig, config_hash

PLANS_DIR = ".plans"


def plan_file(cfg: RunConfig) -> Path:
    """``<results_dir>/.plans/<config hash>.json``."""
    return Path(cfg.results_dir) / PLANS_DIR / f"{config_hash(cfg)}.json"


def manifest_record(cfg: RunConfig, wall_seconds: float, workers: int = 1) -> Optional[dict]:
    """The plan's estimate of this config (when --plan made one) against the run's wall time;
    with ``workers`` processes the estimate is taken as shared evenly between them."""
    try:
        saved = json.loads(plan_file(cfg).read_text(encoding="utf-8"))
        estimated = float(saved["estimated_seconds"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return {
        "estimated_seconds": estimated,
        "parts": saved.get("seconds", {}),
        "device": saved.get("probe", {}).get("device", ""),
        "wall_seconds": round(wall_seconds, 1),
        "workers": workers,
        "wall_over_estimate": round(wall_seconds * workers / estimated, 3) if estimated > 0 else None,
    }
