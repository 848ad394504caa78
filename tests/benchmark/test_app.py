"""``ldifs-bench``: one command whose subcommands are the suite's entry points."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from benchmark.run import app

ROOT = Path(__file__).resolve().parents[2]
NAMED = ("run", "sweep", "leaderboard", "publish", "criterion", "gpu-check", "perf", "pretrain", "fingerprint")


def test_help_lists_every_subcommand_and_imports_none(capsys):
    assert app.main(["--help"]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines() if line.startswith("  ")]
    assert listed == list(NAMED)
    assert tuple(app.SUBCOMMANDS) == NAMED


def test_the_installed_script_is_the_dispatcher():
    scripts = (ROOT / "pyproject.toml").read_text().split("[project.scripts]")[1].split("\n[")[0]
    assert 'ldifs-bench = "benchmark.run.app:main"' in scripts


@pytest.mark.parametrize("name", NAMED)
def test_each_subcommand_names_a_module_with_a_main(name):
    module = app.SUBCOMMANDS[name][0]
    assert importlib.util.find_spec(module) is not None, module
    source = Path(importlib.util.find_spec(module).origin).read_text()
    assert "\ndef main(" in source


def test_a_subcommand_runs_its_modules_main_with_the_rest_of_the_line(monkeypatch):
    seen = []
    fake = type("Module", (), {"main": staticmethod(lambda argv: seen.append(argv) or 0)})
    monkeypatch.setattr(app.importlib, "import_module", lambda name: fake)
    assert app.main(["criterion", "results/x"]) == 0
    assert app.main(["sweep", "s.yaml", "--workers", "2"]) == 0
    assert app.main(["--methods", "finetune"]) == 0  # the former entry point's flags: run
    assert seen == [["results/x"], ["--sweep", "s.yaml", "--workers", "2"], ["--methods", "finetune"]]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["nope"], "unknown subcommand 'nope'; valid: run, sweep,"),
        (["sweep"], "needs a sweep file first"),
        (["sweep", "--workers", "2"], "needs a sweep file first"),
    ],
)
def test_bad_subcommands_are_one_line_and_exit_2(argv, message, capsys):
    assert app.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_a_module_missing_from_this_installation_is_one_line(monkeypatch, capsys):
    monkeypatch.setitem(app.SUBCOMMANDS, "fingerprint", ("benchmark.run.not_written_yet", "x"))
    assert app.main(["fingerprint"]) == 2
    assert "benchmark.run.not_written_yet is not part of this installation" in capsys.readouterr().err


def test_run_lists_methods_through_the_module_form():
    out = subprocess.run(
        [sys.executable, "-m", "benchmark.run.app", "run", "--list-methods"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0 and "ldifs" in out.stdout
