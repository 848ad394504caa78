"""What a run may touch: a run name is one safe folder name, and the suite replaces or
removes only folders that hold a run of the same config (benchmark.rundir.RunDir)."""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path

import pytest

from benchmark.config import config_hash, dump_yaml
from benchmark.errors import UserError
from benchmark.run.runner import run
from benchmark.rundir import RunDir, check_run_name
from run_benchmark import main


def snapshot(top: Path) -> dict[str, str]:
    """Every path under ``top`` with a digest of its content (folders and links included)."""
    out = {}
    for path in sorted(top.rglob("*")):
        rel = str(path.relative_to(top))
        if path.is_symlink():
            out[rel] = "link:" + str(path.readlink())
        elif path.is_dir():
            out[rel] = "dir"
        else:
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def surroundings(tmp_path: Path) -> Path:
    """A results folder R inside a parent holding a sibling and a user's own folder in R."""
    top = tmp_path / "top"
    (top / "sibling").mkdir(parents=True)
    (top / "sibling" / "thesis.tex").write_text("years of work\n")
    results = top / "parent" / "R"
    (results / "mydata").mkdir(parents=True)
    (results / "mydata" / "notes.txt").write_text("not a run\n")
    (results / "a_file").write_text("a file\n")
    (top / "parent" / "other.txt").write_text("beside R\n")
    return top


@pytest.mark.parametrize("name", [".", "..", "../../escape", "/tmp/absolute-run", "a/b", "", "-x", "x y", "é"])
def test_unsafe_names_are_refused(name):
    if name == "":
        return  # empty means the default name, tested by every run
    with pytest.raises(UserError, match="not a valid name"):
        check_run_name(name)


@pytest.mark.parametrize(
    "args",
    [
        ["--name", "."],
        ["--name", ".."],
        ["--name", "../../escape"],
        ["--name", "/ABS/absolute-run"],
        ["--name", "mydata"],
        ["--name", "mydata", "--fresh"],
        ["--name", "a_file"],
        ["--sequence", "{seq}"],
    ],
)
def test_hostile_names_exit_2_and_touch_nothing(args, tmp_path, micro_cfg, capsys):
    top = surroundings(tmp_path)
    results = top / "parent" / "R"
    seq = tmp_path / "escape_seq.yaml"
    seq.write_text("name: ../../x\nstages: [shapes]\n")
    micro_cfg.results_dir = str(results)
    cfg_file = tmp_path / "cfg.yaml"
    cfg_file.write_text(dump_yaml(micro_cfg))
    args = [a.replace("{seq}", str(seq)).replace("/ABS", str(tmp_path)) for a in args]
    before = snapshot(top)
    assert main(["--config", str(cfg_file), "-q", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    assert snapshot(top) == before
    assert not (tmp_path / "absolute-run").exists()


def test_a_run_of_another_config_is_kept_and_the_new_one_goes_beside_it(tmp_path, micro_cfg):
    results = tmp_path / "R"
    other = results / "trusted"
    other.mkdir(parents=True)
    micro_cfg.results_dir, micro_cfg.name = str(results), "trusted"
    theirs = copy.deepcopy(micro_cfg)
    theirs.seeds = [7]
    (other / "config.yaml").write_text(dump_yaml(theirs))
    (other / "accuracy_long.csv").write_text("their results\n")
    before = snapshot(other)
    rd = RunDir(results, "trusted")
    with pytest.raises(UserError, match="does not hold a run of this config"):
        rd.remove(rd.path, config_hash(micro_cfg))
    micro_cfg.methods = ["zeroshot"]
    out = run(micro_cfg, progress=False, fresh=True)  # --fresh discards only this config's work
    assert out.name == f"trusted-{config_hash(micro_cfg)}"
    assert snapshot(other) == before


def test_fresh_replaces_a_run_of_the_same_config(tmp_path, micro_cfg):
    micro_cfg.results_dir, micro_cfg.name, micro_cfg.methods = str(tmp_path / "R"), "same", ["zeroshot"]
    first = run(micro_cfg, progress=False)
    stamp = (first / "manifest.json").stat().st_mtime_ns
    again = run(micro_cfg, progress=False, fresh=True)
    assert again == first and (again / "manifest.json").stat().st_mtime_ns != stamp


def test_paths_stay_inside_the_results_folder(tmp_path):
    results = tmp_path / "R"
    results.mkdir()
    (tmp_path / "elsewhere").mkdir()
    (results / "link").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(UserError, match="outside the results directory"):
        RunDir(results, "link")
    rd = RunDir(results, "ok")
    assert rd.staging.name == ".ok.partial" and rd.lock_path.name == ".ok.lock" and rd.title == "ok"


def test_a_symlinked_lock_file_is_refused_and_its_target_kept(tmp_path):
    target = tmp_path / "precious.txt"
    target.write_text("keep me\n")
    (tmp_path / ".run.lock").symlink_to(target)
    with pytest.raises(UserError, match="cannot use the lock file"):
        with RunDir(tmp_path, "run").lock():
            pass
    assert target.read_text() == "keep me\n" and (tmp_path / ".run.lock").is_symlink()
