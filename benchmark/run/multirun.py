"""``run_benchmark.py --multirun KEY=V1,V2 ...``: a grid over dotted config keys given on the
command line (as Hydra's ``--multirun``), run as a sweep whose base is the config the rest of
the command line resolves (``--config``, ``--methods``, ``--train.lr``, ...).

It is an ordinary sweep (benchmark/run/sweep.py): cells in ``<results_dir>/<name>/cells/``,
resumed per cell, run by local workers or SLURM, merged into one leaderboard, ``--select``
on the validation split. Its name is ``--name``, else ``multirun-<hash>`` of the base config
and the grid, so the same command resumes the same sweep; its ``sweep.yaml`` reruns it with
``--sweep``.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

import yaml

from benchmark.config import RunConfig, config_hash, to_dict
from benchmark.errors import UserError
from benchmark.files import safe_component
from benchmark.reporting.selection import check_criterion
from benchmark.run.sweep import Sweep, _cells, sequence_folders


def parse_value(text: str) -> Any:
    """A grid value as YAML would type it, with numbers such as 1e-3 read as floats."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    value = yaml.safe_load(text) if text.strip() else text
    return value if isinstance(value, (str, bool)) or value is None else text


def parse_multirun(items: Sequence[str]) -> dict[str, list[Any]]:
    """``["hparams.ldifs.alpha=10,100", "seeds=0,1"]`` -> {key: [values]} (a key given twice is refused)."""
    grid: dict[str, list[Any]] = {}
    for item in items:
        key, sep, values = item.partition("=")
        key = key.strip().removeprefix("--")
        if not sep or not key or not values.strip():
            raise UserError(f"--multirun {item!r}: expected KEY=V1,V2,... e.g. hparams.ldifs.alpha=10,100")
        if key in grid:
            raise UserError(f"--multirun: key {key!r} given twice; list all its values once: {key}=V1,V2")
        grid[key] = [parse_value(value.strip()) for value in values.split(",")]
    return grid


def multirun_sweep(cfg: RunConfig, items: Sequence[str], select: Optional[str] = None) -> Sweep:
    """The sweep of ``cfg`` over the command line's grid; every cell checked, nothing written."""
    grid = parse_multirun(items)
    base = copy.deepcopy(cfg)
    if select is not None:
        check_criterion(select)
        if "val" not in base.eval.splits:  # selection needs the val rows; cells score them too
            base.eval.splits = [*base.eval.splits, "val"]
    digest = hashlib.sha256(json.dumps([config_hash(base), grid], default=str).encode()).hexdigest()[:10]
    name = safe_component(base.name, "--name (the multirun's name)") if base.name else f"multirun-{digest}"
    base.name = ""  # each cell is named by its config hash
    folder = Path(base.results_dir) / name
    cells = _cells(base, [grid], folder / "cells")
    doc = {"name": name, "base": {"base": "defaults", **to_dict(base)}, "grid": grid}
    doc.update({"select": select} if select else {})
    header = f"# run_benchmark.py --multirun {' '.join(items)}: rerun with --sweep this file\n"
    sweep = Sweep(name, folder, base, cells, select, {}, "--multirun " + " ".join(items), header + yaml.safe_dump(doc))
    sequence_folders(sweep)  # two sequences that would merge into one folder: refused now
    return sweep
