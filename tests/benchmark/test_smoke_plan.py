"""--smoke (benchmark/run/smoke.py) on tiny stand-ins of the real datasets, and --plan."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from benchmark.config import RunConfig, config_hash, load_yaml
from benchmark.run.cli import main
from benchmark.run.smoke import smoke_config
from tasks import load_sequence
from tasks.standins import main as standins

PAPER = "benchmark/presets/paper.yaml"


def _smoke(tmp_path: Path, sequence: str, *extra: str) -> Path:
    data = tmp_path / "data"
    assert standins(["--out", str(data), "--scale", "tiny", "--sequence", sequence]) == 0
    results = tmp_path / "results"
    argv = ["--config", PAPER, "--data-root", str(data), "--smoke", "--methods", "finetune,ldifs"]
    argv += ["--sequence", sequence, "--results-dir", str(results), "--data-cache", str(tmp_path / "cache"), "-q"]
    assert main(argv + list(extra)) == 0
    return _run_folder(results)


def _run_folder(results: Path) -> Path:
    (run,) = [p for p in results.iterdir() if p.is_dir() and not p.is_symlink() and not p.name.startswith(".")]
    return run


def _check_rows(run: Path, sequence: str) -> None:
    seq = load_sequence(sequence)
    rows = pd.read_csv(run / "accuracy_long.csv")
    evaluated = set(rows["eval_task"])
    expected = set(seq.tasks) | set(seq.eval_only)  # class-incremental: the groups are the stages
    assert expected <= evaluated
    for method in ("finetune", "ldifs"):
        mine = rows[rows["method"] == method]
        assert sorted(set(mine["stage"])) == list(range(len(seq.stages) + 1))
        # eval.lp_tasks=auto: class-incremental runs probe only their eval-only tasks (no CIL number reads a group's probe)
        probed = set(seq.eval_only) if seq.class_incremental else evaluated
        for stage in range(len(seq.stages) + 1):
            at = mine[mine["stage"] == stage]
            assert set(at["eval_task"]) == evaluated
            assert set(at[at["kind"] == "lp"]["eval_task"]) == probed
            assert set(at["kind"]) == {"head", "zs"} | ({"lp"} if probed else set())
        assert mine["accuracy"].notna().all()
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["smoke"] is True and manifest["runs"] and all(r["status"] == "ok" for r in manifest["runs"])
    assert (run / "report.md").is_file() and any((run / "plots").iterdir())


def test_smoke_transform_keeps_the_protocol_and_marks_the_config():
    cfg = load_yaml(PAPER)
    smoke = smoke_config(cfg)
    assert cfg.model.name == "ViT-B-32" and not cfg.smoke  # the input is unchanged
    assert (smoke.model.name, smoke.model.pretrained, smoke.smoke) == ("tiny-rn", "suite", True)
    assert smoke.sequence == cfg.sequence and smoke.hparams == cfg.hparams and smoke.eval.probe == "authors"
    assert smoke.train.train_limit == smoke.train.batch_size  # one step an epoch
    assert config_hash(smoke) != config_hash(cfg)
    assert config_hash(RunConfig()) == config_hash(RunConfig(smoke=False))


@pytest.mark.slow  # about 2 min on 2 cores; .ci/run also runs this smoke as the README's command
def test_smoke_of_the_paper_preset_on_tiny_standins(tmp_path):
    """The paper preset end to end: 12 datasets through their real loaders, 3 stages, 2 methods."""
    _check_rows(_smoke(tmp_path, "paper_continual"), "paper_continual")


@pytest.mark.slow
@pytest.mark.parametrize("sequence", ["mtil", "cifar100_cil10", "tinyimagenet_cil"])
def test_smoke_of_the_other_real_sequences(tmp_path, sequence):
    _check_rows(_smoke(tmp_path, sequence), sequence)


def test_plan_of_the_paper_preset_without_its_data(tmp_path, capsys):
    """Counts from the registered split sizes (no data on disk); timed on the smoke model to stay fast."""
    results = tmp_path / "results"
    argv = ["--config", PAPER, "--plan", "--data-root", str(tmp_path / "nothing"), "--results-dir", str(results)]
    assert (
        main(argv + ["--model.name", "tiny-rn", "--model.pretrained", "suite", "--threads", "1", "--workers", "2"]) == 0
    )
    out = capsys.readouterr().out
    total = float(re.search(r"total\s+([0-9.]+) h on this device", out).group(1))
    shared = float(re.search(r"on 2 workers\s+([0-9.]+) h, the runs shared evenly", out).group(1))
    assert abs(shared - total / 2) <= 0.01  # the paper preset trains several runs: they share the two processes
    assert "registered split sizes" in out
    assert "1. svhn: 65,932 images x 10 epochs = 5,160 steps" in out  # 73,257 less the 10% validation split
    assert "3. resisc45: 22,680 images x 15 epochs = 2,670 steps" in out  # 31,500 less 20% test, less 10%
    assert "1,261,167" in out  # ImageNet's probe: its train split less the validation cap of 20,000
    assert "train ldifs" in out and "evaluation forwards" in out and "probe fits" in out
    assert " h on this device" in out
    (saved,) = (results / ".plans").iterdir()
    assert json.loads(saved.read_text())["estimated_seconds"] > 0


def test_a_run_records_its_plan_and_how_far_off_it_was(tmp_path, capsys):
    argv = ["--sequence", "micro", "--methods", "finetune", "--results-dir", str(tmp_path / "r"), "-q"]
    argv += ["--train.train_limit", "64", "--eval.test_limit", "32", "--eval.lp_train_limit", "32"]
    assert main(argv + ["--plan"]) == 0
    assert "total" in capsys.readouterr().out
    assert main(argv) == 0
    run = _run_folder(tmp_path / "r")
    plan = json.loads((run / "manifest.json").read_text())["plan"]
    assert plan["estimated_seconds"] > 0 and plan["wall_over_estimate"] > 0


def test_plan_of_a_sweep_totals_its_cells_and_says_what_slurm_would_submit(tmp_path, capsys):
    sweep = tmp_path / "tiny.yaml"
    sweep.write_text(
        "name: tinyplan\nbase:\n  sequence: micro\n  methods: [finetune]\n  train: {train_limit: 64}\n"
        "grid:\n  - train.lr: [1.0e-3, 5.0e-4]\nslurm: {partition: gpu}\n"
    )
    assert main(["--sweep", str(sweep), "--plan", "--results-dir", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert "plan of sweep tinyplan: 2 cells" in out and "total of the 2 cells to run" in out
    assert "--launcher slurm would submit 2 array tasks" in out and "slurm_partition=gpu" in out
    assert len(list((tmp_path / "r").rglob(".plans/*.json"))) == 2  # beside the cells, whose runs record them
