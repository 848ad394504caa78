"""Merging runs into one leaderboard: which runs may share one (``check_mergeable``), the
merged run folder, and its leaderboard."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import pandas as pd
import yaml

from benchmark import rundir
from benchmark.config import load_yaml
from benchmark.errors import UserError
from benchmark.files import atomic_text, load_yaml_file
from benchmark.reporting import reports, table
from benchmark.reporting.leaderboard_build import (
    failed_runs_of,
    label_methods,
    method_label,
    read_manifest_runs,
    read_manifest_stages,
    read_scenario,
    resolve_baseline,
)
from benchmark.reporting.leaderboard_render import write_leaderboard_files
from benchmark.rundir import CONFIG_YAML, MANIFEST_JSON, MERGE_JSON

DEFAULT_MERGE_OUT = Path("results/leaderboard-merged")


@dataclass
class LoadedRun:
    """What merging needs of one run directory."""

    path: Path
    df: pd.DataFrame
    config: dict[str, Any]
    manifest_runs: list[dict[str, Any]] = field(default_factory=list)

    def method_seeds(self) -> set[tuple[str, int]]:
        """Every (method, seed) the run holds, failed ones included."""
        pairs = {(str(method), int(seed)) for method, seed in zip(self.df["method"], self.df["seed"])}
        return pairs | {(run["method"], run["seed"]) for run in self.manifest_runs}


def load_run(run_dir: Path) -> LoadedRun:
    """Read a run's long CSV, config.yaml and manifest; a missing piece is a one-line UserError."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"run directory {run_dir} does not exist")
    if not (run_dir / rundir.LONG_CSV).is_file():
        raise UserError(f"{run_dir} has no {rundir.LONG_CSV}; is it a finished run directory?")
    config_path = run_dir / CONFIG_YAML
    if not config_path.is_file():
        raise UserError(f"{run_dir} has no {CONFIG_YAML}, so its settings cannot be checked against the other runs")
    config = load_yaml_file(config_path, "run config") or {}  # size-capped, no YAML aliases
    if isinstance(config, dict):
        load_yaml(config_path)  # the run config's own schema: a wrong type is one line naming the file
    if not isinstance(config, dict):
        raise UserError(f"{config_path} is not a mapping")
    # Methods labelled with the hyperparameters the run set (ldifs[alpha=10]): two runs of one
    # method with different values become two rows instead of a refusal.
    hparams = config.get("hparams") if isinstance(config.get("hparams"), dict) else None
    df = label_methods(table.load_long_csv(run_dir / rundir.LONG_CSV), hparams)
    manifest = [{**run, "method": method_label(run["method"], hparams)} for run in read_manifest_runs(run_dir)]
    return LoadedRun(run_dir, df, config, manifest)


def _flatten(section: Any, prefix: str) -> dict[str, Any]:
    """A nested config section as dotted keys; a missing section becomes one key set to None."""
    if not isinstance(section, dict):
        return {prefix: section}
    flat: dict[str, Any] = {}
    for key, value in section.items():
        flat.update(_flatten(value, f"{prefix}.{key}"))
    return flat


def comparison_keys(run: LoadedRun) -> dict[str, Any]:
    """The settings that must be equal for two runs' numbers to share one leaderboard, as dotted keys.

    The sequence as the CSV records it (stage order, eval-only tasks) and as config.yaml names
    it (which also fixes per-stage epochs); the model and, for a suite-pretrained model, how it
    was pretrained; the training protocol; the evaluation settings except eval.batch_size,
    which only changes speed (so that a smaller GPU can use a smaller batch).
    """
    usable = table.usable_rows(run.df)
    config = run.config
    keys: dict[str, Any] = {
        "sequence stage order (accuracy_long.csv)": table.sequence_tasks(usable),
        "eval-only tasks (accuracy_long.csv)": sorted(table.eval_only_tasks(usable)),
        "sequence (config.yaml)": config.get("sequence"),
    }
    model = config.get("model") or {}
    keys["model.name"], keys["model.pretrained"] = model.get("name"), model.get("pretrained")
    if model.get("pretrained") == "suite":
        keys.update(_flatten(model.get("pretrain"), "model.pretrain"))
    keys.update(_flatten(config.get("train"), "train"))
    evaluation = _flatten(config.get("eval"), "eval")
    keys.update({key: value for key, value in evaluation.items() if key != "eval.batch_size"})
    keys.setdefault("eval.splits", ["test"])  # runs from before the option scored test only
    return keys


_ABSENT = "(absent)"


def check_mergeable(runs: Sequence[LoadedRun]) -> None:
    """Raise UserError naming the first setting, method hparams or (method, seed) that forbids merging.

    Methods and seeds may differ between runs. Everything in :func:`comparison_keys` must be
    equal; a method present in two runs must have the same hparams for each of its components
    (its seeds are pooled into one mean); and no (method, seed) may come from two runs.
    """
    first = runs[0]
    first_keys = comparison_keys(first)
    for other in runs[1:]:
        other_keys = comparison_keys(other)
        for key in dict.fromkeys([*first_keys, *other_keys]):
            mine, theirs = first_keys.get(key, _ABSENT), other_keys.get(key, _ABSENT)
            if mine != theirs:
                raise UserError(f"cannot merge {first.path} and {other.path}: {key} differs ({mine!r} vs {theirs!r})")
    for index, run in enumerate(runs):
        for other in runs[index + 1 :]:
            _check_shared_methods(run, other)


def _check_shared_methods(run: LoadedRun, other: LoadedRun) -> None:
    """Refuse a (method, seed) held by both runs, and a shared method whose hparams differ."""
    duplicates = sorted(run.method_seeds() & other.method_seeds())
    if duplicates:
        method, seed = duplicates[0]
        raise UserError(
            f"cannot merge {run.path} and {other.path}: both hold method {method!r} seed {seed} "
            f"({len(duplicates)} duplicate (method, seed) pair(s)); give each pair once"
        )
    shared = {method for method, _ in run.method_seeds()} & {method for method, _ in other.method_seeds()}
    for method in sorted(shared):
        for component in method.split("+"):
            mine = (run.config.get("hparams") or {}).get(component, {})
            theirs = (other.config.get("hparams") or {}).get(component, {})
            if mine != theirs:
                raise UserError(
                    f"cannot merge {run.path} and {other.path}: method {method!r} is in both but "
                    f"hparams.{component} differs ({mine!r} vs {theirs!r})"
                )


def merged_long(runs: Sequence[LoadedRun]) -> pd.DataFrame:
    """The runs' long CSVs stacked; rows of runs without a status column count as "ok"."""
    frames = [run.df for run in runs]
    merged = pd.concat(frames, ignore_index=True)
    if "status" in merged.columns:
        merged["status"] = merged["status"].fillna("ok")
    return merged


def merged_config(runs: Sequence[LoadedRun], name: str) -> dict[str, Any]:
    """The first run's config with the union of methods, seeds and hparams, so the merge can be merged again."""
    config = dict(runs[0].config)
    config["name"] = name
    config["methods"] = list(dict.fromkeys(method for run in runs for method in run.config.get("methods") or []))
    config["seeds"] = sorted({int(seed) for run in runs for seed in run.config.get("seeds") or []})
    hparams: dict[str, Any] = {}
    conflicting = set()
    for run in runs:
        run_hparams = run.config.get("hparams") or {}
        parts = {part for spec in run.config.get("methods") or [] for part in spec.split("+")} | set(run_hparams)
        for part in parts:  # a part one run ran at its defaults and another with values also conflicts
            values = run_hparams.get(part)
            conflicting |= {part} if hparams.setdefault(part, values) != values else set()
    config["hparams"] = {part: v for part, v in hparams.items() if part not in conflicting and v is not None}
    return config


def merged_manifest(runs: Sequence[LoadedRun]) -> dict[str, Any]:
    """Where the merged rows came from, and every (method, seed) run with its status and source."""
    entries = []
    for run in runs:
        statuses = {(entry["method"], entry["seed"]): entry["status"] for entry in run.manifest_runs}
        hparams = run.config.get("hparams") if isinstance(run.config.get("hparams"), dict) else None
        stages = {(method_label(r["method"], hparams), r["seed"]): r["stages"] for r in read_manifest_stages(run.path)}
        for method, seed in sorted(run.method_seeds()):
            status = statuses.get((method, seed), "ok")
            entry = {"method": method, "seed": seed, "status": status, "source": str(run.path)}
            entries.append(entry | ({"stages": stages[method, seed]} if stages.get((method, seed)) else {}))
    manifest: dict[str, Any] = {"merged_from": [str(run.path) for run in runs], "runs": entries}
    manifest["scenario"] = read_scenario(runs[0].path)  # the runs share their sequence, so their scenario
    for key in ("git_revision", "machine", "device_name"):  # each distinct value of the runs merged
        values = dict.fromkeys(str(v) for v in (_manifest_field(run.path, key) for run in runs) if v)
        if values:
            manifest[key] = ", ".join(values)
    return manifest


def _manifest_field(run_dir: Path, key: str) -> Any:
    """One field of a run's manifest.json (None when absent or unreadable)."""
    try:
        data = json.loads((Path(run_dir) / MANIFEST_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data.get(key) if isinstance(data, dict) else None


def check_merge_out(out_dir: Path, inputs: Sequence[Path]) -> None:
    """A merge writes only where nothing else lives: a missing or empty folder, or an earlier
    merge of the same runs (its merge.json lists them). Never one of the inputs, never
    inside one, never another run or someone's folder."""
    out = out_dir.resolve()
    for run in inputs:
        if out == run or run in out.parents:
            raise UserError(f"--out {out_dir} is (inside) the run {run} being merged; choose another folder")
    if not os.path.lexists(out_dir):
        return
    if not out_dir.is_dir():
        raise UserError(f"--out {out_dir} exists and is not a folder; choose another folder")
    if not any(out_dir.iterdir()):
        return
    try:
        earlier = json.loads((out_dir / MERGE_JSON).read_text())["merged_from"]
    except (OSError, ValueError, KeyError, TypeError):
        earlier = None
    if not isinstance(earlier, list) or sorted(map(str, earlier)) != sorted(str(p) for p in inputs):
        raise UserError(
            f"--out {out_dir} holds something other than an earlier merge of these runs (no matching "
            f"{MERGE_JSON}); refusing to overwrite it: choose an empty or new folder"
        )


def merge_runs(
    run_dirs: Sequence[Path], out_dir: Path, draw_plots: bool = True, baseline: Optional[str] = None
) -> list[Path]:
    """Check the runs can share a leaderboard, then write the merged run folder and its leaderboard.

    out_dir gets accuracy_long.csv, config.yaml and manifest.json (so it can be merged again or
    redrawn with ``python -m benchmark.reporting.reports``), the report and plots unless ``draw_plots`` is
    False, and leaderboard.csv/.md/.html. Raises UserError when the runs cannot be merged.
    """
    resolved = [Path(run_dir).resolve() for run_dir in run_dirs]
    repeated = next((path for index, path in enumerate(resolved) if path in resolved[:index]), None)
    if repeated:
        raise UserError(f"run {repeated} is given twice")
    check_merge_out(Path(out_dir), resolved)
    runs = [load_run(run_dir) for run_dir in run_dirs]
    check_mergeable(runs)
    out_dir = Path(out_dir)
    merged = merged_long(runs)
    resolve_baseline(baseline, table.methods_in_order(merged))  # refused before anything is written
    atomic_text(out_dir / rundir.LONG_CSV, merged.to_csv(index=False))
    config = merged_config(runs, out_dir.resolve().name)
    atomic_text(out_dir / CONFIG_YAML, yaml.safe_dump(config, sort_keys=False))
    manifest = merged_manifest(runs)
    atomic_text(out_dir / MANIFEST_JSON, json.dumps(manifest, indent=2))
    atomic_text(out_dir / MERGE_JSON, json.dumps({"merged_from": [str(p) for p in sorted(resolved)]}, indent=2))
    if draw_plots:
        reports.write_report(out_dir)
    failed = failed_runs_of(manifest["runs"])
    return write_leaderboard_files(
        out_dir, merged, failed, config["hparams"], baseline=baseline, scenario=manifest["scenario"]
    )
