"""Stand-ins of the real datasets, in the exact on-disk layout the suite's loaders read.

``python -m tasks.standins --out DIR --scale tiny|full [--datasets svhn,cifar10,...]`` writes,
for every dataset a registered sequence names (or those listed), what its real distribution
unpacks to under a data root: torchvision's SVHN ``.mat`` files, CIFAR pickles, MNIST idx
files, STL-10 binaries, the folder and annotation-file layouts of GTSRB, EuroSAT, DTD, Stanford
Cars, Food-101, Flowers-102, FGVC-Aircraft, Oxford-IIIT Pet, Caltech-101, the ImageFolder trees
of RESISC45, SUN397 and ImageNet, the ``tiny-imagenet-200`` archive, and one dataset
(CIFAR-10) in CLIP_benchmark's webdataset shards (``wds_cifar10``, a declared task). Class
names and counts are the real ones (tasks/clip_prompts.py, tasks/wordnet_ids.py); pixels are
procedural (a class colour, stripes and noise). ``tiny``: a few images a class; ``full``: the
real split sizes, spread evenly over the classes (the real per-class counts vary), for timing
a GPU. Images of the large-image datasets are smaller than the real ones (``IMAGE_SIDE``), so
decoding them is faster than decoding the real files.

Checksums: torchvision checks the md5 of the CIFAR, SVHN, STL-10 and Flowers-102 files, which no
stand-in can match; DIR holds ``STANDIN_MARKER`` and the loaders skip those checks under a data
root that holds it (tasks/torchvision_tasks.py). The tool writes only into a folder it created
(absent, empty, or marked by an earlier call); each dataset is written to a hidden folder and
renamed into place when complete, and a dataset already there is kept.
"""

from __future__ import annotations

import io
import json
import math
import pickle
import shutil
import struct
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from benchmark.errors import OneLineParser, UserError, command
from tasks.torchvision_tasks import EUROSAT_FOLDER_TO_CLIP, STANDIN_MARKER

TOOL = "tasks.standins"
SCALES = ("tiny", "full")
TINY_TRAIN, TINY_TEST = 4, 2  # images a class at scale tiny
IMAGE_SIDE = {"tiny": 40, "full": 128}  # the large-image datasets' stored size (the real: 200-800 px)

# The real split sizes (train, test; test None: the suite holds out 20% of train). Also what
# --plan counts with when the data is not on disk (benchmark/run/plan.py).
SPLIT_SIZES: dict[str, tuple[int, Optional[int]]] = {
    "svhn": (73_257, 26_032),
    "cifar10": (50_000, 10_000),
    "cifar100": (50_000, 10_000),
    "mnist": (60_000, 10_000),
    "stl10": (5_000, 8_000),
    "eurosat": (27_000, None),
    "gtsrb": (26_640, 12_630),
    "dtd": (1_880, 1_880),
    "cars": (8_144, 8_041),
    "food101": (75_750, 25_250),
    "flowers102": (1_020, 6_149),
    "aircraft": (6_667, 3_333),
    "pets": (3_680, 3_669),
    "caltech101": (8_677, None),
    "resisc45": (31_500, None),
    "sun397": (108_754, None),
    "imagenet": (1_281_167, 50_000),
    "tinyimagenet": (100_000, 10_000),
    "wds_cifar10": (50_000, 10_000),
}

CIFAR100_COARSE = (
    "aquatic_mammals fish flowers food_containers fruit_and_vegetables household_electrical_devices "
    "household_furniture insects large_carnivores large_man-made_outdoor_things large_natural_outdoor_scenes "
    "large_omnivores_and_herbivores medium_mammals non-insect_invertebrates people reptiles small_mammals trees "
    "vehicles_1 vehicles_2"
).split()
STL10_CLASSES = "airplane bird car cat deer dog horse monkey ship truck".split()
CALTECH101_FOLDERS = (
    "BACKGROUND_Google Faces Faces_easy Leopards Motorbikes accordion airplanes anchor ant barrel bass beaver "
    "binocular bonsai brain brontosaurus buddha butterfly camera cannon car_side ceiling_fan cellphone chair "
    "chandelier cougar_body cougar_face crab crayfish crocodile crocodile_head cup dalmatian dollar_bill dolphin "
    "dragonfly electric_guitar elephant emu euphonium ewer ferry flamingo flamingo_head garfield gerenuk "
    "gramophone grand_piano hawksbill headphone hedgehog helicopter ibis inline_skate joshua_tree kangaroo ketch "
    "lamp laptop llama lobster lotus mandolin mayfly menorah metronome minaret nautilus octopus okapi pagoda "
    "panda pigeon pizza platypus pyramid revolver rhino rooster saxophone schooner scissors scorpion sea_horse "
    "snoopy soccer_ball stapler starfish stegosaurus stop_sign strawberry sunflower tick trilobite umbrella "
    "watch water_lilly wheelchair wild_cat windsor_chair wrench yin_yang"
).split()


# ----------------------------------------------------------------------------- counts, pixels


@dataclass(frozen=True)
class Plan:
    """How many images a class each split gets at one scale."""

    scale: str

    def per_class(self, real_total: int, classes: int, tiny: int) -> list[int]:
        if self.scale == "tiny":
            return [tiny] * classes
        base, extra = divmod(real_total, classes)
        return [base + (k < extra) for k in range(classes)]

    def labels(self, real_total: int, classes: int, tiny: int) -> np.ndarray:
        counts = self.per_class(real_total, classes, tiny)
        return np.repeat(np.arange(classes), counts)


def pixels(labels: np.ndarray, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """uint8 [N, H, W, 3]: a colour and a stripe frequency per class, a random phase and noise
    per image (learnable, and JPEG compresses it to a few KB)."""
    n = len(labels)
    hue = (labels * 0.618034) % 1.0
    base = 128 + 100 * np.stack([np.cos(2 * np.pi * (hue + k / 3)) for k in range(3)], axis=1)
    x = np.linspace(0, 2 * np.pi, width, dtype=np.float32)[None, None, :]
    y = np.linspace(0, 2 * np.pi, height, dtype=np.float32)[None, :, None]
    freq = (1 + labels % 5).astype(np.float32)[:, None, None]
    phase = rng.uniform(0, 2 * np.pi, n).astype(np.float32)[:, None, None]
    wave = np.sin(freq * x + (labels % 3)[:, None, None] * y + phase)
    image = base[:, None, None, :].astype(np.float32) * (0.65 + 0.35 * wave[..., None])
    image += rng.normal(0, 4, (n, height, width, 3)).astype(np.float32)
    return np.clip(image, 0, 255).astype(np.uint8)


def chunked(labels: np.ndarray, height: int, width: int, rng: np.random.Generator, size: int = 2048):
    """(start, images) pieces of ``pixels``: a full split never sits in memory as floats."""
    for start in range(0, len(labels), size):
        yield start, pixels(labels[start : start + size], height, width, rng)


def save_images(paths: list[Path], labels: np.ndarray, rng: np.random.Generator, side: int, fmt: str = "JPEG"):
    """One image file a path (JPEG or PPM by ``fmt``); sizes vary around ``side`` (the
    loaders resize the shorter side and centre-crop)."""
    from PIL import Image

    for start, images in chunked(labels, side, side + side // 4, rng):
        for path, image in zip(paths[start : start + len(images)], images):
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(path, fmt, **({"quality": 85} if fmt == "JPEG" else {}))


def array_images(labels: np.ndarray, side: int, rng: np.random.Generator) -> np.ndarray:
    out = np.empty((len(labels), side, side, 3), dtype=np.uint8)
    for start, images in chunked(labels, side, side, rng):
        out[start : start + len(images)] = images
    return out


def _names(key: str) -> list[str]:
    from tasks.clip_prompts import clip_prompts

    return list(clip_prompts(key).classnames)


def _folder(name: str) -> str:
    return name.replace(" ", "_").replace("/", "_")


# ----------------------------------------------------------------------------- array formats


def write_cifar10(root: Path, plan: Plan, rng: np.random.Generator) -> None:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    names = _names("CIFAR10")
    train = rng.permutation(plan.labels(50_000, 10, TINY_TRAIN))
    for k, part in enumerate(np.array_split(train, 5), 1):  # five batches, as the real archive
        _cifar_pickle(folder / f"data_batch_{k}", part, rng, {"labels": part.tolist()}, f"training batch {k} of 5")
    test = plan.labels(10_000, 10, TINY_TEST)
    _cifar_pickle(folder / "test_batch", test, rng, {"labels": test.tolist()}, "testing batch 1 of 1")
    meta = {"label_names": names, "num_cases_per_batch": len(train) // 5, "num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))


def write_cifar100(root: Path, plan: Plan, rng: np.random.Generator) -> None:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    for split, total, tiny in (("train", 50_000, TINY_TRAIN), ("test", 10_000, TINY_TEST)):
        fine = plan.labels(total, 100, tiny)
        fine = rng.permutation(fine) if split == "train" else fine
        # coarse labels are placeholders (fine // 5), not CIFAR-100's superclass mapping
        extra = {"fine_labels": fine.tolist(), "coarse_labels": (fine // 5).tolist()}
        _cifar_pickle(folder / split, fine, rng, extra, split)
    meta = {"fine_label_names": [_folder(n) for n in _names("CIFAR100")], "coarse_label_names": CIFAR100_COARSE}
    (folder / "meta").write_bytes(pickle.dumps(meta, protocol=2))


def _cifar_pickle(path: Path, labels: np.ndarray, rng: np.random.Generator, extra: dict, batch: str) -> None:
    data = array_images(labels, 32, rng).transpose(0, 3, 1, 2).reshape(len(labels), 3072)  # rows: R, G, B planes
    entry = {"batch_label": batch, "data": data, "filenames": [f"standin_{i:06d}.png" for i in range(len(labels))]}
    path.write_bytes(pickle.dumps({**entry, **extra}, protocol=2))


def write_mnist(root: Path, plan: Plan, rng: np.random.Generator) -> None:
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for prefix, total, tiny in (("train", 60_000, TINY_TRAIN), ("t10k", 10_000, TINY_TEST)):
        labels = rng.permutation(plan.labels(total, 10, tiny))
        grey = array_images(labels, 28, rng).mean(axis=3).astype(np.uint8)
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(
            struct.pack(">IIII", 0x803, len(labels), 28, 28) + grey.tobytes()
        )
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(
            struct.pack(">II", 0x801, len(labels)) + labels.astype(np.uint8).tobytes()
        )


def write_svhn(root: Path, plan: Plan, rng: np.random.Generator) -> None:
    from scipy.io import savemat

    folder = root / "svhn"
    folder.mkdir(parents=True)
    for split, total, tiny in (("train", 73_257, TINY_TRAIN), ("test", 26_032, TINY_TEST)):
        labels = rng.permutation(plan.labels(total, 10, tiny))
        x = array_images(labels, 32, rng).transpose(1, 2, 3, 0)  # [32, 32, 3, N], as the .mat files
        y = np.where(labels == 0, 10, labels).astype(np.uint8)[:, None]  # digit 0 is label 10
        savemat(folder / f"{split}_32x32.mat", {"X": x, "y": y})


def write_stl10(root: Path, plan: Plan, rng: np.random.Generator) -> None:
    folder = root / "stl10_binary"
    folder.mkdir(parents=True)
    splits = (("train", 5_000, TINY_TRAIN), ("test", 8_000, TINY_TEST), ("unlabeled", 0, 0))
    for split, total, tiny in splits:
        labels = plan.labels(total, 10, tiny) if total else np.zeros(4 if plan.scale == "tiny" else 100, int)
        images = array_images(labels, 96, rng).transpose(0, 3, 2, 1)  # column-major planes [N, 3, W, H]
        (folder / f"{split}_X.bin").write_bytes(images.tobytes())
        if total:
            (folder / f"{split}_y.bin").write_bytes((labels + 1).astype(np.uint8).tobytes())
    (folder / "class_names.txt").write_text("\n".join(STL10_CLASSES) + "\n")
    n = len(plan.labels(5_000, 10, TINY_TRAIN))
    folds = [" ".join(map(str, rng.permutation(n)[: max(1, n // 5)])) for _ in range(10)]
    (folder / "fold_indices.txt").write_text("\n".join(folds) + "\n")


# ----------------------------------------------------------------------------- image files


def write_eurosat(root: Path, plan: Plan, rng: np.random.Generator) -> None:
    folders = sorted(EUROSAT_FOLDER_TO_CLIP)
    real = {"Highway": 2500, "Industrial": 2500, "Pasture": 2000, "PermanentCrop": 2500, "River": 2500}
    for label, name in enumerate(folders):
        n = real.get(name, 3000) if plan.scale == "full" else TINY_TRAIN + TINY_TEST
        paths = [root / "eurosat" / "2750" / name / f"{name}_{i}.jpg" for i in range(1, n + 1)]
        _save_fixed(paths, np.full(n, label), rng, 64)


def _save_fixed(paths: list[Path], labels: np.ndarray, rng: np.random.Generator, side: int, fmt="JPEG") -> None:
    from PIL import Image

    for start, images in chunked(labels, side, side, rng):
        for path, image in zip(paths[start : start + len(images)], images):
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(path, fmt)


def write_gtsrb(root: Path, plan: Plan, rng: np.random.Generator) -> None:
    base = root / "gtsrb"
    train = plan.per_class(26_640, 43, TINY_TRAIN)
    for label, n in enumerate(train):
        folder = base / "GTSRB" / "Training" / f"{label:05d}"
        paths = [folder / f"{i // 30:05d}_{i % 30:05d}.ppm" for i in range(n)]
        save_images(paths, np.full(n, label), rng, int(rng.integers(24, 64)), fmt="PPM")
        rows = [f"{p.name};40;40;5;5;35;35;{label}" for p in paths]
        (folder / f"GT-{label:05d}.csv").write_text(
            "Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId\n" + "\n".join(rows) + "\n"
        )
    test = rng.permutation(plan.labels(12_630, 43, TINY_TEST))
    paths = [base / "GTSRB" / "Final_Test" / "Images" / f"{i:05d}.ppm" for i in range(len(test))]
    save_images(paths, test, rng, 40, fmt="PPM")
    rows = [f"{p.name};40;40;5;5;35;35;{c}" for p, c in zip(paths, test)]
    header = "Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId\n"
    (base / "GT-final_test.csv").write_text(header + "\n".join(rows) + "\n")


def write_dtd(root: Path, plan: Plan, rng: np.random.Generator) -> None:
    data = root / "dtd" / "dtd"
    names = _names("DTD")
    each = 40 if plan.scale == "full" else TINY_TRAIN  # partition 1: 40 train, 40 val, 40 test a class
    splits: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for label, name in enumerate(names):
        n = 3 * each
        files = [f"{name}_{i:04d}.jpg" for i in range(1, n + 1)]
        save_images([data / "images" / name / f for f in files], np.full(n, label), rng, IMAGE_SIDE[plan.scale])
        for k, split in enumerate(splits):
            splits[split] += [f"{name}/{f}" for f in files[k * each : (k + 1) * each]]
    (data / "labels").mkdir(parents=True)
    for split, lines in splits.items():
        for partition in range(1, 11):  # the real archive has ten partitions; the suite reads the first
            (data / "labels" / f"{split}{partition}.txt").write_text("\n".join(lines) + "\n")


def write_cars(root: Path, plan: Plan, rng: np.random.Generator) -> None:
    from scipy.io import savemat

    base = root / "stanford_cars"
    names = _names("StanfordCars")
    (base / "devkit").mkdir(parents=True)
    savemat(base / "devkit" / "cars_meta.mat", {"class_names": np.array(names, dtype=object)[None, :]})
    for split, total, tiny, annotation_file in (
        ("train", 8_144, TINY_TRAIN, base / "devkit" / "cars_train_annos.mat"),
        ("test", 8_041, TINY_TEST, base / "cars_test_annos_withlabels.mat"),
    ):
        labels = rng.permutation(plan.labels(total, len(names), tiny))
        files = [f"{i:05d}.jpg" for i in range(1, len(labels) + 1)]
        save_images([base / f"cars_{split}" / f for f in files], labels, rng, IMAGE_SIDE[plan.scale])
        fields = [(n, "O") for n in ("bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "fname")]
        records = np.array([(1, 1, 30, 30, int(c) + 1, f) for c, f in zip(labels, files)], dtype=fields)
        savemat(annotation_file, {"annotations": records[None, :]})


def write_food101(root: Path, plan: Plan, rng: np.random.Generator) -> None:
    base = root / "food-101"
    folders = [_folder(n) for n in _names("Food101")]
    meta: dict[str, dict[str, list[str]]] = {"train": {}, "test": {}}
    counts = (750, 250) if plan.scale == "full" else (TINY_TRAIN, TINY_TEST)
    for label, name in enumerate(folders):
        ids = [str(1000 + i) for i in range(sum(counts))]
        save_images(
            [base / "images" / name / f"{i}.jpg" for i in ids], np.full(len(ids), label), rng, IMAGE_SIDE[plan.scale]
        )
        meta["train"][name] = [f"{name}/{i}" for i in ids[: counts[0]]]
        meta["test"][name] = [f"{name}/{i}" for i in ids[counts[0] :]]
    (base / "meta").mkdir(parents=True)
    for split, table in meta.items():
        (base / "meta" / f"{split}.json").write_text(json.dumps(table))
        (base / "meta" / f"{split}.txt").write_text("\n".join(p for ps in table.values() for p in ps) + "\n")
    (base / "meta" / "classes.txt").write_text("\n".join(folders) + "\n")


def write_flowers102(root: Path, plan: Plan, rng: np.random.Generator) -> None:
    from scipy.io import savemat

    base = root / "flowers-102"
    per = {"trnid": (1_020, TINY_TRAIN), "valid": (1_020, TINY_TEST), "tstid": (6_149, TINY_TEST)}
    labels = np.concatenate([plan.labels(total, 102, tiny) for total, tiny in per.values()])
    order = rng.permutation(len(labels))  # image ids are not grouped by split in the real files
    labels = labels[order]
    save_images(
        [base / "jpg" / f"image_{i:05d}.jpg" for i in range(1, len(labels) + 1)], labels, rng, IMAGE_SIDE[plan.scale]
    )
    savemat(base / "imagelabels.mat", {"labels": (labels + 1)[None, :]})
    ids, start = {}, 0
    for key, (total, tiny) in per.items():
        n = len(plan.labels(total, 102, tiny))
        ids[key] = (np.sort(np.argsort(order)[start : start + n]) + 1)[None, :]
        start += n
    savemat(base / "setid.mat", ids)


def write_aircraft(root: Path, plan: Plan, rng: np.random.Generator) -> None:
    data = root / "fgvc-aircraft-2013b" / "data"
    names = _names("FGVCAircraft")
    (data / "images").mkdir(parents=True)
    (data / "variants.txt").write_text("\n".join(names) + "\n")
    next_id = 1_000_000
    for split, total, tiny in (("trainval", 6_667, TINY_TRAIN), ("test", 3_333, TINY_TEST)):
        labels = rng.permutation(plan.labels(total, 100, tiny))
        ids = [f"{next_id + i:07d}" for i in range(len(labels))]
        next_id += len(labels)
        save_images([data / "images" / f"{i}.jpg" for i in ids], labels, rng, IMAGE_SIDE[plan.scale])
        lines = [f"{i} {names[c]}" for i, c in zip(ids, labels)]
        (data / f"images_variant_{split}.txt").write_text("\n".join(lines) + "\n")


def write_pets(root: Path, plan: Plan, rng: np.random.Generator) -> None:
    base = root / "oxford-iiit-pet"
    names = _names("OxfordIIITPet")
    breed = {"cat": 0, "dog": 0}
    species_of, breed_of = [], []
    for name in names:  # cats are capitalised in the real file names, dogs are not
        kind = "cat" if name[0].isupper() else "dog"
        breed[kind] += 1
        species_of.append(1 if kind == "cat" else 2)
        breed_of.append(breed[kind])
    (base / "annotations" / "trimaps").mkdir(parents=True)
    serial = [0] * len(names)
    for split, total, tiny in (("trainval", 3_680, TINY_TRAIN), ("test", 3_669, TINY_TEST)):
        labels = plan.labels(total, 37, tiny)
        ids = []
        for c in labels:
            serial[c] += 1
            ids.append(f"{names[c].replace(' ', '_')}_{serial[c]}")
        save_images([base / "images" / f"{i}.jpg" for i in ids], labels, rng, IMAGE_SIDE[plan.scale])
        lines = [f"{i} {c + 1} {species_of[c]} {breed_of[c]}" for i, c in zip(ids, labels)]
        (base / "annotations" / f"{split}.txt").write_text("\n".join(lines) + "\n")


def write_caltech101(root: Path, plan: Plan, rng: np.random.Generator) -> None:
    base = root / "caltech101" / "101_ObjectCategories"
    counts = plan.per_class(8_677, 101, TINY_TRAIN + TINY_TEST)
    counts = [TINY_TRAIN + TINY_TEST if plan.scale == "tiny" else 467] + counts  # BACKGROUND_Google first
    for label, (name, n) in enumerate(zip(CALTECH101_FOLDERS, counts)):
        paths = [base / name / f"image_{i:04d}.jpg" for i in range(1, n + 1)]
        save_images(paths, np.full(n, label), rng, IMAGE_SIDE[plan.scale])
    (root / "caltech101" / "Annotations").mkdir()


# ----------------------------------------------------------------------------- ImageFolder trees


def write_resisc45(root: Path, plan: Plan, rng: np.random.Generator) -> None:
    for label, name in enumerate(_names("RESISC45")):  # NWPU-RESISC45: class folders, no split
        folder, n = _folder(name), 700 if plan.scale == "full" else TINY_TRAIN + TINY_TEST
        paths = [root / "resisc45" / folder / f"{folder}_{i:03d}.jpg" for i in range(1, n + 1)]
        save_images(paths, np.full(n, label), rng, IMAGE_SIDE[plan.scale])


def write_sun397(root: Path, plan: Plan, rng: np.random.Generator) -> None:
    names = _names("SUN397")
    counts = plan.per_class(108_754, len(names), TINY_TRAIN + TINY_TEST)
    for label, (name, n) in enumerate(zip(names, counts)):
        folder = f"{name[0]}_{_folder(name)}"  # the original tree's letter level, flattened
        paths = [root / "sun397" / folder / f"sun_{label:03d}{i:05d}.jpg" for i in range(n)]
        save_images(paths, np.full(n, label), rng, IMAGE_SIDE[plan.scale])


def write_imagenet(root: Path, plan: Plan, rng: np.random.Generator) -> None:
    from tasks.wordnet_ids import IMAGENET_WNIDS

    for split, total, tiny in (("train", 1_281_167, TINY_TRAIN), ("val", 50_000, TINY_TEST)):
        counts = plan.per_class(total, 1000, tiny)
        for label, (wnid, n) in enumerate(zip(IMAGENET_WNIDS, counts)):
            stem = f"{wnid}_" if split == "train" else "ILSVRC2012_val_"
            paths = [root / "imagenet" / split / wnid / f"{stem}{label:04d}{i:04d}.JPEG" for i in range(n)]
            save_images(paths, np.full(n, label), rng, IMAGE_SIDE[plan.scale])


def write_tinyimagenet(root: Path, plan: Plan, rng: np.random.Generator) -> None:
    from tasks.wordnet_ids import TINYIMAGENET_WORDS

    base = root / "tiny-imagenet-200"
    base.mkdir(parents=True)
    wnids = [w for w, _ in TINYIMAGENET_WORDS]
    (base / "wnids.txt").write_text("\n".join(wnids) + "\n")  # the archive's order, not sorted
    (base / "words.txt").write_text("".join(f"{w}\t{words}\n" for w, words in TINYIMAGENET_WORDS))
    train = 500 if plan.scale == "full" else TINY_TRAIN
    for label, wnid in enumerate(wnids):
        folder = base / "train" / wnid
        paths = [folder / "images" / f"{wnid}_{i}.JPEG" for i in range(train)]
        _save_fixed(paths, np.full(train, label), rng, 64)
        (folder / f"{wnid}_boxes.txt").write_text("".join(f"{p.name}\t0\t0\t63\t63\n" for p in paths))
    val = rng.permutation(plan.labels(10_000, 200, TINY_TEST))
    _save_fixed([base / "val" / "images" / f"val_{i}.JPEG" for i in range(len(val))], val, rng, 64)
    lines = [f"val_{i}.JPEG\t{wnids[c]}\t0\t0\t63\t63\n" for i, c in enumerate(val)]
    (base / "val" / "val_annotations.txt").write_text("".join(lines))
    test = 10_000 if plan.scale == "full" else TINY_TEST
    _save_fixed([base / "test" / "images" / f"test_{i}.JPEG" for i in range(test)], np.zeros(test, int), rng, 64)


def write_wds_cifar10(root: Path, plan: Plan, rng: np.random.Generator) -> None:
    """CIFAR-10 in CLIP_benchmark's webdataset layout (tasks/webdataset_tasks.py), PNG images."""
    from PIL import Image

    base = root / "wds_cifar10"
    base.mkdir(parents=True)
    (base / "classnames.txt").write_text("\n".join(_names("CIFAR10")) + "\n")
    (base / "zeroshot_classification_templates.txt").write_text("a photo of a {c}.\na blurry photo of a {c}.\n")
    per_shard = 10_000
    for split, total, tiny in (("train", 50_000, TINY_TRAIN), ("test", 10_000, TINY_TEST)):
        labels = rng.permutation(plan.labels(total, 10, tiny))
        images = array_images(labels, 32, rng)
        shards = max(1, math.ceil(len(labels) / per_shard))
        (base / split).mkdir()
        (base / split / "nshards.txt").write_text(f"{shards}\n")
        for s in range(shards):
            with tarfile.open(base / split / f"{s}.tar", "w") as tar:
                for i in range(s * per_shard, min(len(labels), (s + 1) * per_shard)):
                    png = io.BytesIO()
                    Image.fromarray(images[i]).save(png, "PNG")
                    for ext, data in (("png", png.getvalue()), ("cls", str(int(labels[i])).encode())):
                        info = tarfile.TarInfo(f"s{i:07d}.{ext}")
                        info.size = len(data)
                        tar.addfile(info, io.BytesIO(data))


@dataclass(frozen=True)
class StandIn:
    """One dataset's writer and the folder it writes under the data root."""

    folder: str
    write: Callable[[Path, Plan, np.random.Generator], None]


STANDINS: dict[str, StandIn] = {
    "svhn": StandIn("svhn", write_svhn),
    "cifar10": StandIn("cifar-10-batches-py", write_cifar10),
    "cifar100": StandIn("cifar-100-python", write_cifar100),
    "mnist": StandIn("MNIST", write_mnist),
    "stl10": StandIn("stl10_binary", write_stl10),
    "eurosat": StandIn("eurosat", write_eurosat),
    "gtsrb": StandIn("gtsrb", write_gtsrb),
    "dtd": StandIn("dtd", write_dtd),
    "cars": StandIn("stanford_cars", write_cars),
    "food101": StandIn("food-101", write_food101),
    "flowers102": StandIn("flowers-102", write_flowers102),
    "aircraft": StandIn("fgvc-aircraft-2013b", write_aircraft),
    "pets": StandIn("oxford-iiit-pet", write_pets),
    "caltech101": StandIn("caltech101", write_caltech101),
    "resisc45": StandIn("resisc45", write_resisc45),
    "sun397": StandIn("sun397", write_sun397),
    "imagenet": StandIn("imagenet", write_imagenet),
    "tinyimagenet": StandIn("tiny-imagenet-200", write_tinyimagenet),
    "wds_cifar10": StandIn("wds_cifar10", write_wds_cifar10),
}


# ----------------------------------------------------------------------------- which, where


def file_backed(task: str) -> bool:
    """Whether a registered task reads files under the data root (the embedded world does not)."""
    from tasks import TASKS

    return TASKS.get(task).__module__ not in ("tasks.synthetic", "tasks.digits")


def sequence_datasets() -> list[str]:
    """Every file-backed dataset a registered sequence loads, in registry order."""
    from tasks import SEQUENCES, load_sequence

    names: list[str] = []
    for sequence in SEQUENCES.names():
        names += [t for t in load_sequence(sequence).loaded_tasks if t not in names and file_backed(t)]
    return names


def default_datasets() -> list[str]:
    """What ``--datasets`` defaults to: every sequence's datasets and the webdataset one."""
    return [*sequence_datasets(), "wds_cifar10"]


def claim(out: Path, scale: str) -> dict:
    """The marker of ``out`` after making sure this tool may write there: absent, empty, or
    written by an earlier call (benchmark.files.check_tool_folder) at the same scale."""
    from benchmark.files import check_tool_folder

    owned = [STANDIN_MARKER, *(s.folder for s in STANDINS.values())]
    ours = lambda data: isinstance(data, dict) and data.get("tool") == TOOL  # noqa: E731
    marker = out / STANDIN_MARKER
    if check_tool_folder(out, TOOL, STANDIN_MARKER, ours, owned):
        state = json.loads(marker.read_text(encoding="utf-8"))
        if state.get("scale") != scale:
            raise UserError(
                f"{TOOL}: {str(out)!r} holds stand-ins at scale {state.get('scale')!r}, not {scale!r}; "
                "use another folder"
            )
        return state
    out.mkdir(parents=True, exist_ok=True)
    state = {"tool": TOOL, "scale": scale, "datasets": [], "note": "procedural pixels, not the real datasets"}
    marker.write_text(json.dumps(state, indent=2))
    return state


def write_standins(out: Path, scale: str, datasets: Optional[list[str]] = None, seed: int = 0) -> list[str]:
    """Write the stand-ins of ``datasets`` (default: every sequence's) into ``out``; return
    those written now (a dataset already there is kept)."""
    if scale not in SCALES:
        raise UserError(f"--scale {scale!r} is not valid; valid choices: {', '.join(SCALES)}")
    wanted = datasets or default_datasets()
    unknown = [d for d in wanted if d not in STANDINS]
    if unknown:
        raise UserError(f"--datasets: no stand-in for {unknown[0]!r}; valid choices: {', '.join(STANDINS)}")
    out = Path(out)
    state = claim(out, scale)
    written = []
    for k, name in enumerate(wanted):
        standin = STANDINS[name]
        if (out / standin.folder).exists():
            continue
        staging = out / f".partial-{name}"
        shutil.rmtree(staging, ignore_errors=True)  # a killed earlier call's leftover, in our folder
        standin.write(staging, Plan(scale), np.random.default_rng([seed, k]))
        (staging / standin.folder).rename(out / standin.folder)
        staging.rmdir()
        state["datasets"] = sorted({*state["datasets"], name})
        (out / STANDIN_MARKER).write_text(json.dumps(state, indent=2))
        written.append(name)
    return written


@command
def main(argv: list[str]) -> int:
    """``python -m tasks.standins --out DIR --scale tiny|full [--datasets a,b]``."""
    parser = OneLineParser(prog="python -m tasks.standins", description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="a new or empty folder (the data root to pass as --data-root)")
    parser.add_argument("--scale", required=True, help="tiny (a few images a class) or full (the real split sizes)")
    parser.add_argument("--datasets", help=f"comma-separated (default: every sequence's); from {', '.join(STANDINS)}")
    parser.add_argument("--sequence", help="only the datasets this registered sequence (or YAML file) loads")
    parser.add_argument("--seed", type=int, default=0, help="the pixels' seed")
    args = parser.parse_args(argv)
    names = [d.strip() for d in args.datasets.split(",") if d.strip()] if args.datasets else None
    if args.sequence:
        from tasks import load_sequence

        names = (names or []) + [t for t in load_sequence(args.sequence).loaded_tasks if file_backed(t)]
    done = write_standins(Path(args.out), args.scale, names, args.seed)
    print(f"wrote {len(done)} stand-in dataset(s) to {args.out}: {', '.join(done) or 'none (all there)'}")
    return 0
