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
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from benchmark.run.sweep import load_sweep

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


def write_sweep(tmp_path: Path, model_cache: str, results: Path) -> Path:
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
    return path


COMMAND = [sys.executable, "run_benchmark.py", "-q", "--launcher", "slurm", "--slurm.timeout_min", "20"]


def test_sweep_on_slurm(slurm_cluster, tmp_path, model_cache):
    results = tmp_path / "results"
    path = write_sweep(tmp_path, model_cache, results)
    command = [*COMMAND, "--sweep", str(path)]
    done = subprocess.run(command, cwd=REPO, env=slurm_cluster, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "submitted 2 array tasks" in done.stdout
    out = results / "on-slurm"
    board = pd.read_csv(out / "leaderboard.csv")
    assert list(board["method"]) == ["finetune"] and int(board["n_seeds"][0]) == 2
    assert len(list((out / "slurm").glob("*/*_log.out"))) == 2  # one log per cell
    statuses = [cell["status"] for cell in yaml.safe_load((out / "sweep.json").read_text())["cells"]]
    assert statuses == ["complete", "complete"]


def _scontrol(*args: str) -> None:
    subprocess.run(["scontrol", *args], check=True, capture_output=True, timeout=30)


def test_requeued_task_resumes_its_cell(slurm_cluster, tmp_path, model_cache):
    """`scontrol requeue` kills an array task after its cell's stage 1 (as a preemption
    would); SLURM reruns it and the cell resumes from its stage checkpoint, to the same CSV as
    the cell run here without interruption."""
    results = tmp_path / "results"
    path = write_sweep(tmp_path, model_cache, results)
    # a long stage 2 (many epochs of the same 64 images, ~20 s): the requeue, which can take
    # seconds to reach slurmd on a loaded machine, lands inside it
    sequence = {"name": "micro_long", "stages": [{"task": "shapes", "epochs": 1}, {"task": "digits", "epochs": 300}]}
    (tmp_path / "micro_long.yaml").write_text(yaml.safe_dump({**sequence, "eval_only": ["textures"]}))
    doc = yaml.safe_load(path.read_text())
    doc["base"]["sequence"] = str(tmp_path / "micro_long.yaml")
    path.write_text(yaml.safe_dump(doc))
    keys = [cell.key for cell in load_sweep(path).cells]  # array task i = cell i (hash order); slow imports first
    proc = subprocess.Popen([*COMMAND, "--sweep", str(path)], cwd=REPO, env=slurm_cluster, text=True)
    cells = results / "on-slurm" / "cells"
    deadline = time.time() + 600
    while not list(cells.glob(".*.partial/checkpoints/*.pt")):
        assert proc.poll() is None and time.time() < deadline, "no stage checkpoint appeared"
        time.sleep(0.05)
    key = next(cells.glob(".*.partial/checkpoints/*.pt")).parts[-3][1 : -len(".partial")]
    index = keys.index(key)
    squeue = subprocess.run(["squeue", "-h", "-o", "%F %j"], capture_output=True, text=True)
    arrays = [line.split()[0] for line in squeue.stdout.splitlines() if line.endswith(" ldifs-on-slurm")]
    assert arrays, f"the array job is not in the queue: {squeue}"
    task = f"{arrays[0]}_{index}"
    _scontrol("requeue", task)
    while (
        "JobState=PENDING"
        not in subprocess.run(["scontrol", "show", "job", task], capture_output=True, text=True).stdout
    ):
        time.sleep(0.2)
    _scontrol("update", f"jobid={task}", "StartTime=now")  # a requeued job otherwise waits ~2 minutes
    assert proc.wait(timeout=900) == 0
    log = (cells / key / "run.log").read_text()
    assert "resuming after stage 1" in log, log
    local = tmp_path / "local"
    shard = f"{index + 1}/2"
    subprocess.run(
        [sys.executable, "run_benchmark.py", "-q", "--sweep", str(path), "--results-dir", str(local), "--shard", shard],
        cwd=REPO,
        check=True,
        capture_output=True,
        timeout=600,
    )
    uninterrupted = local / "on-slurm" / "cells" / key / "accuracy_long.csv"
    assert (cells / key / "accuracy_long.csv").read_bytes() == uninterrupted.read_bytes()
