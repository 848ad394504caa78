"""One run on several processes (benchmark/distributed.py): the shares of a batch, the
gradient of the global batch from them, the refusals, and (slow) a torchrun of two gloo
processes on the CPU against one process, killed and resumed."""

from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from distributed_worker import collectives

from benchmark import distributed
from benchmark.errors import UserError
from benchmark.training.engine import DeviceBatchLoader
from methods import METHODS

REPO = Path(__file__).resolve().parents[2]


def test_shares_cover_a_batch_in_order():
    for n in (1, 5, 32, 33):
        for world in (1, 2, 3):
            spans = [distributed.shard(n, world, r) for r in range(world)]
            assert spans[0][0] == 0 and spans[-1][1] == n
            assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
            sizes = [hi - lo for lo, hi in spans]
            assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)


def test_each_process_draws_its_share_of_the_same_global_batches():
    images, labels = torch.arange(21).view(21, 1), torch.zeros(21, dtype=torch.long)
    tasks = torch.zeros(21, dtype=torch.long)

    def batches(world: int, rank: int) -> tuple[list[torch.Tensor], int]:
        gen = torch.Generator().manual_seed(7)
        loader = DeviceBatchLoader([images, labels, tasks], 8, gen, 0, 1, world, rank)
        return [b[0].view(-1) for b in loader], len(loader)

    whole, steps = batches(1, 0)
    (first, steps0), (second, steps1) = batches(2, 0), batches(2, 1)
    assert steps == steps0 == steps1 == 3  # 8, 8, 5 images: the same steps on every process
    assert all(torch.equal(torch.cat(pair), w) for pair, w in zip(zip(first, second), whole))
    assert [len(b) for b in first] == [4, 4, 3] and [len(b) for b in second] == [4, 4, 2]
    # a trailing batch smaller than one image per process is dropped on every process alike
    gen = torch.Generator().manual_seed(7)
    one_left = DeviceBatchLoader([images[:17], labels[:17], tasks[:17]], 8, gen, 0, 1, 2, 1)
    assert len(one_left) == len(list(one_left)) == 2


def test_two_processes_sum_to_the_global_batch_gradient(tmp_path):
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "result.json"
    mp.spawn(collectives, args=(2, port, str(out)), nprocs=2, join=True)
    result = json.loads(out.read_text())
    # float32 sums in another order: a few units in the last place of gradients of order 1
    assert result["grad_error"] < 1e-6
    assert result["gathered"] and result["shared"] == 1 and result["all_true"] is False


def test_methods_that_cannot_run_on_several_processes_say_why(micro_cfg, monkeypatch):
    from benchmark.run.runner import _check_distributed

    refused = {name for name in METHODS.names() if METHODS.get(name).refuse_distributed()}
    assert refused == {"agem", "derpp", "er_ace", "flyp", "gdumb", "replay"}
    monkeypatch.setenv("WORLD_SIZE", "2")
    micro_cfg.methods = ["finetune", "ldifs+replay"]
    with pytest.raises(UserError, match="method 'replay' cannot run on 2 processes: Avalanche's ReplayPlugin"):
        _check_distributed(micro_cfg)
    micro_cfg.methods = ["finetune", "ldifs", "ewc", "lwf", "zscl"]
    _check_distributed(micro_cfg)
    micro_cfg.train.batch_size = 33
    with pytest.raises(UserError, match="train.batch_size=33 cannot be shared by 2 processes"):
        _check_distributed(micro_cfg)
    micro_cfg.train.batch_size = 2  # tiny-rn has BatchNorm: one image per process is too few
    with pytest.raises(UserError, match="at least 2; give at least 4"):
        _check_distributed(micro_cfg)


def test_a_plain_run_goes_to_slurm_as_one_job(micro_cfg, monkeypatch):
    """--launcher slurm without a sweep: one job (here a stand-in executor running it in this process)."""
    from benchmark.run import launchers

    class Job:
        job_id = "42"

        def __init__(self, result: str) -> None:
            self.result = result

        def results(self) -> list[str]:
            return [self.result]

    class Executor:
        def submit(self, fn, *args):
            return Job(fn(*args))

    seen = {}
    monkeypatch.setattr(launchers, "_executor", lambda folder, name, options: seen.update(options) or Executor())
    micro_cfg.methods = ["finetune"]
    run_dir = launchers.submit_run(micro_cfg, {"tasks_per_node": "2", "partition": "gpu"}, False, False)
    assert (run_dir / "accuracy_long.csv").is_file()
    assert seen == {"tasks_per_node": 2, "slurm_partition": "gpu", "timeout_min": 60}
    assert json.loads((run_dir / "manifest.json").read_text())["world_size"] == 1


# ---------------------------------------------------------------- torchrun, two gloo processes (slow)

# the micro sequence on the suite's tiny ViT (no BatchNorm, whose batch statistics are per process)
ARGS = [
    "--sequence", "micro", "--methods", "finetune,ldifs", "--device", "cpu", "--threads", "1", "-q",
    "--model.name", "tiny-vit", "--model.pretrain.images", "256", "--model.pretrain.epochs", "1",
    "--model.pretrain.batch_size", "64", "--train.batch_size", "32", "--train.train_limit", "64",
    "--train.warmup_steps", "2", "--eval.test_limit", "48", "--eval.lp_train_limit", "64", "--eval.lp_max_iter", "20",
]  # fmt: skip


def _command(results: Path, cache: str, processes: int) -> list[str]:
    launch = [sys.executable, "run_benchmark.py"]
    if processes > 1:
        launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
        launch.append("run_benchmark.py")
    return [*launch, *ARGS, "--model.cache_dir", cache, "--results-dir", str(results)]


def _run(results: Path, cache: str, processes: int) -> Path:
    subprocess.run(_command(results, cache, processes), cwd=REPO, check=True, timeout=600, capture_output=True)
    (folder,) = [Path(p) for p in glob.glob(str(results / "micro-*"))]
    return folder


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    cache = str(tmp_path_factory.mktemp("cache"))  # the tiny ViT is pretrained here, once
    return _run(tmp_path_factory.mktemp("one"), cache, 1), cache


def _same_rows(one: Path, two: Path) -> None:
    """Equal within float tolerance: two processes sum the shares' gradients and compute the
    evaluation features in other batches, so sums run in another order (float32 rounding).
    On this model that moved no prediction: accuracies equal; calibration error within 0.01."""
    a, b = pd.read_csv(one / "accuracy_long.csv"), pd.read_csv(two / "accuracy_long.csv")
    keys = [c for c in a.columns if c not in ("accuracy", "ece")]
    assert a[keys].equals(b[keys])
    assert (a.accuracy - b.accuracy).abs().max() == 0
    assert (a.ece - b.ece).abs().max() < 0.01
    losses = [[s["final_loss"] for r in json.loads((f / "manifest.json").read_text())["runs"] for s in r["stages"]]
              for f in (one, two)]  # fmt: skip
    assert losses[0] == pytest.approx(losses[1], rel=1e-3)


@pytest.mark.slow
def test_two_processes_equal_one(one_process, tmp_path):
    one, cache = one_process
    two = _run(tmp_path, cache, 2)
    _same_rows(one, two)
    manifest = json.loads((two / "manifest.json").read_text())
    assert (manifest["world_size"], manifest["backend"]) == (2, "gloo")
    index = pd.read_csv(tmp_path / "index.csv")
    assert len(index) == 1 and index.status[0] == "complete"


def _children(parent: int) -> list[int]:
    """The processes whose parent is ``parent`` (Linux /proc)."""
    pids = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1]) == parent:
                pids.append(int(proc.name))
        except (OSError, ValueError, IndexError):
            pass  # a process that ended while we looked
    return pids


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_two_processes_resume_after_a_kill(one_process, tmp_path):
    one, cache = one_process
    proc = subprocess.Popen(_command(tmp_path, cache, 2), cwd=REPO, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not glob.glob(str(tmp_path / ".micro-*.partial/checkpoints/finetune__seed0.pt")) and proc.poll() is None:
        assert time.time() < deadline, "no stage checkpoint appeared"
        time.sleep(0.05)
    workers = _children(proc.pid)  # torchrun starts each in a session of its own: killed one by one
    assert len(workers) == 2
    for pid in [*workers, proc.pid]:
        os.kill(pid, signal.SIGKILL)  # one stage in, as a node failure would
    proc.wait()
    two = _run(tmp_path, cache, 2)
    assert "resuming after stage" in (two / "run.log").read_text()
    _same_rows(one, two)
