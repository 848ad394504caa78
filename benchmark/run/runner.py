"""A run: validate everything, load model and tasks, run every (seed, method) through the
stage loop, write the results directory atomically.

The checks and the "already complete" answer import no training library: Avalanche (via
the scheduler), pandas and the evaluation code are imported where a run trains."""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from benchmark import distributed
from benchmark.config import RunConfig, config_hash, dump_yaml, validate
from benchmark.determinism import check_cpu_capability
from benchmark.errors import UserError
from benchmark.files import atomic_text, atomic_write
from benchmark.logs import run_log, setup_console
from benchmark.models.architectures import has_batch_norm_tower
from benchmark.models.clip_loading import check_model_config
from benchmark.rows import COLUMNS, WrittenRow
from benchmark.run.index import forget_run, record_run
from benchmark.run.plugins import load_plugins, normalise
from benchmark.run.run_setup import prepare, read_stage0, resolve_device
from benchmark.rundir import (
    AVALANCHE_LOGS,
    CHECKPOINTS_DIR,
    CONFIG_YAML,
    HASH_HEADER,
    LONG_CSV,
    MANIFEST_JSON,
    RUN_LOG,
    STAGE0_JSON,
    RunDir,
    check_run_name,
    config_hash_of,
    safe_name,
)
from benchmark.training.loggers import check_logger_packages
from methods import build_method
from tasks import Sequence, load_sequence
from tasks.cache import check_cache_dir, resolve_cache_dir
from tasks.declared import declarations, task_factory

if TYPE_CHECKING:
    from benchmark.loop.scheduler import MethodResult, RunSetup

log = logging.getLogger(__name__)


def check_inputs(cfg: RunConfig) -> tuple[Sequence, RunDir]:
    """Every check that needs no model or data, so bad input fails in a second."""
    validate(cfg)
    check_cpu_capability()  # a value torch would ignore: the run would not compute what its manifest says
    cfg.plugins = normalise(cfg.plugins)  # absolute: the saved config.yaml works from anywhere
    load_plugins(cfg.plugins)  # a no-op when the CLI already imported them
    # check_only: no Avalanche import before the run is known to train (``run`` builds them then)
    for spec in cfg.methods:
        build_method(spec, cfg.hparams, check_only=True)
    for name in cfg.hparams:
        if name not in {p for spec in cfg.methods for p in spec.split("+")}:
            build_method(name, cfg.hparams, check_only=True)  # unknown name or bad value -> error, even if unused
    sequence = load_sequence(cfg.sequence)
    declared = declarations(sequence.declared, sequence.path, cfg.tasks)
    for task in sequence.loaded_tasks:
        task_factory(task, declared)
    from benchmark.loop.seen_classes import check_scenario

    for spec in cfg.methods:  # before any model or data: a method that cannot run this scenario
        check_scenario(spec, sequence)
    resolve_device(cfg.device)
    check_logger_packages(cfg.loggers)  # type: ignore[arg-type]
    check_model_config(cfg.model)
    if cfg.data_cache:  # set explicitly; the default lies in the model cache, checked when it is used
        check_cache_dir(resolve_cache_dir(cfg.data_cache, cfg.model.cache_dir))
    if cfg.train.batch_size < 2 and has_batch_norm_tower(cfg.model):
        raise UserError(
            f"train.batch_size={cfg.train.batch_size} cannot train {cfg.model.name!r}: its ResNet image tower "
            "has BatchNorm layers, which need at least 2 images per batch"
        )
    _check_distributed(cfg)
    if cfg.name:
        check_run_name(cfg.name)
    run_dir = RunDir(Path(cfg.results_dir), cfg.name or default_run_name(cfg, sequence.name))
    _check_writable(Path(cfg.results_dir))
    return sequence, run_dir


def _check_distributed(cfg: RunConfig) -> None:
    """Under torchrun: a batch the processes can share equally, and methods that may run so."""
    world = distributed.world_size()
    if world == 1:
        return
    batch = cfg.train.batch_size
    if batch % world:
        raise UserError(f"train.batch_size={batch} cannot be shared by {world} processes; give a multiple of {world}")
    if batch // world < 2 and has_batch_norm_tower(cfg.model):
        raise UserError(
            f"train.batch_size={batch} on {world} processes leaves {batch // world} image per process, and "
            f"{cfg.model.name!r}'s BatchNorm layers need at least 2; give at least {2 * world}"
        )
    from methods import METHODS

    for spec in cfg.methods:
        for part in spec.split("+"):
            why = METHODS.get(part).refuse_distributed()
            if why:
                raise UserError(f"method {part!r} cannot run on {world} processes: {why}; run it on one process")


def default_run_name(cfg: RunConfig, sequence: str) -> str:
    """``<sequence>-<methods>-<config hash>``: readable in a listing (micro-finetune_ldifs-1a2b3c4d5e);
    more than three methods are counted (micro-15methods-...)."""
    methods = "_".join(cfg.methods) if len(cfg.methods) <= 3 else f"{len(cfg.methods)}methods"
    methods = safe_name(methods.replace("+", "-"))[:60]
    return f"{sequence}-{methods}-{config_hash(cfg)}"


def _check_writable(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise UserError(f"results directory {str(folder)!r} cannot be written: {e.strerror}") from None


def run(
    cfg: RunConfig,
    progress: bool = True,
    fresh: bool = False,
    keep_checkpoints: bool = False,
    command: Optional[str] = None,
    workers: int = 1,
) -> Path:
    """Run the benchmark the config describes; return the finished results directory.

    Work happens in ``results/.<name>.partial`` under a lock and is renamed into place when
    complete. Re-running the same config resumes from the last finished stage of every
    (method, seed); ``fresh`` discards earlier work of this config instead. Only folders
    that hold a run of this very config are ever replaced or removed (``RunDir.remove``).

    ``command`` (the command line's words): the run is listed in ``results/index.csv`` with
    its status, and ``results/latest`` points at it once complete (``benchmark.run.index``).

    ``workers`` > 1: the (method, seed) pairs train in that many local processes, with the
    numbers one process gives (``benchmark.run.pair_workers``)."""
    progress = progress and distributed.is_writer()  # one progress display: process 0's
    setup_console(quiet=not progress)
    sequence, rd = check_inputs(cfg)
    _check_workers(workers, cfg)
    if distributed.launched():  # Avalanche makes loggers as it is imported, which it refuses on
        import avalanche.training  # noqa: F401  # processes other than 0 once a group exists
    distributed.init(cfg.device)  # a no-op unless torchrun (or SLURM tasks) started several processes
    if not distributed.is_writer():
        return _follow(cfg, sequence, keep_checkpoints)
    rd, digest = _dir_for_this_config(cfg, rd), config_hash(cfg)
    run_dir, partial = rd.path, rd.staging
    with rd.lock():
        if fresh:
            for folder in (run_dir, partial):
                rd.remove(folder, digest)
        if (run_dir / LONG_CSV).is_file():
            log.info(f"run {run_dir} is already complete (same config); --fresh reruns it")
            distributed.share((str(run_dir), True))  # the other processes have nothing to do
            return run_dir
        for spec in cfg.methods:  # what check_only left out (Avalanche's checks of its arguments)
            build_method(spec, cfg.hparams)
        resuming = partial.is_dir()
        partial.mkdir(parents=True, exist_ok=True)
        atomic_text(partial / CONFIG_YAML, f"{HASH_HEADER}{digest}\n{dump_yaml(cfg)}")
        distributed.share((str(partial), False))  # where the other processes read checkpoints from
        started = time.time()
        entry = _index_entry(cfg, sequence, run_dir, started, command)
        try:
            with run_log(partial / RUN_LOG):
                announce = f"{'resuming' if resuming else 'starting'} run {run_dir}"
                _run_in(partial, cfg, sequence, progress, keep_checkpoints, announce, workers)
        except BaseException as error:
            if isinstance(error, UserError) and not any((partial / CHECKPOINTS_DIR).glob("*.pt")):
                rd.remove(partial, digest)  # nothing worth resuming: leave no trace
                forget_run(rd.root, run_dir.name) if entry else None
            elif entry:
                status = "failed" if isinstance(error, Exception) else "interrupted"
                record_run(rd.root, {**entry, "status": status, "wall_seconds": round(time.time() - started, 1)})
            raise
        if not keep_checkpoints:
            shutil.rmtree(partial / CHECKPOINTS_DIR, ignore_errors=True)
        rd.remove(run_dir, digest)  # an incomplete leftover of this config, never anything else
        partial.replace(run_dir)
        if entry:
            wall = round(time.time() - started, 1)
            record_run(rd.root, {**entry, "status": "complete", "wall_seconds": wall}, latest=True)
    distributed.share(str(run_dir))  # the others return once the folder is in place
    return run_dir


def _follow(cfg: RunConfig, sequence: Sequence, keep: bool) -> Path:
    """A process other than 0 under torchrun: the same stages on its shares of every batch,
    in the folder process 0 chose; it writes nothing (benchmark/distributed.py)."""
    folder, complete = distributed.share(("", False))
    if complete:
        return Path(folder)
    _run_in(Path(folder), cfg, sequence, False, keep, "", 1)
    return Path(distributed.share(""))


def _index_entry(
    cfg: RunConfig, sequence: Sequence, run_dir: Path, started: float, command: Optional[str]
) -> Optional[dict]:
    """The run's row of results/index.csv, written now as "running"; None when not indexed."""
    if command is None:
        return None
    from datetime import datetime, timezone

    entry = {
        "folder": run_dir.name,
        "name": cfg.name or "",
        "sequence": sequence.name,
        "methods": cfg.methods,
        "seeds": cfg.seeds,
        "started": datetime.fromtimestamp(started, timezone.utc).isoformat(timespec="seconds"),
        "command": command,
    }
    record_run(run_dir.parent, {**entry, "status": "running"})
    return entry


def _check_workers(workers: int, cfg: RunConfig) -> None:
    if workers < 1:
        raise UserError(f"--workers {workers} must be >= 1")
    if workers > 1 and distributed.launched():
        raise UserError(
            "--workers and torchrun do not mix: torchrun already shares each (method, seed) between processes"
        )


def _run_in(
    folder: Path, cfg: RunConfig, sequence: Sequence, progress: bool, keep: bool, announce: str, workers: int
) -> None:
    from benchmark.models.preprocess import matmul_precision

    with matmul_precision(cfg.train.amp, resolve_device(cfg.device)):  # TF32 on or off for the run (train.amp)
        _run_stages(folder, cfg, sequence, progress, keep, announce, workers)


def _run_stages(
    folder: Path, cfg: RunConfig, sequence: Sequence, progress: bool, keep: bool, announce: str, workers: int
) -> None:
    from benchmark.loop.checkpoints import StageCheckpoints
    from benchmark.loop.scheduler import run_method

    started = time.time()
    writer = distributed.is_writer()
    if not writer:  # under torchrun, process 0 loads first: it fills the model and data caches
        distributed.barrier()
    setup = prepare(cfg, sequence, progress)
    if writer:
        distributed.barrier()
        log.info(announce)  # after the model and data loaded: a missing dataset never names a folder it removes
        setup.log_dir = str(folder / AVALANCHE_LOGS)
    stage0 = _stage0_rows(folder, setup, writer)  # every pair starts from them: computed once
    pairs = [(spec, seed) for seed in cfg.seeds for spec in cfg.methods]
    workers = min(workers, len(pairs))  # the processes that train: no more than the pairs
    if workers > 1:  # the pairs train elsewhere; the loop below reads them back
        _train_in_workers(folder, cfg, pairs, workers, keep, progress)
    results = [
        run_method(setup, spec, seed, stage0, StageCheckpoints(folder, spec, seed, keep)) for spec, seed in pairs
    ]
    if writer:
        _write_outputs(folder, setup, results, time.time() - started, keep, workers)


def _stage0_rows(folder: Path, setup: RunSetup, writer: bool) -> list:
    """The pre-trained model's rows: those an earlier attempt saved, else evaluated now and saved."""
    stage0_file = folder / STAGE0_JSON
    stage0 = distributed.share(read_stage0(stage0_file))  # process 0's answer: it wrote the file
    if stage0 is None:
        stage0 = setup.tracker.evaluate(setup.bundle.model.visual, {}, 0, "pretrained ")  # type: ignore[arg-type]
        if writer:
            atomic_text(stage0_file, json.dumps(stage0))
    return stage0


def _train_in_workers(folder: Path, cfg: RunConfig, pairs: list, workers: int, keep: bool, progress: bool) -> None:
    from benchmark.config import to_dict
    from benchmark.run.pair_workers import train_pairs, worker_threads

    data = to_dict(cfg)
    if resolve_device(cfg.device).type == "cpu":  # the cores split between the workers
        data["threads"] = worker_threads(cfg.threads, workers)
    train_pairs(folder, data, pairs, workers, keep, progress)


def _dir_for_this_config(cfg: RunConfig, rd: RunDir) -> RunDir:
    """A run folder holds one config: a changed config under the same --name starts a new
    run; a name taken by anything that is not a run (a file, someone's folder) is refused."""
    digest = config_hash(cfg)
    for folder in (rd.path, rd.staging):
        if rd.claimable(folder, digest):
            continue
        if config_hash_of(folder) is None:
            raise UserError(
                f"{folder} exists and is not a run of this suite; choose another --name (nothing was changed)"
            )
        new = rd.with_name(f"{rd.name}-{digest}")
        if not (new.claimable(new.path, digest) and new.claimable(new.staging, digest)):
            raise UserError(f"{new.path} exists and is not a run of this config; choose another --name")
        log.warning(f"note: {folder} holds a run with another config; starting a new run in {new.path}")
        return new
    return rd


def _write_outputs(
    folder: Path, setup: RunSetup, results: list[MethodResult], seconds: float, keep_checkpoints: bool, workers: int
) -> None:
    import pandas as pd

    from benchmark.evaluation.drift import write_feature_drift
    from benchmark.reporting.leaderboard import write_leaderboard
    from benchmark.reporting.reports import write_report
    from benchmark.run.manifest import write_manifest

    rows: list[WrittenRow] = [WrittenRow(**row, status=r.status) for r in results for row in r.rows]
    table = pd.DataFrame(rows, columns=list(COLUMNS))
    atomic_write(folder / LONG_CSV, lambda stream: table.to_csv(stream, index=False))
    write_feature_drift(folder, setup, results)  # before the report, which draws it
    write_report(folder)
    # the manifest first: the leaderboard reads its scenario, failed runs and stage costs
    write_manifest(folder / MANIFEST_JSON, setup, results, seconds, keep_checkpoints, workers)
    write_leaderboard(folder)
