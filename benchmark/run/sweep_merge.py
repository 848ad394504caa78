"""A sweep's merged outputs: one long CSV over all complete cells, report, plots, leaderboard,
and (with ``select:``) the choice made on the val split, selection.csv and the chosen settings.

Cells with different hyperparameters of the same method are different leaderboard rows: a
method is labelled with its setting, ``ewc[ewc.ewc_lambda=100]``. Cells are read in config-hash
order, so the merged CSV does not depend on which machine or shard ran which cell.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import pandas as pd
import yaml

from benchmark import rundir
from benchmark.config import to_dict
from benchmark.errors import UserError
from benchmark.files import atomic_text
from benchmark.reporting import reports, table
from benchmark.reporting.leaderboard import (
    failed_runs_of,
    hparams_source,
    read_manifest_runs,
    write_leaderboard_files,
)
from benchmark.reporting.leaderboard_build import costs_of_runs, read_manifest_stages, read_scenario
from benchmark.reporting.selection import BASE_METHOD, SETTING, selection_markdown, selection_table
from benchmark.run.sweep import RUN_AXES, Cell, Sweep, sequence_folders

SELECTION_CSV = "selection.csv"
SELECTION_MD = "selection.md"
SELECTED_SWEEP = "selected_sweep.yaml"
SELECTED_CONFIG = "selected_config.yaml"


def setting_of(overrides: dict[str, Any], spec: str) -> str:
    """The setting of method ``spec`` in a cell: its grid overrides that can change its numbers."""
    components = spec.split("+")
    items = []
    for key, value in overrides.items():
        if key in RUN_AXES or (key.startswith("hparams.") and key.split(".")[1] not in components):
            continue
        items.append(f"{key.removeprefix('hparams.')}={_text(value)}")
    return ",".join(items)


def _text(value: Any) -> str:
    if isinstance(value, list):
        return "/".join(_text(v) for v in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def label(spec: str, setting: str) -> str:
    return f"{spec}[{setting}]" if setting else spec


def _cell_rows(cell: Cell) -> tuple[pd.DataFrame, list[dict], set[tuple[str, int]]]:
    """A cell's rows (every split) with labelled methods; its settings; its failed (method, seed)."""
    df = pd.read_csv(cell.folder / rundir.LONG_CSV)
    settings = {spec: setting_of(cell.overrides, spec) for spec in table.methods_in_order(df)}
    df["method"] = df["method"].map(lambda spec: label(spec, settings[spec]))
    records = [{"method": label(s, v), BASE_METHOD: s, SETTING: v, "_cell": cell} for s, v in settings.items()]
    failed = failed_runs_of(read_manifest_runs(cell.folder))
    return df, records, {(label(m, settings[m]), seed) for m, seed in failed if m in settings}


def merged_frames(cells: list[Cell]) -> tuple[pd.DataFrame, pd.DataFrame, set]:
    """All complete cells' rows stacked in hash order; a (method, seed) two cells both ran
    (a method the grid did not vary, repeated in each cell) is kept once, from the first."""
    frames, settings, failed, seen = [], {}, set(), set()  # type: ignore[var-annotated]
    for cell in cells:
        df, records, cell_failed = _cell_rows(cell)
        pairs = set(zip(df["method"], df["seed"]))
        df = df[[(m, s) not in seen for m, s in zip(df["method"], df["seed"])]]
        seen |= pairs
        frames.append(df)
        failed |= cell_failed
        for record in records:
            settings.setdefault(record["method"], record)
    merged = pd.concat(frames, ignore_index=True)
    return merged, pd.DataFrame(list(settings.values())), failed


def merge_sweep(sweep: Sweep) -> list[Path]:
    """Write the merged outputs of every sequence the sweep ran (the sweep folder itself, or one
    sub-folder per sequence when the grid varies it); return the leaderboard paths."""
    folders = sequence_folders(sweep)
    groups: dict[str, list[Cell]] = {}
    for cell in sweep.cells:
        if cell.complete():
            groups.setdefault(cell.cfg.sequence, []).append(cell)
    paths = []
    for sequence, cells in groups.items():
        paths += merge_group(sweep, cells, folders[sequence])
    return paths


def merge_group(sweep: Sweep, cells: list[Cell], out: Path) -> list[Path]:
    merged, settings, failed = merged_frames(cells)
    test, val = table.split_rows(merged, "test"), table.split_rows(merged, "val")
    board_rows, chosen, selection = test, settings, None
    if sweep.select:  # chosen before anything is written: a criterion without values is refused
        selection = selection_table(val, test, settings.drop(columns="_cell"), sweep.select)
        if not selection["selected"].any():
            raise UserError(
                f"select {sweep.select}: no setting has a value on the val split (its rows lack what the "
                "criterion needs, e.g. linear-probe rows on eval-only tasks for dLP); try --select val_last_head"
            )
        chosen = settings[selection["selected"].to_numpy()]
        board_rows = test[test["method"].isin(set(chosen["method"]))]
    atomic_text(out / rundir.LONG_CSV, merged.to_csv(index=False))
    reports.write_report(out)  # test rows only: load_long_csv drops val
    _remove_stale_selection(out)  # a merge under no (or another) criterion must not leave the last choice
    if selection is not None:
        atomic_text(out / SELECTION_CSV, selection.to_csv(index=False))
        atomic_text(out / SELECTION_MD, selection_markdown(selection))
        _write_selected(sweep, chosen, out)
    paths = write_leaderboard_files(
        out,
        board_rows,
        failed,
        hparams_labels=_hparams_labels(settings, bool(sweep.select)),
        scenario=read_scenario(cells[0].folder),
        costs=_cell_costs(cells),
    )
    _add_setting_columns(out / rundir.LEADERBOARD_CSV, settings)
    return paths + ([out / SELECTION_CSV, out / SELECTION_MD] if sweep.select else [])


def _cell_costs(cells: list[Cell]) -> dict[str, dict[str, float]]:
    """The cost columns of every labelled method, from its cells' manifest.json."""
    runs = []
    for cell in cells:
        for run in read_manifest_stages(cell.folder):
            runs.append({**run, "method": label(run["method"], setting_of(cell.overrides, run["method"]))})
    return costs_of_runs(runs)


def _remove_stale_selection(out: Path) -> None:
    for name in (SELECTION_CSV, SELECTION_MD, SELECTED_SWEEP, SELECTED_CONFIG):
        (out / name).unlink(missing_ok=True)


def _hparams_labels(settings: pd.DataFrame, selected: bool) -> dict[str, str]:
    """The leaderboard's hparams column: ``tuned`` for a setting chosen among several on val,
    else what the cell's own config says (``set`` or ``default``)."""
    counts = settings[BASE_METHOD].value_counts()
    return {
        row["method"]: "tuned"
        if selected and counts[row[BASE_METHOD]] > 1
        else hparams_source(row[BASE_METHOD], row["_cell"].cfg.hparams)
        for _, row in settings.iterrows()
    }


def _add_setting_columns(path: Path, settings: pd.DataFrame) -> None:
    """leaderboard.csv also names each row's method and setting apart (the label has both)."""
    board = pd.read_csv(path)
    lookup = settings.set_index("method")
    board.insert(1, BASE_METHOD, board["method"].map(lookup[BASE_METHOD]))
    board.insert(2, SETTING, board["method"].map(lookup[SETTING]).fillna(""))
    atomic_text(path, board.to_csv(index=False))


def _write_selected(sweep: Sweep, chosen: pd.DataFrame, out: Path) -> None:
    """The chosen settings as a sweep file (one grid block per method, the sweep's seeds) that
    reruns every method at its best; and, when they differ in hparams only, as one run config."""
    base = to_dict(sweep.base)
    base.pop("results_dir")
    seeds = sorted({seed for cell in sweep.cells for seed in cell.cfg.seeds})
    blocks = []
    for _, row in chosen.iterrows():
        overrides = {k: v for k, v in row["_cell"].overrides.items() if k not in RUN_AXES}
        grid = {"methods": [row[BASE_METHOD]], "sequence": [row["_cell"].cfg.sequence], "seeds": seeds}
        blocks.append({**grid, **{k: [v] for k, v in overrides.items()}})
    doc = {"name": f"{sweep.name}-selected", "base": base, "grid": blocks}
    header = f"# Every method at the setting chosen on the val split by {sweep.select} (sweep {sweep.name}).\n"
    atomic_text(out / SELECTED_SWEEP, header + yaml.safe_dump(doc, sort_keys=False))
    hparams = _chosen_hparams(chosen)
    one_sequence = len({cell.cfg.sequence for cell in chosen["_cell"]}) == 1
    if (
        hparams is not None
        and one_sequence
        and all(k.startswith("hparams.") or k in RUN_AXES for b in blocks for k in b)
    ):
        config = {**base, "methods": list(chosen[BASE_METHOD]), "seeds": seeds, "hparams": hparams}
        config["sequence"] = chosen["_cell"].iloc[0].cfg.sequence
        atomic_text(out / SELECTED_CONFIG, header + yaml.safe_dump(config, sort_keys=False))


def _chosen_hparams(chosen: pd.DataFrame) -> Optional[dict[str, Any]]:
    """The chosen methods' hparams as one mapping; None when two choices disagree on a component."""
    hparams: dict[str, Any] = {}
    for cell, spec in zip(chosen["_cell"], chosen[BASE_METHOD]):
        for component in spec.split("+"):
            values = json.loads(json.dumps(cell.cfg.hparams.get(component, {})))
            if hparams.setdefault(component, values) != values:
                return None
    return {name: values for name, values in hparams.items() if values}
