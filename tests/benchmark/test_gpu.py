"""GPU-only checks (run with `pytest -m gpu` on a CUDA machine): the bf16 path trains and
LDIFS's taps line up under autocast."""

import pytest
import torch

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def test_micro_run_on_cuda(micro_cfg):
    from benchmark.run.runner import run

    micro_cfg.device = "cuda"
    micro_cfg.methods = ["finetune", "ldifs"]
    run_dir = run(micro_cfg, progress=False)
    import pandas as pd

    long = pd.read_csv(run_dir / "accuracy_long.csv")
    assert long.accuracy.notna().all() and set(long.method) == {"finetune", "ldifs"}


def test_perf_runs_on_cuda(capsys):
    from benchmark.tools.perf import main

    assert main(["--device", "cuda", "--steps", "4", "--repeats", "1", "--batch-size", "32"]) == 0
    assert "ldifs_vs_finetune_time" in capsys.readouterr().out


def test_lwf_plus_ldifs_trains_on_cuda():
    """LwF's previous model is a deep copy of the tower: its fp32 forward (outside autocast)
    must not replace the live tower's taps that LDIFS compares with the reference's."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parents[1] / "methods"))
    from methods_testkit import micro_setup, run

    result, plugins = run(micro_setup("vit", device="cuda"), "lwf+ldifs", {})
    ldifs = next(p for p in plugins if type(p).__name__ == "LDIFS")
    assert result.status == "ok" and ldifs.last_distance.requires_grad and ldifs.last_distance > 0


def test_a_tf32_run_sets_tf32_for_the_run_and_restores_it(micro_cfg, monkeypatch):
    import benchmark.run.runner as runner

    seen = []
    real = runner._run_stages

    def spy(*args, **kwargs):
        seen.append((torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32))
        return real(*args, **kwargs)

    monkeypatch.setattr(runner, "_run_stages", spy)
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    micro_cfg.device, micro_cfg.methods, micro_cfg.train.amp = "cuda", ["ldifs"], "tf32"
    runner.run(micro_cfg, progress=False)
    assert seen == [(True, True)]
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == saved
