"""Stand-ins (tasks/standins): every registered dataset's real loader reads its tiny stand-in."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmark.errors import UserError
from tasks import TASKS, TaskContext
from tasks.clip_prompts import clip_prompts
from tasks.standins import STANDINS, default_datasets, file_backed, main, sequence_datasets, write_standins
from tasks.torchvision_tasks import STANDIN_MARKER

CLASSES = {
    "svhn": 10, "cifar10": 10, "cifar100": 100, "mnist": 10, "stl10": 10, "eurosat": 10, "gtsrb": 43, "dtd": 47,
    "cars": 196, "food101": 101, "flowers102": 102, "aircraft": 100, "pets": 37, "caltech101": 101,
    "resisc45": 45, "sun397": 397, "imagenet": 1000, "tinyimagenet": 200, "wds_cifar10": 10,
}  # fmt: skip
# Thousands of files: written and read in a few seconds on an idle core, more on a shared one.
BIG = {"imagenet", "sun397"}


def _load(root: Path, name: str):
    ctx = TaskContext(data_root=root, data_cache=None, train_limit=12, test_limit=8, image_size=32)
    if name == "wds_cifar10":
        from tasks.webdataset_tasks import webdataset_task

        return webdataset_task(name, root / name, "test")(ctx)
    return TASKS.get(name)(ctx)


def test_every_dataset_of_every_registered_sequence_has_a_standin():
    missing = [d for d in sequence_datasets() if d not in STANDINS]
    assert not missing
    assert {"svhn", "imagenet", "cifar100", "tinyimagenet", "sun397", "aircraft"} <= set(sequence_datasets())
    assert not file_backed("shapes") and file_backed("svhn")
    assert set(default_datasets()) == set(CLASSES)


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in BIG else n for n in CLASSES]
)  # fmt: skip
def test_the_real_loader_reads_the_tiny_standin(tmp_path, name):
    assert write_standins(tmp_path, "tiny", [name]) == [name]
    task = _load(tmp_path, name)
    assert task.num_classes == CLASSES[name]
    assert len(task.train) > 0 and len(task.test) > 0 and task.val is not None and len(task.val) > 0
    assert int(task.train.labels.max()) < task.num_classes and int(task.test.labels.min()) >= 0
    if name in ("cifar100", "dtd", "pets", "cars", "aircraft", "food101", "resisc45", "gtsrb"):
        key = {"cifar100": "CIFAR100", "dtd": "DTD", "pets": "OxfordIIITPet", "cars": "StanfordCars"}.get(name)
        key = key or {"aircraft": "FGVCAircraft", "food101": "Food101", "resisc45": "RESISC45", "gtsrb": "GTSRB"}[name]
        assert set(task.classnames) == set(clip_prompts(key).classnames)  # the real names reach the task


def test_tinyimagenet_follows_wnids_txt_order_not_sorted(tmp_path):
    write_standins(tmp_path, "tiny", ["tinyimagenet"])
    root = tmp_path / "tiny-imagenet-200"
    wnids = (root / "wnids.txt").read_text().split()
    assert len(wnids) == 200 and wnids != sorted(wnids)
    task = _load(tmp_path, "tinyimagenet")
    words = dict(line.split("\t") for line in (root / "words.txt").read_text().splitlines())
    assert task.classnames[0] == words[wnids[0]].split(",")[0].strip()  # label 0 = line 1 (Egyptian cat)


def test_the_tool_writes_only_into_a_folder_it_created(tmp_path, capsys):
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "notes.txt").write_text("mine")
    assert main(["--out", str(theirs), "--scale", "tiny", "--datasets", "mnist"]) == 2
    assert "did not write" in capsys.readouterr().err
    assert sorted(p.name for p in theirs.iterdir()) == ["notes.txt"]

    ours = tmp_path / "ours"
    assert main(["--out", str(ours), "--scale", "tiny", "--datasets", "mnist"]) == 0
    assert json.loads((ours / STANDIN_MARKER).read_text())["datasets"] == ["mnist"]
    assert write_standins(ours, "tiny", ["mnist", "svhn"]) == ["svhn"]  # mnist kept, svhn added
    with pytest.raises(UserError, match="scale 'tiny', not 'full'"):
        write_standins(ours, "full", ["cifar10"])
    with pytest.raises(UserError, match="no stand-in for 'nope'"):
        write_standins(ours, "tiny", ["nope"])


def test_full_scale_spreads_the_real_split_sizes_over_the_classes():
    from tasks.standins import SPLIT_SIZES, Plan

    counts = Plan("full").per_class(SPLIT_SIZES["imagenet"][0], 1000, 4)
    assert sum(counts) == 1_281_167 and max(counts) - min(counts) == 1
    assert Plan("tiny").per_class(1_281_167, 1000, 4) == [4] * 1000


@pytest.mark.slow
def test_full_scale_stl10_loads_at_its_real_size(tmp_path):
    write_standins(tmp_path, "full", ["stl10"])  # the smallest array dataset: 13,000 images of 96 px
    task = TASKS.get("stl10")(TaskContext(data_root=tmp_path, data_cache=None))
    assert len(task.train) + len(task.val) == 5_000 and len(task.test) == 8_000


def test_without_the_marker_checksums_are_checked(tmp_path):
    write_standins(tmp_path, "tiny", ["cifar10"])
    (tmp_path / STANDIN_MARKER).unlink()
    with pytest.raises(UserError, match="md5"):
        _load(tmp_path, "cifar10")
