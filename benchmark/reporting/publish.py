"""Publish a finished run or a merged sweep as the committed reference results, and (with
``--readme PATH``) splice its leaderboard into that README, so the numbers a README shows
are written by the suite, never typed.

    python -m benchmark.reporting.publish results/embedded_tuned docs/reference/embedded-tuned --readme docs/embedded_default.md

Nothing is written until everything is checked (the source is complete, its sweep.json is
valid, every file copied lies inside the source folder, DEST is new, empty or an earlier
publication). The publication is built in a staging folder beside DEST and swapped in at
the end, so a failure at any point leaves DEST as it was. DEST is only ever replaced when
it is an earlier publication: its ``publish.json`` lists its files and nothing else is in it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Optional

import pandas as pd

from benchmark.errors import OneLineParser, UserError, command
from benchmark.files import COMPONENT_RULE, atomic_text, check_replaceable_file, read_text_file
from benchmark.reporting import table
from benchmark.reporting.leaderboard_render import COMPARISONS_CSV, LEADERBOARD_TEX
from benchmark.rundir import FEATURE_DRIFT_CSV

RUN_FILES = ["config.yaml", "manifest.json", "accuracy_long.csv", "summary.csv", "leaderboard.csv", "leaderboard.md"]
# A sweep's merged folder: its config is the sweep file (the copy the sweep keeps as
# sweep.yaml beside sweep.json) and its manifest is pooled from the cells' own.
SWEEP_FILES = ["accuracy_long.csv", "summary.csv", "leaderboard.csv", "leaderboard.md"]
SWEEP_OPTIONAL = ["selection.csv", "selection.md", "selected_config.yaml"]  # sweeps with select:
# Copied when the source has them (runs and merged sweeps): the LaTeX table and the paired
# comparisons (leaderboards written since they gained them), and the per-layer feature drift
# (a run with eval.drift_images > 0).
OPTIONAL = [LEADERBOARD_TEX, COMPARISONS_CSV, FEATURE_DRIFT_CSV]
SWEEP_SOURCE = "sweep.yaml"  # the sweep file as run, kept in the sweep folder (benchmark/run/sweep.py)
PLOTS = "plots"
MARKER = "publish.json"  # marks a folder written by publish: what it holds
START, END = "<!-- leaderboard:start -->", "<!-- leaderboard:end -->"
COMPONENT = re.compile(COMPONENT_RULE)  # a cell key is one folder name under cells/


def publish(run_dir: Path, dest: Path, readme: Optional[Path] = None) -> None:
    """Copy a finished run's (or merged sweep's) results to ``dest``; with ``readme``, splice
    its leaderboard into that file. Checks everything before writing anything."""
    run_dir, dest = Path(run_dir), Path(dest)
    _check_source(run_dir)
    status = _sweep_status(run_dir)
    names = RUN_FILES if status is None else SWEEP_FILES + [n for n in SWEEP_OPTIONAL if (run_dir / n).is_file()]
    names = names + [n for n in OPTIONAL if (run_dir / n).is_file()]
    sources = {name: _inside(run_dir / name, run_dir) for name in names}
    if status is not None:
        sources["sweep.yaml"] = _inside(status["folder"] / SWEEP_SOURCE, status["folder"])
    _check_dest(dest, run_dir, status)
    _check_traceable(run_dir, status)
    board = read_text_file(run_dir / "leaderboard.md", "leaderboard")
    if readme is not None:
        _check_readme(Path(readme))
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.publishing-", dir=_parent_of(dest)))
    try:
        for name, source in sources.items():
            shutil.copyfile(source, staging / name)
        if "config.yaml" in sources:
            _default_results_dir(staging / "config.yaml")
        if status is not None:
            atomic_text(staging / "manifest.json", json.dumps(_pooled_manifest(status), indent=2) + "\n")
        _draw_figures(run_dir, staging / PLOTS)
        listing = sorted(sources) + ["manifest.json"] * (status is not None)
        listing += [f"{PLOTS}/{p.name}" for p in sorted((staging / PLOTS).iterdir())]
        atomic_text(
            staging / MARKER,
            json.dumps({"published_from": run_dir.name, "files": sorted(set(listing))}, indent=2) + "\n",
        )
        os.chmod(staging, 0o755)  # mkdtemp makes an owner-only folder; a publication is meant to be shared
        _swap(staging, dest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if readme is not None:
        _splice(Path(readme), board, dest)


RESULTS_DIR_LINE = re.compile(r"^results_dir: .*$", re.MULTILINE)


def _default_results_dir(config: Path) -> None:
    """The published config names the default results folder, not the publisher's own (a local
    path; rerunning the published config would write there). ``results_dir`` is not part of
    the config hash, so the file's hash line still describes it."""
    text = config.read_text(encoding="utf-8")
    config.write_text(
        RESULTS_DIR_LINE.sub("results_dir: results  # the default; where the publisher ran it is not kept", text),
        encoding="utf-8",
    )


# ----------------------------------------------------------------------------- checks


def _check_source(run_dir: Path) -> None:
    if not run_dir.is_dir():
        raise UserError(f"{run_dir} is not a folder: publish a finished run or a merged sweep")
    if not (run_dir / "leaderboard.md").is_file():
        raise UserError(f"{run_dir} is not a finished run or merged sweep (no leaderboard.md)")


def _check_traceable(run_dir: Path, status: Optional[dict[str, Any]]) -> None:
    """A publication's numbers must trace to a commit: refuse runs made from a checkout with
    uncommitted changes ('-dirty') or outside git ('unknown')."""
    if status is None:
        path = run_dir / "manifest.json"
        try:
            revisions = [str(json.loads(read_text_file(path, "manifest")).get("git_revision", ""))]
        except (ValueError, AttributeError):
            raise UserError(f"{path} is not a valid manifest; re-run, then publish") from None
    else:
        revisions = _pooled_manifest(status)["git_revisions"]
    untraceable = [r for r in revisions if r.endswith("-dirty") or r in ("", "unknown")]
    if untraceable:
        raise UserError(
            f"{run_dir} was made from a checkout that no commit describes (git revision "
            f"{', '.join(sorted(set(untraceable)))!s}); commit, re-run, then publish"
        )


def _inside(path: Path, folder: Path) -> Path:
    """``path`` when it is a regular file resolving inside ``folder``; else one line naming it."""
    if not path.is_file():
        hint = "; re-run the sweep with --merge-only to keep it" if path.name == SWEEP_SOURCE else ""
        raise UserError(f"{folder} lacks {path.name}: publish a finished run or a merged sweep{hint}")
    if folder.resolve() not in path.resolve().parents:
        raise UserError(f"{path} resolves outside {folder}; refusing to publish it")
    return path


def _sweep_status(run_dir: Path) -> Optional[dict[str, Any]]:
    """A merged sweep's sweep.json (of the folder itself, or of its parent when the grid
    varied the sequence), checked; None for a run (a sweep's cell included: it has a config)."""
    if (run_dir / "config.yaml").is_file():
        return None
    for folder in (run_dir, run_dir.parent):
        path = folder / "sweep.json"
        if path.is_file():
            try:
                status = json.loads(read_text_file(path, "sweep.json"))
            except ValueError as e:
                raise UserError(f"{path} is not valid JSON ({e}); re-run the sweep with --merge-only") from None
            return {**_checked_status(status, path), "folder": folder}
    return None


def _checked_status(status: Any, path: Path) -> dict[str, Any]:
    """sweep.json's shape: a name and a non-empty list of cells, each with a hash key and a status."""
    if not isinstance(status, dict) or not isinstance(status.get("name"), str):
        raise UserError(f"{path} is not a sweep's sweep.json (no name); re-run the sweep with --merge-only")
    cells = status.get("cells")
    if not isinstance(cells, list) or not cells:
        raise UserError(f"{path} lists no cells; re-run the sweep with --merge-only")
    for cell in cells:
        if not isinstance(cell, dict) or not COMPONENT.fullmatch(str(cell.get("key", ""))):
            raise UserError(f"{path}: a cell entry {str(cell)[:80]!r} has no valid key; re-run with --merge-only")
    return status


def _parent_of(dest: Path) -> Path:
    parent = dest.absolute().parent
    if not parent.is_dir():
        what = "does not exist" if not parent.exists() else "is not a folder"
        if not parent.exists():
            for above in parent.parents:  # a parent that is a file: say which
                if above.exists():
                    what = "is under a file" if not above.is_dir() else what
                    break
        if what == "does not exist":
            parent.mkdir(parents=True)
            return parent
        raise UserError(f"cannot publish into {dest}: its parent {parent} {what}")
    return parent


def _check_dest(dest: Path, run_dir: Path, status: Optional[dict[str, Any]]) -> None:
    """DEST is new, an empty folder, or an earlier publication (its publish.json lists every
    file in it), and neither inside nor around the source."""
    source = (status["folder"] if status else run_dir).resolve()
    target = dest.resolve()
    if target == source or source in target.parents or target in source.parents or target == run_dir.resolve():
        raise UserError(f"cannot publish {run_dir} into {dest}: one holds the other; choose a folder outside the run")
    if dest.is_symlink():
        raise UserError(f"destination {dest} is a symbolic link; give the folder itself")
    if not os.path.lexists(dest):
        return
    if not dest.is_dir():
        raise UserError(f"destination {dest} is not a folder")
    present = {str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_symlink() or not p.is_dir()}
    if not present:
        return
    listed = _earlier_publication(dest)
    if listed is None:
        raise UserError(
            f"destination {dest} holds files that are not an earlier publication (no {MARKER}); "
            "choose a new or empty folder (nothing was changed)"
        )
    extra = sorted(present - listed - {MARKER})
    if extra:
        raise UserError(
            f"destination {dest} holds {extra[0]!r}, which the earlier publication did not write; "
            "move it away or choose another folder (nothing was changed)"
        )


def _earlier_publication(dest: Path) -> Optional[set[str]]:
    try:
        marker = json.loads(read_text_file(dest / MARKER, MARKER))
        files = marker["files"]
        return {str(f) for f in files} if isinstance(files, list) else None
    except (UserError, ValueError, KeyError, TypeError):
        return None


def _check_readme(readme: Path) -> None:
    """The README is a regular file (not a link: never followed, never cut) holding one
    START marker before one END marker: anything else would be a success that changed nothing."""
    check_replaceable_file(readme, "README")
    text = read_text_file(readme, "README")
    if START not in text or END not in text:
        raise UserError(f"{readme} has no {START} ... {END} markers")
    if text.count(START) > 1 or text.count(END) > 1:
        raise UserError(f"{readme} has more than one {START} or {END} marker; keep one of each")
    if text.index(END) < text.index(START):
        raise UserError(f"{readme} has its {END} marker before its {START} marker; put start first")


# ----------------------------------------------------------------------------- writing


def _swap(staging: Path, dest: Path) -> None:
    """Put the finished publication in place: the earlier one (checked above) moves aside
    first, so a failure in between leaves one of the two complete."""
    old = None
    if dest.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old-", dir=dest.parent))
        dest.rename(old / "publication")
    try:
        staging.rename(dest)
    except BaseException:
        if old is not None:
            (old / "publication").rename(dest)
        raise
    if old is not None:
        shutil.rmtree(old)


def _draw_figures(run_dir: Path, plot_dir: Path) -> None:
    """The concept-forgetting figures of the leaderboard's rows, drawn from the CSV: every other
    figure (and every setting a sweep did not select) is regenerable with
    ``python -m benchmark.reporting.reports`` and would bloat the repository."""
    from benchmark.reporting import plots
    from benchmark.reporting.drift_plots import plot_cka_heatmaps, plot_last_stage_panels
    from benchmark.reporting.drift_table import load_drift_csv

    try:
        board = pd.read_csv(run_dir / "leaderboard.csv")
        df = table.load_long_csv(run_dir / "accuracy_long.csv")
        labels = {str(m) for m in board["method"]}
        # a run's board labels a method by the setting it ran (ldifs[alpha=100]); its CSV by name
        df = df[df["method"].isin(labels | {m.split("[", 1)[0] for m in labels})]
    except (ValueError, KeyError) as e:
        raise UserError(f"{run_dir}: cannot read its leaderboard.csv or accuracy_long.csv ({e})") from None
    plot_dir.mkdir()
    with tempfile.TemporaryDirectory() as scratch:  # PNGs only: the SVGs are for papers, not the README
        drawn = plots.plot_concept_forgetting_heatmaps(df, Path(scratch)) + plots.plot_forgetting_curve(
            df, Path(scratch)
        )
        if (run_dir / FEATURE_DRIFT_CSV).is_file():  # where each method's encoder moved (docs/feature_drift.md)
            drift = load_drift_csv(run_dir / FEATURE_DRIFT_CSV)
            shown = {str(m).split("[", 1)[0] for m in board["method"]}  # a run's board labels ldifs[alpha=100]
            drift = drift[drift["method"].isin(shown)]
            if len(drift):  # the heatmap of each method, and the methods side by side after the last stage
                drawn += plot_cka_heatmaps(drift, Path(scratch)) + plot_last_stage_panels(drift, Path(scratch))
        for path in drawn:
            if path.suffix == ".png":
                shutil.copyfile(path, plot_dir / path.name)


def _pooled_manifest(status: dict[str, Any]) -> dict[str, Any]:
    """What the cells' manifests say, pooled (revisions, versions, devices, summed cell time).
    Each cell's manifest is read from the sweep folder's own ``cells/<key>/`` only: a path
    recorded in sweep.json is never followed."""
    manifests = []
    for cell in status["cells"]:
        path = status["folder"] / "cells" / cell["key"] / "manifest.json"
        if cell.get("status") == "complete" and path.is_file() and not path.is_symlink():
            try:
                manifest = json.loads(read_text_file(path, "cell manifest"))
            except ValueError:
                raise UserError(f"{path} is not valid JSON; re-run that cell") from None
            manifests.append(manifest if isinstance(manifest, dict) else {})
    return {
        "sweep": status["name"],
        "sweep_file": str(status.get("source", "")),
        "select": status.get("select"),
        "cells": len(status["cells"]),
        "cells_complete": len(manifests),
        "cell_wall_seconds_total": round(sum(float(m.get("wall_seconds", 0.0)) for m in manifests), 1),
        "git_revisions": sorted({str(m.get("git_revision", "")) for m in manifests}),
        "device_names": sorted({str(m.get("device_name", "")) for m in manifests}),
        "invocations": status.get("invocations", []),  # each sweep command: start, wall time, cells run
        "versions": [
            json.loads(v) for v in sorted({json.dumps(m.get("versions", {}), sort_keys=True) for m in manifests})
        ],
    }


def _splice(readme: Path, board: str, dest: Path) -> None:
    _check_readme(readme)  # again, just before the write; atomic_text keeps the file's mode
    text = read_text_file(readme, "README")
    body = (
        f"{START}\n<!-- generated by `python -m benchmark.reporting.publish`, from {dest}/leaderboard.md -->\n\n"
        f"{_demote_headings(board).strip()}\n\n{END}"
    )
    atomic_text(readme, re.sub(re.escape(START) + ".*?" + re.escape(END), lambda _: body, text, flags=re.S))


def _demote_headings(markdown: str) -> str:
    return re.sub(r"^(#+) ", lambda m: "#" * (len(m.group(1)) + 2) + " ", markdown, flags=re.M)


@command
def main(argv: list[str]) -> int:
    parser = OneLineParser(prog="python -m benchmark.reporting.publish", description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", help="a finished run's folder or a merged sweep's folder")
    parser.add_argument("dest", help="the publication folder: new, empty or an earlier publication")
    parser.add_argument("--readme", help="also splice the leaderboard into this file's leaderboard markers")
    args = parser.parse_args(argv)
    publish(Path(args.run_dir), Path(args.dest), Path(args.readme) if args.readme else None)
    print(f"published {args.run_dir} to {args.dest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())  # type: ignore[call-arg]
