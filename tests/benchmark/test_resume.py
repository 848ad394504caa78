"""Runs that can be trusted: resume after SIGKILL, atomic files, determinism, guarded training."""

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
import torch

from benchmark.config import dump_yaml
from benchmark.errors import UserError
from benchmark.files import atomic_text
from benchmark.run.runner import run
from benchmark.rundir import RunLock
from methods import METHODS, Method, register_method

ROOT = Path(__file__).resolve().parents[2]


def micro_finetune(cfg, results: Path):
    cfg.methods = ["finetune"]
    cfg.results_dir = str(results)
    cfg.name = "trusted"
    return cfg


@pytest.mark.slow  # kills and restarts worker processes: run by .ci/run's slow line
def test_sigkill_in_stage_2_then_rerun_matches_uninterrupted(micro_cfg, tmp_path):
    cfg = micro_finetune(micro_cfg, tmp_path / "killed")
    cfg_file = tmp_path / "cfg.yaml"
    cfg_file.write_text(dump_yaml(cfg))
    # A child process that SIGKILLs itself at the 2nd optimiser step of stage 2.
    child = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {str(ROOT)!r})
        from benchmark.training.engine import Engine
        original = Engine._after_update
        def killer(self, **kw):
            original(self, **kw)
            if self.stage_index == 2 and self.stage_step == 1:
                os.kill(os.getpid(), signal.SIGKILL)
        Engine._after_update = killer
        from benchmark.run.cli import main
        sys.exit(main(["--config", {str(cfg_file)!r}, "-q"]))
    """)
    proc = subprocess.run([sys.executable, "-c", child], cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    partial = tmp_path / "killed" / ".trusted.partial"
    assert (partial / "checkpoints" / "finetune__seed0.pt").is_file()  # stage 1 was saved
    assert not (tmp_path / "killed" / "trusted").exists()  # no complete-looking run
    resumed = run(cfg, progress=False)  # the same config: resumes at stage 2
    assert "resuming after stage 1" in (resumed / "run.log").read_text()
    straight = run(micro_finetune(micro_cfg, tmp_path / "straight"), progress=False)
    assert (resumed / "accuracy_long.csv").read_bytes() == (straight / "accuracy_long.csv").read_bytes()


def test_same_config_twice_is_byte_identical_and_rerun_is_a_no_op(micro_cfg, tmp_path):
    cfg = micro_finetune(micro_cfg, tmp_path / "a")
    first = (run(cfg, progress=False) / "accuracy_long.csv").read_bytes()
    cfg.results_dir = str(tmp_path / "b")
    second_dir = run(cfg, progress=False)
    assert (second_dir / "accuracy_long.csv").read_bytes() == first
    stamp = (second_dir / "manifest.json").stat().st_mtime_ns
    assert run(cfg, progress=False) == second_dir  # complete already: nothing redone
    assert (second_dir / "manifest.json").stat().st_mtime_ns == stamp


def test_changed_config_under_same_name_starts_a_new_run(micro_cfg, tmp_path, capsys):
    cfg = micro_finetune(micro_cfg, tmp_path)
    cfg.train.train_limit = 32
    first = run(cfg, progress=False)
    cfg.train.lr = 5e-4
    second = run(cfg, progress=False)
    assert second != first and second.name.startswith("trusted-")
    assert "holds a run with another config" in capsys.readouterr().err


def test_killed_write_leaves_the_previous_complete_file(tmp_path, monkeypatch):
    target = tmp_path / "accuracy_long.csv"
    atomic_text(target, "method,accuracy\nfinetune,50.0\n")

    def die_before_rename(src, dst):
        raise KeyboardInterrupt("killed between write and rename")

    monkeypatch.setattr(os, "replace", die_before_rename)
    with pytest.raises(KeyboardInterrupt):
        atomic_text(target, "method,accuracy\nfinetune,99.0\nldifs,")  # the new file never lands
    assert target.read_text() == "method,accuracy\nfinetune,50.0\n"
    assert not list(tmp_path.glob(".*tmp*"))  # the temporary file is cleaned up


def test_second_process_on_the_same_run_refuses(tmp_path):
    lock = tmp_path / ".run.lock"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from benchmark.rundir import RunLock
        with RunLock(__import__('pathlib').Path({str(lock)!r})):
            print('locked', flush=True)
            time.sleep(30)
    """),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(UserError, match=f"in use by process {holder.pid}"):
            with RunLock(lock):
                pass
    finally:
        holder.kill()
        holder.wait()
    with RunLock(lock):  # a killed holder releases the lock
        pass


@pytest.fixture
def nan_method():
    @register_method("nan_at_stage2")
    class NanAtStage2(Method):
        """Test-only: the loss turns NaN in stage 2."""

        def before_backward(self, strategy, **kwargs):
            if strategy.stage_index == 2:
                strategy.loss = strategy.loss * torch.tensor(float("nan"))

    yield "nan_at_stage2"
    METHODS.unregister("nan_at_stage2")


def test_nan_loss_marks_that_method_failed_and_the_run_completes(micro_cfg, tmp_path, nan_method):
    micro_cfg.methods = [nan_method, "finetune"]
    run_dir = run(micro_cfg, progress=False)
    import json

    manifest = json.loads((run_dir / "manifest.json").read_text())
    status = {r["method"]: (r["status"], r["error"]) for r in manifest["runs"]}
    assert status["finetune"] == ("ok", "")
    assert status[nan_method][0] == "failed" and "stage 2" in status[nan_method][1] and "NaN" in status[nan_method][1]
    long = pd.read_csv(run_dir / "accuracy_long.csv")
    assert set(long[long.method == nan_method].status) == {"failed"}
    assert long[long.method == nan_method].stage.max() == 1  # stage 2 produced no rows
    board = pd.read_csv(run_dir / "leaderboard.csv")
    assert board.set_index("method").loc[nan_method, "status"] == "failed"
    assert "FAILED" in (run_dir / "run.log").read_text()


class _Planted:
    """Unpickling this runs code: it calls open(marker, "w"), which creates the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_planted_checkpoint_that_would_run_code_is_ignored_and_nothing_runs(micro_cfg, tmp_path, capsys):
    import pickle

    cfg = micro_finetune(micro_cfg, tmp_path / "R")
    armed, marker = tmp_path / "armed-marker", tmp_path / "marker"
    payload = {"format": "ldifs-bench stage checkpoint 2", "stage": 1, "rows": _Planted(marker)}
    pickle.loads(pickle.dumps({"x": _Planted(armed)}))  # the plant is live: plain unpickling runs it
    assert armed.exists()
    partial = tmp_path / "R" / ".trusted.partial"
    (partial / "checkpoints").mkdir(parents=True)
    (partial / "config.yaml").write_text(dump_yaml(cfg))  # looks like this config's interrupted run
    torch.save(payload, partial / "checkpoints" / "finetune__seed0.pt")
    run_dir = run(cfg, progress=False)
    assert not marker.exists()  # nothing in the planted file ran
    log = (run_dir / "run.log").read_text()
    assert "ignoring" in log and "finetune__seed0.pt" in log and "starting from stage 1" in log
    assert "resuming after stage" not in log
    straight = run(micro_finetune(micro_cfg, tmp_path / "straight"), progress=False)
    assert (run_dir / "accuracy_long.csv").read_bytes() == (straight / "accuracy_long.csv").read_bytes()


def test_every_checkpoint_loads_with_weights_only_and_holds_plain_data(micro_cfg, tmp_path):
    cfg = micro_finetune(micro_cfg, tmp_path)
    cfg.methods = ["ldifs", "ewc+replay"]
    run_dir = run(cfg, progress=False, keep_checkpoints=True)
    files = sorted((run_dir / "checkpoints").glob("*.pt"))
    assert len(files) == 2 * 3  # per method: stage 1, stage 2, the finished state

    def walk(value):
        if isinstance(value, dict):
            assert all(isinstance(k, (str, int)) for k in value)
            return all(walk(v) for v in value.values())
        if isinstance(value, (list, tuple)):
            return all(walk(v) for v in value)
        return value is None or isinstance(value, (bool, int, float, str, torch.Tensor))

    for path in files:
        state = torch.load(path, weights_only=True)  # no add_safe_globals: only PyTorch's allow-list
        assert walk(state), path
    finished = torch.load(run_dir / "checkpoints" / "ewc_replay__seed0.pt", weights_only=True)
    replay = finished["methods"][1]["state"]["groups"]
    assert finished["done"] and replay[0]["images"].dtype == torch.uint8 and len(replay[0]["labels"]) > 0
