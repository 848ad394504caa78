"""Hostile inputs and faults, as a table: each one exits 2 with ONE line on stderr (or 0
where the input is valid), prints no traceback, and changes nothing outside the run's own
folder (the test snapshots the surrounding tree: paths, sizes, mtimes).

These are beyond the 25 bad inputs of test_cli.py. Most fail before any model or data is
loaded (milliseconds in-process); the few that need a model, data or a finished run share
one micro run (the ``finished_run`` fixture)."""

from __future__ import annotations

import errno
import os
import pickle
import shutil
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd
import pytest

from benchmark.config import dump_yaml
from benchmark.errors import UserError, run_command
from run_benchmark import main

BILLION_LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [{', '.join(['*' + p] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi")
)


def hostile_files(folder: Path) -> None:
    """Config and sequence files built to break readers, written once for the module."""
    writes = {
        "binary.yaml": b"\x00\x01\x02\xff" * 64,
        "latin1.yaml": "name: caf\xe9\n".encode("latin-1"),
        "huge.yaml": b"# padding\n" * 600_000,  # 6 MB: over the 4 MB cap
        "laughs.yaml": BILLION_LAUGHS.encode(),
        "alias.yaml": b"seeds: &s [0]\nmethods: *s\n",
        "deep.yaml": b"[" * 3_000,
        "list.yaml": b"- a\n- b\n",
        "scalar.yaml": b"just words\n",
        "train_int.yaml": b"train: 5\n",
        "seeds_map.yaml": b"seeds: {a: 1}\n",
        "hparams_int.yaml": b"hparams: {ldifs: 5}\n",
        "lr_word.yaml": b"train: {lr: fast}\n",
        "name_list.yaml": b"name: [a, b]\n",
        "lr_inf.yaml": b"train: {lr: .inf}\n",
        "seed_huge.yaml": b"seeds: [100000000000000000000]\n",
        "seq_binary.yaml": b"\x89PNG\r\n\x1a\n\x00\x00",
        "seq_huge.yaml": b"#" * (5 * 2**20),
        "seq_laughs.yaml": BILLION_LAUGHS.encode(),
        "seq_string.yaml": b"stages: shapes\n",
        "seq_eval_string.yaml": b"stages: [shapes]\neval_only: textures\n",
        "seq_both.yaml": b"stages: [shapes, digits]\neval_only: [textures, digits]\n",
        "seq_eval_twice.yaml": b"stages: [shapes]\neval_only: [textures, textures]\n",
        "seq_list.yaml": b"- shapes\n- digits\n",
        "seq_epochs0.yaml": b"stages: [{task: shapes, epochs: 0}]\n",
        "seq_epochs_word.yaml": b"stages: [{task: shapes, epochs: two}]\n",
        "seq_stage_key.yaml": b"stages: [{task: shapes, lr: 1}]\n",
        "seq_key.yaml": b"stages: [shapes]\nrepeat: 3\n",
        "seq_deep.yaml": b"stages: " + b"[" * 3_000,
        "a_file": b"",
    }
    for name, data in writes.items():
        (folder / name).write_bytes(data)
    (folder / "dir.yaml").mkdir()


# (id, arguments, expected exit code, expected part of the one-line error). {tmp}: the
# test's own folder (results go to {tmp}/results); {files}: the hostile files above.
CASES = [
    # files that are not small UTF-8 text, or YAML built to expand
    ("cfg-binary", ["--config", "{files}/binary.yaml"], 2, "is not a text file"),
    ("cfg-latin1", ["--config", "{files}/latin1.yaml"], 2, "is not a text file"),
    ("cfg-huge", ["--config", "{files}/huge.yaml"], 2, "a config file is at most"),
    ("cfg-billion-laughs", ["--config", "{files}/laughs.yaml"], 2, "aliases"),
    ("cfg-alias", ["--config", "{files}/alias.yaml"], 2, "aliases (*s) are not accepted"),
    ("cfg-deep", ["--config", "{files}/deep.yaml"], 2, "config file"),
    ("cfg-dir", ["--config", "{files}/dir.yaml"], 2, "is not a regular file"),
    ("cfg-dev-zero", ["--config", "/dev/zero"], 2, "is not a regular file"),
    # config files with the wrong shapes and types
    ("cfg-list", ["--config", "{files}/list.yaml"], 2, "expected a mapping"),
    ("cfg-scalar", ["--config", "{files}/scalar.yaml"], 2, "expected a mapping"),
    ("cfg-train-int", ["--config", "{files}/train_int.yaml"], 2, "train.: expected a mapping"),
    ("cfg-seeds-map", ["--config", "{files}/seeds_map.yaml"], 2, "seeds: expected a list"),
    ("cfg-hparams-int", ["--config", "{files}/hparams_int.yaml"], 2, "hparams.ldifs: expected a mapping"),
    ("cfg-lr-word", ["--config", "{files}/lr_word.yaml"], 2, "train.lr: expected a number"),
    ("cfg-name-list", ["--config", "{files}/name_list.yaml"], 2, "name: expected a string"),
    ("cfg-lr-inf", ["--config", "{files}/lr_inf.yaml"], 2, "train.lr: expected a finite number"),
    ("cfg-seed-huge", ["--config", "{files}/seed_huge.yaml"], 2, "seeds: 100000000000000000000 is too large"),
    # sequence files
    ("seq-binary", ["--sequence", "{files}/seq_binary.yaml"], 2, "is not a text file"),
    ("seq-huge", ["--sequence", "{files}/seq_huge.yaml"], 2, "a sequence file is at most"),
    ("seq-billion-laughs", ["--sequence", "{files}/seq_laughs.yaml"], 2, "aliases"),
    ("seq-deep", ["--sequence", "{files}/seq_deep.yaml"], 2, "sequence file"),
    ("seq-stages-string", ["--sequence", "{files}/seq_string.yaml"], 2, "'stages' must be a list"),
    ("seq-eval-only-string", ["--sequence", "{files}/seq_eval_string.yaml"], 2, "'eval_only' must be a list"),
    ("seq-staged-and-eval-only", ["--sequence", "{files}/seq_both.yaml"], 2, "'digits' is both a stage and eval-only"),
    ("seq-eval-only-twice", ["--sequence", "{files}/seq_eval_twice.yaml"], 2, "'textures' is listed more than once"),
    ("seq-top-level-list", ["--sequence", "{files}/seq_list.yaml"], 2, "needs a 'stages' list"),
    ("seq-epochs-0", ["--sequence", "{files}/seq_epochs0.yaml"], 2, "epochs=0"),
    ("seq-epochs-word", ["--sequence", "{files}/seq_epochs_word.yaml"], 2, "epochs='two'"),
    ("seq-stage-key", ["--sequence", "{files}/seq_stage_key.yaml"], 2, "bad stage"),
    ("seq-unknown-key", ["--sequence", "{files}/seq_key.yaml"], 2, "unknown key 'repeat'"),
    ("seq-dir", ["--sequence", "{files}/dir.yaml"], 2, "is not a regular file"),
    ("seq-dev-zero", ["--sequence", "/dev/zero"], 2, "unknown sequence '/dev/zero'"),
    # duplicates and empty parts: refused before any work, naming the value
    ("dup-seeds", ["--seeds", "1,1"], 2, "seeds names '1' more than once"),
    ("dup-methods", ["--methods", "finetune,finetune"], 2, "methods names 'finetune' more than once"),
    ("dup-kinds", ["--eval.kinds", "lp,lp"], 2, "eval.kinds names 'lp' more than once"),
    ("dup-kinds-3", ["--eval.kinds", "head,zs,head"], 2, "eval.kinds names 'head'"),
    ("dup-loggers", ["--loggers", "csv,csv"], 2, "loggers names 'csv'"),
    ("methods-plus", ["--methods", "+"], 2, "method '+' has an empty part"),
    ("methods-trailing-plus", ["--methods", "finetune+"], 2, "'finetune+' has an empty part"),
    ("methods-double-plus", ["--methods", "ldifs++replay"], 2, "'ldifs++replay' has an empty part"),
    ("methods-empty", ["--methods", ""], 2, "must name at least one method"),
    ("seeds-empty", ["--seeds", ","], 2, "must name at least one seed"),
    ("kinds-empty", ["--eval.kinds", ""], 2, "eval.kinds=[] is not valid"),
    # numbers the libraries would choke on
    ("lr-inf", ["--train.lr", "inf"], 2, "train.lr: expected a finite number"),
    ("lr-nan", ["--train.lr", "nan"], 2, "train.lr: expected a finite number"),
    ("lr-minus-inf", ["--train.lr", "-inf"], 2, "expected a finite number"),
    ("lr-overflow", ["--train.lr", "1e400"], 2, "expected a finite number"),
    ("grad-clip-inf", ["--train.grad_clip", ".inf"], 2, "train.grad_clip: expected a finite number"),
    ("alpha-inf", ["--hparams.ldifs.alpha", "inf"], 2, "hparams.ldifs.alpha: expected a finite number"),
    ("alpha-nan", ["--hparams.ldifs.alpha", "nan"], 2, "expected a finite number"),
    ("hparams-not-mapping", ["--hparams.ldifs", "5"], 2, "hparams.ldifs: expected a mapping"),
    ("test-limit-0", ["--eval.test_limit", "0"], 2, "eval.test_limit=0 must be >= 1"),
    ("test-limit-neg", ["--eval.test_limit", "-5"], 2, "eval.test_limit=-5 must be >= 1"),
    ("train-limit-neg", ["--train.train_limit", "-1"], 2, "train.train_limit=-1 must be >= 1"),
    ("train-limit-0", ["--train.train_limit", "0"], 2, "train.train_limit=0 must be >= 1"),
    ("lp-limit-0", ["--eval.lp_train_limit", "0"], 2, "eval.lp_train_limit=0 must be >= 1"),
    ("weight-decay-neg", ["--train.weight_decay", "-0.1"], 2, "train.weight_decay=-0.1 must be >= 0"),
    ("lp-weight-decay-neg", ["--eval.lp_weight_decay", "-1"], 2, "eval.lp_weight_decay=-1.0 must be >= 0"),
    ("pretrain-wd-neg", ["--model.pretrain.weight_decay", "-1"], 2, "model.pretrain.weight_decay=-1.0"),
    ("pretrain-seed-neg", ["--model.pretrain.seed", "-1"], 2, "model.pretrain.seed=-1 must be in"),
    ("seed-neg", ["--seeds", "-1"], 2, "seeds=-1 must be in [0, 2**32)"),
    ("seed-2-32", ["--seeds", "4294967296"], 2, "seeds=4294967296 must be in"),
    ("seed-flag-neg", ["--seed", "-3"], 2, "seeds=-3 must be in"),
    ("threads-huge", ["--threads", "100000"], 2, "threads=100000 must be <= 1024"),
    ("epochs-float", ["--train.epochs", "1.5"], 2, "train.epochs: expected an integer, got 1.5"),
    (
        "batch-size-overflow",
        ["--train.batch_size", "1" + "0" * 23],
        2,
        "train.batch_size: 1" + "0" * 23 + " is too large",
    ),
    ("batch-size-1-batchnorm", ["--train.batch_size", "1"], 2, "BatchNorm layers, which need at least 2"),
    ("amp-unknown", ["--train.amp", "fp8"], 2, "train.amp='fp8' is not valid"),
    # devices torch would refuse late or never
    ("device-tpu", ["--device", "tpu"], 2, "unknown device 'tpu'"),
    ("device-cuda-abc", ["--device", "cuda:abc"], 2, "unknown device 'cuda:abc'"),
    ("device-empty", ["--device", ""], 2, "unknown device ''"),
    ("device-meta", ["--device", "meta"], 2, "unknown device 'meta'"),
    ("device-cuda-999", ["--device", "cuda:999"], 2, "cuda:999"),
    # names and paths: non-printable or longer than any path
    ("name-newline", ["--name", "a\nb"], 2, "holds a non-printable character '\\n'"),
    ("name-escape", ["--name", "run\x1b[31m"], 2, "non-printable character '\\x1b'"),
    ("name-very-long", ["--name", "n" * 5000], 2, "a string of 5000 characters"),
    ("data-root-nul", ["--data-root", "data\x00x"], 2, "data_root="),
    ("model-name-tab", ["--model.name", "tiny\trn"], 2, "model.name="),
    ("method-bell", ["--methods", "fine\atune"], 2, "non-printable"),
    # argparse's own errors: one line, not usage + message
    ("argparse-config-no-value", ["--config"], 2, "argument --config: expected one argument"),
    ("argparse-seed-word", ["--seed", "abc"], 2, "argument --seed: invalid int value: 'abc'"),
    ("argparse-seed-no-value", ["--seed"], 2, "expected one argument"),
    # places the suite writes that cannot be written
    ("results-dir-in-proc", ["--results-dir", "/proc/ldifs-results"], 2, "cannot be written"),
    ("cache-dir-is-file", ["--model.cache_dir", "{files}/a_file"], 2, "model cache"),
    ("cache-dir-in-proc", ["--model.cache_dir", "/proc/ldifs-cache"], 2, "model cache '/proc/ldifs-cache'"),
]

ARGS = ["-q", "--methods", "finetune"]


def snapshot(*roots: Path) -> dict[str, tuple]:
    """Every path under the roots with its size and mtime (and the roots' own entries)."""
    state = {}
    for root in roots:
        for path in [root, *root.rglob("*")]:
            stat = path.lstat()
            # a folder counts by its existence (its mtime moves when an allowed entry appears in it)
            state[str(path)] = (True, 0, 0) if path.is_dir() else (False, stat.st_size, stat.st_mtime_ns)
    return state


def changed_outside(before: dict, after: dict, allowed: Path) -> list[str]:
    """Paths created, changed or deleted that are not under ``allowed`` (the results folder)."""
    keys = set(before) | set(after)
    return sorted(
        k for k in keys if before.get(k) != after.get(k) and not (k == str(allowed) or k.startswith(f"{allowed}/"))
    )


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("hostile-files")
    hostile_files(folder)
    return folder


def run_case(args: list[str], micro_cfg, tmp_path: Path, files: Path, capsys) -> tuple[int, str, list[str]]:
    cfg_path = tmp_path / "micro.yaml"
    cfg_path.write_text(dump_yaml(micro_cfg))
    args = [a.replace("{tmp}", str(tmp_path)).replace("{files}", str(files)) for a in args]
    before, cwd_before = snapshot(tmp_path, files), set(os.listdir())
    code = main(["--config", str(cfg_path), *ARGS, *args])
    err = capsys.readouterr().err
    changed = changed_outside(before, snapshot(tmp_path, files), Path(micro_cfg.results_dir))
    return code, err, changed + sorted(set(os.listdir()) - cwd_before)  # nothing new where it was started


def assert_one_line(code: int, err: str, expected_code: int, message: str) -> None:
    assert code == expected_code, err
    assert "Traceback" not in err, err
    if expected_code:
        assert err.startswith("error: " if expected_code == 2 else "") and err.count("\n") == 1, err
        assert message in err, err


@pytest.mark.parametrize("case_id,args,expected,message", CASES, ids=[c[0] for c in CASES])
def test_hostile_input(case_id, args, expected, message, micro_cfg, tmp_path, files, capsys):
    code, err, changed = run_case(args, micro_cfg, tmp_path, files, capsys)
    assert_one_line(code, err, expected, message)
    assert not changed, changed
    results = Path(micro_cfg.results_dir)
    assert not results.exists() or not any(results.iterdir())  # refused before any work


# ----------------------------------------------------------------------------- faults
# Faults injected in-process: each still ends as one line, exit code 2 (130 for Ctrl-C).


def _interrupt(*_args, **_kwargs):
    raise KeyboardInterrupt


def _disk_full(*_args, **_kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def _hub_unreachable(monkeypatch, tmp_path):
    import benchmark.models.loading as loading

    monkeypatch.setattr(loading, "_reachable", lambda *a, **k: False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub-cache"))


FAULTS: list[tuple[str, list[str], Callable, int, str]] = [
    (
        "ctrl-c-while-loading",
        [],
        lambda mp, tmp: mp.setattr("benchmark.run.runner.prepare", _interrupt),
        130,
        "interrupted; re-run the same command to resume",
    ),
    (
        "disk-full-writing-the-run",
        [],
        lambda mp, tmp: mp.setattr("benchmark.run.runner.atomic_text", _disk_full),
        2,
        "no space left on the device",
    ),
    (
        "disk-full-pretraining",
        ["--model.pretrain.images", "64", "--model.cache_dir", "{tmp}/fresh-cache"],
        lambda mp, tmp: mp.setattr("benchmark.models.pretrain._build", _disk_full),
        2,
        "cannot be written: No space left on device",
    ),
    (
        "logger-package-missing",
        ["--loggers", "csv,wandb"],
        lambda mp, tmp: mp.setattr("benchmark.training.loggers.PACKAGES", {"wandb": "no_such_wandb_package"}),
        2,
        "loggers: wandb needs the no_such_wandb_package package",
    ),
    (
        "hf-hub-offline",
        ["--model.name", "hf-hub:someone/no-such-model"],
        _hub_unreachable,
        2,
        "the Hugging Face Hub is unreachable from here",
    ),
]


@pytest.mark.parametrize("case_id,args,patch,expected,message", FAULTS, ids=[f[0] for f in FAULTS])
def test_fault(case_id, args, patch, expected, message, micro_cfg, tmp_path, files, capsys, monkeypatch):
    patch(monkeypatch, tmp_path)
    code, err, changed = run_case(args, micro_cfg, tmp_path, files, capsys)
    assert_one_line(code, err, expected, message)
    assert expected != 130 or err == "interrupted; re-run the same command to resume\n"
    assert not [c for c in changed if "fresh-cache" not in c], changed  # the model cache may be touched


# ----------------------------------------------------------------------------- one shared run


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, model_cache) -> Path:
    """One micro run whose train splits leave a last batch of ONE image (33 = 32 + 1) on
    the BatchNorm tower, with two loggers and kept checkpoints for the cases below."""
    from conftest import MICRO

    from benchmark.config import RunConfig, from_dict

    root = tmp_path_factory.mktemp("shared-run")
    cfg = from_dict(RunConfig, {**MICRO, "results_dir": str(root / "results"), "device": "cpu"})
    cfg.model.cache_dir, cfg.methods, cfg.train.train_limit = model_cache, ["finetune"], 33
    cfg.loggers, cfg.name = ["tensorboard", "csv"], "shared"
    (root / "shared.yaml").write_text(dump_yaml(cfg))
    assert main(["--config", str(root / "shared.yaml"), "-q", "--keep-checkpoints"]) == 0
    return root / "results" / "shared"


def test_a_last_batch_of_one_image_trains_on_a_batchnorm_tower(finished_run):
    long = pd.read_csv(finished_run / "accuracy_long.csv")
    assert set(long.status) == {"ok"} and long.stage.max() == 2
    manifest = (finished_run / "run.log").read_text()
    assert "stage 2 digits" in manifest


def test_loggers_receive_every_stages_accuracies_and_the_summary(finished_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    # one TensorBoard run per method and seed
    assert [p.name for p in (finished_run / "avalanche_logs" / "tensorboard").iterdir()] == ["finetune-seed0"]
    events = EventAccumulator(str(finished_run / "avalanche_logs" / "tensorboard" / "finetune-seed0"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    long = pd.read_csv(finished_run / "accuracy_long.csv")
    for row in long.itertuples():  # every number of the long CSV, at its stage
        tag = f"finetune/seed0/accuracy/{row.kind}/{row.eval_task}"
        assert tag in tags, tag
        logged = {e.step: e.value for e in events.Scalars(tag)}
        assert logged[row.stage] == pytest.approx(row.accuracy, abs=1e-3)
    assert {"finetune/seed0/summary/head/last", "finetune/seed0/summary/lp/delta_final_untrained"} <= tags
    assert any(t.startswith("Loss_Epoch") for t in tags)  # Avalanche's own loss is still there
    csv_metrics = pd.read_csv(finished_run / "avalanche_logs" / "csv" / "metrics.csv")
    assert "finetune/seed0/summary/head/last" in set(csv_metrics.name)


def _truncated_checkpoint(run: Path, results: Path) -> None:
    partial = results / ".shared.partial"
    (partial / "checkpoints").mkdir(parents=True)
    shutil.copy(run / "stage0.json", partial / "stage0.json")  # no stage-0 evaluation: the fault is reached at once
    shutil.copy(run / "config.yaml", partial / "config.yaml")  # the staging folder of this very config
    data = (run / "checkpoints" / "finetune__seed0.stage1.pt").read_bytes()
    (partial / "checkpoints" / "finetune__seed0.pt").write_bytes(data[: len(data) // 2])


def _garbage_checkpoint(run: Path, results: Path) -> None:
    _truncated_checkpoint(run, results)
    (results / ".shared.partial" / "checkpoints" / "finetune__seed0.pt").write_bytes(b"not a checkpoint")


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = struct.pack(">I", 0x0800 + array.ndim) + b"".join(struct.pack(">I", d) for d in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def _mnist(tmp: Path, corrupt: Callable[[Path], None]) -> None:
    raw = tmp / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for prefix, n in (("train", 30), ("t10k", 10)):
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", np.zeros((n, 28, 28)))
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10)
    corrupt(raw)
    (tmp / "mnist.yaml").write_text("stages: [mnist]\n")


def _cut(path: Path, keep: int) -> None:
    path.write_bytes(path.read_bytes()[:keep])


def _cifar_wrong_keys(tmp: Path) -> None:
    folder = tmp / "data" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (folder / name).write_bytes(pickle.dumps({"pixels": np.zeros((2, 3072), np.uint8), "labels": [0, 1]}))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": [str(i) for i in range(10)]}))
    (tmp / "cifar.yaml").write_text("stages: [cifar10]\n")


def _no_md5(monkeypatch) -> None:
    import torchvision.datasets as tvd
    import torchvision.datasets.cifar as cifar

    monkeypatch.setattr(tvd.CIFAR10, "_check_integrity", lambda self: True)
    monkeypatch.setattr(cifar, "check_integrity", lambda path, md5=None: Path(path).exists())


MNIST = ["--sequence", "{tmp}/mnist.yaml", "--data-root", "{tmp}/data"]
# (id, setup(run, tmp, results, monkeypatch), arguments of run_benchmark, expected part of the line)
RUN_CASES: list[tuple[str, Callable, list[str], str]] = [
    (
        "mnist-zero-byte-images",
        lambda run, tmp, res, mp: _mnist(tmp, lambda raw: _cut(raw / "train-images-idx3-ubyte", 0)),
        MNIST,
        "is 0 bytes, shorter than an idx header",
    ),
    (
        "mnist-images-cut-short",
        lambda run, tmp, res, mp: _mnist(tmp, lambda raw: _cut(raw / "train-images-idx3-ubyte", 1000)),
        MNIST,
        "announces",
    ),
    (
        "mnist-labels-cut-short",
        lambda run, tmp, res, mp: _mnist(tmp, lambda raw: _cut(raw / "t10k-labels-idx1-ubyte", 6)),
        MNIST,
        "shorter than an idx header",
    ),
    (
        "cifar-pickle-wrong-keys",
        lambda run, tmp, res, mp: (_cifar_wrong_keys(tmp), _no_md5(mp)),
        ["--sequence", "{tmp}/cifar.yaml", "--data-root", "{tmp}/data"],
        "has keys ['labels', 'pixels']",
    ),
]


@pytest.mark.parametrize("case_id,setup,args,message", RUN_CASES, ids=[c[0] for c in RUN_CASES])
def test_fault_in_a_run(case_id, setup, args, message, finished_run, tmp_path, files, capsys, monkeypatch):
    results = tmp_path / "results"
    setup(finished_run, tmp_path, results, monkeypatch)
    shared = finished_run.parents[1] / "shared.yaml"
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    before = snapshot(tmp_path)
    code = main(["--config", str(shared), "-q", "--results-dir", str(results), *args])
    err = capsys.readouterr().err
    assert_one_line(code, err, 2, message)
    assert not changed_outside(before, snapshot(tmp_path), results)


@pytest.mark.parametrize("damage", [_truncated_checkpoint, _garbage_checkpoint], ids=["truncated", "not-a-checkpoint"])
def test_a_damaged_checkpoint_is_ignored_and_its_method_restarts(damage, finished_run, tmp_path, capsys):
    """A checkpoint cut short (full disk, half a copy) or not one at all is never trusted: the
    resume says so in one warning line and that (method, seed) starts again from stage 1."""
    results = tmp_path / "results"
    damage(finished_run, results)
    shared = finished_run.parents[1] / "shared.yaml"
    before = snapshot(tmp_path)
    code = main(["--config", str(shared), "-q", "--results-dir", str(results)])
    err = capsys.readouterr().err
    assert code == 0 and "Traceback" not in err
    warnings = [line for line in err.splitlines() if "finetune__seed0.pt" in line]
    assert len(warnings) == 1 and "starting from stage 1" in warnings[0]
    assert (results / "shared" / "accuracy_long.csv").is_file()
    assert not changed_outside(before, snapshot(tmp_path), results)


def test_a_report_redraw_that_cannot_write_is_one_line(finished_run, tmp_path, capsys):
    from benchmark.reporting.reports import main as reports_main

    copy = tmp_path / "results" / "copy"
    shutil.copytree(finished_run, copy, ignore=shutil.ignore_patterns("checkpoints", "avalanche_logs"))
    shutil.rmtree(copy / "plots")
    (copy / "plots").write_text("a file where the plots folder goes")
    before = snapshot(tmp_path)
    assert_one_line(reports_main([str(copy)]), capsys.readouterr().err, 2, "plots")
    assert_one_line(reports_main([]), capsys.readouterr().err, 2, "the following arguments are required")
    assert not changed_outside(before, snapshot(tmp_path), copy)


def test_an_image_pil_cannot_open_is_one_line_naming_the_file(tmp_path):
    from PIL import Image

    from tasks import TaskContext
    from tasks.folder_tasks import folder_task

    for cls in ("cat", "dog"):
        (tmp_path / "pets" / "train" / cls).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (8, 8), (i * 40, 0, 0)).save(tmp_path / "pets" / "train" / cls / f"{i}.png")
    bad = tmp_path / "pets" / "train" / "dog" / "1.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)  # a PNG header, then nothing
    with pytest.raises(UserError) as caught:
        folder_task("pets", tmp_path / "pets", image_size=8)(TaskContext(data_root=tmp_path))
    message = str(caught.value)
    assert "\n" not in message and str(bad) in message and "cannot decode image" in message


# ----------------------------------------------------------------------------- the model cache


def _entry_config(model_cache: str):
    from conftest import MICRO

    from benchmark.config import ModelConfig, from_dict

    return from_dict(ModelConfig, MICRO["model"])


def test_a_late_finisher_uses_the_winners_model(model_cache, finished_run, tmp_path, monkeypatch):
    """Two runs on one fresh cache: the second waits on the entry's lock, then uses the files
    the first wrote instead of pretraining again (in-process: a thread stands for it)."""
    import fcntl
    import os
    import threading

    import benchmark.models.pretrain as pretrain

    cfg = _entry_config(model_cache)
    winner = Path(model_cache) / "models" / pretrain.cache_key(cfg)
    entry = tmp_path / "cache" / "models" / winner.name
    entry.parent.mkdir(parents=True)
    monkeypatch.setattr(pretrain, "pretrain", lambda *a, **k: pytest.fail("pretrained twice"))
    fd = os.open(entry.with_name(f".{entry.name}.lock"), os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)  # "the first run", pretraining
    got: list[Optional[Path]] = []
    waiter = threading.Thread(target=lambda: got.append(pretrain.ensure_pretrained(cfg, tmp_path / "cache", False)))
    waiter.start()
    waiter.join(0.5)
    assert waiter.is_alive()  # waiting on the lock, not pretraining
    shutil.copytree(winner, entry)  # the first run's files land
    os.close(fd)
    waiter.join(30)
    assert got == [entry]


def test_an_entry_without_its_weights_is_rebuilt(model_cache, finished_run, tmp_path, monkeypatch):
    import benchmark.models.pretrain as pretrain

    cfg = _entry_config(model_cache)
    winner = Path(model_cache) / "models" / pretrain.cache_key(cfg)
    entry = tmp_path / "cache" / "models" / winner.name
    shutil.copytree(winner, entry)
    (entry / pretrain.WEIGHTS).unlink()
    (entry / "stray").write_text("left by whoever deleted the weights")

    def fake_pretrain(folder: Path, cfg, progress) -> dict:
        shutil.copy(winner / pretrain.WEIGHTS, folder / pretrain.WEIGHTS)
        return {"steps": 0}

    monkeypatch.setattr(pretrain, "pretrain", fake_pretrain)
    assert pretrain.ensure_pretrained(cfg, tmp_path / "cache", False) == entry
    assert sorted(p.name for p in entry.iterdir()) == sorted(
        ["open_clip_config.json", pretrain.WEIGHTS, "pretrain_stats.json"]
    )
    assert [p.name for p in entry.parent.iterdir() if p.name.startswith(f".{entry.name}.tmp")] == []


@pytest.mark.slow
def test_two_processes_racing_on_an_empty_cache_both_succeed(tmp_path):
    """The real race: two interpreters pretrain the same entry at once (about 20 s)."""
    import subprocess
    import sys

    code = (
        "import sys; from pathlib import Path; from benchmark.config import ModelConfig, PretrainConfig; "
        "from benchmark.models.pretrain import ensure_pretrained; "
        "cfg = ModelConfig(pretrain=PretrainConfig(images=64, epochs=1, batch_size=32)); "
        "print(ensure_pretrained(cfg, Path(sys.argv[1]), progress=False))"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert outs[0][0] == outs[1][0]
    assert len(list((tmp_path / "models").iterdir())) == 2  # the entry and its lock file, no leftovers


def test_run_command_keeps_bugs_loud():
    """Only user errors, OS failures and Ctrl-C become one line: a bug keeps its traceback."""
    with pytest.raises(ZeroDivisionError):
        run_command(lambda: 1 // 0)


MERGE_CASES = [
    ("config-billion-laughs", BILLION_LAUGHS, ["{run}"], "aliases"),
    ("config-binary", b"\x00\xff" * 10, ["{run}"], "is not a text file"),
    ("config-a-list", "- 1\n- 2\n", ["{run}"], "is not a mapping"),
    ("config-wrong-types", "seeds: 7\ntrain: {lr: fast}\n", ["{run}"], "seeds: expected a list, got 7"),
    ("out-under-a-file", None, ["{run}", "--out", "{tmp}/a_file/merged"], "cannot read or write"),
    ("no-arguments", None, [], "the following arguments are required"),
]


@pytest.mark.parametrize("case_id,config,args,message", MERGE_CASES, ids=[c[0] for c in MERGE_CASES])
def test_a_merge_over_a_bad_run_is_one_line(case_id, config, args, message, finished_run, tmp_path, capsys):
    from benchmark.reporting.leaderboard import main as leaderboard_main

    run = tmp_path / "results" / "copy"
    shutil.copytree(finished_run, run, ignore=shutil.ignore_patterns("checkpoints", "avalanche_logs", "plots"))
    (tmp_path / "a_file").write_text("")
    if config is not None:
        (run / "config.yaml").write_bytes(config.encode() if isinstance(config, str) else config)
    before = snapshot(tmp_path)
    code = leaderboard_main([a.replace("{run}", str(run)).replace("{tmp}", str(tmp_path)) for a in args])
    assert_one_line(code, capsys.readouterr().err, 2, message)
    assert not changed_outside(before, snapshot(tmp_path), tmp_path / "nothing")


@pytest.mark.slow
def test_wandb_works_offline_and_gets_the_accuracies(finished_run, tmp_path, capsys, monkeypatch):
    """--loggers wandb with no network: an offline wandb run under the run folder that holds
    every stage's accuracies and the summary (wandb starts a service process: ~10 s)."""
    monkeypatch.delenv("WANDB_MODE", raising=False)
    shared = finished_run.parents[1] / "shared.yaml"
    args = ["--config", str(shared), "-q", "--results-dir", str(tmp_path), "--name", "wb", "--loggers", "wandb"]
    assert main(args) == 0, capsys.readouterr().err
    (record,) = (tmp_path / "wb" / "avalanche_logs" / "wandb").rglob("offline-run-*/*.wandb")
    data = record.read_bytes()
    for key in ("finetune/seed0/accuracy/lp/textures", "finetune/seed0/summary/head/last", "Loss_Epoch"):
        assert key.encode() in data, key
    assert "less than the current step" not in capsys.readouterr().err  # wandb's steps are monotonic
    logs = "".join(p.read_text(errors="replace") for p in (tmp_path / "wb").rglob("*.log"))
    assert "less than the current step" not in logs
