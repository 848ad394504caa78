"""What a reader needs to trust a run: versions, seed, device, git revision, timings."""

from __future__ import annotations

import json
import platform
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

from benchmark import distributed
from benchmark.determinism import cpu_kernels_in_force
from benchmark.files import atomic_text, folder_bytes
from benchmark.loop.scheduler import MethodResult, RunSetup
from benchmark.provenance import device_name, git_revision, versions
from benchmark.run.plan_record import manifest_record
from benchmark.run.plugins import plugin_records


def cpu_fingerprint(setup: RunSetup) -> Optional[str]:
    """The digest of the fingerprint's quick lines (weights, preprocessing, forward, three
    steps on a copy of the pre-trained tower) on this host; None on a GPU."""
    if setup.device.type != "cpu":
        return None
    from benchmark.models.fingerprint import digest, header, quick_lines

    return digest(header() + list(quick_lines(setup.bundle.model.visual, setup.preprocess)))  # type: ignore[arg-type]


def write_manifest(
    path: Path,
    setup: RunSetup,
    results: list[MethodResult],
    seconds: float,
    keep_checkpoints: bool = False,
    workers: int = 1,
) -> None:
    cfg = setup.cfg
    manifest = {
        "command": sys.argv,
        "seeds": cfg.seeds,
        "smoke": cfg.smoke,  # a --smoke rehearsal (benchmark/run/smoke.py), not a result
        "device": str(setup.device),
        "device_name": device_name(setup.device),
        # processes that trained data-parallel (torchrun) and their backend; 1 and null: one process
        **distributed.describe(),
        "git_revision": git_revision(),
        "machine": platform.node(),  # the host name: which machine of a cluster ran it
        "finished_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": versions(),
        "cpu_kernels": cpu_kernels_in_force(),  # the instruction set torch's CPU kernels ran (docs/reproducibility.md)
        # sha of `python -m benchmark.tools.fingerprint`'s quick lines for this model: equal on two
        # hosts when their first computations are bit-equal (CPU runs only)
        "cpu_fingerprint": cpu_fingerprint(setup),
        "model": setup.bundle.source,
        # sha256 of the state_dict the run started from (benchmark.models.clip_loading.weights_digest)
        "model_weights_sha256": setup.bundle.weights_sha256,
        "tasks": {
            n: {"source": t.source, "train": len(t.train), "test": len(t.test), "classes": t.num_classes}
            for n, t in setup.tasks.items()
        },
        # the leaderboard ranks by the scenario's headline (class-incremental: Avg, then Last)
        "scenario": "class_incremental" if setup.sequence.class_incremental else "task_incremental",
        "plugins": plugin_records(cfg.plugins),  # user code the run imported: path and sha256
        "wall_seconds": round(seconds, 2),
        "workers": workers,  # local processes the (method, seed) pairs trained on (--workers)
        "plan": manifest_record(cfg, seconds, workers),  # --plan's estimate of this config and how far off it was
        "runs": [
            {"method": r.method, "seed": r.seed, "status": r.status, "error": r.error, "stages": r.stages}
            for r in results
        ],
    }
    checkpoints = folder_bytes(path.parent / "checkpoints") if (path.parent / "checkpoints").is_dir() else 0
    # what the finished run folder keeps (checkpoints are dropped at the end unless kept)
    manifest["disk_bytes"] = folder_bytes(path.parent) - (0 if keep_checkpoints else checkpoints)
    manifest["checkpoint_bytes_during_run"] = checkpoints
    atomic_text(path, json.dumps(manifest, indent=2))
