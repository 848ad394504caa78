"""A plain run's (method, seed) pairs shared between local worker processes (``--workers N``).

Every pair of a run is independent of the others once the pre-trained model's stage-0 rows
are known: ``run_method`` seeds the RNG with the pair's seed and builds its own model and
methods. So the pairs can train in separate processes and give the numbers one process
gives when the config sets ``threads`` (tests/benchmark/test_pair_workers.py compares the rows). The mechanism is the
resume one: each worker trains its pairs into the run's staging folder, whose stage
checkpoints end with the pair's rows, per-stage summaries and feature-drift rows; the
parent process then walks the pairs in the run's order and reads each finished one back
(``run_method`` returns a finished checkpoint's rows without training), so the results
folder is written exactly as a one-process run writes it.

A worker that dies (the out-of-memory killer) breaks the pool; the parent then trains
what is left itself, resuming each pair from its last finished stage. CPU only gains:
on a GPU the processes share the device the config names.
"""

from __future__ import annotations

import logging
import os
import threading
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, Optional

from benchmark.errors import UserError
from benchmark.logs import once_per_command, run_log, setup_console
from benchmark.logs import progress as progress_bar
from benchmark.rundir import RUN_LOG

log = logging.getLogger(__name__)

Pair = tuple[str, int]  # (method spec, seed)


def worker_threads(threads: int, workers: int) -> int:
    """Each worker's torch threads: the config's, else this machine's cores split evenly."""
    return threads or max(1, (os.cpu_count() or 1) // workers)


def train_pairs(
    folder: Path, cfg_data: dict[str, Any], pairs: list[Pair], workers: int, keep: bool, progress: bool
) -> None:
    """Train ``pairs`` into ``folder``'s stage checkpoints on ``workers`` processes; the
    caller then reads the finished pairs back in its own order. A pair that fails with a
    user error stops the run with that error (as in one process)."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")  # fresh interpreters: no forked OpenMP or CUDA state
    bar = progress_bar(len(pairs), f"(method, seed) pairs on {workers} workers", enabled=progress, unit="pair")
    try:
        with (
            once_per_command(),
            ProcessPoolExecutor(
                workers, mp_context=context, initializer=_start, initargs=(str(folder), cfg_data, keep, os.getpid())
            ) as pool,
        ):
            futures = {pool.submit(_train_pair, spec, seed): (spec, seed) for spec, seed in pairs}
            try:
                for future in as_completed(futures):
                    _raise_user_error(future.result(), futures[future])
                    bar.update()
            except BaseException:
                _stop(pool)
                raise
    except BrokenProcessPool:
        log.warning("a worker process died; this process trains the pairs left, each from its last finished stage")
    finally:
        bar.close()


def _stop(pool: ProcessPoolExecutor) -> None:
    """Stop now, as one process would: drop the pairs not started and end those in flight
    (their last stage checkpoint, written atomically, lets the same command resume them).
    The pool has no public way to end its workers before Python 3.14's terminate_workers."""
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        process.terminate()
    pool.shutdown(wait=True, cancel_futures=True)


def _raise_user_error(error: Optional[str], pair: Pair) -> None:
    if error:
        raise UserError(f"[{pair[0]} seed {pair[1]}] {error}")


# ---------------------------------------------------------------- in a worker process

_WORKER: dict[str, Any] = {}  # this worker's run: folder, setup, stage-0 rows, keep


def _start(folder: str, cfg_data: dict[str, Any], keep: bool, parent: int) -> None:
    """Load the model and tasks once per worker; log to the run's run.log; leave with the parent."""
    from benchmark.config import RunConfig, from_dict
    from benchmark.run.plugins import load_plugins
    from benchmark.run.worker_process import exit_with_parent, quiet_libraries

    quiet_libraries()
    setup_console(quiet=True)  # warnings once per command (the parent's bar owns the terminal); run.log has every line
    threading.Thread(target=exit_with_parent, args=(parent,), daemon=True).start()
    cfg = from_dict(RunConfig, cfg_data)
    load_plugins(cfg.plugins)  # a user's methods register in this interpreter too
    _WORKER.update(folder=Path(folder), cfg=cfg, keep=keep)


def _setup():
    """The worker's RunSetup, made at its first pair (an error in it is then that pair's)."""
    if "setup" not in _WORKER:
        from benchmark.run.run_setup import prepare, read_stage0
        from benchmark.rundir import AVALANCHE_LOGS, STAGE0_JSON
        from tasks import load_sequence

        cfg, folder = _WORKER["cfg"], _WORKER["folder"]
        stage0 = read_stage0(folder / STAGE0_JSON)  # the parent wrote it before it started the workers
        if stage0 is None:
            raise UserError(f"{folder / STAGE0_JSON} cannot be read: the pre-trained model's rows are missing")
        setup = prepare(cfg, load_sequence(cfg.sequence), progress=False)
        setup.log_dir = str(folder / AVALANCHE_LOGS)
        _WORKER.update(setup=setup, stage0=stage0)
    return _WORKER["setup"], _WORKER["stage0"]


def _train_pair(spec: str, seed: int) -> str:
    """Train one pair into the folder's checkpoints; "" when it finished, else a user error's line."""
    from benchmark.loop.checkpoints import StageCheckpoints
    from benchmark.loop.scheduler import run_method
    from benchmark.models.preprocess import matmul_precision

    folder = _WORKER["folder"]
    with run_log(folder / RUN_LOG):
        try:
            setup, stage0 = _setup()
            with matmul_precision(setup.cfg.train.amp, setup.device):
                run_method(setup, spec, seed, stage0, StageCheckpoints(folder, spec, seed, _WORKER["keep"]))
        except UserError as e:
            return str(e)
    return ""
