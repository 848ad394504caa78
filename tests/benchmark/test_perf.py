"""The step-time benchmark on the CPU: JSON on stdout, one line per timing on stderr."""

import json

from benchmark.tools.perf import main


def test_perf_times_ldifs_with_and_without_reused_taps(capsys):
    argv = ["--model", "tiny-vit", "--epochs", "2", "--steps", "2", "--repeats", "1", "--batch-size", "8"]
    assert main([*argv, "--threads", "1"]) == 0
    captured = capsys.readouterr()
    out = json.loads(captured.out)  # stdout is the JSON and nothing else
    assert set(out["ms_per_step"]) == {"bare", "finetune", "ldifs", "ldifs[reuse]"}
    assert out["epochs"] == 2 and out["ldifs_reuse_tier"] == {"ldifs[reuse]": "device"}
    assert {"ldifs_vs_finetune_time", "ldifs[reuse]_vs_finetune_time"} <= set(out["ratios"])
    lines = captured.err.splitlines()
    assert sum("ms/step" in line for line in lines) == 2 * 4  # warm-up + 1 repeat, 4 variants
    assert "\r" not in captured.err


def test_perf_refuses_unknown_variants(capsys):
    assert main(["--ldifs", "plain,turbo", "--steps", "1", "--repeats", "1"]) == 2
    assert capsys.readouterr().err.startswith("error: --ldifs turbo; valid:")
