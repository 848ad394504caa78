"""Methods in the class-incremental scenario, through the real scheduler and engine: every
registered method runs or is refused in one line; the one head grows without touching old rows."""

import pytest
import torch
import torch.nn.functional as F
from methods_testkit import Spy, micro_setup, run

from benchmark.errors import UserError
from benchmark.evaluation.heads import accuracy
from benchmark.loop.seen_classes import check_scenario
from methods import METHODS


@pytest.mark.parametrize("name", METHODS.names())
def test_every_method_runs_class_incremental_or_is_refused_in_one_line(name):
    setup = micro_setup("resnet", class_incremental=True)
    why = METHODS.get(name).refuse("class_incremental")
    if why:
        with pytest.raises(UserError, match=f"'{name}' cannot run the class-incremental sequence"):
            check_scenario(name, setup.sequence)
        return
    result, _ = run(setup, name)
    assert result.status == "ok"
    assert len([r for r in result.rows if r["stage"] == 2]) == 2 * 2  # groups x kinds
    assert setup.tracker.heads[2]["hues-g2"].head.out_features == 6  # one head over all 6 classes


def test_through_the_scheduler_old_rows_are_untouched_when_the_next_group_arrives():
    setup = micro_setup(class_incremental=True)
    seen = {}
    spy = Spy(before_training_exp=lambda s: seen.setdefault(s.stage_index, s.model.heads["0"].weight.detach().clone()))
    result, _ = run(setup, "finetune", spies=(spy,))
    after_stage_1 = setup.tracker.heads[1]["hues-g1"].head.weight
    assert seen[1].shape == (3, 16) and seen[2].shape == (6, 16)
    assert torch.equal(seen[2][:3], after_stage_1)  # as stage 1 left them
    assert torch.equal(seen[2][3:], setup.tracker.sets["hues-g2"].zeroshot)  # ZS-init rows of the new classes
    # every seen group is scored by the one head, no task identity: 2 groups after stage 2
    assert {r["eval_task"] for r in result.rows if r["stage"] == 2} == {"hues-g1", "hues-g2"}


def test_zero_shot_grows_its_head_over_the_seen_class_names():
    setup = micro_setup(class_incremental=True)
    result, _ = run(setup, "zeroshot")
    sets = setup.tracker.sets
    first = {r["eval_task"]: r["accuracy"] for r in result.rows if r["stage"] == 2 and r["kind"] == "zs"}
    feats = setup.tracker.features(setup.bundle.model.visual, sets["hues-g1"].test_images)
    seen = torch.cat([sets["hues-g1"].zeroshot, sets["hues-g2"].zeroshot])
    expected = accuracy(feats @ seen.T, sets["hues-g1"].test_labels)  # group 1's offset is 0
    assert first["hues-g1"] == pytest.approx(round(expected, 4))


def test_prototype_rows_are_the_class_means_of_frozen_features():
    setup = micro_setup(class_incremental=True)
    run(setup, "prototype")
    task = setup.tasks["hues-g2"]
    feats = setup.tracker.features(setup.bundle.model.visual, task.train.images)
    means = torch.stack([feats[task.train.labels == c].mean(0) for c in range(3)])
    rows = setup.tracker.heads[2]["hues-g2"].head.weight[3:]
    scale = float(setup.bundle.model.logit_scale.detach().exp())
    assert torch.allclose(rows, F.normalize(means, dim=-1) * scale, atol=1e-5)
