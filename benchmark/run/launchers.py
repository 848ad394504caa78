"""Where a sweep's cells run: worker processes here, or a SLURM job array through submitit.

No scheduler of our own: concurrent.futures runs the local pool (spawned processes, one GPU
each through CUDA_VISIBLE_DEVICES), submitit (Meta's library for SLURM job arrays) the
cluster one. Every cell is an ordinary ``runner.run`` call, so a cell killed or requeued at
any point resumes from its last stage checkpoint when it runs again.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import queue
import subprocess
import threading
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, Optional

from benchmark.config import parse_scalar, to_dict
from benchmark.errors import UserError
from benchmark.logs import progress as progress_bar
from benchmark.run.worker_process import exit_with_parent, quiet_libraries

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
# submitit's own executor options; any other --slurm.KEY goes to sbatch as slurm_KEY.
SUBMITIT_GENERIC = ("timeout_min", "cpus_per_task", "gpus_per_node", "mem_gb", "nodes", "tasks_per_node", "name")


def run_cell(cfg_data: dict[str, Any], progress: bool = False) -> str:
    """Run one cell (a config as plain data); "" when it finished, else the error's one line."""
    from benchmark.config import RunConfig, from_dict
    from benchmark.run.runner import run

    quiet_libraries()
    try:
        run(from_dict(RunConfig, cfg_data), progress=progress)
        return ""
    except UserError as e:
        return str(e)
    except Exception as e:  # a crashed cell must not take the others down; its traceback goes to stderr
        traceback.print_exc()
        return f"{type(e).__name__}: {e}"


def run_cells(
    cells: list, launcher: str, workers: Optional[int], options: dict[str, Any], progress: bool, folder: Path
) -> dict[str, str]:
    """Run the cells; return {cell key: error} for those that failed."""
    if not cells:
        return {}
    if launcher == "slurm":
        return run_slurm(cells, options, folder)
    return run_local(cells, workers, progress)


# ---------------------------------------------------------------- local


def _visible_gpus() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def gpu_ids(count: int) -> list[str]:
    """The ids a worker may be pinned to: the first ``count`` of this process's
    CUDA_VISIBLE_DEVICES (ids or UUIDs) when it is set, else 0..count-1."""
    visible = [d.strip() for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    return (visible or [str(i) for i in range(count)])[:count]


def run_local(cells: list, workers: Optional[int], progress: bool) -> dict[str, str]:
    """One process per worker; with GPUs, one GPU per worker, else the CPU threads split between them."""
    gpus = _visible_gpus()
    workers = workers or max(gpus, 1)
    if gpus:
        workers = min(workers, gpus)
    configs = []
    for cell in cells:
        data = to_dict(cell.cfg)
        if not gpus and not data["threads"]:  # threads are not in the config hash: the cell keeps its folder
            data["threads"] = max(1, (os.cpu_count() or 1) // workers)
        configs.append((cell.key, data))
    if workers == 1 and not gpus:  # in this process: progress bars as in a plain run
        errors = {}
        for index, (key, data) in enumerate(configs, 1):
            print(f"cell {index}/{len(configs)}: {key}")
            errors[key] = run_cell(data, progress)
        return {key: error for key, error in errors.items() if error}
    return _pool(configs, workers, gpus, progress)


# A worker that dies (SIGKILL, the host's out-of-memory killer) breaks Python's process pool
# and every cell still in it. The cells not yet finished run again in a fresh pool (those in
# flight resume from their stage checkpoints); a cell whose worker died this many times while
# it ran is marked failed, so one cell that always kills its worker cannot stall the sweep.
MAX_WORKER_DEATHS = 3


def _pool(configs: list[tuple[str, dict]], workers: int, gpus: int, progress: bool) -> dict[str, str]:
    context = multiprocessing.get_context("spawn")  # fresh interpreters: no forked CUDA or OpenMP state
    errors: dict[str, str] = {}
    deaths = dict.fromkeys((key for key, _ in configs), 0)
    bar = progress_bar(len(configs), f"cells ({workers} workers)", enabled=progress, unit="cell")
    todo = configs
    while todo:
        running, waiting = _pool_round(context, todo, workers, gpus, errors, bar)
        if not running and not waiting:
            break
        if not running:  # the pool broke before any cell started: a fresh one would too
            errors.update({key: "the worker processes could not start" for key, _ in waiting})
            bar.update(len(waiting))
            break
        log.warning("a worker process died; %d unfinished cells go to a fresh pool", len(running) + len(waiting))
        for key, _ in running:
            deaths[key] += 1
            if deaths[key] == MAX_WORKER_DEATHS:
                errors[key] = f"its worker process died {MAX_WORKER_DEATHS} times while running it (out of memory?)"
                bar.update()
        # cells that never started go first, so a cell that kills its worker cannot starve them
        todo = waiting + [cell for cell in running if deaths[cell[0]] < MAX_WORKER_DEATHS]
    bar.close()
    return errors


def _pool_round(context, todo: list, workers: int, gpus: int, errors: dict[str, str], bar) -> tuple[list, list]:
    """Run the cells in one process pool, errors and progress as they finish; when a worker
    dies, return the unfinished cells as (started, never started)."""
    gpu_queue, started = context.Queue(), context.Queue()
    for gpu in gpu_ids(gpus)[:workers] if gpus else [None] * workers:
        gpu_queue.put(gpu)
    unfinished = []
    with ProcessPoolExecutor(
        workers, mp_context=context, initializer=_start_worker, initargs=(gpu_queue, started)
    ) as pool:
        futures = {pool.submit(_run_pooled_cell, key, data): (key, data) for key, data in todo}
        for future in as_completed(futures):
            try:
                error = future.result()
            except BrokenProcessPool:
                unfinished.append(futures[future])
                continue
            except Exception as e:
                error = f"worker process failed: {type(e).__name__}: {e}"
            if error:
                errors[futures[future][0]] = error
            bar.update()
    if not unfinished:
        return [], []
    ran = _drain(started)
    order = {key: index for index, (key, _) in enumerate(todo)}
    unfinished.sort(key=lambda cell: order[cell[0]])
    return [c for c in unfinished if c[0] in ran], [c for c in unfinished if c[0] not in ran]


_STARTED = None  # in a pool worker: the queue on which it names each cell it starts


def _start_worker(gpu_queue, started) -> None:
    """Worker start: take one GPU for good (before CUDA initialises in this process), keep the
    queue that reports started cells, and leave with the sweep's process."""
    global _STARTED
    quiet_libraries()  # before anything a cell imports can warn
    gpu = gpu_queue.get()
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    _STARTED = started
    threading.Thread(target=exit_with_parent, args=(os.getppid(),), daemon=True).start()


def _run_pooled_cell(key: str, data: dict[str, Any]) -> str:
    _STARTED.put(key)
    return run_cell(data)


def _drain(started) -> set[str]:
    keys = set()
    while True:
        try:
            keys.add(started.get(timeout=0.2))
        except queue.Empty:
            return keys


# ---------------------------------------------------------------- SLURM


def slurm_options(raw: dict[str, Any]) -> dict[str, Any]:
    """--slurm.KEY VALUE options (and the sweep file's slurm:) as submitit executor parameters."""
    options = {}
    for key, value in raw.items():
        key = key.replace("-", "_")
        value = parse_scalar(value) if isinstance(value, str) else value
        options[key if key in SUBMITIT_GENERIC else f"slurm_{key}"] = value
    options.setdefault("timeout_min", 60)
    return options


class CellJob:
    """One array task: run a cell. Checkpointable: on preemption or timeout submitit requeues
    the same call, and the runner resumes the cell from its last stage checkpoint."""

    def __call__(self, cfg_data: dict[str, Any]) -> str:
        join_slurm_tasks()
        return run_cell(cfg_data, progress=False)

    def checkpoint(self, cfg_data: dict[str, Any]):
        import submitit

        return submitit.helpers.DelayedSubmission(CellJob(), cfg_data)


def join_slurm_tasks() -> None:
    """In a SLURM job of several tasks (``--slurm.tasks_per_node N``, one GPU each): the
    variables torchrun would set (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT),
    so that the tasks are the processes of one data-parallel run (benchmark/distributed.py)."""
    if int(os.environ.get("SLURM_NTASKS", "1")) > 1:
        import submitit

        # every GPU of the node stays visible: each task takes the one of its LOCAL_RANK
        submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)


class RunJob:
    """A plain run as one SLURM job (``--launcher slurm`` without a sweep); checkpointable
    as a cell: requeued, it resumes from its stage checkpoints (never ``--fresh`` again)."""

    def __call__(self, cfg_data: dict[str, Any], fresh: bool, keep: bool) -> str:
        from benchmark.config import RunConfig, from_dict
        from benchmark.run.runner import run

        join_slurm_tasks()
        quiet_libraries()
        return str(run(from_dict(RunConfig, cfg_data), progress=False, fresh=fresh, keep_checkpoints=keep))

    def checkpoint(self, cfg_data: dict[str, Any], fresh: bool, keep: bool):
        import submitit

        return submitit.helpers.DelayedSubmission(RunJob(), cfg_data, False, keep)


def submit_run(cfg: Any, raw_options: dict[str, Any], fresh: bool, keep: bool) -> Path:
    """Submit one run as a SLURM job, wait for it, return its folder (process 0's answer)."""
    data = to_dict(cfg)
    data["results_dir"] = str(Path(data["results_dir"]).resolve())  # the job may start elsewhere
    folder = Path(data["results_dir"]) / "slurm"
    executor = _executor(folder, f"ldifs-{data['name'] or data['sequence']}", slurm_options(raw_options))
    try:
        job = executor.submit(RunJob(), data, fresh, keep)
    except (OSError, RuntimeError, subprocess.CalledProcessError) as e:
        raise UserError(
            f"SLURM submission failed (is sbatch on PATH and slurmctld up?): {str(e).splitlines()[0]}"
        ) from None
    print(f"submitted job {job.job_id}; logs in {folder}/{job.job_id}/")
    try:
        return Path(job.results()[0])  # one result per task: task 0 is process 0
    except Exception as e:  # the job died (killed, node failure, the run's error): its log says why
        raise UserError(
            f"SLURM job {job.job_id} failed: {str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__}"
        ) from None


def _executor(folder: Path, name: str, options: dict[str, Any]):
    """submitit's SLURM executor writing its logs under ``folder/<job>``; one line when SLURM is absent."""
    try:
        import submitit
    except ImportError:
        raise UserError("--launcher slurm needs submitit (pip install submitit)") from None
    # the jobs unpickle this suite's classes: let them import it from here
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    try:
        executor = submitit.AutoExecutor(folder=str(Path(folder).resolve() / "%j"), cluster="slurm")
    except RuntimeError as e:  # submitit's "Could not detect srun, are you indeed on a slurm cluster?"
        raise UserError(f"--launcher slurm: SLURM is not available here ({str(e).splitlines()[0]})") from None
    try:
        executor.update_parameters(**{"name": name, **options})
    except (ValueError, TypeError) as e:
        raise UserError(f"--slurm options: {str(e).splitlines()[0]}") from None
    return executor


def run_slurm(cells: list, options: dict[str, Any], folder: Path) -> dict[str, str]:
    """One array task per cell; logs per cell under <sweep>/slurm/<job>_<task>/; waits for all."""
    executor = _executor(Path(folder) / "slurm", f"ldifs-{Path(folder).name}", options)
    configs = [to_dict(cell.cfg) for cell in cells]
    for data in configs:  # the array tasks may start elsewhere: absolute folders
        data["results_dir"] = str(Path(data["results_dir"]).resolve())
    try:
        jobs = executor.map_array(CellJob(), configs)
    except (OSError, RuntimeError, subprocess.CalledProcessError) as e:  # no sbatch, no controller
        raise UserError(
            f"SLURM submission failed (is sbatch on PATH and slurmctld up?): {str(e).splitlines()[0]}"
        ) from None
    print(f"submitted {len(jobs)} array tasks (job {jobs[0].job_id.split('_')[0]}); logs in {folder}/slurm/")
    errors = {}
    for cell, job in zip(cells, jobs):
        try:
            error = job.result()
        except Exception as e:  # the task died (killed, node failure): its log says why
            error = f"SLURM task {job.job_id} failed: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
        if error:
            errors[cell.key] = error
    return errors
