"""Publish a finished run or a merged sweep as the committed reference results, and splice
its leaderboard into README.md, so the numbers the README shows are written by the suite,
never typed.

    python -m benchmark.reporting.publish results/embedded_tuned docs/reference/embedded-tuned
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Optional

import pandas as pd

from benchmark.errors import UserError
from benchmark.files import atomic_text
from benchmark.reporting import table

RUN_FILES = ["config.yaml", "manifest.json", "accuracy_long.csv", "summary.csv", "leaderboard.csv", "leaderboard.md"]
# A sweep's merged folder: its config is the sweep file (copied as sweep.yaml) and its
# manifest is pooled from the cells' own (_publish_sweep_provenance).
SWEEP_FILES = ["accuracy_long.csv", "summary.csv", "leaderboard.csv", "leaderboard.md"]
SWEEP_OPTIONAL = ["selection.csv", "selection.md", "selected_config.yaml"]  # sweeps with select:
ALL_FILES = {*RUN_FILES, *SWEEP_FILES, *SWEEP_OPTIONAL, "sweep.yaml"}  # what publishing may replace in dest
START, END = "<!-- leaderboard:start -->", "<!-- leaderboard:end -->"


def publish(run_dir: Path, dest: Path, readme: Path) -> None:
    """Copy a finished run's (or merged sweep's) results to ``dest`` and splice its leaderboard into ``readme``."""
    if not (run_dir / "leaderboard.md").is_file():
        raise UserError(f"{run_dir} is not a finished run or merged sweep (no leaderboard.md)")
    sweep_json = _sweep_json(run_dir)
    if dest.exists() and not dest.is_dir():
        raise UserError(f"destination {dest} is not a folder")
    dest.mkdir(parents=True, exist_ok=True)
    for name in ALL_FILES:  # the previous publication's files: a run's config must not sit beside a sweep's
        (dest / name).unlink(missing_ok=True)
    if sweep_json is None:
        _copy(run_dir, dest, RUN_FILES)
    else:
        _copy(run_dir, dest, SWEEP_FILES + [n for n in SWEEP_OPTIONAL if (run_dir / n).is_file()])
        _publish_sweep_provenance(sweep_json, dest)
    _draw_figures(run_dir, dest / "plots")
    _splice(readme, (run_dir / "leaderboard.md").read_text(), dest)


def _sweep_json(run_dir: Path) -> Optional[Path]:
    """The sweep.json of a merged sweep folder (or of its parent, when the grid varied the sequence)."""
    if (run_dir / "config.yaml").is_file():  # a run (a sweep's cell included) has its own config
        return None
    for folder in (run_dir, run_dir.parent):
        if (folder / "sweep.json").is_file():
            return folder / "sweep.json"
    return None


def _copy(run_dir: Path, dest: Path, names: list[str]) -> None:
    missing = [name for name in names if not (run_dir / name).is_file()]
    if missing:
        raise UserError(f"{run_dir} lacks {missing[0]}: publish a finished run or a merged sweep")
    for name in names:
        shutil.copy2(run_dir / name, dest / name)


def _draw_figures(run_dir: Path, plot_dir: Path) -> None:
    """The concept-forgetting figures of the leaderboard's rows, drawn from the CSV: every other
    figure (and every setting a sweep did not select) is regenerable with
    ``python -m benchmark.reporting.reports`` and would bloat the repository."""
    from benchmark.reporting import plots

    board = pd.read_csv(run_dir / "leaderboard.csv")
    df = table.load_long_csv(run_dir / "accuracy_long.csv")
    df = df[df["method"].isin(set(board["method"]))]
    shutil.rmtree(plot_dir, ignore_errors=True)
    plot_dir.mkdir()
    with tempfile.TemporaryDirectory() as scratch:  # PNGs only: the SVGs are for papers, not the README
        drawn = plots.plot_concept_forgetting_heatmaps(df, Path(scratch)) + plots.plot_forgetting_curve(
            df, Path(scratch)
        )
        for path in drawn:
            if path.suffix == ".png":
                shutil.copy2(path, plot_dir / path.name)


def _publish_sweep_provenance(sweep_json: Path, dest: Path) -> None:
    """sweep.yaml (the sweep file as run) and manifest.json: what the cells' manifests say,
    pooled (revisions, versions, devices, summed cell time)."""
    status = json.loads(sweep_json.read_text())
    source = Path(status.get("source", ""))
    if source.is_file():
        shutil.copy2(source, dest / "sweep.yaml")
    manifests = []
    for cell in status["cells"]:
        path = Path(cell["folder"]) / "manifest.json"
        if not path.is_file():  # the sweep folder was moved since it ran
            path = sweep_json.parent / "cells" / cell["key"] / "manifest.json"
        if cell["status"] == "complete" and path.is_file():
            manifests.append(json.loads(path.read_text()))
    pooled = {
        "sweep": status["name"],
        "sweep_file": str(source),
        "select": status.get("select"),
        "cells": len(status["cells"]),
        "cells_complete": len(manifests),
        "cell_wall_seconds_total": round(sum(m.get("wall_seconds", 0.0) for m in manifests), 1),
        "git_revisions": sorted({m.get("git_revision", "") for m in manifests}),
        "device_names": sorted({m.get("device_name", "") for m in manifests}),
        "invocations": status.get("invocations", []),  # each sweep command: start, wall time, cells run
        "versions": [
            json.loads(v) for v in sorted({json.dumps(m.get("versions", {}), sort_keys=True) for m in manifests})
        ],
    }
    atomic_text(dest / "manifest.json", json.dumps(pooled, indent=2) + "\n")


def _splice(readme: Path, board: str, dest: Path) -> None:
    text = readme.read_text()
    if START not in text or END not in text:
        raise UserError(f"{readme} has no {START} ... {END} markers")
    body = (
        f"{START}\n<!-- generated by `python -m benchmark.reporting.publish`, from {dest}/leaderboard.md -->\n\n"
        f"{_demote_headings(board).strip()}\n\n{END}"
    )
    readme.write_text(re.sub(re.escape(START) + ".*?" + re.escape(END), lambda _: body, text, flags=re.S))


def _demote_headings(markdown: str) -> str:
    return re.sub(r"^(#+) ", lambda m: "#" * (len(m.group(1)) + 2) + " ", markdown, flags=re.M)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m benchmark.reporting.publish RUN_DIR DEST_DIR", file=sys.stderr)
        return 2
    try:
        publish(Path(args[0]), Path(args[1]), Path(__file__).resolve().parents[2] / "README.md")
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
