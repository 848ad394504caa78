"""Class-incremental splits: groups and orders as written, sequence files, relabelled groups."""

import pytest
import torch

from benchmark.errors import UserError
from tasks import Split, Task, load_sequence
from tasks.class_incremental import ClassIncremental, group_tasks
from tasks.sequences import parse_sequence


def test_steps_and_a_listed_order_reproduce_a_hand_written_split():
    spec = ClassIncremental("d", 3, order=[4, 0, 5, 2, 1, 3])
    assert spec.class_groups(6) == [[4, 0], [5, 2], [1, 3]]
    assert spec.group_names() == ["d-g1", "d-g2", "d-g3"]


def test_initial_classes_then_even_steps():
    spec = ClassIncremental("d", 3, initial=4, order=list(range(8))[::-1])
    assert spec.class_groups(8) == [[7, 6, 5, 4], [3, 2], [1, 0]]


def test_explicit_groups_and_the_datasets_own_order():
    assert ClassIncremental("d", 2, groups=[[2], [0, 1]]).class_groups(3) == [[2], [0, 1]]
    assert ClassIncremental("d", 2).class_groups(4) == [[0, 1], [2, 3]]


def test_a_seeded_order_is_a_reproducible_permutation():
    a, b = ClassIncremental("d", 2, order_seed=7), ClassIncremental("d", 2, order_seed=7)
    assert a.class_groups(10) == b.class_groups(10)
    assert sorted(c for g in a.class_groups(10) for c in g) == list(range(10))
    assert a.class_order(10) != list(range(10))


@pytest.mark.parametrize(
    "spec, message",
    [
        (ClassIncremental("d", 4), "do not split evenly"),
        (ClassIncremental("d", 2, order=[0, 1, 2]), "order must list each of"),
        (ClassIncremental("d", 2, groups=[[0, 9], [1]]), "class index 9"),
        (ClassIncremental("d", 2, groups=[[0, 1], [1]]), "a class listed twice"),
    ],
)
def test_bad_splits_are_one_line_user_errors(spec, message):
    with pytest.raises(UserError, match=message):
        spec.class_groups(6)


def test_groups_hold_their_classes_images_relabelled_in_group_order():
    labels = torch.tensor([0, 1, 2, 3, 3, 2, 1, 0])
    images = labels.view(-1, 1, 1, 1).expand(-1, 3, 2, 2).to(torch.uint8).clone()  # pixel value = class
    task = Task("d", ["a", "b", "c", "e"], ["{}"], Split(images, labels), Split(images, labels))
    groups = group_tasks(task, ClassIncremental("d", 2, order=[3, 1, 0, 2]))
    second = groups["d-g2"]
    assert second.classnames == ["a", "c"] and second.offset == 2 and second.classes == [0, 2]
    assert second.train.labels.tolist() == [0, 1, 1, 0]  # classes 0 and 2 as labels 0 and 1
    assert second.train.images[:, 0, 0, 0].tolist() == [0, 2, 2, 0]
    assert groups["d-g1"].train.labels.tolist() == [1, 0, 0, 1]  # classes 1, 3, 3, 1: 3 comes first


def test_sequence_files_name_one_stage_per_group():
    seq = parse_sequence(
        {"scenario": "class_incremental", "dataset": "objects", "steps": 4, "order": {"seed": 0}, "epochs": 2},
        "x.yaml",
    )
    assert seq.class_incremental and seq.tasks == ["objects-g1", "objects-g2", "objects-g3", "objects-g4"]
    assert [s.epochs for s in seq.stages] == [2] * 4 and seq.loaded_tasks == ["objects"]


@pytest.mark.parametrize(
    "data, message",
    [
        ({"dataset": "d"}, "say 'steps: N'"),
        ({"steps": 2}, "needs 'dataset: TASK'"),
        ({"dataset": "d", "steps": 2, "stages": ["a"]}, "unknown key 'stages'"),
        ({"dataset": "d", "groups": [[0]], "order": [0]}, "explicit 'groups' fix"),
        ({"dataset": "d", "steps": 2, "order": "random"}, "order='random'"),
        ({"dataset": "d", "steps": 0}, "steps=0 must be an integer >= 1"),
        ({"dataset": "d", "steps": 2, "eval_only": ["d"]}, "both a stage and eval-only"),
    ],
)
def test_bad_class_incremental_files(data, message):
    with pytest.raises(UserError, match=message):
        parse_sequence({"scenario": "class_incremental", **data}, "x.yaml")


def test_unknown_scenario():
    with pytest.raises(UserError, match="unknown scenario 'domain'"):
        parse_sequence({"scenario": "domain", "stages": ["shapes"]}, "x.yaml")


def test_registered_sequences_use_zscls_orders():
    cifar = load_sequence("cifar100_cil10").classes
    assert cifar.class_groups(100)[0] == [87, 0, 52, 58, 44, 91, 68, 97, 51, 15]
    assert [len(g) for g in load_sequence("cifar100_cil50").classes.class_groups(100)] == [2] * 50
    tiny = load_sequence("tinyimagenet_cil").classes
    assert [len(g) for g in tiny.class_groups(200)] == [100] + [10] * 10
    assert tiny.class_groups(200)[0][:3] == [131, 181, 22]
