"""Methods from outside the suite: --plugins files and modules, entry points, errors, resume."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import signal
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pandas as pd
import pytest
import yaml

from benchmark.config import dump_yaml
from benchmark.errors import UserError
from benchmark.run import plugins
from methods import METHODS
from run_benchmark import main

ROOT = Path(__file__).resolve().parents[2]

# A user's method file, as docs/adding_a_method.md shows it (NAME is filled in per test).
METHOD_FILE = '''
"""A user's regulariser, kept in the user's own folder."""
from dataclasses import dataclass

import torch

from methods import Method, register_method


@register_method("NAME")
class Mine(Method):
    """Fine-tuning + beta * l1 distance of the encoder weights to the stage's start."""

    needs_encoder_training = True

    @dataclass
    class Params:
        beta: float = 1e-4

    def __init__(self, params=None):
        super().__init__(params)
        self.weights, self.anchors = [], []

    def before_training_exp(self, strategy, **kwargs):
        self.weights = [p for p in strategy.model.visual.parameters() if p.requires_grad]
        self.anchors = [p.detach().clone() for p in self.weights]

    def before_backward(self, strategy, **kwargs):
        distances = torch._foreach_sub(self.weights, self.anchors)
        strategy.loss += self.params.beta * sum(d.abs().sum() for d in distances)
'''


def method_file(folder: Path, name: str, stem: str = "mine") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{stem}.py"
    path.write_text(METHOD_FILE.replace("NAME", name))
    return path


def unique(prefix: str = "plugin_test") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def test_a_plugin_file_registers_before_the_registries_are_read(tmp_path, capsys, registered_here):
    name = unique()
    path = method_file(tmp_path / "user", name)
    assert main(["--plugins", str(path), "--list-methods"]) == 0
    assert name in capsys.readouterr().out
    assert plugins.load_plugins([str(path)])  # a second import is a no-op, not a clash
    assert METHODS.get(name).__module__ == plugins.module_name_for(path.resolve())


def test_plugins_from_a_config_file_join_methods_all(tmp_path, registered_here):
    from benchmark.run.cli import parse_config

    name = unique()
    path = method_file(tmp_path / "user", name)
    cfg_file = tmp_path / "cfg.yaml"
    cfg_file.write_text(f"plugins: [{path}]\n")
    _, cfg = parse_config(["--config", str(cfg_file), "--methods", "all"])
    assert name in cfg.methods and "zscl" in cfg.methods and "lora" in cfg.methods
    assert cfg.plugins == [str(path.resolve())]


def test_a_plugin_module_on_the_path_registers(tmp_path, monkeypatch, registered_here):
    name, module = unique(), unique()
    method_file(tmp_path, name, stem=module)
    monkeypatch.syspath_prepend(str(tmp_path))
    plugins.load_plugins([module])
    assert name in METHODS.names()
    assert plugins.plugin_records([module])[0]["path"] == str(tmp_path / f"{module}.py")


def test_a_failing_plugin_is_one_line_and_debug_shows_the_traceback(tmp_path, capsys, monkeypatch):
    bad = tmp_path / "broken.py"
    bad.write_text("x = 1 / 0\n")
    assert main(["--plugins", str(bad), "--list-methods"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"plugin {bad} failed to import: ZeroDivisionError: division by zero" in err
    assert main(["--plugins", str(bad), "--list-methods", "--debug"]) == 2
    assert "Traceback" in capsys.readouterr().err
    monkeypatch.setenv("LDIFS_BENCH_DEBUG", "1")
    assert main(["--plugins", str(bad), "--list-methods"]) == 2
    assert "Traceback" in capsys.readouterr().err
    monkeypatch.delenv("LDIFS_BENCH_DEBUG")
    assert main(["--plugins", str(tmp_path / "absent.py"), "--list-methods"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["--plugins", "no_such_module_xq", "--list-methods"]) == 2
    assert "No module named 'no_such_module_xq'" in capsys.readouterr().err


def test_a_name_clash_is_refused_naming_both_modules(tmp_path, registered_here):
    path = method_file(tmp_path, "finetune", stem="clash")
    with pytest.raises(UserError) as err:
        plugins.load_plugins([str(path)])
    message = str(err.value)
    assert "method 'finetune' is already registered by methods.finetune" in message
    assert str(path) in message and "rename one of them" in message
    assert METHODS.get("finetune").__module__ == "methods.finetune"  # the built-in kept its name


def test_entry_point_group_is_discovered(tmp_path, monkeypatch, registered_here):
    name, module = unique(), unique()
    method_file(tmp_path, name, stem=module)
    monkeypatch.syspath_prepend(str(tmp_path))
    ep = importlib.metadata.EntryPoint(name="mine", value=module, group=plugins.ENTRY_POINT_GROUP)
    real = importlib.metadata.entry_points
    monkeypatch.setattr(
        importlib.metadata,
        "entry_points",
        lambda **kw: [ep] if kw.get("group") == plugins.ENTRY_POINT_GROUP else real(**kw),
    )
    plugins.load_plugins([])
    assert name in METHODS.names()
    (record,) = plugins.plugin_records([])
    assert record["path"] == str(tmp_path / f"{module}.py") and len(record["sha256"]) == 64


@pytest.mark.slow  # kills and restarts worker processes: run by .ci/run's slow line
def test_plugin_method_through_the_cli_composes_and_resumes_after_sigkill(micro_cfg, tmp_path):
    """The user's route end to end: a method in a file of their own folder, run with
    --plugins on the micro sequence, alone and with replay, SIGKILLed in stage 2 and resumed
    by the same command (that a resumed run equals an uninterrupted one is test_resume's)."""
    mine = method_file(tmp_path / "user", "mine")
    micro_cfg.name = "plugin"
    cfg_file = tmp_path / "micro.yaml"
    cfg_file.write_text(dump_yaml(micro_cfg))
    args = ["--config", str(cfg_file), "--plugins", str(mine), "--methods", "mine,mine+replay", "-q"]
    killed = _cli(args, kill_at_stage=2)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    results = Path(micro_cfg.results_dir)
    assert (results / ".plugin.partial" / "checkpoints" / "mine__seed0.pt").is_file()
    resumed = _cli(args)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    run_dir = results / "plugin"
    assert "[mine seed 0] resuming after stage 1" in (run_dir / "run.log").read_text()
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["plugins"] == [str(mine.resolve())]
    (record,) = json.loads((run_dir / "manifest.json").read_text())["plugins"]
    assert record["sha256"] == hashlib.sha256(mine.read_bytes()).hexdigest()
    rows = pd.read_csv(run_dir / "accuracy_long.csv")
    assert set(rows["method"]) == {"mine", "mine+replay"} and set(rows["status"]) == {"ok"}
    assert set(rows["stage"]) == {0, 1, 2}  # every stage of both, the resumed one included


def _cli(args: list[str], kill_at_stage: int = 0) -> subprocess.CompletedProcess:
    """run_benchmark.py in a child process; optionally SIGKILLed at a stage's 2nd step."""
    child = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {str(ROOT)!r})
        from benchmark.training.engine import Engine
        original = Engine._after_update
        def killer(self, **kw):
            original(self, **kw)
            if self.stage_index == {kill_at_stage} and self.stage_step == 1:
                os.kill(os.getpid(), signal.SIGKILL)
        Engine._after_update = killer
        from benchmark.run.cli import main
        sys.exit(main({args!r}))
    """)
    return subprocess.run([sys.executable, "-c", child], cwd=ROOT, capture_output=True, text=True, timeout=300)
