"""Commands that do nothing answer at the speed of ``import torch``: ``--list-methods``,
``--print-config``, a sweep's ``--dry-run`` and a rerun that finds its run complete import
no Avalanche, open_clip, pandas or matplotlib (issue 20)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import MICRO

from benchmark.training.method import HOOKS

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("avalanche", "open_clip", "pandas", "matplotlib", "sklearn")
# Runs the CLI in-process and prints which heavy libraries it imported.
PROBE = """
import contextlib, io, runpy, sys
sys.argv = ["run_benchmark.py", *sys.argv[1:]]
with contextlib.redirect_stdout(io.StringIO()):
    try:
        runpy.run_path("run_benchmark.py", run_name="__main__")
    except SystemExit as e:
        assert not e.code, e.code
print(",".join(m for m in {heavy!r} if m in sys.modules))
"""


def test_method_hooks_are_avalanches():
    """``Method`` declares Avalanche's hooks itself (so the registry imports no Avalanche):
    the same names as ``SupervisedPlugin``'s."""
    from avalanche.training.plugins import SupervisedPlugin

    assert set(HOOKS) == {n for n in dir(SupervisedPlugin) if n.startswith(("before_", "after_"))}


def _commands(tmp_path: Path) -> dict[str, list[str]]:
    config = tmp_path / "micro.yaml"
    cache = os.environ.get("LDIFS_TEST_MODEL_CACHE", str(tmp_path / "cache"))
    micro = {**MICRO, "methods": ["zeroshot", "ewc"], "results_dir": str(tmp_path / "results"), "device": "cpu"}
    micro["model"] = {**MICRO["model"], "cache_dir": cache}
    config.write_text(yaml.safe_dump(micro))
    sweep = ["--sweep", str(ROOT / "benchmark/sweeps/embedded_tuned.yaml"), "--dry-run"]
    return {
        "--list-methods": ["--list-methods"],
        "--print-config": ["--print-config"],
        "--dry-run": sweep,
        "complete rerun": ["--config", str(config), "-q"],
    }


def _seconds(argv: list[str], repeat: int = 3) -> float:
    """The best of ``repeat`` wall times (the least disturbed by other processes)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(argv, cwd=ROOT, env=env, check=True, capture_output=True)
        best = min(best, time.perf_counter() - start)
    return best


@pytest.mark.slow
def test_do_nothing_commands_import_no_heavy_library_and_take_at_most_twice_import_torch(tmp_path):
    commands = _commands(tmp_path)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "run_benchmark.py", *commands["complete rerun"]], cwd=ROOT, env=env, check=True)
    torch_s = _seconds([sys.executable, "-c", "import torch"])
    ratios = {}
    for name, argv in commands.items():
        probe = [sys.executable, "-c", PROBE.format(heavy=HEAVY), *argv]
        imported = subprocess.run(probe, cwd=ROOT, env=env, check=True, capture_output=True, text=True)
        assert imported.stdout.strip() == "", f"{name} imported {imported.stdout.strip()}"
        ratios[name] = _seconds([sys.executable, "run_benchmark.py", *argv]) / torch_s
    print(f"import torch {torch_s:.2f} s; ratios " + ", ".join(f"{k} {v:.2f}" for k, v in ratios.items()))
    assert max(ratios.values()) <= 2.0, ratios
