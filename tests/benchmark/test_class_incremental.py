"""The class-incremental scenario: the growing head, scoring without task identity, the
metrics, refusals before training, and (slow) the phenomenon itself on the embedded sequence."""

import numpy as np
import pandas as pd
import pytest
import torch

from benchmark.errors import UserError
from benchmark.evaluation.heads import ShiftedHead, accuracy
from benchmark.loop.seen_classes import check_scenario, set_group_rows
from benchmark.models.classifier import ClipClassifier
from benchmark.reporting import metrics
from benchmark.reporting.reports import summarise
from tasks import Split, load_sequence
from tasks.class_incremental import ClassGroup


def group(name: str, classes: int, offset: int) -> ClassGroup:
    empty = Split(torch.zeros(0, 3, 2, 2, dtype=torch.uint8), torch.zeros(0, dtype=torch.long))
    return ClassGroup(name, [f"c{i}" for i in range(classes)], ["{}"], empty, empty, offset=offset)


def test_the_grown_head_keeps_old_rows_bit_for_bit():
    model = ClipClassifier(torch.nn.Identity())
    set_group_rows(model, group("g1", 3, 0), torch.randn(3, 4), torch.randn(3))
    old_w, old_b = model.heads["0"].weight.detach().clone(), model.heads["0"].bias.detach().clone()
    new_w = torch.randn(2, 4)
    set_group_rows(model, group("g2", 2, 3), new_w, None)
    head = model.heads["0"]
    assert head.out_features == 5
    assert torch.equal(head.weight[:3], old_w) and torch.equal(head.bias[:3], old_b)
    assert torch.equal(head.weight[3:], new_w) and torch.equal(head.bias[3:], torch.zeros(2))
    refit = torch.randn(2, 4)  # a probe refit of the last group replaces its rows only
    set_group_rows(model, group("g2", 2, 3), refit, torch.ones(2))
    assert torch.equal(model.heads["0"].weight[:3], old_w) and torch.equal(model.heads["0"].weight[3:], refit)
    with pytest.raises(ValueError, match="starts at row 7"):
        set_group_rows(model, group("g4", 2, 7), refit, None)


def test_scoring_without_task_identity_on_a_hand_made_prediction_set():
    # 5 seen classes: group A = classes 0-2, group B = classes 3-4 (offset 3)
    logits = torch.tensor(
        [
            [9.0, 0, 0, 0, 0],  # A label 0: right
            [0, 0, 0, 9, 0],  # A label 1: predicted class 3 (group B): wrong without task identity
            [0, 0, 9, 0, 0],  # A label 2: right
            [0, 0, 0, 0, 9],  # B label 1 (class 4): right
            [9.0, 0, 0, 0, 0],  # B label 0 (class 3): predicted class 0: wrong
        ]
    )
    head = ShiftedHead(lambda f: f, offset=0)
    assert accuracy(head(logits[:3]), torch.tensor([0, 1, 2])) == pytest.approx(200 / 3)
    shifted = ShiftedHead(lambda f: f, offset=3)
    assert accuracy(shifted(logits[3:]), torch.tensor([1, 0])) == 50.0
    # pooled over the seen classes' images: 3 of 5 right, i.e. the groups weighted by images
    R = np.array([[0.0, 0.0], [100.0, 0.0], [200 / 3, 50.0]])
    inc = metrics.incremental_accuracy(R, weights=[3, 2])
    assert inc.tolist() == pytest.approx([100.0, 60.0])
    assert metrics.average_incremental_accuracy(R, [3, 2]) == pytest.approx(80.0)
    assert metrics.incremental_accuracy(R).tolist() == pytest.approx([100.0, (200 / 3 + 50) / 2])


def test_summary_pools_groups_by_their_images_and_forgetting_is_per_group():
    rows = []
    for stage, (a, b) in enumerate([(10.0, 20.0), (90.0, 30.0), (40.0, 80.0)]):
        trained = ["pretrained", "d-g1", "d-g2"][stage]
        for task, acc, n in (("d-g1", a, 30), ("d-g2", b, 10)):
            rows.append(dict(method="m", seed=0, stage=stage, trained_task=trained, eval_task=task, kind="head"))
            rows[-1].update(accuracy=acc, n=n)
    summary = summarise(pd.DataFrame(rows)).set_index("method")
    assert summary.loc["m", "inc_last"] == pytest.approx((40 * 30 + 80 * 10) / 40)
    assert summary.loc["m", "inc_avg"] == pytest.approx((90 + 50) / 2)
    assert summary.loc["m", "forgetting_if__d-g1"] == pytest.approx(50.0)


def test_a_method_that_cannot_run_class_incremental_is_refused_before_training():
    seq = load_sequence("objects_cil")
    with pytest.raises(UserError, match="'linear_probe' cannot run the class-incremental sequence 'objects_cil'"):
        check_scenario("finetune+linear_probe", seq)
    check_scenario("linear_probe", load_sequence("micro"))  # fine task-incremental
    check_scenario("ldifs+er_ace", seq)


@pytest.mark.slow
def test_finetuning_forgets_earlier_groups_and_replay_retains_more(tmp_path):
    """The embedded class-incremental sequence (objects_cil), seed 0: fine-tuning's accuracy on
    the first group collapses after the last stage, replay keeps more, and replay's accuracy
    on all seen classes ends higher (about 1-2 min of CPU)."""
    from benchmark.config import load_yaml
    from benchmark.run.cli import EMBEDDED_DEFAULT
    from benchmark.run.runner import run as run_benchmark

    cfg = load_yaml(EMBEDDED_DEFAULT)
    cfg.sequence, cfg.methods, cfg.seeds, cfg.results_dir = "objects_cil", ["finetune", "replay"], [0], str(tmp_path)
    folder = run_benchmark(cfg, progress=False)
    summary = pd.read_csv(folder / "summary.csv").query("kind == 'head'").set_index("method")
    long = pd.read_csv(folder / "accuracy_long.csv").query("kind == 'head'")
    first = long[(long.eval_task == "objects-g1") & (long.stage == 4)].set_index("method")["accuracy"]
    assert first["finetune"] < 10 and first["replay"] > first["finetune"] + 10
    assert summary.loc["finetune", "forgetting_if__objects-g1"] > 40
    assert summary.loc["replay", "inc_last"] > summary.loc["finetune", "inc_last"] + 10
