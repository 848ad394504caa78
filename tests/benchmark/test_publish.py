"""Publishing reference results: a run's or a merged sweep's files, figures of the leaderboard's
rows only, pooled sweep provenance, and the README splice (benchmark/reporting/publish.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from benchmark.errors import UserError
from benchmark.reporting.drift_table import DRIFT_COLUMNS
from benchmark.reporting.leaderboard import write_leaderboard_files
from benchmark.reporting.publish import publish
from benchmark.rundir import FEATURE_DRIFT_CSV, safe_name

README = "# Project\n\nintro\n\n<!-- leaderboard:start -->\nold table\n<!-- leaderboard:end -->\n\nafter\n"


def long_frame(methods: dict[str, float]) -> pd.DataFrame:
    """One seed per method on shapes -> quadrants with colours held out; ``drop`` = its dLP."""
    rows = []
    for method, drop in methods.items():
        for stage, trained in ((0, "pretrained"), (1, "shapes"), (2, "quadrants")):
            for task in ("shapes", "quadrants"):
                rows.append((method, 0, stage, trained, task, "head", 40.0 + 20 * stage, "test"))
                rows.append((method, 0, stage, trained, task, "lp", 50.0 + 10 * stage, "test"))
            rows.append((method, 0, stage, trained, "colours", "lp", 80.0 - drop * stage / 2, "test"))
    columns = ["method", "seed", "stage", "trained_task", "eval_task", "kind", "accuracy", "split"]
    return pd.DataFrame(rows, columns=columns)


def drift_frame(methods: list[str]) -> pd.DataFrame:
    """feature_drift.csv of one seed per method: two layers, stage 0 pre-trained measures only."""
    rows = []
    for method in methods:
        for stage, trained in ((0, "pretrained"), (1, "shapes"), (2, "quadrants")):
            measures = ("dist_pretrained", "cka_pretrained") + ("dist_previous", "cka_previous") * (stage > 0)
            for task in ("shapes", "quadrants", "colours"):
                for layer in ("layer1", "layer2"):
                    for measure in measures:
                        value = (1.0 - 0.1 * stage) if measure.startswith("cka") else 0.01 * stage
                        rows.append((method, 0, stage, trained, task, layer, measure, value))
    return pd.DataFrame(rows, columns=list(DRIFT_COLUMNS))


def finished_folder(folder: Path, frame: pd.DataFrame, board_methods: list[str]) -> Path:
    folder.mkdir(parents=True)
    frame.to_csv(folder / "accuracy_long.csv", index=False)
    (folder / "summary.csv").write_text("method\n")
    write_leaderboard_files(folder, frame[frame["method"].isin(board_methods)])
    return folder


@pytest.fixture
def readme(tmp_path) -> Path:
    path = tmp_path / "README.md"
    path.write_text(README)
    return path


def test_run_is_published_and_spliced(tmp_path, readme):
    run = finished_folder(tmp_path / "run", long_frame({"finetune": 30.0, "ldifs": 10.0}), ["finetune", "ldifs"])
    (run / "config.yaml").write_text(
        f"# config hash: 0123456789\nseeds: [0]\nresults_dir: {tmp_path}/mine\ntrain:\n  lr: 0.001\n"
    )
    (run / "manifest.json").write_text('{"git_revision": "0123abc"}\n')
    dest = tmp_path / "docs" / "ref"
    publish(run, dest, readme)
    for name in ("accuracy_long.csv", "leaderboard.tex", "leaderboard_comparisons.csv"):
        assert (dest / name).read_bytes() == (run / name).read_bytes(), name
    config = (dest / "config.yaml").read_text()
    assert str(tmp_path) not in config and yaml.safe_load(config)["results_dir"] == "results"  # not the publisher's
    assert config.startswith("# config hash: 0123456789\nseeds: [0]\n") and config.endswith("train:\n  lr: 0.001\n")
    assert not (dest / "sweep.yaml").exists()
    assert sorted(p.name for p in (dest / "plots").iterdir()) == [
        "dlp_finetune.png",
        "dlp_ldifs.png",
        "forgetting_curve.png",
    ]
    text = readme.read_text()
    assert "old table" not in text and "| ldifs |" in text and text.endswith("after\n")
    assert f"from {dest}/leaderboard.md" in text


def test_feature_drift_is_published_with_its_figures_of_the_boards_methods(tmp_path):
    run = finished_folder(tmp_path / "run", long_frame({"finetune": 30.0}), ["finetune"])
    (run / "config.yaml").write_text("seeds: [0]\n")
    (run / "manifest.json").write_text('{"git_revision": "0123abc"}\n')
    drift_frame(["finetune", "l2sp"]).to_csv(run / FEATURE_DRIFT_CSV, index=False)  # l2sp: not on the board
    dest = tmp_path / "ref"
    publish(run, dest)
    assert (dest / FEATURE_DRIFT_CSV).read_bytes() == (run / FEATURE_DRIFT_CSV).read_bytes()
    assert sorted(p.name for p in (dest / "plots").iterdir()) == [
        "dlp_finetune.png",
        "drift_cka_finetune.png",
        "drift_last_stage.png",
        "forgetting_curve.png",
    ]
    assert set(json.loads((dest / "publish.json").read_text())["files"]) == {
        str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file() and p.name != "publish.json"
    }


def test_sweep_publishes_the_selected_rows_and_pooled_provenance(tmp_path, readme):
    frame = long_frame({"ewc[ewc.ewc_lambda=1]": 30.0, "ewc[ewc.ewc_lambda=100]": 10.0, "finetune": 28.0})
    sweep = finished_folder(tmp_path / "sweep", frame, ["ewc[ewc.ewc_lambda=100]", "finetune"])
    (sweep / "selection.csv").write_text("method,selected\n")
    sweep_file = tmp_path / "grid.yaml"  # where the sweep file was: publish copies the sweep's own copy
    sweep_file.write_text("name: moved on since\n")
    (sweep / "sweep.yaml").write_text("name: grid\n")
    cells = []
    for key, seconds, revision in (("aa", 10.0, "r1"), ("bb", 20.5, "r1"), ("cc", 0.0, "r1")):
        complete = key != "cc"
        if complete:
            (sweep / "cells" / key).mkdir(parents=True)
            manifest = {"wall_seconds": seconds, "git_revision": revision, "device_name": "cpu", "versions": {"x": 1}}
            (sweep / "cells" / key / "manifest.json").write_text(json.dumps(manifest))
        # folders as the sweep wrote them where it ran: publishing finds the cells beside sweep.json
        status = "complete" if complete else "failed"
        cells.append({"key": key, "status": status, "folder": f"/elsewhere/cells/{key}"})
    payload = {"name": "grid", "source": str(sweep_file), "select": "val_last_head", "cells": cells}
    payload["invocations"] = [{"started_utc": "2026-01-01T00:00:00+00:00", "wall_seconds": 12.0, "cells_run": 2}]
    (sweep / "sweep.json").write_text(json.dumps(payload))
    dest = tmp_path / "ref"
    run = finished_folder(tmp_path / "run", long_frame({"finetune": 30.0}), ["finetune"])
    (run / "config.yaml").write_text("seeds: [0]\n")
    (run / "manifest.json").write_text('{"git_revision": "0123abc"}\n')
    publish(run, dest)  # a run published here before
    publish(sweep, dest, readme)
    assert not (dest / "config.yaml").exists()  # a stale run config must not describe the sweep
    assert (dest / "sweep.yaml").read_text() == "name: grid\n" and (dest / "selection.csv").is_file()
    assert (dest / "leaderboard.tex").is_file() and (dest / "leaderboard_comparisons.csv").is_file()
    manifest = json.loads((dest / "manifest.json").read_text())
    assert manifest["cells"] == 3 and manifest["cells_complete"] == 2
    assert manifest["cell_wall_seconds_total"] == 30.5 and manifest["git_revisions"] == ["r1"]
    assert manifest["invocations"] == payload["invocations"]
    assert set(json.loads((dest / "publish.json").read_text())["files"]) == {
        str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file() and p.name != "publish.json"
    }
    chosen = f"dlp_{safe_name('ewc[ewc.ewc_lambda=100]')}.png"  # the setting val chose, not the other one
    assert sorted(p.name for p in (dest / "plots").iterdir()) == sorted(
        [chosen, "dlp_finetune.png", "forgetting_curve.png"]
    )


def test_an_unfinished_folder_is_refused(tmp_path, readme):
    (tmp_path / "half").mkdir()
    with pytest.raises(UserError, match="no leaderboard.md"):
        publish(tmp_path / "half", tmp_path / "dest", readme)
    assert readme.read_text() == README and not (tmp_path / "dest").exists()


@pytest.mark.parametrize("revision", ["0123abc-dirty", "unknown", ""])
def test_a_run_no_commit_describes_is_not_published(tmp_path, readme, revision):
    run = finished_folder(tmp_path / "run", long_frame({"finetune": 30.0}), ["finetune"])
    (run / "config.yaml").write_text("seeds: [0]\n")
    (run / "manifest.json").write_text(json.dumps({"git_revision": revision}) + "\n")
    before = readme.read_text()
    with pytest.raises(UserError, match="no commit describes"):
        publish(run, tmp_path / "docs" / "ref", readme)
    assert not (tmp_path / "docs").exists() and readme.read_text() == before
