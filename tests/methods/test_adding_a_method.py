"""The path docs/adding_a_method.md describes: a toy regulariser registered, run, unregistered."""

from __future__ import annotations

import re
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pytest
import torch
from methods_testkit import Spy, encoder_change, extra_loss, micro_setup, run

from benchmark.errors import UserError
from benchmark.run.plugins import load_plugins, module_name_for
from methods import METHODS, Method, build_method, register_method

DOC = Path(__file__).resolve().parents[2] / "docs" / "adding_a_method.md"


TOY = f"toy_l1sp_{uuid.uuid4().hex[:8]}"  # a name no user or other test has


def register_toy_l1sp() -> type:
    """The doc's L1-SP, defined and registered here (not at import: test_base would run it)."""

    @register_method(TOY)
    class ToyL1SP(Method):
        """Fine-tuning + beta * l1 distance of the image-encoder weights to the stage's start."""

        paper = "a toy after Li, Grandvalet, Davoine, ICML 2018 (L2-SP)"
        needs_encoder_training = True

        @dataclass
        class Params:
            beta: float = 1e-4

        def validate(self) -> None:
            if self.params.beta < 0:
                raise UserError(f"hparams.toy_l1sp.beta={self.params.beta!r} must be >= 0")

        def __init__(self, params: Optional[ToyL1SP.Params] = None) -> None:
            super().__init__(params)
            self.weights: list[torch.Tensor] = []
            self.anchors: list[torch.Tensor] = []

        def before_training_exp(self, strategy, **kwargs) -> None:
            self.weights = [p for p in strategy.model.visual.parameters() if p.requires_grad]
            self.anchors = [p.detach().clone() for p in self.weights]

        def before_backward(self, strategy, **kwargs) -> None:
            distances = torch._foreach_sub(self.weights, self.anchors)
            strategy.loss += self.params.beta * sum(d.abs().sum() for d in distances)

    return ToyL1SP


def test_a_toy_regulariser_registers_runs_and_unregisters():
    cls = register_toy_l1sp()
    try:
        assert TOY in METHODS.names()
        assert METHODS.get(TOY).describe().startswith("Fine-tuning + beta * l1 distance")
        with pytest.raises(UserError, match="must be >= 0"):
            build_method(TOY, {TOY: {"beta": -1}})
        with pytest.raises(UserError, match="freezes the image encoder"):
            build_method(f"linear_probe+{TOY}", {})

        added: dict[int, list[float]] = {1: [], 2: []}
        spy = Spy(before_backward=lambda s: added[s.stage_index].append(extra_loss(s)))
        setup = micro_setup()
        result, plugins = run(setup, f"{TOY}+replay", {TOY: {"beta": 0.01}}, spies=(spy,))
        assert isinstance(plugins[0], cls) and plugins[0].params.beta == 0.01
        assert [a[0] for a in added.values()] == [0.0, 0.0]  # each stage starts at its anchor
        assert all(a[-1] > 0 for a in added.values())  # and the penalty grows as the encoder moves
        assert encoder_change(setup.tracker.encoders[0], setup.tracker.encoders[2]) > 0
    finally:
        if TOY in METHODS and METHODS.get(TOY) is cls:
            METHODS.unregister(TOY)
    assert TOY not in METHODS.names()


def run_the_docs_example(folder: Path) -> str:
    """Follow the doc: its file in a folder of its own, loaded by --plugins' loader, under a
    fresh name (so a user's own ``l1sp`` is never replaced, nor removed by the cleanup)."""
    block = re.search(r"## 2\. The file.*?```python\n(.*?)```", DOC.read_text(), re.S).group(1)
    assert 'register_method("l1sp")' in block
    name = f"docs_l1sp_{uuid.uuid4().hex[:8]}"
    path = folder / "l1sp.py"
    path.write_text(block.replace('register_method("l1sp")', f'register_method("{name}")'))
    try:
        (module,) = load_plugins([str(path)])
        assert METHODS.get(name) is module.L1SP
        (method,) = build_method(name, {name: {"beta": 0.5}})
        assert method.params.beta == 0.5
    finally:
        if name in METHODS and METHODS.get(name).__module__ == module_name_for(path.resolve()):
            METHODS.unregister(name)  # only what this test registered
        sys.modules.pop(module_name_for(path.resolve()), None)
    return name


def test_the_docs_example_registers_as_written(tmp_path):
    name = run_the_docs_example(tmp_path)
    assert name not in METHODS


def test_a_users_l1sp_survives_the_docs_test(tmp_path):
    """A user who followed the doc has an ``l1sp`` registered: the doc's test leaves it alone."""

    class UsersL1SP(Method):
        """A user's method of the doc's name."""

    ours = "l1sp" not in METHODS
    if ours:
        register_method("l1sp")(UsersL1SP)
    try:
        users = METHODS.get("l1sp")
        run_the_docs_example(tmp_path)
        assert METHODS.get("l1sp") is users
    finally:
        if ours:
            METHODS.unregister("l1sp")


def test_the_docs_head_rule_is_one_file_that_the_loop_follows(tmp_path):
    """Section 3's head rule, loaded by --plugins' loader under a fresh name: its first head
    is the blend in both scenarios (earlier groups' rows kept), and compositions follow."""
    block = re.search(r"## 3\. A head rule of its own.*?```python\n(.*?)```", DOC.read_text(), re.S).group(1)
    name = f"docs_blend_{uuid.uuid4().hex[:8]}"
    path = tmp_path / "blend_init.py"
    path.write_text(block.replace('register_method("blend_init")', f'register_method("{name}")'))
    try:
        load_plugins([str(path)])
        assert [m.name for m in build_method(f"{name}+ldifs", {})] == [name, "ldifs"]
        with pytest.raises(UserError, match="different head inits"):
            build_method(f"{name}+lp_ft", {})
        for class_incremental, task in ((False, "alpha"), (True, "hues-g2")):
            setup = micro_setup(class_incremental=class_incremental)
            first: dict[int, torch.Tensor] = {}
            spy = Spy(
                before_training_exp=lambda s, f=first: f.setdefault(s.stage_index, s.model.heads["0"].weight.clone())
            )
            run(setup, name, spies=(spy,))
            stage = 2 if class_incremental else 1
            expected = blend(setup, task, setup.tracker.encoders[stage - 1])
            torch.testing.assert_close(first[stage][-3:], expected)  # the stage's own classes
            if class_incremental:  # group 1's rows are where stage 1 left them
                assert torch.equal(first[2][:3], setup.tracker.heads[1]["hues-g1"].head.weight)
    finally:
        if name in METHODS and METHODS.get(name).__module__ == module_name_for(path.resolve()):
            METHODS.unregister(name)
        sys.modules.pop(module_name_for(path.resolve()), None)


def blend(setup, task_name: str, encoder: dict[str, torch.Tensor]) -> torch.Tensor:
    """The doc's rule recomputed from its definition: normalise(zs/|zs| + mean/|mean|) * scale."""
    import copy

    visual = copy.deepcopy(setup.bundle.model.visual)
    visual.load_state_dict(encoder)
    task = setup.tasks[task_name]
    feats = setup.tracker.features(visual, task.train.images)
    means = torch.stack([feats[task.train.labels == c].mean(0) for c in range(task.num_classes)])
    text = setup.tracker.sets[task_name].zeroshot
    scale = setup.bundle.model.logit_scale.exp()
    unit = torch.nn.functional.normalize
    return unit(unit(text, dim=-1) + unit(means, dim=-1), dim=-1) * scale
