"""Every registered method runs through the real scheduler and engine; composition rules."""

from __future__ import annotations

import pytest
from methods_testkit import encoder_change, micro_setup, run

from benchmark.errors import UserError
from methods import METHODS, build_method


@pytest.mark.parametrize("tower", ["vit", "resnet"])
@pytest.mark.parametrize("name", METHODS.names())
def test_every_method_runs_two_stages(name, tower):
    setup = micro_setup(tower)
    result, plugins = run(setup, name)
    assert {row["stage"] for row in result.rows} == {0, 1, 2}
    assert len(result.rows) == 3 * 2 * 2  # stages x tasks x kinds (head, zs)
    (method,) = plugins
    trains_encoder = method.trains() and method.takes_steps() and method.trains_encoder()
    final = setup.tracker.encoders.get(2, setup.tracker.encoders[0])  # zero-shot: never evaluated again
    changed = encoder_change(setup.tracker.encoders[0], final)  # parameters and BatchNorm buffers
    assert (changed > 0) == trains_encoder, f"{name}: encoder change {changed}"
    if method.trains():
        assert all(s["final_loss"] == s["final_loss"] for s in result.stages)  # not NaN


def test_ldifs_plus_replay_composes_and_runs():
    setup = micro_setup()
    result, plugins = run(setup, "ldifs+replay")
    assert [p.name for p in plugins] == ["ldifs", "replay"]
    assert len(plugins[1].plugin.storage_policy.buffer) > 0  # replay filled its buffer
    assert encoder_change(setup.tracker.encoders[0], setup.tracker.encoders[2]) > 0


@pytest.mark.parametrize(
    "spec, why",
    [
        ("zeroshot+replay", "trains nothing"),
        ("linear_probe+l2sp", "freezes the image encoder"),
        ("linear_probe+ldifs", "freezes the image encoder"),
        ("linear_probe+ewc", "freezes the image encoder"),
        ("lp_ft+flyp", "different head inits"),
        ("replay+replay", "names a part twice"),
    ],
)
def test_refused_compositions(spec, why):
    with pytest.raises(UserError, match=why):
        build_method(spec, {})


@pytest.mark.parametrize(
    "spec", ["linear_probe+replay", "lp_ft+ldifs", "lp_ft+l2sp+replay", "wise_ft+ewc", "flyp+l2sp"]
)
def test_allowed_compositions(spec):
    assert [m.name for m in build_method(spec, {})] == spec.split("+")


def test_every_method_describes_itself_with_a_paper():
    for name in METHODS.names():
        cls = METHODS.get(name)
        assert cls.paper, name
        assert cls.describe().strip(), name
