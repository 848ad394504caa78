"""The sweep command: ``run_benchmark.py --sweep FILE [--launcher local|slurm] [--workers N]
[--shard i/n] [--dry-run] [--merge-only] [--slurm.KEY VALUE ...]`` (docs/sweeps.md)."""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

from benchmark import rundir
from benchmark.errors import UserError, choices_error
from benchmark.files import flocked
from benchmark.run.launchers import run_cells, slurm_options
from benchmark.run.sweep import LAUNCHERS, SWEEP_JSON, Sweep, describe, load_sweep, shard_cells, write_sweep_json
from benchmark.rundir import RunDir


def sweep_command(args: Any, sweep: Optional[Sweep] = None) -> int:
    """``run_benchmark.py --sweep FILE [--launcher ...] [--shard i/n] [--dry-run] [--merge-only]``;
    ``sweep``: one built already (``--multirun``, benchmark/run/multirun.py)."""
    if not args.sweep and sweep is None:
        raise UserError(
            "--launcher, --shard, --dry-run, --merge-only, --select and --slurm.* need --sweep FILE "
            "(or --multirun KEY=V1,V2)"
        )
    launcher = args.launcher or "local"
    if launcher not in LAUNCHERS:
        raise choices_error("launcher", launcher, LAUNCHERS)
    if args.workers is not None and args.workers < 1:
        raise UserError(f"--workers {args.workers} must be >= 1")
    if args.config and sweep is None:
        raise UserError("--config and --sweep do not mix: the sweep file's base: is the config")
    if args.fresh:
        raise UserError(
            "--fresh does not apply to --sweep: to rerun cells, delete their folders under <sweep folder>/cells "
            "(--dry-run lists them), or give the sweep another --name"
        )
    if sweep is None:
        overrides = [(key, value) for key, value in args.overrides if key != "name"]  # --name names the sweep
        sweep = load_sweep(Path(args.sweep), overrides, args.select, args.name)
    claim_sweep_folder(sweep)
    mine = shard_cells(sweep.cells, args.shard)
    absent = [tool for tool in ("sbatch", "srun") if shutil.which(tool) is None]  # what submitit needs
    if launcher == "slurm" and not (args.dry_run or args.merge_only) and absent:
        raise UserError(f"--launcher slurm: SLURM is not available here (no {absent[0]} on PATH); use --launcher local")
    options = slurm_options({**sweep.slurm, **args.slurm}) if launcher == "slurm" else {}
    if args.dry_run:
        print(f"sweep {sweep.name}: {len(sweep.cells)} cells in {sweep.folder / 'cells'}; this command's {len(mine)}:")
        for cell in mine:
            print(f"  {describe(cell)}")
        return 0
    errors = {} if args.merge_only else _run_missing(sweep, mine, launcher, options, args)
    write_sweep_json(sweep, errors)
    return _finish(sweep, errors, args.merge_only)


def _run_missing(sweep: Sweep, mine: list, launcher: str, options: dict[str, Any], args: Any) -> dict[str, str]:
    """Run this command's cells that are not complete; record the invocation in sweep.json."""
    todo = [cell for cell in mine if not cell.complete()]
    print(f"sweep {sweep.name}: {len(mine)} cells, {len(mine) - len(todo)} already complete, running {len(todo)}")
    write_sweep_json(sweep, {})
    started, clock = datetime.now(timezone.utc), time.monotonic()
    errors = run_cells(todo, launcher, args.workers, options, progress=not args.quiet, folder=sweep.folder)
    errors = _wait_for_other_processes(sweep, errors)
    invocation = {
        "started_utc": started.isoformat(timespec="seconds"),
        "wall_seconds": round(time.monotonic() - clock, 1),
        "cells_run": len(todo),
        "cells_failed": len(errors),
        "launcher": launcher,
        "workers": args.workers,
        "shard": args.shard,
    }
    write_sweep_json(sweep, errors, invocation)
    return errors


def claim_sweep_folder(sweep: Sweep) -> None:
    """A sweep folder is claimed by the rule of a run folder (benchmark/rundir.py): it is used
    when absent, empty or a sweep's own (it holds sweep.json); a plain run's folder, a file or
    a folder of the user's other files is refused before anything is written."""
    rd = RunDir(sweep.folder.parent, sweep.name, "sweep name")
    folder = rd.path
    if not os.path.lexists(folder):
        return
    if folder.is_symlink() or not folder.is_dir():
        raise UserError(f"{folder} exists and is not a sweep folder; give the sweep another name: (or --name)")
    if any(folder.iterdir()) and not (folder / SWEEP_JSON).is_file():
        what = "a run's folder" if (folder / rundir.CONFIG_YAML).is_file() else "not a sweep folder"
        raise UserError(
            f"{folder} exists and is {what}; give the sweep another name: (or --name) (nothing was changed)"
        )


def _wait_for_other_processes(sweep: Sweep, errors: dict[str, str]) -> dict[str, str]:
    """A cell another process is running (the same sweep started twice) is waited for, not
    failed: once its lock is free, it counts as done if that process completed it."""
    by_key = {cell.key: cell for cell in sweep.cells}
    for key in [k for k, error in errors.items() if rundir.IN_USE in error]:
        lock = RunDir(sweep.folder / "cells", key).lock_path
        print(f"cell {key} is being run by another process; waiting for it")
        with contextlib.suppress(OSError):  # OSError: already finished and gone
            with flocked(lock, shared=True, create=False):  # blocks until the other process releases the cell
                pass
        if by_key[key].complete():
            del errors[key]
    return errors


def _finish(sweep: Sweep, errors: dict[str, str], merge_only: bool) -> int:
    for key, error in errors.items():
        print(f"cell {key} failed: {error}", file=sys.stderr)
    missing = [cell for cell in sweep.cells if not cell.complete()]
    if missing and not merge_only:
        print(f"{len(missing)} of {len(sweep.cells)} cells not complete; merge with --merge-only or run the rest")
        return 1 if errors else 0
    if missing:
        print(f"merging {len(sweep.cells) - len(missing)} complete cells; missing: {' '.join(c.key for c in missing)}")
    if len(missing) == len(sweep.cells):
        raise UserError(f"sweep {sweep.name}: no complete cell to merge in {sweep.folder / 'cells'}")
    from benchmark.reporting.leaderboard import print_board  # pandas and the reports: only when merging
    from benchmark.run.sweep_merge import merge_sweep

    paths = merge_sweep(sweep)
    boards = list(dict.fromkeys(p.parent for p in paths if p.name == rundir.LEADERBOARD_CSV))  # one per sequence
    for folder in boards:  # what `python -m benchmark.reporting.leaderboard` prints for a merge
        print(f"\n{folder}:" if len(boards) > 1 else "")
        print_board(folder)
    for path in paths:
        print(f"wrote {path}")
    return 1 if errors else 0
