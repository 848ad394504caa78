"""Tasks declared in YAML (tasks/declared.py): image folders and webdataset shards written by
the test in CLIP_benchmark's layout; every bad declaration is one line naming file and key."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image

import tasks.webdataset_tasks as wds_tasks
from benchmark.errors import UserError
from tasks import load_sequence
from tasks.base import TaskContext
from tasks.cache import MappedImages, build_count
from tasks.declared import declarations, task_factory

COLOURS = [(250, 10, 10), (10, 250, 10), (10, 10, 250)]


def write_webdataset(root: Path, counts=(("train", 25), ("test", 9)), per_shard: int = 10, fmt: str = "png") -> Path:
    """CLIP_benchmark's layout, as its ``convert_dataset`` writes it (ShardWriter "<split>/%d.tar")."""
    import webdataset as wds

    for split, n in counts:
        (root / split).mkdir(parents=True)
        with wds.ShardWriter(str(root / split / "%d.tar"), maxcount=per_shard, verbose=0) as sink:
            for i in range(n):
                buffer = io.BytesIO()
                # sample i: colour of class i % 3, green channel i (identifies the sample; lossless)
                r, _, b = COLOURS[i % 3]
                Image.new("RGB", (20, 16), (r, i, b)).save(buffer, format=fmt.upper())
                sink.write({"__key__": f"s{i:07d}", fmt: buffer.getvalue(), "cls": str(i % 3)})
            shards = sink.shard
        (root / split / "nshards.txt").write_text(f"{shards}\n")
    (root / "classnames.txt").write_text("red\ngreen\nblue\n")
    (root / "zeroshot_classification_templates.txt").write_text("a photo of a {c}.\na {c} thing.\n")
    return root


def write_folder(root: Path) -> Path:
    for split, n in (("train", 6), ("test", 2)):
        for c, colour in enumerate(COLOURS):
            (root / split / f"c{c}").mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.new("RGB", (10, 10), colour).save(root / split / f"c{c}" / f"{i}.png")
    (root / "names.txt").write_text("red\ngreen\nblue\n")
    return root


def write_sequence(path: Path, declared: dict, stages=None) -> Path:
    stages = stages or [{"task": name} for name in declared]
    path.write_text(yaml.safe_dump({"name": "declared", "tasks": declared, "stages": stages}))
    return path


def build(seq_file: Path, name: str, cache=None, config_tasks=None):
    seq = load_sequence(str(seq_file))
    declared = declarations(seq.declared, seq.path, config_tasks or {})
    return task_factory(name, declared)(TaskContext(data_cache=cache))


def test_webdataset_in_clip_benchmark_layout_loads_in_sample_order(tmp_path):
    root = write_webdataset(tmp_path / "wds_toy")
    seq = write_sequence(tmp_path / "seq.yaml", {"toy": {"webdataset": "wds_toy"}})  # relative to the file
    task = build(seq, "toy")
    assert task.classnames == ["red", "green", "blue"]
    assert task.templates == ["a photo of a {}.", "a {} thing."]
    assert (len(task.train), len(task.val), len(task.test)) == (23, 2, 9)
    ids = torch.cat([task.train.images[:, 1, 100, 100], task.val.images[:, 1, 100, 100]]).tolist()
    assert sorted(ids) == list(range(25))  # every train sample once, identified by its green value
    assert torch.equal(task.train.labels, task.train.images[:, 1, 100, 100].long() % 3)
    assert task.test.images.shape[1:] == (3, 224, 224)
    assert sorted(task.test.images[:, 1, 100, 100].tolist()) == list(range(9))
    assert (root / "train" / "2.tar").is_file()


def test_webdataset_cached_gives_the_same_task_and_a_warm_run_reads_no_shard(tmp_path, monkeypatch):
    write_webdataset(tmp_path / "w", fmt="webp")  # CLIP_benchmark's default format (lossless)
    seq = write_sequence(tmp_path / "seq.yaml", {"toy": {"webdataset": str(tmp_path / "w")}})
    plain = build(seq, "toy")
    cold = build(seq, "toy", tmp_path / "cache")
    assert isinstance(cold.train.images, MappedImages) and build_count(tmp_path / "cache") == 2

    def no_reading(*args, **kwargs):
        raise AssertionError("a warm run read the shards")

    monkeypatch.setattr(wds_tasks, "_samples", no_reading)
    warm = build(seq, "toy", tmp_path / "cache")
    for split in ("train", "val", "test"):
        expected = getattr(plain, split)
        for got in (getattr(cold, split), getattr(warm, split)):
            assert torch.equal(got.images.materialize(), expected.images)
            assert torch.equal(got.labels, expected.labels)
    assert build_count(tmp_path / "cache") == 2


def test_folder_declared_with_templates_and_classnames_file(tmp_path):
    root = write_folder(tmp_path / "birds")
    declared = {
        "birds": {
            "folder": str(root),
            "templates": ["a photo of a {}, a type of bird."],
            "classnames_file": str(root / "names.txt"),
        }
    }
    task = build(write_sequence(tmp_path / "seq.yaml", declared), "birds", tmp_path / "cache")
    assert task.classnames == ["red", "green", "blue"] and task.templates == ["a photo of a {}, a type of bird."]
    assert (len(task.train) + len(task.val), len(task.test)) == (18, 6)
    assert torch.equal(task.test.images.materialize()[:, 0, 5, 5].long() // 100, torch.tensor([2, 2, 0, 0, 0, 0]))


def test_tasks_declared_in_the_run_config_are_relative_to_the_working_directory(tmp_path, monkeypatch):
    write_folder(tmp_path / "birds")
    seq = tmp_path / "seq.yaml"
    seq.write_text(yaml.safe_dump({"stages": [{"task": "birds"}]}))
    monkeypatch.chdir(tmp_path)
    task = build(seq, "birds", config_tasks={"birds": {"folder": "birds"}})
    assert task.classnames == ["c0", "c1", "c2"]


@pytest.mark.parametrize(
    ("declaration", "expected"),
    [
        ({"folder": "birds", "colour": "red"}, "tasks.t.colour: unknown key"),
        ({"folder": "nowhere"}, "tasks.t.folder: no folder"),
        ({"folder": "birds", "webdataset": "w"}, "tasks.t needs exactly one of"),
        ({"folder": "birds", "classnames_file": "two.txt"}, "tasks.t.classnames_file: " + "{two} has 2 names"),
        ({"folder": "birds", "templates": ["no slot"]}, "tasks.t.templates: template 'no slot'"),
        ({"webdataset": "empty"}, "tasks.t.webdataset: no {empty}/train/nshards.txt"),
        ({"webdataset": "short"}, "tasks.t.webdataset: no shard {short}/test/1.tar"),
        ({"webdataset": "w", "classnames_file": "x"}, "tasks.t.classnames_file: unknown key"),
        ({"folder": "birds", "templates": "a {}"}, "tasks.t.templates must be a non-empty list"),
        ("birds", "tasks.t must be a mapping"),
    ],
)
def test_a_bad_declaration_is_one_line_naming_the_file_and_key(tmp_path, declaration, expected):
    write_folder(tmp_path / "birds")
    (tmp_path / "two.txt").write_text("a\nb\n")
    (tmp_path / "empty").mkdir()
    write_webdataset(tmp_path / "short")
    (tmp_path / "short" / "test" / "nshards.txt").write_text("2")  # announces a shard that is not there
    (tmp_path / "short" / "test" / "1.tar").unlink(missing_ok=True)
    seq = write_sequence(tmp_path / "seq.yaml", {"t": declaration}, [{"task": "t"}])
    with pytest.raises(UserError) as err:
        build(seq, "t")
    message = str(err.value)
    paths = {"two": tmp_path / "two.txt", "empty": tmp_path / "empty", "short": tmp_path / "short"}
    assert "\n" not in message and str(seq) in message
    assert expected.format(**paths) in message


def test_webdataset_labels_beyond_the_class_names_name_the_file(tmp_path):
    root = write_webdataset(tmp_path / "w")
    (root / "classnames.txt").write_text("red\ngreen\n")
    seq = write_sequence(tmp_path / "seq.yaml", {"t": {"webdataset": str(root)}})
    with pytest.raises(UserError, match=r"label 2 but .*classnames.txt names only 2 classes") as err:
        build(seq, "t")
    assert str(seq) in str(err.value)


def test_a_declared_name_may_not_shadow_a_registered_task(tmp_path):
    write_folder(tmp_path / "birds")
    seq = write_sequence(tmp_path / "seq.yaml", {"shapes": {"folder": "birds"}})
    with pytest.raises(UserError, match="tasks.shapes is already a registered task"):
        build(seq, "shapes")


def test_unknown_task_lists_registered_and_declared_names(tmp_path):
    write_folder(tmp_path / "birds")
    seq = load_sequence(str(write_sequence(tmp_path / "seq.yaml", {"birds": {"folder": "birds"}})))
    with pytest.raises(UserError, match="unknown task 'bird'.*birds"):
        task_factory("bird", declarations(seq.declared, seq.path, {}))
