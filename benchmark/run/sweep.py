"""Sweeps: a grid of ordinary runs ("cells"), each resumable in its own folder, merged into
one leaderboard, optionally with every method at its best setting chosen on the val split.

A sweep file (docs/sweeps.md)::

    name: my-sweep                 # default: the file's stem
    base: {sequence: micro, ...}   # a run config, or the path of one (relative to this file)
    grid:                          # dotted key -> values; the cross product. A list of such
      seeds: [0, 1, 2]             # mappings is the union of their cross products.
      hparams.ewc.ewc_lambda: [1, 100]
    select: val_last_head          # optional: the criterion of benchmark/reporting/selection.py
    slurm: {partition: gpu}        # optional: defaults of --slurm.* for --launcher slurm

Cell folders are ``<results_dir>/<name>/cells/<config hash>`` (the runner's own lock, staging
folder and stage checkpoints hold per cell); ``sweep.json`` lists the cells.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from benchmark.config import RunConfig, apply_override, config_hash, load_mapping, validate
from benchmark.errors import UserError
from benchmark.files import atomic_text, load_yaml_file, read_text_file, safe_component
from benchmark.reporting.selection import check_criterion
from benchmark.run.plugins import load_plugins, normalise
from benchmark.rundir import safe_name

SWEEP_KEYS = ("name", "base", "grid", "select", "slurm")
# Grid keys that say what runs, not how: never part of a method's "setting".
RUN_AXES = ("seeds", "methods", "sequence")
LAUNCHERS = ("local", "slurm")
SWEEP_JSON = "sweep.json"
SWEEP_YAML = "sweep.yaml"  # the sweep file as run, beside sweep.json


@dataclass
class Cell:
    """One run of the grid: its overrides (what differs from the base) and its full config."""

    overrides: dict[str, Any]
    cfg: RunConfig
    key: str  # the config hash, also the folder name

    @property
    def folder(self) -> Path:
        return Path(self.cfg.results_dir) / self.cfg.name

    def complete(self) -> bool:
        return (self.folder / "accuracy_long.csv").is_file()


@dataclass
class Sweep:
    name: str
    folder: Path
    base: RunConfig
    cells: list[Cell]  # in config-hash order: the stable order of shards and merges
    select: Optional[str] = None
    slurm: dict[str, Any] = field(default_factory=dict)
    source: str = ""
    text: str = ""  # the sweep file as read: kept beside sweep.json as sweep.yaml (what publish copies)


# ---------------------------------------------------------------- reading the sweep file


def _read_mapping(path: Path, what: str) -> dict[str, Any]:
    data = load_yaml_file(path, what)  # the suite's one safe reader: text only, no YAML aliases
    if not isinstance(data, dict):
        raise UserError(f"{what} {str(path)!r} must be a YAML mapping, got {type(data).__name__}")
    return data


def load_sweep(
    path: Path, overrides: Sequence[tuple[str, Any]] = (), select: Optional[str] = None, name: Optional[str] = None
) -> Sweep:
    """Parse and check a sweep file; every cell is validated before anything runs or is written.
    ``select`` (``--select``) replaces the file's criterion: cells do not depend on it, so a
    finished sweep can be merged again under another criterion. ``name`` (``--name``) replaces
    the file's ``name:``."""
    path = Path(path)
    data, base = sweep_base(path, overrides)
    load_plugins(base.plugins)  # the base's plugins: before any method or task name is checked
    select = select or data.get("select")
    if select is not None:
        check_criterion(str(select))
        if "val" not in base.eval.splits:
            raise UserError(f"select: {select} needs eval.splits to include val (the base sets {base.eval.splits})")
    name = _sweep_name(name, data, path)
    folder = Path(base.results_dir) / name
    cells = _cells(base, _grid_blocks(data.get("grid")), folder / "cells")
    slurm = data.get("slurm") or {}
    if not isinstance(slurm, dict):
        raise UserError(f"slurm: expected a mapping of options, got {slurm!r}")
    text = read_text_file(path, "sweep file")
    sweep = Sweep(name, folder, base, cells, str(select) if select else None, dict(slurm), str(path), text)
    sequence_folders(sweep)  # two sequences that would merge into one folder: refused now
    return sweep


def sweep_base(path: Path, overrides: Sequence[tuple[str, Any]] = ()) -> tuple[dict[str, Any], RunConfig]:
    """The sweep file's mapping and its base run config (with the command line's overrides),
    nothing imported or run (``--print-config --sweep`` prints it)."""
    data = _read_mapping(path, "sweep file")
    unknown = [key for key in data if key not in SWEEP_KEYS]
    if unknown:
        raise UserError(f"unknown sweep key {unknown[0]!r} in {path}; valid keys: {', '.join(SWEEP_KEYS)}")
    base = _base_config(data.get("base") or {}, path, overrides)
    base.plugins = normalise(base.plugins)  # absolute: the cells' config.yaml re-import them from anywhere
    return data, base


def _sweep_name(name: Optional[str], data: dict[str, Any], path: Path) -> str:
    """``--name``, else the file's ``name:``, else its stem: one safe folder name in any case."""
    if name is not None:
        return safe_component(name, "--name (the sweep's name)")
    if data.get("name") is not None:
        return safe_component(data["name"], f"sweep file {str(path)!r}: name")
    return safe_component(path.stem, f"sweep file {str(path)!r}: its file name (give a name:)")


def sequence_folders(sweep: Sweep) -> dict[str, Path]:
    """Where each sequence's merged outputs go: the sweep folder itself for one sequence, else
    one sub-folder per sequence named by its file stem. Two sequences with one stem
    (a/seq.yaml, b/seq.yaml), or a stem that is one of the sweep's own folders, are refused."""
    sequences = sorted({cell.cfg.sequence for cell in sweep.cells})
    if len(sequences) == 1:
        return {sequences[0]: sweep.folder}
    folders: dict[str, Path] = {}
    by_name: dict[str, str] = {}
    for sequence in sequences:
        name = safe_name(Path(sequence).stem)
        if name in by_name or name in ("cells", "plots", "slurm"):
            other = by_name.get(name, f"the sweep's own {name}/ folder")
            raise UserError(
                f"grid: sequences {other!r} and {sequence!r} would both merge into {sweep.folder / name}; "
                "give the sequence files different names"
            )
        by_name[name] = sequence
        folders[sequence] = sweep.folder / name
    return folders


def _base_config(base: Any, sweep_path: Path, overrides: Sequence[tuple[str, Any]]) -> RunConfig:
    """The base run config (a mapping or a config file's path), with the command line's overrides."""
    if isinstance(base, str):  # a config file: layered over its own base:, as --config would be
        candidate = Path(base)
        if not candidate.is_file() and (sweep_path.parent / base).is_file():
            candidate = sweep_path.parent / base
        base = _read_mapping(candidate, "base config")
        cfg = load_mapping(base, candidate)
    else:  # inline: layered as a config file beside the sweep file (over the default run)
        cfg = load_mapping(base, sweep_path)
    if "splits" not in (base.get("eval") or {}):  # sweeps score val too, so that they can select
        cfg.eval.splits = ["test", "val"]
    for key, value in overrides:
        apply_override(cfg, key, value)
    return cfg


def _grid_blocks(grid: Any) -> list[dict[str, list]]:
    """The grid as a list of mappings (one mapping is a list of one); empty value lists refused."""
    blocks = grid if isinstance(grid, list) else [grid]
    if grid is None or not blocks:
        raise UserError("the sweep file needs a grid: (dotted key -> list of values), e.g. seeds: [0, 1]")
    for block in blocks:
        if not isinstance(block, dict) or not block:
            raise UserError(f"grid: expected a mapping of dotted keys to lists of values, got {block!r}")
        for key, values in block.items():
            if not isinstance(key, str):
                raise UserError(f"grid key {key!r}: expected a dotted config key such as train.lr or seeds")
            if not isinstance(values, list) or not values:
                raise UserError(f"grid key {key!r}: expected a non-empty list of values, got {values!r}")
    return blocks


def _cells(base: RunConfig, blocks: list[dict[str, list]], cells_dir: Path) -> list[Cell]:
    """Every combination of every block, pruned of other methods' hparams, deduplicated by hash."""
    cells: dict[str, Cell] = {}
    for block in blocks:
        for combo in _product(list(block.items())):
            cell = make_cell(base, combo, cells_dir)
            cells.setdefault(cell.key, cell)
    return [cells[key] for key in sorted(cells)]


def _product(items: list[tuple[str, list]]) -> list[dict[str, Any]]:
    if not items:
        return [{}]
    (key, values), rest = items[0], _product(items[1:])
    return [{key: value, **tail} for value in values for tail in rest]


def make_cell(base: RunConfig, overrides: dict[str, Any], cells_dir: Path) -> Cell:
    """The cell's config: base + overrides, checked as a run would check it (nothing written)."""
    cfg = copy.deepcopy(base)
    for key, value in overrides.items():
        _override(cfg, key, value)
    # hparams of methods this cell does not run change nothing: drop them, so that cells
    # differing only there share one hash (and one run)
    components = {part for spec in cfg.methods for part in spec.split("+")}
    cfg.hparams = {name: values for name, values in cfg.hparams.items() if name in components}
    kept = {k: v for k, v in overrides.items() if not _other_methods_hparam(k, components)}
    _check_cell(cfg)
    key = config_hash(cfg)
    cfg.name, cfg.results_dir = key, str(cells_dir)
    return Cell(kept, cfg, key)


def _other_methods_hparam(key: str, components: set[str]) -> bool:
    return key.startswith("hparams.") and key.split(".")[1] not in components


def _override(cfg: RunConfig, key: str, value: Any) -> None:
    """apply_override, with a scalar grid value for a list key (seeds: [0, 1]) meaning [value]."""
    if key.startswith("hparams."):
        parts = key.split(".")
        if len(parts) != 3:
            raise UserError(f"grid key {key!r}: hparams keys are hparams.<method>.<name>")
        from methods import METHODS, build_method

        METHODS.get(parts[1])  # unknown method -> the valid choices
        build_method(parts[1], {parts[1]: {parts[2]: value}}, check_only=True)  # unknown name or wrong type -> one line
    if _is_list_key(key) and not isinstance(value, list):
        value = [value]
    apply_override(cfg, key, value)


def _is_list_key(key: str) -> bool:
    tp: Any = RunConfig
    for part in key.split("."):
        if not dataclasses.is_dataclass(tp):
            return False
        hints = typing.get_type_hints(tp)
        if part not in hints:
            return False
        tp = hints[part]
    return typing.get_origin(tp) is list


def _check_cell(cfg: RunConfig) -> None:
    """What runner.check_inputs checks, without creating the results folder."""
    from benchmark.loop.seen_classes import check_scenario
    from benchmark.models.clip_loading import check_model_config
    from methods import build_method
    from tasks import TASKS, load_sequence

    validate(cfg)
    sequence = load_sequence(cfg.sequence)
    for spec in cfg.methods:
        build_method(spec, cfg.hparams, check_only=True)  # the cell's own run builds its plugins
        check_scenario(spec, sequence)
    for task in sequence.loaded_tasks:
        TASKS.get(task)
    check_model_config(cfg.model)


# ---------------------------------------------------------------- shards, status, sweep.json


def shard_cells(cells: list[Cell], shard: Optional[str]) -> list[Cell]:
    """Shard i of n ("i/n", 1-based): every n-th cell of the hash-ordered list, starting at i."""
    if not shard:
        return cells
    try:
        index, count = (int(part) for part in shard.split("/"))
    except ValueError:
        raise UserError(f"--shard {shard!r}: expected i/n with 1 <= i <= n, e.g. 1/4") from None
    if not 1 <= index <= count:
        raise UserError(f"--shard {shard!r}: expected i/n with 1 <= i <= n, e.g. 1/4")
    return cells[index - 1 :: count]


def describe(cell: Cell) -> str:
    text = ", ".join(f"{key}={value}" for key, value in cell.overrides.items())
    return f"{cell.key}  {'done   ' if cell.complete() else 'missing'}  {text or '(base)'}"


def write_sweep_json(sweep: Sweep, errors: dict[str, str], invocation: Optional[dict[str, Any]] = None) -> None:
    """sweep.json: every cell with its overrides, status (complete | failed | missing) and
    folder, and every command that ran cells (start, wall time, cells run and failed, launcher)."""
    previous = _previous(sweep.folder / SWEEP_JSON)
    old_errors = {
        entry["key"]: entry.get("error", "") for entry in previous["cells"] if entry.get("status") == "failed"
    }
    entries = []
    for cell in sweep.cells:
        error = errors.get(cell.key, old_errors.get(cell.key, ""))
        status = "complete" if cell.complete() else ("failed" if error else "missing")
        entry = {"key": cell.key, "overrides": cell.overrides, "status": status, "folder": str(cell.folder)}
        if status == "failed":
            entry["error"] = error
        entries.append(entry)
    invocations = previous["invocations"] + ([invocation] if invocation else [])
    payload = {"name": sweep.name, "source": sweep.source, "select": sweep.select, "cells": entries}
    payload["invocations"] = invocations
    if sweep.text:  # the sweep file as run, inside the sweep folder: what publish copies
        atomic_text(sweep.folder / SWEEP_YAML, sweep.text)
    atomic_text(sweep.folder / SWEEP_JSON, json.dumps(payload, indent=2, default=str))


def _previous(path: Path) -> dict[str, list]:
    """The cells and invocations of an earlier sweep.json (empty lists when there is none or it is unreadable)."""
    try:
        data = json.loads(path.read_text())
        cells, invocations = data["cells"], data.get("invocations", [])
        if isinstance(cells, list) and isinstance(invocations, list):
            return {"cells": [c for c in cells if isinstance(c, dict) and "key" in c], "invocations": invocations}
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return {"cells": [], "invocations": []}
