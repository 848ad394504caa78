"""A run: validate everything, load model and tasks, run every (seed, method) through the
stage loop, write the results directory atomically."""
from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from tqdm.auto import tqdm

from benchmark.config import RunConfig, config_hash, dump_yaml, validate
from benchmark.errors import UserError
from benchmark.heads import zeroshot_weights
from benchmark.manifest import write_manifest
from benchmark.models import BatchPreprocess, ClipBundle, check_model_config, load_clip
from benchmark.scheduler import MethodResult, run_method
from benchmark.tracker import EvalSet, Tracker
from methods import build_method
from tasks import TASKS, Sequence, Task, TaskContext, load_sequence

COLUMNS = ["method", "seed", "stage", "trained_task", "eval_task", "kind", "accuracy"]


@dataclass
class RunSetup:
    """What every (seed, method) of a run shares."""

    cfg: RunConfig
    sequence: Sequence
    tasks: dict[str, Task]
    bundle: ClipBundle
    device: torch.device
    preprocess: BatchPreprocess
    tracker: Tracker
    progress: bool


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown device {name!r}; valid choices: auto, cpu, cuda, cuda:N, mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {name!r} requested but CUDA is not available here; valid choices: auto, cpu")
    return device


def check_inputs(cfg: RunConfig) -> tuple[Sequence, Path]:
    """Every check that needs no model or data, so bad input fails in a second."""
    validate(cfg)
    for spec in cfg.methods:
        build_method(spec, cfg.hparams)
    for name in cfg.hparams:
        if name not in {p for spec in cfg.methods for p in spec.split("+")}:
            from methods import METHODS
            METHODS.get(name)  # unknown name -> error with the valid choices
    sequence = load_sequence(cfg.sequence)
    for task in sequence.all_tasks:
        TASKS.get(task)
    resolve_device(cfg.device)
    check_model_config(cfg.model)
    run_dir = Path(cfg.results_dir) / (cfg.name or f"{sequence.name}-{config_hash(cfg)}")
    _check_writable(Path(cfg.results_dir))
    return sequence, run_dir


def _check_writable(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise UserError(f"results directory {str(folder)!r} cannot be written: {e.strerror}") from None


def prepare(cfg: RunConfig, sequence: Sequence, progress: bool) -> RunSetup:
    device = resolve_device(cfg.device)
    bundle = load_clip(cfg.model, device, progress)
    preprocess = BatchPreprocess(bundle.image_size, bundle.mean, bundle.std)
    ctx = TaskContext(data_root=Path(cfg.data_root), seed=0, train_limit=_load_limit(cfg),
                      test_limit=cfg.eval.test_limit, download=cfg.download)
    tasks = {name: TASKS.get(name)(ctx) for name in sequence.all_tasks}
    sets = {name: _eval_set(task, bundle, cfg, device) for name, task in tasks.items()}
    tracker = Tracker(sets, cfg.eval, preprocess, device, progress)
    return RunSetup(cfg, sequence, tasks, bundle, device, preprocess, tracker, progress)


def _load_limit(cfg: RunConfig):
    """Images per train split worth decoding: what fine-tuning or the probe will use."""
    limits = (cfg.train.train_limit, cfg.eval.lp_train_limit)
    return None if None in limits else max(limits)


def _eval_set(task: Task, bundle: ClipBundle, cfg: RunConfig, device: torch.device) -> EvalSet:
    probe = task.train.subset(cfg.eval.lp_train_limit, seed=1)
    test = task.test.subset(cfg.eval.test_limit, seed=2)
    zs = zeroshot_weights(bundle.model, bundle.tokenizer, task.prompts(), device)
    return EvalSet(task, probe.images, probe.labels, test.images, test.labels, zs)


def run(cfg: RunConfig, progress: bool = True) -> Path:
    """Run the benchmark the config describes; return the finished results directory."""
    sequence, run_dir = check_inputs(cfg)
    staging = run_dir.with_name(f".{run_dir.name}.partial-{os.getpid()}")
    staging.mkdir(parents=True, exist_ok=True)
    try:
        started = time.time()
        setup = prepare(cfg, sequence, progress)
        stage0 = setup.tracker.evaluate(setup.bundle.model.visual, {}, 0, "pretrained ")
        results = [run_method(setup, spec, seed, stage0) for seed in cfg.seeds for spec in cfg.methods]
        _write_outputs(staging, setup, results, time.time() - started)
        if run_dir.exists():
            shutil.rmtree(run_dir)
        staging.replace(run_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return run_dir


def _write_outputs(folder: Path, setup: RunSetup, results: list[MethodResult], seconds: float) -> None:
    from benchmark.leaderboard import write_leaderboard
    from benchmark.reports import write_report

    rows = [row for r in results for row in r.rows]
    pd.DataFrame(rows, columns=COLUMNS).to_csv(folder / "accuracy_long.csv", index=False)
    (folder / "config.yaml").write_text(dump_yaml(setup.cfg))
    write_manifest(folder / "manifest.json", setup, results, seconds)
    write_report(folder)
    write_leaderboard(folder)
