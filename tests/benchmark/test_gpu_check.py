"""The GPU self-check's CPU parts: the plan, the refusal without CUDA, the report assembly,
and the precision-floor measurement on a tiny tower."""

import pytest
import torch

from benchmark.tools import gpu_check


def test_dry_run_prints_the_plan(capsys):
    assert gpu_check.main(["--dry-run", "--skip", "cache"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in out[:-1]] == [
        "1. gpu_tests",
        "2. step_times",
        "3. precision_floor",
        "4. criterion",
    ]
    assert "gpu_check.json" in out[-1]


def test_unknown_step_is_one_line_exit_2(capsys):
    assert gpu_check.main(["--skip", "warp_drive"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "warp_drive" in err and "gpu_tests" in err


def test_without_cuda_it_says_so_in_one_line(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_check.main(["--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no CUDA device" in err
    assert list(tmp_path.iterdir()) == []


def _report() -> dict:
    ms = {"bare": 30.0, "finetune": 31.0, "ldifs": 40.0, "ldifs[stream]": 35.0}
    perf = {
        "ms_per_step": ms,
        "img_per_s": {k: round(128000 / v, 1) for k, v in ms.items()},
        "ratios": {"finetune_vs_bare_throughput": 0.968},
        "batch": 128,
        "image_size": 224,
        "augment": "rrc",
        "epochs": 2,
        "steps_per_epoch": 16,
        "repeats": 3,
        "finetune_tflops": 55.0,
        "finetune_mfu": 0.111,
    }
    floor = {
        "batch": 32,
        "drift": "x",
        "0.001": {
            p: {"distance_vs_fp32": d, "grad_cosine_vs_fp32": c}
            for p, d, c in [("bf16", 30.0, 0.3), ("tf32", 1.01, 0.97), ("fp32", 1.0, 1.0)]
        },
    }
    table = [
        {
            "method": "finetune",
            "seeds": 2,
            "last": 50.0,
            "last_std": 1.0,
            "diagonal": 80.0,
            "diagonal_std": 0.5,
            "dlp": -20.0,
            "dlp_std": 2.0,
        }
    ]
    return {
        "environment": {
            "card": "NVIDIA H200",
            "driver": "570",
            "torch_cuda": "13.0",
            "torch": "2.11",
            "date": "d",
            "commit": "c",
        },
        "budget_s": 540,
        "wall_s": 500,
        "steps": {
            "gpu_tests": {
                "seconds": 60,
                "result": {"summary": "9 passed in 50s", "exit_code": 0, "counts": {"passed": 9}, "failed": []},
            },
            "step_times": {"seconds": 200, "result": {"flops_per_image_train": 13.2e9, "bf16": perf}},
            "precision_floor": {"seconds": 10, "result": floor},
            "cache": {"seconds": 1, "error": "TimeoutError: ran past 60 s"},
            "criterion": {"seconds": 90, "result": {"seeds_finished": 2, "errors": [], "table": table}},
        },
    }


def test_report_renders_every_step_and_names_a_failed_one():
    md = gpu_check.render_markdown(_report())
    assert md.startswith("# GPU self-check\n\nNVIDIA H200, driver 570, CUDA 13.0, torch 2.11")
    for name in gpu_check.STEPS:
        assert f"## {name} (" in md
    assert "| ldifs | 40.0 | 1.290x |" in md  # 40 / 31
    assert "MFU 0.111" in md and "13.20 G" in md
    assert "| bf16 | 30.0 | 0.3 |" in md
    assert "Not measured: TimeoutError: ran past 60 s" in md
    assert "| finetune | 2 | 50.0 ± 1.0 | 80.0 ± 0.5 | -20.0 ± 2.0 |" in md


def test_precision_floor_on_a_tiny_tower_is_exact_for_fp32():
    args = gpu_check.parse_args(["--device", "cpu", "--model", "tiny-vit", "--floor-batch", "2"])
    out = gpu_check.precision_floor(args, 60)
    for drift in ("0.001", "0.01"):
        assert out[drift]["fp32"] == {"distance_vs_fp32": 1.0, "grad_cosine_vs_fp32": 1.0}
        assert out[drift]["fp32_distance"] > 0
        assert 0 < out[drift]["bf16"]["grad_cosine_vs_fp32"] < 1.0  # bf16 rounding shows even on the CPU


def _recorder(seen: dict, step: str):
    return lambda args, left: seen.setdefault(step, left)


def test_budget_split_gives_the_last_step_what_is_left(monkeypatch):
    seen = {}
    monkeypatch.setattr(
        gpu_check,
        "STEP_FUNCTIONS",
        {s: _recorder(seen, s) for s in gpu_check.STEPS},
    )
    args = gpu_check.parse_args(["--budget", "100"])
    results = gpu_check.run_steps(args, list(gpu_check.STEPS))
    assert all("result" in r for r in results.values())
    assert seen["gpu_tests"] == pytest.approx(22, abs=0.5) and seen["criterion"] == pytest.approx(100, abs=0.5)
