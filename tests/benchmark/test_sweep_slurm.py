"""A sweep through a real one-node SLURM (slurmctld + slurmd + munge on localhost).

Started by tests/slurm/slurm-up.sh (root: it installs Debian's slurm-wlm and munge with
apt-get when missing) unless a cluster already answers, stopped afterwards if this test
started it. Where SLURM cannot start, the test skips with the reason. Marked slow (a job
array of real runs): ``pytest -m slow tests/benchmark/test_sweep_slurm.py``; .ci/run runs it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SLURM = REPO / "tests" / "slurm"

pytestmark = pytest.mark.slow


def _env() -> dict[str, str]:
    """PATH with the sacct stand-in first: the test cluster keeps no accounting database,
    and submitit asks sacct for job states."""
    return {**os.environ, "PATH": f"{SLURM / 'bin'}{os.pathsep}{os.environ['PATH']}"}


def _answers() -> bool:
    if not shutil.which("sinfo"):
        return False
    result = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=10)
    return result.returncode == 0 and any(s.startswith(("idle", "mix", "alloc")) for s in result.stdout.split())


@pytest.fixture(scope="module")
def slurm_cluster():
    if _answers():
        yield _env()  # someone else's cluster: use it, leave it running
        return
    if os.geteuid() != 0:
        pytest.skip("no SLURM answers and starting one (tests/slurm/slurm-up.sh) needs root")
    up = subprocess.run(["bash", str(SLURM / "slurm-up.sh")], capture_output=True, text=True, timeout=600)
    if up.returncode != 0:
        lines = (up.stderr or up.stdout).strip().splitlines()
        pytest.skip(f"SLURM could not start: {lines[-1] if lines else f'slurm-up.sh exit {up.returncode}'}")
    try:
        yield _env()
    finally:
        subprocess.run(["bash", str(SLURM / "slurm-down.sh")], timeout=120)


def test_sweep_on_slurm(slurm_cluster, tmp_path, model_cache):
    results = tmp_path / "results"
    base = {
        "sequence": "micro",
        "threads": 1,
        "device": "cpu",
        "methods": ["finetune"],
        "results_dir": str(results),
        "model": {
            "name": "tiny-rn",
            "pretrained": "suite",
            "cache_dir": model_cache,
            "pretrain": {"images": 256, "epochs": 1, "batch_size": 64},
        },
        "train": {"lr": 1.0e-3, "batch_size": 32, "warmup_steps": 2, "train_limit": 64},
        "eval": {"lp_train_limit": 64, "test_limit": 48, "lp_max_iter": 20},
    }
    doc = {"name": "on-slurm", "base": base, "grid": {"seeds": [0, 1]}, "slurm": {"cpus_per_task": 1}}
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(doc))
    command = [sys.executable, "run_benchmark.py", "--sweep", str(path), "-q", "--launcher", "slurm"]
    command += ["--slurm.timeout_min", "20"]
    done = subprocess.run(command, cwd=REPO, env=slurm_cluster, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "submitted 2 array tasks" in done.stdout
    out = results / "on-slurm"
    board = pd.read_csv(out / "leaderboard.csv")
    assert list(board["method"]) == ["finetune"] and int(board["n_seeds"][0]) == 2
    assert len(list((out / "slurm").glob("*/*_log.out"))) == 2  # one log per cell
    statuses = [cell["status"] for cell in yaml.safe_load((out / "sweep.json").read_text())["cells"]]
    assert statuses == ["complete", "complete"]
