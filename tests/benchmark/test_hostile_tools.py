"""Hostile inputs to the tools around a run (pretrain, gpu_check, criterion, publish --readme,
the run index) and to class-incremental files, as tables: each case is one line on stderr
and exit code 2 (or a correct success), and a before/after snapshot of the test's folder
shows nothing outside the case's own output changed. Every main runs in-process; nothing
pretrains (pretrain's cache is replaced by a two-tensor state) and no GPU step runs."""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
import torch
from test_hostile_inputs import assert_one_line, changed_outside, snapshot

from benchmark.errors import UserError, command
from benchmark.models import pretrain
from benchmark.reporting import criterion
from benchmark.run.index import INDEX_CSV, read_index, record_run
from benchmark.tools import gpu_check


def _file(path: Path, text: str = "mine\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _thesis(tmp: Path) -> Path:
    _file(tmp / "out" / "thesis.tex", "\\chapter{years of work}\n")
    return tmp / "out"


# ----------------------------------------------------------------------------- pretrain --out


@pytest.fixture
def no_pretraining(monkeypatch, tmp_path):
    """pretrain's cache entry, faked: export reads a two-tensor state instead of pretraining."""
    cached = tmp_path / "cache-entry"
    cached.mkdir()
    torch.save({"w": torch.zeros(2), "b": torch.ones(1)}, cached / pretrain.WEIGHTS)
    monkeypatch.setattr(pretrain, "ensure_pretrained", lambda *a, **k: cached)
    monkeypatch.setattr(pretrain, "cache_key", lambda cfg: f"{cfg.name}-test")  # no open_clip import
    return cached


def _exported(tmp: Path) -> Path:
    """A folder an earlier ``pretrain --out`` wrote (its record and nothing else)."""
    out = tmp / "out"
    out.mkdir()
    for name in pretrain.SHIPPED_FILES:
        _file(out / name, "{}")
    (out / pretrain.RECORD).write_text(json.dumps({"model": "tiny-rn", "cache_key": "k", "sha256": "0"}))
    return out


def _link_to_folder(tmp: Path) -> Path:
    (tmp / "real").mkdir()
    (tmp / "out").symlink_to(tmp / "real")
    return tmp / "out"


# (id, setup(tmp) -> the --out path, expected part of the one line)
PRETRAIN_OUT = [
    ("user-folder", _thesis, "holds files pretrain --out did not write ('thesis.tex')"),
    ("a-file", lambda t: _file(t / "out"), "is a file, not a folder"),
    ("under-a-file", lambda t: _file(t / "f") / "out", "which is a file"),
    ("a-link", _link_to_folder, "is a symbolic link"),
    ("earlier-export-plus-a-user-file", lambda t: _file(_exported(t) / "notes.md").parent, "'notes.md'"),
    ("fake-record", lambda t: _file(t / "out" / pretrain.RECORD, "not json").parent, "did not write"),
]


@pytest.mark.parametrize("case_id,setup,message", PRETRAIN_OUT, ids=[c[0] for c in PRETRAIN_OUT])
def test_pretrain_out_never_replaces_what_it_did_not_write(case_id, setup, message, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(pretrain, "ensure_pretrained", lambda *a, **k: pytest.fail("pretrained before --out"))
    out = setup(tmp_path)
    before = snapshot(tmp_path)
    code = pretrain.main(["--out", str(out)])
    assert_one_line(code, capsys.readouterr().err, 2, message)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("earlier", [False, True], ids=["new-folder", "earlier-export"])
def test_pretrain_out_writes_a_new_folder_or_replaces_its_own(earlier, tmp_path, capsys, no_pretraining):
    out = _exported(tmp_path) if earlier else tmp_path / "out"
    _file(tmp_path / "beside.txt")
    before = snapshot(tmp_path)
    assert pretrain.main(["--out", str(out)]) == 0, capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == sorted(pretrain.SHIPPED_FILES)
    assert pretrain.is_record(json.loads((out / pretrain.RECORD).read_text()))
    assert not changed_outside(before, snapshot(tmp_path), out)
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]  # no staging folder left
    assert out.stat().st_mode & 0o777 == 0o755  # a model folder is shared, not owner-only


# ----------------------------------------------------------------------------- the shipped record


def _shipped_copy(tmp: Path, monkeypatch, damage: Callable[[Path], None]) -> Path:
    folder = tmp / "weights" / "tiny-rn"
    shutil.copytree(pretrain.SHIPPED / "tiny-rn", folder)
    damage(folder / pretrain.RECORD)
    monkeypatch.setattr(pretrain, "SHIPPED", tmp / "weights")
    return folder


RECORD_DAMAGE = [
    ("deleted", lambda p: p.unlink(), "is missing"),
    ("not-json", lambda p: p.write_text("{half"), "is unreadable (not valid JSON)"),
    ("binary", lambda p: p.write_bytes(b"\x00\xff" * 9), "is unreadable"),
    ("a-list", lambda p: p.write_text("[1]"), "is unreadable (not a JSON object)"),
]


@pytest.mark.parametrize("case_id,damage,message", RECORD_DAMAGE, ids=[c[0] for c in RECORD_DAMAGE])
def test_a_lost_record_is_one_line_never_a_silent_pretraining(case_id, damage, message, tmp_path, capsys, monkeypatch):
    from run_benchmark import main

    _shipped_copy(tmp_path, monkeypatch, damage)
    monkeypatch.setattr(pretrain, "pretrain", lambda *a, **k: pytest.fail("the run pretrained its own model"))
    assert_one_line(pretrain.main(["--check"]), capsys.readouterr().err, 2, message)  # not "does not match"
    results = tmp_path / "results"
    code = main(["-q", "--results-dir", str(results), "--model.cache_dir", str(tmp_path / "cache")])
    err = capsys.readouterr().err
    assert_one_line(code, err, 2, message)
    assert "git checkout" in err and "python -m benchmark.models.pretrain" in err
    assert not results.exists() and not (tmp_path / "cache").exists()  # before any work


# ----------------------------------------------------------------------------- the run index


def _index_cases() -> list[tuple[str, bytes]]:
    good = b"folder,name,status\nold-run,old,complete\n"
    return [
        ("non-utf8-byte", good + b"caf\xe9-run,x,complete\n"),
        ("binary", b"\x89PNG\r\n\x1a\n\x00\x00" * 50),
        ("not-an-index", b"just,some,columns\n1,2,3\n"),
    ]


@pytest.mark.parametrize("case_id,data", _index_cases(), ids=[c[0] for c in _index_cases()])
def test_a_damaged_index_is_moved_aside_never_rewritten_from_nothing(case_id, data, tmp_path, caplog):
    results = tmp_path / "results"
    _file(results / INDEX_CSV).write_bytes(data)
    with caplog.at_level(logging.WARNING):
        record_run(results, {"folder": "new-run", "status": "complete"})
    (aside,) = results.glob(f"{INDEX_CSV}.damaged-*")
    assert aside.read_bytes() == data  # the history, byte for byte
    assert [row["folder"] for row in read_index(results)] == ["new-run"]
    assert f"moved to {aside}" in caplog.text


def test_an_index_that_is_a_link_is_neither_read_nor_replaced(tmp_path, caplog):
    outside = _file(tmp_path / "elsewhere.csv", "folder,name\nnot-a-run,secret\n")
    results = tmp_path / "results"
    results.mkdir()
    (results / INDEX_CSV).symlink_to(outside)
    before = snapshot(tmp_path)
    with caplog.at_level(logging.WARNING):
        record_run(results, {"folder": "new-run"}, latest=True)
    assert read_index(results) == []  # the outside file's rows never enter the index
    assert (results / INDEX_CSV).is_symlink() and outside.read_text() == "folder,name\nnot-a-run,secret\n"
    assert not changed_outside(before, snapshot(tmp_path), results / "latest")
    assert "is a symbolic link" in caplog.text


def test_the_index_keeps_its_mode(tmp_path):
    record_run(tmp_path, {"folder": "a"})
    (tmp_path / INDEX_CSV).chmod(0o600)
    record_run(tmp_path, {"folder": "b"})
    assert (tmp_path / INDEX_CSV).stat().st_mode & 0o777 == 0o600


# ----------------------------------------------------------------------------- gpu_check


def _user_report(tmp: Path) -> Path:
    _file(tmp / "out" / "gpu_check.md", "my notes on the card\n")
    return tmp / "out"


# (id, arguments, expected part of the line); {tmp}: the test's folder
GPU_CHECK = [
    ("out-a-file", ["--out", "{tmp}/f"], "is a file, not a folder"),
    ("out-a-user-file-of-its-name", ["--out", "{tmp}/out"], "holds files gpu_check --out did not write"),
    ("budget-negative", ["--budget", "-5"], "--budget=-5.0 must be >= 1"),
    ("budget-nan", ["--budget", "nan"], "--budget: expected a finite number"),
    ("budget-word", ["--budget", "soon"], "invalid float value"),
    ("precision-unknown", ["--precisions", "tf32,fp8"], "unknown --precision 'fp8'"),
    ("precisions-none", ["--precisions", ","], "names none"),
    ("skip-every-step", ["--skip", ",".join(gpu_check.STEPS)], "leaves no step to run"),
    ("skip-unknown", ["--skip", "warp_drive"], "unknown --skip 'warp_drive'"),
    ("seed-negative", ["--seeds", "0,-1"], "--seeds=-1 must be in [0, 4.29497e+09]"),
    ("batch-zero", ["--batch-size", "0"], "--batch-size=0 must be >= 1"),
]


@pytest.mark.parametrize("case_id,args,message", GPU_CHECK, ids=[c[0] for c in GPU_CHECK])
def test_hostile_gpu_check(case_id, args, message, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(gpu_check, "run_steps", lambda *a: pytest.fail("a step ran before the checks"))
    _file(tmp_path / "f")
    _user_report(tmp_path)
    before = snapshot(tmp_path)
    code = gpu_check.main([a.replace("{tmp}", str(tmp_path)) for a in args] + ["--device", "cpu"])
    assert_one_line(code, capsys.readouterr().err, 2, message)
    assert snapshot(tmp_path) == before


def test_gpu_check_rewrites_its_own_reports_and_nothing_else(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(gpu_check, "run_steps", lambda *a: {})
    monkeypatch.setattr(gpu_check, "environment", lambda: {"date": "d"})
    out = tmp_path / "out"
    assert gpu_check.main(["--out", str(out), "--device", "cpu"]) == 0, capsys.readouterr().err
    (out / "gpu_check.md").chmod(0o600)
    _file(out / "perf_extra.json", "{}\n")  # a file of the user's beside the reports: kept
    before = snapshot(tmp_path)
    assert gpu_check.main(["--out", str(out), "--device", "cpu"]) == 0
    changed = changed_outside(before, snapshot(tmp_path), out / "gpu_check")
    assert changed == [str(out / "gpu_check.json"), str(out / "gpu_check.md")], changed
    assert (out / "gpu_check.md").stat().st_mode & 0o777 == 0o600


def test_gpu_check_precisions_are_perfs_amp_choices():
    from benchmark.tools.perf import AMP_CHOICES

    assert gpu_check.PRECISIONS == AMP_CHOICES


# ----------------------------------------------------------------------------- publish --readme


def _run(tmp: Path) -> Path:
    from test_hostile_inputs import _finished_run

    return _finished_run(tmp)


def _linked_readme(tmp: Path) -> Path:
    from test_publish import README

    target = _file(tmp / "elsewhere" / "README.md", README)
    (tmp / "README.md").symlink_to(target)
    return tmp / "README.md"


def _reversed_markers(tmp: Path) -> Path:
    from benchmark.reporting.publish import END, START

    return _file(tmp / "README.md", f"# mine\n{END}\nkept\n{START}\n")


def _two_starts(tmp: Path) -> Path:
    from benchmark.reporting.publish import END, START

    return _file(tmp / "README.md", f"{START}\n{START}\n{END}\n")


README_CASES = [
    ("readme-a-link", _linked_readme, "is a symbolic link"),
    ("readme-markers-reversed", _reversed_markers, "marker before its"),
    ("readme-two-starts", _two_starts, "more than one"),
]


@pytest.mark.parametrize("case_id,setup,message", README_CASES, ids=[c[0] for c in README_CASES])
def test_hostile_readme(case_id, setup, message, tmp_path, capsys):
    from benchmark.reporting.publish import main as publish_main

    run, readme = _run(tmp_path), setup(tmp_path)
    before = snapshot(tmp_path)
    code = publish_main([str(run), str(tmp_path / "dest"), "--readme", str(readme)])
    assert_one_line(code, capsys.readouterr().err, 2, message)
    assert snapshot(tmp_path) == before


def test_publish_keeps_a_private_readme_private(tmp_path, capsys):
    from test_publish import README

    from benchmark.reporting.publish import main as publish_main

    readme = _file(tmp_path / "README.md", README)
    readme.chmod(0o600)
    assert publish_main([str(_run(tmp_path)), str(tmp_path / "dest"), "--readme", str(readme)]) == 0
    assert "| finetune |" in readme.read_text() and readme.stat().st_mode & 0o777 == 0o600


# ----------------------------------------------------------------------------- criterion


def _criterion_run(folder: Path, method: str = "finetune", seed: int = 0, **config) -> Path:
    """A finished run (test_criterion's two tasks and one eval-only task) with its config.yaml."""
    from test_criterion import COLUMNS, FT, _rows

    folder.mkdir(parents=True)
    pd.DataFrame(_rows(method, *FT, seed=seed), columns=COLUMNS).to_csv(folder / "accuracy_long.csv", index=False)
    cfg = {"sequence": "default", "methods": [method], "seeds": [seed], "train": {"lr": 0.001}, **config}
    (folder / "config.yaml").write_text(json.dumps(cfg))
    return folder


def _newline_method(tmp: Path) -> list[Path]:
    run = _criterion_run(tmp / "r")
    csv = run / "accuracy_long.csv"
    frame = pd.read_csv(csv)
    frame["method"] = "fine\ntune"
    frame.to_csv(csv, index=False)
    return [run]


CRITERION = [
    ("max-gap-nan", lambda t: [_criterion_run(t / "r")], ["--max-gap", "nan"], "--max-gap: expected a finite number"),
    ("max-gap-negative", lambda t: [_criterion_run(t / "r")], ["--max-gap", "-1"], "--max-gap=-1.0 must be >= 0"),
    ("recovered-2", lambda t: [_criterion_run(t / "r")], ["--min-recovered", "2"], "must be in [0, 1]"),
    ("baseline-unknown", lambda t: [_criterion_run(t / "r")], ["--baseline", "nope"], "unknown --baseline 'nope'"),
    ("split-val-absent", lambda t: [_criterion_run(t / "r")], ["--split", "val"], "has no val rows (it scored test)"),
    ("same-run-twice", lambda t: [_criterion_run(t / "r")] * 2, [], "is given twice"),
    (
        "same-run-by-two-paths",
        lambda t: [_criterion_run(t / "r"), t / "." / "r"],
        [],
        "is given twice",
    ),
    (
        "other-sequence",
        lambda t: [_criterion_run(t / "r"), _criterion_run(t / "s", "ldifs", sequence="other")],
        [],
        "cannot pool",
    ),
    (
        "other-config",
        lambda t: [_criterion_run(t / "r"), _criterion_run(t / "s", "ldifs", train={"lr": 0.1})],
        [],
        "train.lr differs",
    ),
    ("method-with-newline", _newline_method, [], "holds a non-printable character"),
]


@pytest.mark.parametrize("case_id,setup,args,message", CRITERION, ids=[c[0] for c in CRITERION])
def test_hostile_criterion(case_id, setup, args, message, tmp_path, capsys):
    runs = setup(tmp_path)
    before = snapshot(tmp_path)
    code = criterion.main([*map(str, runs), *args])
    assert_one_line(code, capsys.readouterr().err, 2, message)
    assert snapshot(tmp_path) == before


def test_criterion_pools_runs_of_one_config(tmp_path, capsys):
    runs = [_criterion_run(tmp_path / "r"), _criterion_run(tmp_path / "s", "ldifs")]
    assert criterion.main([*map(str, runs)]) == 0, capsys.readouterr().err
    assert "| ldifs | 1 |" in capsys.readouterr().out


def test_a_markdown_row_stays_one_row():
    assert criterion._cell("a\nb|c") == "a\\nb\\|c"


# ----------------------------------------------------------------------------- class-incremental files

CIL = "scenario: class_incremental\ndataset: objects\n"
# (id, file text, expected part of the line)
CIL_FILES = [
    ("steps-huge", CIL + "steps: 100000000\n", "steps=100000000 is too large; at most 1000"),
    ("order-seed-huge", CIL + "steps: 4\norder: {seed: 100000000000000000000000}\n", "order seed"),
    ("order-seed-negative", CIL + "steps: 4\norder: {seed: -1}\n", "must be in [0, 4294967295]"),
    ("order-seed-bool", CIL + "steps: 4\norder: {seed: true}\n", "order={'seed': True}"),
    ("order-index-huge", CIL + "steps: 1\norder: [0, 100000000000000000000000]\n", "order holds"),
    ("groups-too-many", CIL + "groups: [" + ", ".join(["[0]"] * 1001) + "]\n", "1001 groups; at most 1000"),
    ("group-index-negative", CIL + "groups: [[0, -3]]\n", "groups holds -3"),
    ("initial-huge", CIL + "steps: 2\ninitial: 100000000000000000000000\n", "initial="),
    ("steps-bool", CIL + "steps: true\n", "steps=True must be an integer >= 1"),
]


@pytest.mark.parametrize("case_id,text,message", CIL_FILES, ids=[c[0] for c in CIL_FILES])
def test_hostile_class_incremental_file(case_id, text, message, micro_cfg, tmp_path, capsys):
    from test_hostile_inputs import run_case

    _file(tmp_path / "files" / "cil.yaml", text)
    code, err, changed = run_case(["--sequence", "{files}/cil.yaml"], micro_cfg, tmp_path, tmp_path / "files", capsys)
    assert_one_line(code, err, 2, message)
    assert not changed, changed
    assert not Path(micro_cfg.results_dir).exists()  # refused before anything was built


# ----------------------------------------------------------------------------- a run's other inputs

RUN_CASES = [
    (
        "replay-mem-size-negative",
        ["--methods", "replay", "--hparams.replay.mem_size", "-5"],
        "mem_size=-5 must be >= 1",
    ),
    ("replay-mem-size-0", ["--methods", "replay", "--hparams.replay.mem_size", "0"], "mem_size=0 must be >= 1"),
    ("lwf-temperature-0", ["--methods", "lwf", "--hparams.lwf.temperature", "0"], "temperature=0.0 must be > 0"),
    ("ewc-mode-unknown", ["--methods", "ewc", "--hparams.ewc.mode", "sometimes"], "hparams.ewc.mode='sometimes'"),
]


@pytest.mark.parametrize("case_id,args,message", RUN_CASES, ids=[c[0] for c in RUN_CASES])
def test_every_hyperparameter_is_checked_before_any_work(case_id, args, message, micro_cfg, tmp_path, capsys):
    from test_hostile_inputs import run_case

    code, err, changed = run_case(args, micro_cfg, tmp_path, tmp_path, capsys)
    assert_one_line(code, err, 2, message)
    assert not changed and not Path(micro_cfg.results_dir).exists()


def test_an_aten_cpu_capability_torch_ignores_is_one_line(micro_cfg, tmp_path, capsys, monkeypatch):
    from test_hostile_inputs import run_case

    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "AVX2")  # torch compares lower case: it would run AVX-512
    code, err, changed = run_case([], micro_cfg, tmp_path, tmp_path, capsys)
    assert_one_line(code, err, 2, "ATEN_CPU_CAPABILITY='AVX2' is not a value torch accepts")
    assert not changed and not Path(micro_cfg.results_dir).exists()


def test_an_edited_registered_sequence_is_another_config(tmp_path, monkeypatch):
    from benchmark import config
    from benchmark.config import RunConfig, config_hash

    registered = tmp_path / "sequences"
    shutil.copytree(config.REGISTERED_SEQUENCES, registered)
    monkeypatch.setattr(config, "REGISTERED_SEQUENCES", registered)
    cfg = RunConfig(sequence="objects_cil")
    first = config_hash(cfg)
    assert config_hash(RunConfig(sequence=str(registered / "objects_cil.yaml"))) == first  # content, not name
    with open(registered / "objects_cil.yaml", "a") as f:
        f.write("\n# an edit a user makes after a partial run\n")
    assert config_hash(cfg) != first  # the partial run is not resumed under the edited sequence
    assert config_hash(RunConfig(sequence="no_such_sequence")) == config_hash(RunConfig(sequence="no_such_sequence"))


def test_a_registered_name_with_a_control_character_is_refused():
    from benchmark.registry import Registry

    with pytest.raises(ValueError, match="control character"):
        Registry("method").register("fine\ntune")(object)


# ----------------------------------------------------------------------------- one boundary


def _mains() -> list[tuple[str, Callable]]:
    from benchmark.reporting import coverage, leaderboard, leaderboard_latex, publish, reports
    from benchmark.run import cli
    from benchmark.tools import perf

    return [
        ("run_benchmark", cli.main),
        ("pretrain", pretrain.main),
        ("gpu_check", gpu_check.main),
        ("perf", perf.main),
        ("criterion", criterion.main),
        ("publish", publish.main),
        ("reports", reports.main),
        ("leaderboard", leaderboard.main),
        ("leaderboard_latex", leaderboard_latex.main),
        ("coverage", coverage.main),
    ]


@pytest.mark.parametrize("index", range(10), ids=[name for name, _ in _mains()])
def test_every_entry_point_answers_a_bad_flag_in_one_line(index, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _, entry = _mains()[index]
    assert_one_line(entry(["a", "b", "--no-such-flag"]), capsys.readouterr().err, 2, "see --help")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    "module, args, message",
    [
        ("leaderboard", ["{tmp}/no_run", "--out", "{tmp}/merged"], "no_run"),
        ("leaderboard_latex", ["{tmp}/no_run"], "cannot read"),
        ("coverage", ["--reps", "0"], "--reps=0 must be >= 1"),
    ],
)
def test_reporting_commands_print_a_traceback_under_debug_only(module, args, message, capsys, tmp_path, monkeypatch):
    import importlib

    monkeypatch.delenv("LDIFS_BENCH_DEBUG", raising=False)
    main = importlib.import_module(f"benchmark.reporting.{module}").main
    argv = [a.replace("{tmp}", str(tmp_path)) for a in args]
    assert_one_line(main(argv), capsys.readouterr().err, 2, message)
    assert main([*argv, "--debug"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.rstrip().splitlines()[-1].startswith("error: ") and message in err


def test_the_boundary_of_every_command(capsys, monkeypatch):
    @command
    def refuses(argv: list[str]) -> int:
        raise UserError("bad\nvalue") from ValueError("the cause")

    @command
    def interrupted(argv: list[str]) -> int:
        raise KeyboardInterrupt

    @command
    def cannot_write(argv: list[str]) -> int:
        raise PermissionError(13, "Permission denied", "/somewhere")

    assert_one_line(refuses([]), capsys.readouterr().err, 2, "error: bad value")
    assert interrupted([]) == 130 and "interrupted" in capsys.readouterr().err
    assert_one_line(cannot_write([]), capsys.readouterr().err, 2, "'/somewhere': Permission denied")
    assert refuses(["--debug"]) == 2 and "ValueError: the cause" in capsys.readouterr().err
    monkeypatch.setenv("LDIFS_BENCH_DEBUG", "1")
    assert cannot_write([]) == 2 and "Traceback" in capsys.readouterr().err
    monkeypatch.delenv("LDIFS_BENCH_DEBUG")
    os.environ.pop("LDIFS_BENCH_DEBUG", None)
