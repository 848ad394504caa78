"""Avalanche's own plugins do the work: EWC's penalty, LwF's distillation, replay's buffer."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from avalanche.training.plugins import SupervisedPlugin
from methods_testkit import Spy, extra_loss, micro_setup, run

from benchmark.errors import UserError
from methods import METHODS, build_method
from methods.avalanche_plugins import HOOKS, AvalancheEntry, register_avalanche


def added_loss_per_stage(spec: str, hparams: dict) -> dict[int, list[float]]:
    """Loss minus cross-entropy at every step, by stage, seen after the method's plugins."""
    added: dict[int, list[float]] = {1: [], 2: []}
    spy = Spy(before_backward=lambda s: added[s.stage_index].append(extra_loss(s)))
    run(micro_setup(), spec, hparams, spies=(spy,))
    return added


def test_ewc_penalty_is_added_from_the_second_stage():
    added = added_loss_per_stage("ewc", {"ewc": {"ewc_lambda": 1e4}})
    assert added[1] == [0.0, 0.0]  # no past stage yet
    assert added[2][0] == pytest.approx(0.0, abs=1e-12)  # first step: weights still at the anchor
    assert added[2][-1] > 0  # after a step away from the anchor the Fisher-weighted pull bites


def test_lwf_distillation_is_non_zero_on_the_second_stage():
    added = added_loss_per_stage("lwf", {})
    assert added[1] == [0.0, 0.0]  # no teacher yet
    assert added[2][-1] > 0  # the old head's outputs moved away from the teacher's


def test_replay_buffer_holds_the_first_task_and_batches_mix_tasks():
    seen: dict[str, object] = {"batch_tasks": set()}

    def at_stage_start(strategy):
        if strategy.stage_index == 2:
            replay = next(p for p in strategy.plugins if getattr(p, "name", "") == "replay")
            buffer = replay.plugin.storage_policy.buffer
            seen["buffer_tasks"] = set(buffer.targets_task_labels.uniques)
            seen["loader"] = type(strategy.dataloader).__name__

    def at_forward(strategy):
        if strategy.stage_index == 2:
            seen["batch_tasks"] |= set(strategy.mb_task_id.tolist())

    spy = Spy(before_training_exp=at_stage_start, before_forward=at_forward)
    setup = micro_setup()
    _, (replay,) = run(setup, "replay", {"replay": {"mem_size": 8}}, spies=(spy,))
    assert seen["buffer_tasks"] == {0}  # stage 1's samples, labelled with its task
    assert seen["loader"] == "ReplayDataLoader"
    assert seen["batch_tasks"] == {0, 1}  # replayed and current samples in the same batches
    assert len(replay.plugin.storage_policy.buffer) == 8


def test_bad_avalanche_arguments_are_a_user_error():
    with pytest.raises(UserError, match="EWCPlugin refused"):
        build_method("ewc", {"ewc": {"mode": "online"}})  # online mode needs a decay_factor


class HookRecorder(SupervisedPlugin):
    """A stand-in Avalanche plugin that records which hooks reached it."""

    def __init__(self, tag: str = "x") -> None:
        super().__init__()
        self.tag = tag
        self.calls: list[str] = []


for _hook in HOOKS:
    setattr(HookRecorder, _hook, lambda self, strategy, _hook=_hook, **kwargs: self.calls.append(_hook))


@dataclass
class RecorderParams:
    tag: str = "x"


def test_any_plugin_registers_from_one_table_row_and_receives_every_hook():
    register_avalanche("hook_recorder", AvalancheEntry(HookRecorder, RecorderParams, "Records hooks.", "none"))
    try:
        assert METHODS.get("hook_recorder").describe().startswith("Records hooks.")
        setup = micro_setup()
        _, (_, method) = run(setup, "finetune+hook_recorder", {"hook_recorder": {"tag": "y"}})
    finally:
        METHODS.unregister("hook_recorder")
    assert method.plugin.tag == "y"
    training_hooks = {h for h in HOOKS if "eval" not in h}  # the scheduler never calls engine.eval
    assert training_hooks <= set(method.plugin.calls)


def test_mas_importance_pass_leaves_batchnorm_statistics_as_training_left_them():
    import torch

    after_training: dict[int, dict[str, torch.Tensor]] = {}

    def snapshot(strategy) -> None:  # runs before MAS's own after_training_exp (spies first)
        after_training[strategy.stage_index] = {
            k: v.clone() for k, v in strategy.model.visual.state_dict().items() if "running" in k
        }

    setup = micro_setup("resnet")
    run(setup, "mas", spies=(Spy(after_training_exp=snapshot),), spies_first=True)
    for stage in (1, 2):
        evaluated = setup.tracker.encoders[stage]
        assert after_training[stage] and all(torch.equal(evaluated[k], v) for k, v in after_training[stage].items())
