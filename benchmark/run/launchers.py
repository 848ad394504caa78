"""Where a sweep's cells run: worker processes here, or a SLURM job array through submitit.

No scheduler of our own: concurrent.futures runs the local pool (spawned processes, one GPU
each through CUDA_VISIBLE_DEVICES), submitit (Meta's library for SLURM job arrays) the
cluster one. Every cell is an ordinary ``runner.run`` call, so a cell killed or requeued at
any point resumes from its last stage checkpoint when it runs again.
"""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any, Optional

from tqdm.auto import tqdm

from benchmark.config import _parse_scalar, to_dict
from benchmark.errors import UserError

REPO_ROOT = Path(__file__).resolve().parents[2]
# submitit's own executor options; any other --slurm.KEY goes to sbatch as slurm_KEY.
SUBMITIT_GENERIC = ("timeout_min", "cpus_per_task", "gpus_per_node", "mem_gb", "nodes", "tasks_per_node", "name")


def run_cell(cfg_data: dict[str, Any], progress: bool = False) -> str:
    """Run one cell (a config as plain data); "" when it finished, else the error's one line."""
    from benchmark.config import RunConfig, from_dict
    from benchmark.run.runner import run

    _quiet_libraries()
    try:
        run(from_dict(RunConfig, cfg_data), progress=progress)
        return ""
    except UserError as e:
        return str(e)
    except Exception as e:  # a crashed cell must not take the others down; its traceback goes to stderr
        traceback.print_exc()
        return f"{type(e).__name__}: {e}"


def _quiet_libraries() -> None:
    """In a fresh worker, the library noise cli.main silences in the parent."""
    import logging
    import warnings

    warnings.filterwarnings("ignore", module="avalanche|qpsolvers|open_clip")
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    logging.getLogger().setLevel(logging.ERROR)


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
    return _pool(configs, workers, gpus)


def _pool(configs: list[tuple[str, dict]], workers: int, gpus: int) -> dict[str, str]:
    context = multiprocessing.get_context("spawn")  # fresh interpreters: no forked CUDA or OpenMP state
    queue = context.Queue()
    for index in range(workers):
        queue.put(str(index) if gpus else None)
    errors = {}
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_pin, initargs=(queue,)) as pool:
        futures = {pool.submit(run_cell, data): key for key, data in configs}
        bar = tqdm(total=len(futures), desc=f"cells ({workers} workers)", unit="cell")
        for future in as_completed(futures):
            try:
                error = future.result()
            except Exception as e:  # the worker died (killed, out of memory): that cell failed
                error = f"worker process died: {type(e).__name__}: {e}"
            if error:
                errors[futures[future]] = error
            bar.update()
        bar.close()
    return errors


def _pin(queue) -> None:
    """Worker start: take one GPU for good (before CUDA initialises in this process)."""
    gpu = queue.get()
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu


# ---------------------------------------------------------------- SLURM


def slurm_options(raw: dict[str, Any]) -> dict[str, Any]:
    """--slurm.KEY VALUE options (and the sweep file's slurm:) as submitit executor parameters."""
    options = {}
    for key, value in raw.items():
        key = key.replace("-", "_")
        value = _parse_scalar(value) if isinstance(value, str) else value
        options[key if key in SUBMITIT_GENERIC else f"slurm_{key}"] = value
    options.setdefault("timeout_min", 60)
    return options


class CellJob:
    """One array task: run a cell. Checkpointable: on preemption or timeout submitit requeues
    the same call, and the runner resumes the cell from its last stage checkpoint."""

    def __call__(self, cfg_data: dict[str, Any]) -> str:
        return run_cell(cfg_data, progress=False)

    def checkpoint(self, cfg_data: dict[str, Any]):
        import submitit

        return submitit.helpers.DelayedSubmission(CellJob(), cfg_data)


def run_slurm(cells: list, options: dict[str, Any], folder: Path) -> dict[str, str]:
    """One array task per cell; logs per cell under <sweep>/slurm/<job>_<task>/; waits for all."""
    try:
        import submitit
    except ImportError:
        raise UserError("--launcher slurm needs submitit (pip install submitit)") from None
    # the array tasks unpickle this suite's classes: let them import it from here
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    executor = submitit.AutoExecutor(folder=str(Path(folder).resolve() / "slurm" / "%j"), cluster="slurm")
    try:
        executor.update_parameters(**{"name": f"ldifs-{Path(folder).name}", **options})
    except (ValueError, TypeError) as e:
        raise UserError(f"--slurm options: {str(e).splitlines()[0]}") from None
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
