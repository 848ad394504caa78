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
import sys
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
    ("workers-0", ["--workers", "0"], 2, "--workers 0 must be >= 1"),
    ("workers-word", ["--workers", "two"], 2, "--workers"),
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
    import benchmark.models.clip_loading as loading

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


# ----------------------------------------------------------------------------- sweeps
# A sweep file is one more file the suite reads and its name one more folder it writes: each
# case exits 2 with one line before any work, and the tree around it (a user's folders, a
# plain run, the results folder) is byte-identical afterwards.

SWEEP_BASE = {
    "sequence": "micro",
    "methods": ["finetune"],
    "threads": 1,
    "device": "cpu",
    "model": {"name": "tiny-rn", "pretrained": "suite"},
}


def _sweep_doc(tmp: Path, **change) -> dict:
    base = {**SWEEP_BASE, "results_dir": str(tmp / "results")}
    return {"name": "grid", "base": base, "grid": {"seeds": [0]}, **change}


def _write_doc(tmp: Path, **change) -> Path:
    import yaml

    path = tmp / "sweep.yaml"
    path.write_text(yaml.safe_dump(_sweep_doc(tmp, **change)))
    return path


def _raw(tmp: Path, data: bytes) -> Path:
    (tmp / "sweep.yaml").write_bytes(data)
    return tmp / "sweep.yaml"


def _base_file(tmp: Path, data: bytes) -> Path:
    (tmp / "base.yaml").write_bytes(data)
    return _write_doc(tmp, base="base.yaml")


def _two_sequences(tmp: Path, first: str, second: str) -> Path:
    for epochs, name in enumerate((first, second), 1):  # two contents: two configs
        (tmp / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp / name).write_text(f"stages: [{{task: shapes, epochs: {epochs}}}]\n")
    return _write_doc(tmp, grid={"sequence": [str(tmp / first), str(tmp / second)]})


def _plain_run_named_grid(tmp: Path) -> Path:
    run = tmp / "results" / "grid"
    run.mkdir(parents=True)
    for name, text in (("config.yaml", "seeds: [0]\n"), ("accuracy_long.csv", "method\n"), ("report.md", "# mine\n")):
        (run / name).write_text(text)
    return _write_doc(tmp)


def _user_folder_named_grid(tmp: Path) -> Path:
    (tmp / "results" / "grid" / "plots").mkdir(parents=True)
    (tmp / "results" / "grid" / "notes.txt").write_text("my notes\n")
    (tmp / "results" / "grid" / "plots" / "figure.png").write_bytes(b"\x89PNG")
    return _write_doc(tmp)


def _file_named_grid(tmp: Path) -> Path:
    (tmp / "results").mkdir()
    (tmp / "results" / "grid").write_text("a file\n")
    return _write_doc(tmp)


def _writing_plugin(tmp: Path) -> Path:
    (tmp / "plugin.py").write_text(f"open({str(tmp / 'plugin-ran')!r}, 'w').write('ran')\n")
    base = {**SWEEP_BASE, "results_dir": str(tmp / "results"), "plugins": [str(tmp / "plugin.py")]}
    return _write_doc(tmp, base=base)


def _fake_sbatch(tmp: Path) -> Path:
    (tmp / "no-bin").mkdir()
    (tmp / "no-bin" / "sbatch").write_text("#!/bin/sh\nexit 1\n")
    (tmp / "no-bin" / "sbatch").chmod(0o755)
    return _write_doc(tmp)


# (id, setup(tmp) -> sweep file, extra flags, expected part of the line)
SWEEP_CASES: list[tuple[str, Callable[[Path], Path], list[str], str]] = [
    # names that would become paths outside --results-dir
    ("sweep-name-dotdot", lambda t: _write_doc(t, name="../escaped"), [], "'../escaped' is not a valid name"),
    ("sweep-name-absolute", lambda t: _write_doc(t, name=str(t / "abs")), [], "is not a valid name"),
    ("sweep-name-nested", lambda t: _write_doc(t, name="a/b"), [], "'a/b' is not a valid name"),
    ("sweep-name-dot", lambda t: _write_doc(t, name="."), [], "'.' is not a valid name"),
    ("sweep-name-dotdot-bare", lambda t: _write_doc(t, name=".."), [], "'..' is not a valid name"),
    ("sweep-name-hidden", lambda t: _write_doc(t, name=".hidden"), [], "'.hidden' is not a valid name"),
    ("sweep-name-list", lambda t: _write_doc(t, name=["a"]), [], "is not a valid name"),
    ("sweep-cli-name-dotdot", _write_doc, ["--name", "../escaped"], "--name (the sweep's name) '../escaped'"),
    ("sweep-stem-with-space", lambda t: _raw(t, b"grid: {seeds: [0]}\n").rename(t / "my sweep.yaml"), [], "name:"),
    # files that are not small UTF-8 YAML, or built to expand: the one safe reader
    ("sweep-billion-laughs", lambda t: _raw(t, BILLION_LAUGHS.encode()), [], "aliases"),
    ("sweep-binary", lambda t: _raw(t, b"\x00\x01\xff" * 50), [], "is not a text file"),
    ("sweep-latin1", lambda t: _raw(t, "name: caf\xe9\n".encode("latin-1")), [], "is not a text file"),
    ("sweep-deep", lambda t: _raw(t, b"[" * 3000), [], "sweep file"),
    ("sweep-a-list", lambda t: _raw(t, b"- a\n- b\n"), [], "must be a YAML mapping"),
    ("sweep-dev-zero", lambda t: Path("/dev/zero"), [], "is not a regular file"),
    ("sweep-missing", lambda t: t / "nowhere.yaml", [], "does not exist"),
    ("sweep-base-dev-zero", lambda t: _write_doc(t, base="/dev/zero"), [], "is not a regular file"),
    ("sweep-base-binary", lambda t: _base_file(t, b"\x89PNG\r\n\x1a\n\x00"), [], "is not a text file"),
    ("sweep-base-laughs", lambda t: _base_file(t, BILLION_LAUGHS.encode()), [], "aliases"),
    ("sweep-base-a-list", lambda t: _base_file(t, b"- 1\n"), [], "must be a YAML mapping"),
    # grids that cannot be read as dotted keys
    ("grid-int-key", lambda t: _write_doc(t, grid={1: [2]}), [], "grid key 1: expected a dotted config key"),
    ("grid-none-key", lambda t: _write_doc(t, grid={None: [2]}), [], "grid key None"),
    ("grid-scalar", lambda t: _write_doc(t, grid=5), [], "grid: expected a mapping"),
    # two sequences whose merged outputs would share one folder
    ("grid-two-seq-yaml", lambda t: _two_sequences(t, "a/seq.yaml", "b/seq.yaml"), [], "would both merge into"),
    ("grid-seq-named-cells", lambda t: _two_sequences(t, "a/cells.yaml", "b/other.yaml"), [], "own cells/ folder"),
    # flags a sweep would silently ignore
    ("sweep-fresh", _write_doc, ["--fresh"], "--fresh does not apply to --sweep"),
    ("sweep-slurm-absent", _write_doc, ["--launcher", "slurm"], "SLURM is not available here (no sbatch"),
    ("sweep-slurm-no-srun", _fake_sbatch, ["--launcher", "slurm"], "SLURM is not available here (no srun"),
    # a sweep folder is claimed by the rule of a run folder
    ("sweep-over-a-plain-run", _plain_run_named_grid, [], "is a run's folder"),
    ("sweep-over-a-user-folder", _user_folder_named_grid, [], "is not a sweep folder"),
    ("sweep-over-a-user-folder-merge-only", _user_folder_named_grid, ["--merge-only"], "is not a sweep folder"),
    ("sweep-over-a-file", _file_named_grid, [], "is not a sweep folder"),
    # plugins named in the base are honoured (a missing one is one line, not "unknown method")
    (
        "sweep-base-plugin-missing",
        lambda t: _write_doc(t, base={**SWEEP_BASE, "plugins": ["no_such.py"]}),
        [],
        "no_such.py",
    ),
]


@pytest.fixture
def no_hang():
    """A case that hangs (an alias bomb expanding, a read of /dev/zero) fails instead."""
    import signal

    def hung(*_args) -> None:
        raise TimeoutError("the case did not finish within 60 s")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(60)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize("case_id,setup,flags,message", SWEEP_CASES, ids=[c[0] for c in SWEEP_CASES])
def test_hostile_sweep(case_id, setup, flags, message, tmp_path, capsys, monkeypatch, no_hang):
    if "--launcher" in flags:
        monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))  # no sbatch anywhere
    monkeypatch.chdir(tmp_path)
    path = setup(tmp_path)
    before = snapshot(tmp_path)
    code = main(["--sweep", str(path), "-q", *flags])
    assert_one_line(code, capsys.readouterr().err, 2, message)
    assert snapshot(tmp_path) == before  # nothing written, nothing removed, anywhere
    assert not (tmp_path.parent / "escaped").exists() and not (tmp_path / "abs").exists()


def test_print_config_with_a_sweep_prints_its_base_and_imports_no_plugin(tmp_path, capsys, monkeypatch):
    import yaml

    monkeypatch.chdir(tmp_path)
    path = _writing_plugin(tmp_path)
    before = snapshot(tmp_path)
    assert main(["--sweep", str(path), "--print-config", "--train.lr", "0.5"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["name"] == "tiny-rn" and printed["train"]["lr"] == 0.5  # the sweep's base
    assert printed["results_dir"] == str(tmp_path / "results")
    assert main(["--plugins", str(tmp_path / "plugin.py"), "--print-config"]) == 0
    assert not (tmp_path / "plugin-ran").exists()  # --print-config runs nothing
    assert snapshot(tmp_path) == before


def test_plugins_of_the_command_line_and_of_the_base_reach_every_cell(tmp_path, monkeypatch):
    """--plugins and a base's plugins: are recorded in each cell's config (its config.yaml and
    manifest.json, and the spawned workers' imports, come from it)."""
    from benchmark.run.cli import parse_config
    from benchmark.run.sweep import load_sweep

    monkeypatch.chdir(tmp_path)
    (tmp_path / "extra.py").write_text("")
    path = _writing_plugin(tmp_path)
    args, _ = parse_config(["--sweep", str(path), "--plugins", "extra.py"])
    sweep = load_sweep(path, args.overrides)
    assert [cell.cfg.plugins for cell in sweep.cells] == [[str(tmp_path / "extra.py")]]
    sweep = load_sweep(path)  # no --plugins: the base's own, imported and recorded
    assert [cell.cfg.plugins for cell in sweep.cells] == [[str(tmp_path / "plugin.py")]]
    assert (tmp_path / "plugin-ran").exists()


def test_a_cell_another_sweep_process_runs_is_waited_for_not_failed(tmp_path):
    """Two identical sweeps at once: the second finds a cell locked, waits for the first to
    release it, and counts it done when it is (in-process: a thread stands for the first)."""
    import fcntl
    import threading

    from benchmark.run.sweep import load_sweep
    from benchmark.run.sweep_cli import _wait_for_other_processes
    from benchmark.rundir import IN_USE, RunDir

    sweep = load_sweep(_write_doc(tmp_path))
    (cell,) = sweep.cells
    lock = RunDir(sweep.folder / "cells", cell.key).lock_path
    lock.parent.mkdir(parents=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)

    def first_process_finishes() -> None:
        cell.folder.mkdir()
        (cell.folder / "accuracy_long.csv").write_text("method\n")
        os.close(fd)

    threading.Timer(0.3, first_process_finishes).start()
    errors = _wait_for_other_processes(sweep, {cell.key: f"run {cell.key!r} {IN_USE} 123 (lock {lock})"})
    assert errors == {}


def test_a_sequence_file_is_hashed_by_its_content_and_task_folders_by_where_they_lead(tmp_path, monkeypatch):
    from benchmark.config import RunConfig, config_hash

    seq = tmp_path / "seq.yaml"
    seq.write_text("stages: [{task: shapes, epochs: 1}]\n")
    cfg = RunConfig(sequence=str(seq))
    first = config_hash(cfg)
    seq.write_text("stages: [{task: shapes, epochs: 2}]\n")  # edited: another config
    assert config_hash(cfg) != first
    moved = tmp_path / "moved.yaml"
    moved.write_text(seq.read_text())
    assert config_hash(RunConfig(sequence=str(moved))) == config_hash(cfg)  # a name is not a config
    cfg.tasks = {"mine": {"folder": "data"}}
    monkeypatch.chdir(tmp_path)
    here = config_hash(cfg)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert config_hash(cfg) != here  # the same words, other images
    assert config_hash(RunConfig()) == config_hash(RunConfig())  # registered names: unchanged


def test_a_run_folder_remembers_the_hash_it_ran_under(tmp_path):
    from benchmark.rundir import HASH_HEADER, config_hash_of

    (tmp_path / "config.yaml").write_text(f"{HASH_HEADER}0123456789\nseeds: [0]\n")
    assert config_hash_of(tmp_path) == "0123456789"


@pytest.mark.parametrize(
    "broken",
    [
        lambda mp: mp.setattr("torchvision.extension._has_ops", lambda: False),
        lambda mp: mp.setitem(sys.modules, "torchvision", None),
    ],
    ids=["ops-missing", "import-fails"],
)
def test_a_torch_and_torchvision_built_apart_is_one_line_with_the_fix(broken, capsys, monkeypatch, tmp_path):
    broken(monkeypatch)
    code = main(["--results-dir", str(tmp_path)])  # a run: checked before any work
    assert not list(tmp_path.iterdir())
    assert_one_line(code, capsys.readouterr().err, 2, "pip install --force-reinstall torch torchvision")


# ----------------------------------------------------------------------------- publish


def _finished_run(tmp: Path) -> Path:
    from test_publish import finished_folder, long_frame

    run = finished_folder(tmp / "results" / "run", long_frame({"finetune": 30.0}), ["finetune"])
    (run / "config.yaml").write_text("seeds: [0]\n")
    (run / "manifest.json").write_text('{"git_revision": "0123abc"}\n')
    return run


def _merged_sweep(tmp: Path, status) -> Path:
    from test_publish import finished_folder, long_frame

    sweep = finished_folder(tmp / "results" / "grid", long_frame({"finetune": 30.0}), ["finetune"])
    (sweep / "sweep.yaml").write_text("name: grid\n")
    text = status if isinstance(status, (str, bytes)) else __import__("json").dumps(status)
    (sweep / "sweep.json").write_bytes(text if isinstance(text, bytes) else text.encode())
    return sweep


def _user_dest(tmp: Path) -> None:
    (tmp / "dest" / "plots").mkdir(parents=True)
    (tmp / "dest" / "config.yaml").write_text("my own config\n")
    (tmp / "dest" / "plots" / "mine.png").write_bytes(b"\x89PNG")


CELL = {"key": "0123456789", "status": "complete", "folder": "/elsewhere"}
# (id, setup(tmp) -> (run, dest), expected part of the line)
PUBLISH_CASES: list[tuple[str, Callable[[Path], tuple], str]] = [
    ("publish-into-itself", lambda t: (_finished_run(t), t / "results" / "run"), "one holds the other"),
    ("publish-into-a-subfolder", lambda t: (_finished_run(t), t / "results" / "run" / "pub"), "one holds the other"),
    ("publish-into-its-parent", lambda t: (_finished_run(t), t / "results"), "one holds the other"),
    ("publish-into-a-user-folder", lambda t: (_finished_run(t), _user_dest(t) or t / "dest"), "not an earlier"),
    ("publish-dest-is-a-file", lambda t: (_finished_run(t), _file(t / "dest")), "is not a folder"),
    ("publish-dest-under-a-file", lambda t: (_finished_run(t), _file(t / "f") / "x" / "dest"), "is under a file"),
    ("publish-incomplete", lambda t: (_cut_run(t), t / "dest"), "lacks summary.csv"),
    ("publish-not-a-folder", lambda t: (t / "nowhere", t / "dest"), "is not a folder"),
    ("publish-unfinished", lambda t: (_mkdir(t / "results" / "half"), t / "dest"), "no leaderboard.md"),
    ("publish-sweep-json-garbage", lambda t: (_merged_sweep(t, "{not json"), t / "dest"), "is not valid JSON"),
    ("publish-sweep-json-binary", lambda t: (_merged_sweep(t, b"\x00\xff"), t / "dest"), "is not a text file"),
    ("publish-sweep-json-a-list", lambda t: (_merged_sweep(t, [1, 2]), t / "dest"), "no name"),
    ("publish-sweep-json-no-cells", lambda t: (_merged_sweep(t, {"name": "g", "cells": []}), t / "dest"), "no cells"),
    (
        "publish-sweep-json-bad-key",
        lambda t: (_merged_sweep(t, {"name": "g", "cells": [{"key": "../../x"}]}), t / "dest"),
        "has no valid key",
    ),
    (
        "publish-sweep-without-its-file",
        lambda t: (_no_sweep_yaml(_merged_sweep(t, {"name": "g", "cells": [CELL]})), t / "dest"),
        "lacks sweep.yaml",
    ),
    (
        "publish-planted-source-link",
        lambda t: (_linked_sweep_yaml(_merged_sweep(t, {"name": "g", "cells": [CELL]}), t), t / "dest"),
        "resolves outside",
    ),
    (
        "publish-readme-without-markers",
        lambda t: (_finished_run(t), t / "dest", "--readme", str(_file(t / "README.md"))),
        "has no <!-- leaderboard:start -->",
    ),
]


def _file(path: Path) -> Path:
    path.write_text("a file\n")
    return path


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True)
    return path


def _cut_run(tmp: Path) -> Path:
    run = _finished_run(tmp)
    (run / "summary.csv").unlink()
    return run


def _no_sweep_yaml(sweep: Path) -> Path:
    (sweep / "sweep.yaml").unlink()
    return sweep


def _linked_sweep_yaml(sweep: Path, tmp: Path) -> Path:
    (sweep / "sweep.yaml").unlink()
    (sweep / "sweep.yaml").symlink_to(_file(tmp / "secret.txt"))
    return sweep


@pytest.mark.parametrize("case_id,setup,message", PUBLISH_CASES, ids=[c[0] for c in PUBLISH_CASES])
def test_hostile_publish(case_id, setup, message, tmp_path, capsys, no_hang):
    from benchmark.reporting.publish import main as publish_main

    run, dest, *more = setup(tmp_path)
    before = snapshot(tmp_path)
    code = publish_main([str(run), str(dest), *more])
    assert_one_line(code, capsys.readouterr().err, 2, message)
    assert snapshot(tmp_path) == before  # byte-identical: checked before anything was written


def test_publish_replaces_only_an_earlier_publication_and_never_reads_outside_the_sweep(tmp_path, capsys):
    from benchmark.reporting.publish import main as publish_main

    (tmp_path / "secret.txt").write_text("not for publishing\n")
    status = {"name": "grid", "source": "../../secret.txt", "cells": [{**CELL, "folder": str(tmp_path)}]}
    sweep = _merged_sweep(tmp_path, status)
    (tmp_path / "cells-elsewhere").mkdir()
    dest = tmp_path / "dest"
    assert publish_main([str(_finished_run(tmp_path)), str(dest)]) == 0
    assert (dest / "config.yaml").is_file() and (dest / "publish.json").is_file()
    assert publish_main([str(sweep), str(dest)]) == 0  # an earlier publication: replaced whole
    assert (dest / "sweep.yaml").read_text() == "name: grid\n"  # the sweep's own copy, not source:
    assert not (dest / "config.yaml").exists()
    assert b"not for publishing" not in b"".join(p.read_bytes() for p in dest.rglob("*") if p.is_file())
    (dest / "notes.md").write_text("mine\n")  # the user's file in a publication: refused, kept
    before = snapshot(tmp_path)
    assert_one_line(publish_main([str(sweep), str(dest)]), capsys.readouterr().err, 2, "'notes.md'")
    assert snapshot(tmp_path) == before
    assert [p.name for p in tmp_path.iterdir() if ".publishing-" in p.name or ".old-" in p.name] == []


def test_publish_touches_no_readme_unless_asked(tmp_path, capsys):
    from test_publish import README

    from benchmark.reporting.publish import main as publish_main

    suite_readme = Path(__file__).resolve().parents[2] / "README.md"
    before = suite_readme.read_bytes()
    readme = tmp_path / "README.md"
    readme.write_text(README)
    assert publish_main([str(_finished_run(tmp_path)), str(tmp_path / "dest")]) == 0
    assert readme.read_text() == README and suite_readme.read_bytes() == before
    assert publish_main([str(_finished_run(tmp_path / "b")), str(tmp_path / "dest"), "--readme", str(readme)]) == 0
    assert "| finetune |" in readme.read_text() and suite_readme.read_bytes() == before


def test_sweep_name_flag_names_the_sweep_folder(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = _write_doc(tmp_path)
    assert main(["--sweep", str(path), "--dry-run", "--name", "other"]) == 0
    assert str(tmp_path / "results" / "other" / "cells") in capsys.readouterr().out
    assert not (tmp_path / "results").exists()


def test_a_missing_dataset_is_found_before_the_run_is_announced(finished_run, tmp_path, capsys):
    """A missing dataset is one line, and no 'starting run <folder>' names a folder that is then removed."""
    shared = finished_run.parents[1] / "shared.yaml"
    (tmp_path / "mnist.yaml").write_text("stages: [mnist]\n")
    args = [
        "--config",
        str(shared),
        "--results-dir",
        str(tmp_path / "results"),
        "--sequence",
        str(tmp_path / "mnist.yaml"),
    ]
    code = main([*args, "--data-root", str(tmp_path / "no-data")])
    err = capsys.readouterr().err
    assert code == 2 and "starting run" not in err and "Traceback" not in err, err
    assert err.splitlines()[-1].startswith("error: ") and "mnist" in err.splitlines()[-1], err
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").iterdir())
