"""The wheel is the suite: built, installed into an empty folder and run from outside the
checkout, it holds every data file the code reads (the shipped model above all), so an
installed suite computes what a checkout computes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("benchmark", "methods", "tasks")


def _tracked_data_files() -> set[str]:
    out = subprocess.run(["git", "ls-files", *PACKAGES], cwd=ROOT, capture_output=True, text=True, check=True)
    return {f for f in out.stdout.split() if not f.endswith(".py")}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel of the tracked files, built in a copy (setuptools writes build/ beside the
    source: never into the checkout)."""
    source, folder = tmp_path_factory.mktemp("source"), tmp_path_factory.mktemp("wheel")
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in filter(None, tracked.decode().split("\0")):
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(folder),
            str(source),
        ],
        check=True,
        capture_output=True,
    )
    (built,) = folder.glob("ldifs_bench-*.whl")
    return built


@pytest.mark.slow
def test_the_wheel_holds_every_data_file_the_packages_track(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = sorted(_tracked_data_files() - names)
    assert not missing, f"not in the wheel: {missing}"
    assert "benchmark/models/weights/tiny-rn/open_clip_model.safetensors" in names


@pytest.mark.slow
def test_installed_wheel_checks_its_model_and_runs_outside_the_checkout(wheel, tmp_path):
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
        check=True,
        capture_output=True,
    )
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site), "LDIFS_BENCH_CACHE": str(tmp_path / "cache")}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, *args], cwd=outside, env=env, capture_output=True, text=True)

    where = run("-c", "import benchmark; print(benchmark.__file__)")
    assert where.stdout.strip().startswith(str(site)), where.stdout + where.stderr  # not the checkout
    check = run("-m", "benchmark.models.pretrain", "--check")
    assert check.returncode == 0, check.stderr
    results = tmp_path / "results"
    code = "from benchmark.run.cli import main; raise SystemExit(main())"
    micro = run(
        "-c", code, "--sequence", "micro", "--methods", "finetune", "--results-dir", str(results),
        "--name", "installed", "-q", "--eval.test_limit", "50", "--train.train_limit", "64",
    )  # fmt: skip
    assert micro.returncode == 0, micro.stderr[-2000:]
    manifest = (results / "installed" / "manifest.json").read_text()
    assert '"suite-shipped tiny-rn at ' in manifest  # the shipped model, not one pretrained in the cache
    assert not (tmp_path / "cache" / "models").exists()
