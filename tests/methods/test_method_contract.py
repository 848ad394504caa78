"""The continual loop asks a method only through its hooks: it reads no flag of it, and a
method says what it does differently by overriding hooks in its own file."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from methods_testkit import micro_setup, run

from benchmark.training.method import Method
from methods import METHODS, build_method

ROOT = Path(__file__).resolve().parents[2]
FORMER_FLAGS = ("trains", "head_init", "freeze_encoder", "probe_head", "prototype_head", "refuses")
# What Avalanche itself reads of every plugin (BasePlugin's protocol) and a method's identity.
DATA_THE_ENGINE_MAY_READ = {"supports_distributed", "name", "params"}


class Recording(Method):
    """Plain fine-tuning that records every attribute read of it whose value is not a hook."""

    def __init__(self) -> None:
        super().__init__()
        object.__setattr__(self, "read", set())

    def __getattribute__(self, attr: str):
        value = object.__getattribute__(self, attr)
        if not callable(value) and attr not in ("read", "__dict__"):
            object.__getattribute__(self, "read").add(attr)
        return value


@pytest.mark.parametrize("class_incremental", [False, True])
def test_the_loop_calls_hooks_and_reads_no_data_of_a_method(class_incremental):
    recording = Recording()
    setup = micro_setup(class_incremental=class_incremental)
    from benchmark.loop.scheduler import run_method

    stage0 = setup.tracker.evaluate(setup.bundle.model.visual, {}, 0)
    result = run_method(setup, "finetune", 0, stage0, plugins=[recording])
    assert result.status == "ok"
    assert recording.read <= DATA_THE_ENGINE_MAY_READ, recording.read - DATA_THE_ENGINE_MAY_READ


def test_no_module_of_the_run_layer_reads_a_method_flag():
    """An attribute of a former flag's name, read and not called, in benchmark/run/ (the
    run's own ``train.head_init`` is the config's, not a method's)."""
    found = []
    for path in sorted((ROOT / "benchmark" / "run").rglob("*.py")):
        tree = ast.parse(path.read_text())
        called = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
        for node in ast.walk(tree):
            flag = isinstance(node, ast.Attribute) and node.attr in (*FORMER_FLAGS, "needs_encoder_training")
            config = flag and isinstance(node.value, ast.Attribute) and node.value.attr == "train"
            if flag and id(node) not in called and not config:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} .{node.attr}")
    assert not found


def test_a_former_flag_is_refused_not_ignored():
    with pytest.raises(TypeError, match="freeze_encoder is no longer read: override Method.trains_encoder"):

        class Frozen(Method):
            freeze_encoder = True

    assert not any(hasattr(Method, flag) and not callable(getattr(Method, flag)) for flag in FORMER_FLAGS)


@pytest.mark.parametrize(
    "name, encoder, steps, first, last",
    [
        ("finetune", True, True, None, None),
        ("zeroshot", True, False, "zeroshot", None),
        ("prototype", False, False, "prototypes", None),
        ("linear_probe", False, True, None, "probe"),
        ("lp_ft", True, True, "probe", None),
        ("flyp", True, True, "zeroshot", None),
    ],
)
def test_each_method_file_owns_its_head_rule(name, encoder, steps, first, last):
    """What the former flags said, each method now answers through its hooks."""

    class Tools:  # records which of the head tools a hook asked for
        def __getattr__(self, rule):
            return lambda task: rule

    (method,) = build_method(name, {}, check_only=True)
    assert (method.trains_encoder(), method.takes_steps()) == (encoder, steps)
    assert (method.init_head(Tools(), None), method.final_head(Tools(), None)) == (first, last)


def test_refusals_come_from_the_method_files():
    refusing = {n for n in METHODS.names() if METHODS.get(n).refuse("class_incremental")}
    assert {"linear_probe", "flyp"} <= refusing


def test_prototype_stages_take_no_step_and_report_no_loss():
    setup = micro_setup()
    result, _ = run(setup, "prototype")
    assert [s["final_loss"] for s in result.stages] == [0.0, 0.0]
