"""What a reader needs to trust a run: versions, seed, device, git revision, timings."""
from __future__ import annotations

import json
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from benchmark.checkpoints import folder_bytes
from benchmark.files import atomic_text

if TYPE_CHECKING:
    from benchmark.runner import RunSetup
    from benchmark.scheduler import MethodResult

PACKAGES = ["torch", "torchvision", "open_clip_torch", "avalanche-lib", "numpy", "pandas", "matplotlib"]


def git_revision() -> str:
    """HEAD of the suite's checkout, with '-dirty' when it has uncommitted changes."""
    root = Path(__file__).resolve().parent.parent
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if rev.returncode != 0:
        return "unknown"
    return rev.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{device.type} ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def write_manifest(path: Path, setup: "RunSetup", results: list["MethodResult"], seconds: float,
                   keep_checkpoints: bool = False) -> None:
    cfg = setup.cfg
    manifest = {
        "command": sys.argv,
        "seeds": cfg.seeds,
        "device": str(setup.device),
        "device_name": device_name(setup.device),
        "git_revision": git_revision(),
        "versions": versions(),
        "model": setup.bundle.source,
        "tasks": {n: {"source": t.source, "train": len(t.train), "test": len(t.test), "classes": t.num_classes}
                  for n, t in setup.tasks.items()},
        "wall_seconds": round(seconds, 2),
        "runs": [{"method": r.method, "seed": r.seed, "status": r.status, "error": r.error, "stages": r.stages}
                 for r in results],
    }
    checkpoints = folder_bytes(path.parent / "checkpoints") if (path.parent / "checkpoints").is_dir() else 0
    # what the finished run folder keeps (checkpoints are dropped at the end unless kept)
    manifest["disk_bytes"] = folder_bytes(path.parent) - (0 if keep_checkpoints else checkpoints)
    manifest["checkpoint_bytes_during_run"] = checkpoints
    atomic_text(path, json.dumps(manifest, indent=2))
