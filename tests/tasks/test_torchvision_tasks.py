"""torchvision-backed tasks, loaded from tiny datasets fabricated in torchvision's on-disk formats."""

from __future__ import annotations

import csv
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import tasks.loading as loading
from benchmark.errors import UserError
from tasks import TASKS, TaskContext
from tasks.clip_prompts import clip_prompts
from tasks.torchvision_tasks import EUROSAT_FOLDER_TO_CLIP, SPECS

# The real folder names of Caltech-101's 101_ObjectCategories (torchvision sorts them).
CALTECH_FOLDERS = """BACKGROUND_Google Faces Faces_easy Leopards Motorbikes accordion airplanes anchor ant barrel
bass beaver binocular bonsai brain brontosaurus buddha butterfly camera cannon car_side ceiling_fan cellphone chair
chandelier cougar_body cougar_face crab crayfish crocodile crocodile_head cup dalmatian dollar_bill dolphin dragonfly
electric_guitar elephant emu euphonium ewer ferry flamingo flamingo_head garfield gerenuk gramophone grand_piano
hawksbill headphone hedgehog helicopter ibis inline_skate joshua_tree kangaroo ketch lamp laptop llama lobster lotus
mandolin mayfly menorah metronome minaret nautilus octopus okapi pagoda panda pigeon pizza platypus pyramid revolver
rhino rooster saxophone schooner scissors scorpion sea_horse snoopy soccer_ball stapler starfish stegosaurus
stop_sign strawberry sunflower tick trilobite umbrella watch water_lilly wheelchair wild_cat windsor_chair wrench
yin_yang""".split()


def _save_png(path: Path, value: int, size: tuple[int, int] = (8, 8)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # PNG content whatever the name says (.jpg, .ppm): lossless, so pixel values identify images
    Image.new("RGB", size, (value, 255 - value, 7)).save(path, format="PNG")


# ----------------------------------------------------------------------------- CIFAR10


def _write_cifar10(root: Path, n_per_batch: int = 4, n_test: int = 6) -> None:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)

    def batch(start: int, n: int) -> dict:
        # image i: channel c is filled with start + i + 50 c, label (start + i) % 10
        values = np.arange(start, start + n)[:, None, None] + 50 * np.arange(3)[None, :, None]
        data = np.broadcast_to(values, (n, 3, 1024)).reshape(n, 3072).astype(np.uint8)
        return {"data": data, "labels": [int(v) % 10 for v in range(start, start + n)]}

    for b in range(5):
        (folder / f"data_batch_{b + 1}").write_bytes(pickle.dumps(batch(b * n_per_batch, n_per_batch)))
    (folder / "test_batch").write_bytes(pickle.dumps(batch(100, n_test)))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": list(clip_prompts("CIFAR10").classnames)}))


@pytest.fixture
def no_md5(monkeypatch):
    """The fabricated files cannot match torchvision's md5 sums of the real ones."""
    import torchvision.datasets as tvd
    import torchvision.datasets.cifar as cifar

    monkeypatch.setattr(tvd.CIFAR10, "_check_integrity", lambda self: True)
    monkeypatch.setattr(tvd.SVHN, "_check_integrity", lambda self: True)
    monkeypatch.setattr(cifar, "check_integrity", lambda path, md5=None: Path(path).exists())


def test_cifar10_loads_native_32px_with_the_authors_split(tmp_path, no_md5):
    _write_cifar10(tmp_path)
    task = TASKS.get("cifar10")(TaskContext(data_root=tmp_path))
    assert (len(task.train), len(task.val), len(task.test)) == (18, 2, 6)
    assert task.train.images.shape[1:] == (3, 32, 32) and task.train.images.dtype == torch.uint8
    first = task.train.images[:, 0, 0, 0].long()
    assert torch.equal(task.train.images[:, 2, 31, 31].long(), first + 100)  # channels kept apart
    assert torch.equal(task.train.labels, first % 10)
    seen = sorted(first.tolist() + task.val.images[:, 0, 0, 0].tolist())
    assert seen == list(range(20))
    assert sorted(task.test.images[:, 0, 0, 0].tolist()) == list(range(100, 106))
    assert task.classnames[:2] == ["airplane", "automobile"] and len(task.templates) == 18


def test_cifar10_missing_is_one_line_naming_the_path(tmp_path):
    with pytest.raises(UserError) as err:
        TASKS.get("cifar10")(TaskContext(data_root=tmp_path / "nowhere"))
    message = str(err.value)
    assert "\n" not in message and str(tmp_path / "nowhere") in message
    assert "cifar-10-batches-py" in message and "download" in message


def test_corrupted_dataset_says_so(tmp_path):
    _write_cifar10(tmp_path)  # md5 sums do not match: torchvision refuses the files
    with pytest.raises(UserError, match="md5"):
        TASKS.get("cifar10")(TaskContext(data_root=tmp_path))


# ----------------------------------------------------------------------------- MNIST


def _write_idx(path: Path, array: np.ndarray) -> None:
    magic = 0x0800 + array.ndim  # unsigned bytes, ndim dimensions
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def _write_mnist(root: Path, n_train: int = 30, n_test: int = 10) -> None:
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for prefix, n, offset in (("train", n_train, 0), ("t10k", n_test, 200)):
        values = np.arange(offset, offset + n)
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", np.broadcast_to(values[:, None, None], (n, 28, 28)))
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", values % 10)


def test_mnist_reads_raw_idx_files_as_three_channels(tmp_path):
    _write_mnist(tmp_path)
    task = TASKS.get("mnist")(TaskContext(data_root=tmp_path))
    assert (len(task.train), len(task.val), len(task.test)) == (27, 3, 10)
    assert task.train.images.shape[1:] == (3, 28, 28)
    assert torch.equal(task.train.images[:, 0], task.train.images[:, 2])
    assert torch.equal(task.train.labels, task.train.images[:, 0, 5, 5].long() % 10)
    assert task.classnames == [str(d) for d in range(10)]
    assert task.templates == ['a photo of the number: "{}".']


def test_mnist_folder_without_raw_files_is_reported_incomplete(tmp_path):
    (tmp_path / "MNIST").mkdir()
    with pytest.raises(UserError, match="incomplete"):
        TASKS.get("mnist")(TaskContext(data_root=tmp_path))


# ----------------------------------------------------------------------------- SVHN


def test_svhn_reads_mat_files_under_svhn_and_maps_label_10_to_0(tmp_path, no_md5):
    from scipy.io import savemat

    folder = tmp_path / "svhn"
    folder.mkdir()
    for name, n in (("train", 20), ("test", 5)):
        x = np.broadcast_to(np.arange(n, dtype=np.uint8)[None, None, None, :], (32, 32, 3, n)).copy()
        y = (np.arange(n) % 10 + 1).reshape(n, 1)  # SVHN's labels run 1..10, 10 for the digit 0
        savemat(folder / f"{name}_32x32.mat", {"X": x, "y": y})
    task = TASKS.get("svhn")(TaskContext(data_root=tmp_path))
    assert (len(task.train), len(task.val), len(task.test)) == (18, 2, 5)
    assert task.train.images.shape[1:] == (3, 32, 32)
    assert torch.equal(task.train.labels, (task.train.images[:, 0, 0, 0].long() + 1) % 10)


# ----------------------------------------------------------------------------- EuroSAT


def _write_eurosat(root: Path, per_class: int = 3) -> None:
    for label, folder in enumerate(sorted(EUROSAT_FOLDER_TO_CLIP)):
        for i in range(per_class):
            _save_png(root / "eurosat" / "2750" / folder / f"{folder}_{i}.png", 20 * label, (64, 64))


def test_eurosat_holds_out_a_test_split_and_maps_folder_names(tmp_path):
    _write_eurosat(tmp_path)
    task = TASKS.get("eurosat")(TaskContext(data_root=tmp_path))
    assert (len(task.train), len(task.val), len(task.test)) == (22, 2, 6)
    assert task.train.images.shape[1:] == (3, 64, 64)
    assert torch.equal(task.train.labels * 20, task.train.images[:, 0, 10, 10].long())
    assert task.classnames[0] == "annual crop land" and task.classnames[6] == "permanent crop land"
    assert task.classnames[9] == "lake or sea" and sorted(task.classnames) == sorted(clip_prompts("EuroSAT").classnames)


def test_decoding_with_worker_processes_gives_the_same_images(tmp_path, monkeypatch):
    _write_eurosat(tmp_path)
    serial = TASKS.get("eurosat")(TaskContext(data_root=tmp_path))
    monkeypatch.setattr(loading, "MIN_IMAGES_FOR_WORKERS", 1)
    monkeypatch.setattr(loading.os, "cpu_count", lambda: 2)
    parallel = TASKS.get("eurosat")(TaskContext(data_root=tmp_path))
    assert torch.equal(serial.train.images, parallel.train.images)
    assert torch.equal(serial.test.labels, parallel.test.labels)


def test_over_budget_task_fails_before_decoding(tmp_path, monkeypatch):
    _write_eurosat(tmp_path)
    monkeypatch.setenv(loading.MEMORY_BUDGET_ENV, "0.000001")
    with pytest.raises(UserError, match="train.train_limit"):
        TASKS.get("eurosat")(TaskContext(data_root=tmp_path))


# ----------------------------------------------------------------------------- GTSRB


def test_gtsrb_resizes_every_image_to_64(tmp_path):
    base = tmp_path / "gtsrb"
    for class_id in range(3):
        for i in range(4):
            path = base / "GTSRB" / "Training" / f"{class_id:05d}" / f"{i:05d}_00000.ppm"
            _save_png(path, 60 * class_id, (30 + 7 * i, 41))
    rows = []
    for i in range(3):
        _save_png(base / "GTSRB" / "Final_Test" / "Images" / f"{i:05d}.ppm", 60 * i, (50, 45))
        rows.append({"Filename": f"{i:05d}.ppm", "ClassId": i})
    with open(base / "GT-final_test.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["Filename", "ClassId"], delimiter=";")
        writer.writeheader()
        writer.writerows(rows)
    task = TASKS.get("gtsrb")(TaskContext(data_root=tmp_path))
    assert task.train.images.shape[1:] == (3, 64, 64) and task.test.images.shape == (3, 3, 64, 64)
    assert torch.equal(task.test.labels * 60, task.test.images[:, 0, 32, 32].long())
    assert len(task.classnames) == 43 and task.classnames[14] == "stop"


# ----------------------------------------------------------------------------- Caltech101


def test_caltech101_drops_background_and_aligns_clip_names(tmp_path):
    assert len(CALTECH_FOLDERS) == 102
    for i, folder in enumerate(CALTECH_FOLDERS):
        _save_png(tmp_path / "caltech101" / "101_ObjectCategories" / folder / "image_0001.jpg", i)
    task = TASKS.get("caltech101")(TaskContext(data_root=tmp_path))
    assert len(task.classnames) == 101 and task.train.images.shape[1:] == (3, 224, 224)
    assert len(task.train) + len(task.val) + len(task.test) == 101
    names = dict(zip(CALTECH_FOLDERS[1:], task.classnames))
    assert names["Faces"] == "off-center face" and names["Faces_easy"] == "centered face"
    assert names["car_side"] == "side of a car" and names["yin_yang"] == "yin and yang symbol"
    for folder, name in names.items():  # every folder shares a word with its CLIP name
        words = {w.rstrip("s") for w in folder.lower().split("_")}
        assert words & {w.rstrip("s") for w in name.lower().split()}, (folder, name)


# ----------------------------------------------------------------------------- Oxford-IIIT Pet


def test_pets_match_clip_names_to_torchvision_label_order(tmp_path):
    breeds = sorted((n.replace(" ", "_") for n in clip_prompts("OxfordIIITPet").classnames), key=str.lower)
    base = tmp_path / "oxford-iiit-pet"
    for split in ("trainval", "test"):
        lines = []
        for label, breed in enumerate(breeds):
            image_id = f"{breed}_{split}"
            _save_png(base / "images" / f"{image_id}.jpg", 5 * label)
            lines.append(f"{image_id} {label + 1} {1 if breed[0].isupper() else 2} 1")
        (base / "annotations").mkdir(exist_ok=True)
        (base / "annotations" / f"{split}.txt").write_text("\n".join(lines) + "\n")
    task = TASKS.get("pets")(TaskContext(data_root=tmp_path))
    assert len(task.test) == 37 and task.train.images.shape[1:] == (3, 224, 224)
    assert task.classnames == [b.replace("_", " ") for b in breeds]  # CLIP's spelling, torchvision's order
    assert task.classnames[0] == "Abyssinian" and task.classnames[1] == "american bulldog"
    assert torch.equal(task.test.labels * 5, task.test.images[:, 0, 100, 100].long())


def test_every_torchvision_task_is_registered_with_a_description():
    for spec in SPECS:
        factory = TASKS.get(spec.name)
        assert factory.spec is spec and factory.__doc__
        clip_prompts(spec.prompts)
