"""The command line: registries, bad inputs (exit 2, one line, nothing left behind), one end-to-end run."""

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from benchmark.config import dump_yaml
from benchmark.models.clip_loading import load_clip, weights_digest
from benchmark.run.index import read_index
from run_benchmark import main


def write_cfg(cfg, tmp_path) -> str:
    path = tmp_path / "micro.yaml"
    path.write_text(dump_yaml(cfg))
    return str(path)


def test_list_registries(capsys):
    assert main(["--list-methods", "--list-tasks", "--list-sequences"]) == 0
    out = capsys.readouterr().out
    for name in ("ldifs", "finetune", "zeroshot", "digits", "shapes", "default", "micro"):
        assert name in out
    assert "Mukhoti" in out  # each method cites its paper


def bad_files(tmp: Path) -> None:
    """Files some bad inputs point at, written by the test itself."""
    (tmp / "broken.yaml").write_text("train: [unclosed\n")
    (tmp / "empty_seq.yaml").write_text("name: empty\nstages: []\n")
    (tmp / "bad_task.yaml").write_text("stages: [shapes, imagenet-9000]\n")
    (tmp / "mnist_seq.yaml").write_text("stages: [mnist]\n")
    (tmp / "bad_cil.yaml").write_text("scenario: class_incremental\ndataset: shapes\nsteps: 2\norder: [0, 1, 2]\n")
    (tmp / "a_file").write_text("")
    (tmp / "garbage.pt").write_bytes(b"not a checkpoint")
    (tmp / "empty_model_dir").mkdir(exist_ok=True)


# (arguments, expected part of the one-line error); {tmp} is the test's own folder.
BAD_INPUTS = [
    (["--methods", "finetune,bogus"], "unknown method 'bogus'; valid choices:"),
    (["--sequence", "nope"], "unknown sequence 'nope'; valid choices:"),
    (["--model.name", "NoSuchNet"], "unknown model 'NoSuchNet'"),
    (["--model.pretrained", "/no/such/ckpt.pt", "--model.name", "RN50"], "checkpoint file '/no/such/ckpt.pt'"),
    (["--model.name", "RN50", "--model.pretrained", "{tmp}/garbage.pt"], "could not load model 'RN50'"),
    (["--model.name", "local-dir:{tmp}/empty_model_dir"], "has no open_clip_config.json"),
    (["--train.lrr", "1"], "unknown config key 'train.lrr'"),
    (["--train.epochs", "two"], "train.epochs: expected an integer, got 'two'"),
    (["--train.lr", "-0.1"], "train.lr=-0.1 must be > 0"),
    (["--train.batch_size", "0"], "train.batch_size=0 must be >= 1"),
    (["--device", "tpu9"], "unknown device 'tpu9'"),
    (["--threads", "-2"], "threads=-2 must be >= 0"),
    (["--loggers", "mlflow"], "unknown logger 'mlflow'"),
    (["--hparams.ldifs.alpha", "-1"], "hparams.ldifs.alpha=-1.0 must be >= 0"),
    (["--hparams.ldifs.reference", "yesterday"], "valid choices: previous, pretrained"),
    (["--hparams.ldifs.beta", "1"], "unknown hyperparameter ldifs.beta"),
    (["--methods", "zeroshot+ldifs"], "cannot be composed"),
    (["--eval.kinds", "lp,acc"], "valid choices: head, lp, zs"),
    (["--eval.probe", "sklearn"], "eval.probe='sklearn' is not valid; valid choices: fast, authors"),
    (["--frobnicate"], "unrecognised argument '--frobnicate'"),
    (["--config", "{tmp}/missing.yaml"], "cannot read config file"),
    (["--config", "{tmp}/broken.yaml"], "is not valid YAML"),
    (["--sequence", "{tmp}/empty_seq.yaml"], "empty 'stages' list"),
    (["--sequence", "{tmp}/bad_task.yaml"], "unknown task 'imagenet-9000'"),
    (["--sequence", "{tmp}/mnist_seq.yaml", "--data-root", "{tmp}/no_data"], "dataset 'mnist' not found"),
    (["--results-dir", "{tmp}/a_file/sub"], "cannot be written"),
    (["--sequence", "objects_cil", "--methods", "linear_probe"], "cannot run the class-incremental sequence"),
    (["--sequence", "cifar100_cil10", "--data-root", "{tmp}/no_data"], "dataset 'cifar100' not found"),
    (["--sequence", "tinyimagenet_cil", "--data-root", "{tmp}/no_data"], "dataset 'tinyimagenet' not found"),
    (["--sequence", "{tmp}/bad_cil.yaml"], "order must list each of"),
]


@pytest.mark.parametrize("args,message", BAD_INPUTS, ids=[" ".join(a)[:40] for a, _ in BAD_INPUTS])
def test_bad_input_is_one_line_exit_2_nothing_written(args, message, micro_cfg, tmp_path, capsys):
    bad_files(tmp_path)
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    code = main(["--config", write_cfg(micro_cfg, tmp_path), "-q", *args])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err, err
    results = Path(micro_cfg.results_dir)
    assert not results.exists() or not any(results.iterdir())  # no run folder, no staging, no lock


def test_end_to_end_micro_run(micro_cfg, tmp_path, capsys):
    assert main(["--config", write_cfg(micro_cfg, tmp_path), "-q", "--name", "e2e"]) == 0
    out = capsys.readouterr().out
    run = Path(micro_cfg.results_dir) / "e2e"
    assert str(run) in out and "ldifs" in out
    for name in ("config.yaml", "manifest.json", "accuracy_long.csv", "summary.csv", "report.md"):
        assert (run / name).is_file(), name
    assert list((run / "plots").glob("*.png")) and list((run / "plots").glob("*.svg"))
    long = pd.read_csv(run / "accuracy_long.csv")
    columns = [
        "method",
        "seed",
        "stage",
        "trained_task",
        "eval_task",
        "kind",
        "accuracy",
        "ece",
        "status",
        "split",
        "n",
    ]
    assert list(long.columns) == columns
    assert set(long.status) == {"ok"} and set(long.split) == {"test"}  # val rows only when eval.splits asks
    # 3 methods x 3 stages (0..2) x 3 eval tasks x 3 kinds
    assert len(long) == 3 * 3 * 3 * 3
    assert set(long.trained_task) == {"pretrained", "shapes", "digits"}
    assert long.accuracy.between(0, 100).all()
    summary = pd.read_csv(run / "summary.csv")
    assert {
        "method",
        "kind",
        "last",
        "bwt",
        "fwt",
        "forgetting_if",
        "forgetting_max",
        "mtil_transfer",
        "delta_final_untrained",
    } <= set(summary.columns)
    resolved = yaml.safe_load((run / "config.yaml").read_text())
    assert resolved["train"]["lr"] == micro_cfg.train.lr
    manifest = json.loads((run / "manifest.json").read_text())
    started_from = load_clip(micro_cfg.model, torch.device("cpu")).model  # the cached suite model
    assert manifest["model_weights_sha256"] == weights_digest(started_from)
    assert manifest["cpu_kernels"]["torch_cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    # the fingerprint of the model the run started from, as `python -m benchmark.tools.fingerprint` digests it
    from benchmark.models.preprocess import BatchPreprocess
    from benchmark.tools.fingerprint import digest, header, quick_lines

    with torch.no_grad():
        prep = BatchPreprocess(32, (0.5,) * 3, (0.25,) * 3)
    bundle = load_clip(micro_cfg.model, torch.device("cpu"))
    prep = BatchPreprocess(bundle.image_size, bundle.mean, bundle.std, micro_cfg.train.resize)
    assert manifest["cpu_fingerprint"] == digest(header() + list(quick_lines(bundle.model.visual, prep)))
    assert "/" not in manifest["model"].split(" at ")[-1].split("benchmark/")[0]  # no machine's absolute path
    assert not [p for p in run.parent.iterdir() if p.name.startswith(".")]  # no staging left behind
    # results/index.csv lists the run, results/latest points at it
    (row,) = read_index(run.parent)
    assert (row["folder"], row["status"], row["sequence"], row["methods"]) == (
        "e2e",
        "complete",
        "micro",
        "zeroshot finetune ldifs",
    )
    assert "--name e2e" in row["command"] and float(row["wall_seconds"]) > 0 and row["started"]
    assert (run.parent / "latest").resolve() == run.resolve()


def test_print_config_shows_the_resolved_config_and_runs_nothing(tmp_path, capsys):
    assert main(["--sequence", "micro", "--train.lr", "0.01", "--results-dir", str(tmp_path), "--print-config"]) == 0
    out = capsys.readouterr().out
    printed = tmp_path / "printed.yaml"
    printed.write_text(out)
    from benchmark.config import load_yaml

    cfg = load_yaml(printed)
    assert cfg.sequence == "micro" and cfg.train.lr == 0.01 and not list(tmp_path.glob("micro-*"))


def test_a_shadowed_override_says_so(tmp_path, capsys):
    assert main(["--sequence", "micro", "--train.epochs", "3", "--print-config"]) == 0
    err = capsys.readouterr().err
    assert "train.epochs=3 is not used" in err and "shapes 1" in err


def test_a_users_tasks_module_shadowing_the_suite_is_one_line(tmp_path):
    """The suite installs top-level benchmark/methods/tasks: a user's tasks.py earlier on
    sys.path would shadow them; the CLI names the file instead of failing deep inside."""
    import subprocess
    import sys
    from pathlib import Path

    (tmp_path / "tasks.py").write_text("x = 1\n")
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-m", "benchmark.run.cli", "--list-tasks"],
        cwd=tmp_path,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2 and out.stderr.count("\n") == 1
    assert str(tmp_path / "tasks.py") in out.stderr and "shadows" in out.stderr
