"""The sweep command: ``run_benchmark.py --sweep FILE [--launcher local|slurm] [--workers N]
[--shard i/n] [--dry-run] [--merge-only] [--slurm.KEY VALUE ...]`` (README "Sweeps")."""

from __future__ import annotations

import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from benchmark.errors import UserError, choices_error
from benchmark.run.launchers import run_cells, slurm_options
from benchmark.run.sweep import LAUNCHERS, Sweep, describe, load_sweep, shard_cells, write_sweep_json


def sweep_command(args: Any) -> int:
    """``run_benchmark.py --sweep FILE [--launcher ...] [--shard i/n] [--dry-run] [--merge-only]``."""
    if not args.sweep:
        raise UserError(
            "--launcher, --workers, --shard, --dry-run, --merge-only, --select and --slurm.* need --sweep FILE"
        )
    launcher = args.launcher or "local"
    if launcher not in LAUNCHERS:
        raise choices_error("launcher", launcher, LAUNCHERS)
    if args.workers is not None and args.workers < 1:
        raise UserError(f"--workers {args.workers} must be >= 1")
    if args.config:
        raise UserError("--config and --sweep do not mix: the sweep file's base: is the config")
    sweep = load_sweep(Path(args.sweep), args.overrides, args.select)
    mine = shard_cells(sweep.cells, args.shard)
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
    from benchmark.run.sweep_merge import merge_sweep  # pandas and the reports: only when merging

    for path in merge_sweep(sweep):
        print(f"wrote {path}")
    return 1 if errors else 0
