"""ImageFolder-layout tasks: registered resisc45 / sun397 / imagenet and a user's own folders."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from benchmark.errors import UserError
from tasks import TASKS, TaskContext
from tasks.clip_prompts import clip_prompts
from tasks.folder_tasks import folder_task, register_folder_task


def _tree(root: Path, classes: list[str], per_class: int, value_step: int = 40, size=(20, 12)) -> None:
    """root/<class>/<i>.png, each image filled with its class index times value_step."""
    for label, name in enumerate(classes):
        for i in range(per_class):
            path = root / name / f"{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", size, (value_step * label, 0, 0)).save(path)


def test_resisc45_reads_train_and_test_folders_with_clip_names(tmp_path):
    classes = ["airplane", "baseball_diamond", "sea_ice"]
    _tree(tmp_path / "resisc45" / "train", classes, per_class=10)
    _tree(tmp_path / "resisc45" / "test", classes, per_class=2)
    task = TASKS.get("resisc45")(TaskContext(data_root=tmp_path))
    assert task.classnames == ["airplane", "baseball diamond", "sea ice"]
    assert task.templates == list(clip_prompts("RESISC45").templates)
    assert (len(task.train), len(task.val), len(task.test)) == (27, 3, 6)
    assert task.train.images.shape[1:] == (3, 224, 224)
    assert torch.equal(task.train.labels * 40, task.train.images[:, 0, 112, 112].long())
    assert torch.equal(task.test.labels * 40, task.test.images[:, 0, 0, 0].long())


def test_missing_folder_dataset_is_one_line_naming_the_path(tmp_path):
    with pytest.raises(UserError) as err:
        TASKS.get("resisc45")(TaskContext(data_root=tmp_path))
    message = str(err.value)
    assert "\n" not in message and str(tmp_path / "resisc45") in message and "train/<class>" in message


def test_sun397_drops_the_letter_prefix_of_flattened_folders(tmp_path):
    _tree(tmp_path / "sun397" / "train", ["a_abbey", "a_apse_indoor", "y_youth_hostel"], per_class=3)
    _tree(tmp_path / "sun397" / "val", ["a_abbey", "a_apse_indoor", "y_youth_hostel"], per_class=1)
    task = TASKS.get("sun397")(TaskContext(data_root=tmp_path))
    assert task.classnames == ["abbey", "apse indoor", "youth hostel"] and len(task.test) == 3


def test_imagenet_needs_all_1000_class_folders(tmp_path):
    _tree(tmp_path / "imagenet" / "train", ["n01440764", "n01443537"], per_class=1)
    with pytest.raises(UserError, match="2 class folders but 1000 class names"):
        TASKS.get("imagenet")(TaskContext(data_root=tmp_path))


def test_own_folder_dataset_without_test_folder_holds_out_a_seeded_split(tmp_path):
    root = tmp_path / "birds"
    _tree(root, ["blue_jay", "robin"], per_class=10, size=(9, 30))  # no train/ or test/: root holds the classes
    (tmp_path / "names.txt").write_text("Blue Jay\nAmerican Robin\n")
    make = folder_task("birds", root, tmp_path / "names.txt", ["a photo of a {}, a bird."], image_size=32)
    task = make(TaskContext(data_root=tmp_path / "unused"))
    assert task.classnames == ["Blue Jay", "American Robin"]
    assert (len(task.train), len(task.val), len(task.test)) == (15, 1, 4)
    assert task.train.images.shape[1:] == (3, 32, 32)
    again = make(TaskContext(data_root=tmp_path))
    assert torch.equal(task.test.labels, again.test.labels) and torch.equal(task.test.images, again.test.images)


def test_bad_class_names_file_and_templates_are_refused(tmp_path):
    _tree(tmp_path / "train", ["a", "b"], per_class=2)
    (tmp_path / "one.txt").write_text("only one\n")
    with pytest.raises(UserError, match="has 1 names but there are 2 class folders"):
        folder_task("x", tmp_path, tmp_path / "one.txt")(TaskContext())
    with pytest.raises(UserError, match="exactly one"):
        folder_task("x", tmp_path, templates=["no slot"])


def test_test_class_unknown_to_train_is_refused(tmp_path):
    _tree(tmp_path / "train", ["cat"], per_class=2)
    _tree(tmp_path / "test", ["cat", "dog"], per_class=1)
    with pytest.raises(UserError, match="'dog'"):
        folder_task("pets2", tmp_path)(TaskContext())


def test_register_folder_task_adds_it_to_the_registry(tmp_path):
    _tree(tmp_path / "train", ["x", "y"], per_class=3)
    try:
        register_folder_task("my_folder_toy", tmp_path, image_size=16)
        task = TASKS.get("my_folder_toy")(TaskContext())
        assert task.classnames == ["x", "y"] and task.templates == ["a photo of a {}."]
    finally:
        TASKS.unregister("my_folder_toy")


def test_a_folder_task_is_decoded_at_the_models_size(tmp_path):
    """A 48 px dataset for a 32 px model is stored at 32 px (the runner passes the model's
    size), not at 224 px to be shrunk on every batch; a larger model keeps the task's 224."""
    _tree(tmp_path / "resisc45" / "train", ["airplane", "sea_ice"], per_class=4, size=(48, 48))
    small = TASKS.get("resisc45")(TaskContext(data_root=tmp_path, image_size=32))
    assert small.train.images.shape[1:] == (3, 32, 32)
    large = TASKS.get("resisc45")(TaskContext(data_root=tmp_path, image_size=336))
    assert large.train.images.shape[1:] == (3, 224, 224)
