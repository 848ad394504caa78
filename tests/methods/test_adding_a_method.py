"""The path docs/adding_a_method.md describes: a toy regulariser registered, run, unregistered."""

from __future__ import annotations

import re
import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pytest
import torch
from methods_testkit import Spy, encoder_change, extra_loss, micro_setup, run

from benchmark.errors import UserError
from methods import METHODS, Method, build_method, register_method

DOC = Path(__file__).resolve().parents[2] / "docs" / "adding_a_method.md"


def register_toy_l1sp() -> type:
    """The doc's L1-SP, defined and registered here (not at import: test_base would run it)."""

    @register_method("toy_l1sp")
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
        assert "toy_l1sp" in METHODS.names()
        assert METHODS.get("toy_l1sp").describe().startswith("Fine-tuning + beta * l1 distance")
        with pytest.raises(UserError, match="must be >= 0"):
            build_method("toy_l1sp", {"toy_l1sp": {"beta": -1}})
        with pytest.raises(UserError, match="freezes the image encoder"):
            build_method("linear_probe+toy_l1sp", {})

        added: dict[int, list[float]] = {1: [], 2: []}
        spy = Spy(before_backward=lambda s: added[s.stage_index].append(extra_loss(s)))
        setup = micro_setup()
        result, plugins = run(setup, "toy_l1sp+replay", {"toy_l1sp": {"beta": 0.01}}, spies=(spy,))
        assert isinstance(plugins[0], cls) and plugins[0].params.beta == 0.01
        assert [a[0] for a in added.values()] == [0.0, 0.0]  # each stage starts at its anchor
        assert all(a[-1] > 0 for a in added.values())  # and the penalty grows as the encoder moves
        assert encoder_change(setup.tracker.encoders[0], setup.tracker.encoders[2]) > 0
    finally:
        METHODS.unregister("toy_l1sp")
    assert "toy_l1sp" not in METHODS.names()


def test_the_docs_example_registers_as_written():
    block = re.search(r"## 2\. The file.*?```python\n(.*?)```", DOC.read_text(), re.S).group(1)
    module = types.ModuleType("l1sp_doc_example")  # dataclasses look their module up by name
    sys.modules[module.__name__] = module
    try:
        exec(compile(block, str(DOC), "exec"), module.__dict__)
        assert METHODS.get("l1sp") is module.L1SP
        (method,) = build_method("l1sp", {"l1sp": {"beta": 0.5}})
        assert method.params.beta == 0.5
    finally:
        METHODS.unregister("l1sp")
        del sys.modules[module.__name__]
