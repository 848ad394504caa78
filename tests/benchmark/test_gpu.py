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
    from benchmark.run.perf import main

    assert main(["--device", "cuda", "--steps", "4", "--repeats", "1", "--batch-size", "32"]) == 0
    assert "ldifs_vs_finetune_time" in capsys.readouterr().out


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
