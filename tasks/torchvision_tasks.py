"""Tasks backed by torchvision datasets, read from ``data_root`` in torchvision's own layout.

Each registered task passes ``ctx.data_root`` (``<data_root>/svhn`` for SVHN, whose reader
keeps its files at the root it is given) to the torchvision class, which looks in its own
sub-folder there, e.g. ``<data_root>/cifar-10-batches-py``. Nothing is downloaded unless
``ctx.download`` is set; a missing dataset is one UserError line naming the folder checked
and the files expected. The split protocol, limits and memory budget are tasks/loading.py's.

In-memory resolution (uint8, 3 channels), train / test images of the full datasets, and
the memory that holds them all (the 90/10 split only moves images between train and val):

| task       | torchvision class | stored at             | train + test      | memory  |
| ---------- | ----------------- | --------------------- | ----------------- | ------- |
| mnist      | MNIST             | 28 native, grey -> 3  | 60,000 + 10,000   | 0.16 GB |
| cifar10    | CIFAR10           | 32 native             | 50,000 + 10,000   | 0.18 GB |
| cifar100   | CIFAR100          | 32 native             | 50,000 + 10,000   | 0.18 GB |
| svhn       | SVHN              | 32 native             | 73,257 + 26,032   | 0.31 GB |
| stl10      | STL10             | 96 native             | 5,000 + 8,000     | 0.36 GB |
| eurosat    | EuroSAT           | 64 native             | 27,000 (held out) | 0.33 GB |
| gtsrb      | GTSRB             | 64 (resize + crop)    | 26,640 + 12,630   | 0.48 GB |
| dtd        | DTD (partition 1) | 224                   | 1,880 + 1,880     | 0.57 GB |
| flowers102 | Flowers102        | 224                   | 1,020 + 6,149     | 1.08 GB |
| pets       | OxfordIIITPet     | 224                   | 3,680 + 3,669     | 1.11 GB |
| caltech101 | Caltech101        | 224                   | 8,677 (held out)  | 1.31 GB |
| aircraft   | FGVCAircraft      | 224                   | 6,667 + 3,333     | 1.51 GB |
| cars       | StanfordCars      | 224                   | 8,144 + 8,041     | 2.44 GB |
| food101    | Food101           | 224                   | 75,750 + 25,250   | 15.2 GB |

GTSRB's images are 15 to 250 px, mostly under 64: 64 keeps their detail at a quarter of
224's memory. Datasets decoded from image files (EuroSAT and below) go through the
decoded-image cache (tasks/cache.py), on disk; Food101 exceeds the in-memory per-task budget
(8 GiB) only with the cache off.
Splits: DTD, Flowers102 use torchvision's "train" split (as the LDIFS authors do for DTD);
FGVCAircraft and OxfordIIITPet "trainval". EuroSAT and Caltech101 ship no test split:
a seeded 20% is held out (tasks/loading.py, HELD_OUT_TEST_FRACTION).

Class names and templates: tasks/clip_prompts.py. The published lists are in each dataset's
label order, except EuroSAT (mapped by folder name below), Oxford-IIIT Pet (matched by
name), and Caltech101 (torchvision drops the "BACKGROUND_Google" class, CLIP's first name).
"""

from __future__ import annotations

import pickle
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from benchmark.errors import UserError
from tasks.base import TaskContext, register_task
from tasks.cache import files_under, fingerprint_files, hash_of
from tasks.clip_prompts import Prompts, clip_prompts
from tasks.file_checks import malformed
from tasks.loading import LARGE_IMAGE_SIZE, ArraySource, DecodeSource, TaskSpec, build_task

GTSRB_IMAGE_SIZE = 64
# How to get a dataset that is not on disk; one place to change if the CLI grows a flag.
DOWNLOAD_HINT = "rerun with --download (where the network allows)"
# A data root holding this file was written by tasks/standins.py: its files have the real
# layout but cannot match torchvision's md5 sums of the real ones, so those are not checked.
STANDIN_MARKER = ".ldifs-standins.json"

# torchvision's EuroSAT folders (sorted = label order) -> CLIP's names, which are published
# in another order (the same mapping as the LDIFS authors' datasets/eurosat.py).
EUROSAT_FOLDER_TO_CLIP = {
    "AnnualCrop": "annual crop land",
    "Forest": "forest",
    "HerbaceousVegetation": "brushland or shrubland",
    "Highway": "highway or road",
    "Industrial": "industrial buildings or commercial buildings",
    "Pasture": "pasture land",
    "PermanentCrop": "permanent crop land",
    "Residential": "residential buildings or homes or apartments",
    "River": "river",
    "SeaLake": "lake or sea",
}


@dataclass(frozen=True)
class TorchvisionTask:
    """How one torchvision dataset becomes a task."""

    name: str  # registry name
    tv_class: str  # class in torchvision.datasets
    prompts: str  # key in tasks.clip_prompts
    marker: str  # path under the root that exists once the dataset is there
    expected: str  # what torchvision reads, for the missing-dataset message
    train_args: dict[str, Any]
    test_args: Optional[dict[str, Any]]  # None: hold out a seeded test split of train
    image_size: Optional[int] = None  # None: read as arrays at native size
    subdir: str = ""  # root = data_root / subdir
    description: str = ""
    downloadable: bool = True  # False: torchvision's download no longer works (StanfordCars)


# ----------------------------------------------------------------------------- arrays


def _cifar_arrays(ds: Any) -> ArraySource:
    images = torch.from_numpy(np.ascontiguousarray(ds.data)).permute(0, 3, 1, 2)  # NHWC -> NCHW
    return ArraySource(images, torch.as_tensor(ds.targets, dtype=torch.long))


def _mnist_arrays(ds: Any) -> ArraySource:
    return ArraySource(ds.data.unsqueeze(1), ds.targets.long())  # [N, 1, 28, 28]; 3 channels on selection


def _nchw_arrays(ds: Any) -> ArraySource:  # SVHN and STL10 keep uint8 NCHW arrays in .data, labels in .labels
    return ArraySource(torch.from_numpy(np.ascontiguousarray(ds.data)), torch.as_tensor(ds.labels, dtype=torch.long))


ARRAY_READERS: dict[str, Callable[[Any], ArraySource]] = {
    "CIFAR10": _cifar_arrays,
    "CIFAR100": _cifar_arrays,
    "MNIST": _mnist_arrays,
    "SVHN": _nchw_arrays,
    "STL10": _nchw_arrays,
}


# ----------------------------------------------------------------------------- class names


def _key(name: str) -> str:
    return re.sub(r"\s+", " ", name.replace("_", " ")).strip().lower()


def align_classnames(published: tuple[str, ...], native: Optional[list[str]]) -> list[str]:
    """The published names in the dataset's label order.

    When the dataset's own names match the published ones up to case and underscores, they
    are matched by name (order-proof); otherwise the published order is the label order.
    """
    if native is not None and len(native) == len(published):
        by_key = {_key(n): n for n in published}
        if all(_key(n) in by_key for n in native):
            return [by_key[_key(n)] for n in native]
    return list(published)


def _classnames(spec: TorchvisionTask, prompts: Prompts, ds: Any) -> list[str]:
    if spec.name == "eurosat":
        return [EUROSAT_FOLDER_TO_CLIP[c] for c in ds.classes]
    if spec.name == "caltech101":
        return list(prompts.classnames[1:])  # CLIP's list starts with BACKGROUND_Google's name
    return align_classnames(prompts.classnames, getattr(ds, "classes", None))


def _raw_classnames(ds: Any) -> Optional[list[str]]:
    """torchvision's own names in label order (CIFAR-100's "aquarium_fish"), where it has them."""
    names = getattr(ds, "classes", None)
    return [str(n) for n in names] if isinstance(names, list) and names else None


# ----------------------------------------------------------------------------- opening


def _root(spec: TorchvisionTask, ctx: TaskContext) -> Path:
    return Path(ctx.data_root) / spec.subdir if spec.subdir else Path(ctx.data_root)


def _missing(spec: TorchvisionTask, root: Path, why: str = "") -> UserError:
    detail = f" ({why})" if why else ""
    how = (
        f"{DOWNLOAD_HINT}, or place the files there"
        if spec.downloadable
        else "torchvision cannot download it (its original URL is gone): place the files there"
    )
    return UserError(
        f"dataset {spec.name!r} not found in {root}{detail}: torchvision.datasets.{spec.tv_class} "
        f"expects {spec.expected} there; {how}"
    )


def open_dataset(spec: TorchvisionTask, ctx: TaskContext, args: dict[str, Any]) -> Any:
    """Construct the torchvision dataset, turning every way of not finding it into one line."""
    import torchvision.datasets as tvd  # imported here: only building a task touches torchvision

    root = _root(spec, ctx)
    if not ctx.download and not (root / spec.marker).exists():
        # checked first: some readers create folders before failing (Caltech101)
        raise _missing(spec, root, f"no {root / spec.marker}")
    reader = getattr(tvd, spec.tv_class)
    if (Path(ctx.data_root) / STANDIN_MARKER).is_file():
        reader = without_checksums(reader)
    try:
        return reader(str(root), download=ctx.download, **args)
    except FileNotFoundError as e:
        raise _missing(spec, root, f"no {e.filename}" if e.filename else str(e)) from None
    except ImportError as e:  # SVHN imports scipy itself
        module = e.name or "scipy"
        raise UserError(f"dataset {spec.name!r} needs the {module} package: pip install {module}") from None
    except RuntimeError as e:
        if "scipy" in str(e).lower():  # StanfordCars: "Scipy is not found ..."
            raise UserError(f"dataset {spec.name!r} needs scipy: pip install scipy") from None
        if "not found" in str(e).lower():
            corrupted = " or failed torchvision's md5 check" if "corrupted" in str(e) else ""
            raise _missing(spec, root, f"incomplete{corrupted}") from None
        raise malformed(spec.name, dataset_folder(spec, root), e) from None
    except (OSError, ValueError) as e:  # download errors (URLError is an OSError); Cars: URL gone
        if not ctx.download:  # the files are there but do not read: name the bad one
            raise malformed(spec.name, dataset_folder(spec, root), e) from None
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(
            f"downloading dataset {spec.name!r} into {root} failed: {first_line}; "
            f"place the files there yourself ({spec.expected})"
        ) from None
    except (KeyError, IndexError, TypeError, EOFError, pickle.UnpicklingError, struct.error) as e:
        raise malformed(spec.name, dataset_folder(spec, root), e) from None  # e.g. KeyError: 'data' (CIFAR)
    except Exception as e:  # noqa: BLE001  a zero-byte, cut-short or altered file fails anywhere in the reader
        raise malformed(spec.name, dataset_folder(spec, root), e) from None


def without_checksums(reader: type) -> type:
    """``reader`` with its md5 checks off (CIFAR, SVHN, STL10, Flowers102 check them): for
    stand-ins only, whose files exist in the real layout with other bytes."""
    attrs: dict[str, Any] = {"_check_integrity": lambda self: True}
    if isinstance(getattr(reader, "meta", None), dict):  # CIFAR checks its meta file on its own
        attrs["meta"] = {**reader.meta, "md5": None}  # type: ignore[attr-defined]
    return type(reader.__name__, (reader,), attrs)


def dataset_folder(spec: TorchvisionTask, root: Path) -> Path:
    """The folder holding only this dataset's files (its marker's first part, or the root)."""
    folder = root / Path(spec.marker).parts[0]
    return folder if folder.is_dir() else root


def _source(spec: TorchvisionTask, ds: Any, root: Path, split: dict[str, Any]) -> ArraySource | DecodeSource:
    if spec.image_size is None:
        return ARRAY_READERS[spec.tv_class](ds)
    # the cache key follows every file of the dataset's folder (sizes, mtimes) and the split read
    folder = dataset_folder(spec, root)
    return DecodeSource(
        ds, spec.image_size, fingerprint=lambda: fingerprint_files(files_under(folder)) + hash_of([repr(split)])
    )


def make_task(spec: TorchvisionTask, ctx: TaskContext):
    """Open both splits (so a missing one fails before any decoding), then build the Task."""
    prompts = clip_prompts(spec.prompts)
    train_ds = open_dataset(spec, ctx, spec.train_args)
    test_ds = open_dataset(spec, ctx, spec.test_args) if spec.test_args is not None else None
    info = TaskSpec(
        spec.name,
        _classnames(spec, prompts, train_ds),
        list(prompts.templates),
        spec.description,
        source=f"torchvision.datasets.{spec.tv_class} at {_root(spec, ctx)}; prompts: {prompts.source}",
        raw_classnames=_raw_classnames(train_ds),
    )
    root = _root(spec, ctx)
    train = _source(spec, train_ds, root, spec.train_args)
    return build_task(info, ctx, train, _source(spec, test_ds, root, spec.test_args) if test_ds is not None else None)


def _register(spec: TorchvisionTask) -> None:
    def factory(ctx: TaskContext):
        return make_task(spec, ctx)

    factory.__doc__ = spec.description
    factory.__name__ = f"make_{spec.name}"
    factory.spec = spec  # type: ignore[attr-defined]  # for tests and tooling
    register_task(spec.name)(factory)


def _large(
    name: str,
    tv_class: str,
    prompts: str,
    marker: str,
    expected: str,
    train_args: dict,
    test_args: Optional[dict],
    description: str,
    downloadable: bool = True,
) -> TorchvisionTask:
    return TorchvisionTask(
        name,
        tv_class,
        prompts,
        marker,
        expected,
        train_args,
        test_args,
        LARGE_IMAGE_SIZE,
        description=description,
        downloadable=downloadable,
    )


SPECS: list[TorchvisionTask] = [
    TorchvisionTask(
        "cifar10",
        "CIFAR10",
        "CIFAR10",
        "cifar-10-batches-py",
        "cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta} (the python version)",
        {"train": True},
        {"train": False},
        description="CIFAR-10: 10 object classes, 32x32 (torchvision).",
    ),
    TorchvisionTask(
        "cifar100",
        "CIFAR100",
        "CIFAR100",
        "cifar-100-python",
        "cifar-100-python/{train,test,meta} (the python version)",
        {"train": True},
        {"train": False},
        description="CIFAR-100: 100 object classes, 32x32 (torchvision).",
    ),
    TorchvisionTask(
        "mnist",
        "MNIST",
        "MNIST",
        "MNIST",
        "MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte (unzipped idx files)",
        {"train": True},
        {"train": False},
        description="MNIST: handwritten digits, 28x28 grey as 3 channels (torchvision).",
    ),
    TorchvisionTask(
        "svhn",
        "SVHN",
        "SVHN",
        "train_32x32.mat",
        "train_32x32.mat and test_32x32.mat",
        {"split": "train"},
        {"split": "test"},
        subdir="svhn",
        description="SVHN: house-number digits, 32x32 (torchvision; needs scipy).",
    ),
    TorchvisionTask(
        "stl10",
        "STL10",
        "STL10",
        "stl10_binary",
        "stl10_binary/{train_X,train_y,test_X,test_y}.bin and class_names.txt",
        {"split": "train"},
        {"split": "test"},
        description="STL-10: 10 object classes, 96x96 (torchvision).",
    ),
    TorchvisionTask(
        "eurosat",
        "EuroSAT",
        "EuroSAT",
        "eurosat/2750",
        "eurosat/2750/<class folder>/*.jpg (RGB)",
        {},
        None,
        64,
        description="EuroSAT: 10 land-use classes, 64x64 satellite RGB (torchvision).",
    ),
    TorchvisionTask(
        "gtsrb",
        "GTSRB",
        "GTSRB",
        "gtsrb/GTSRB",
        "gtsrb/GTSRB/Training/<class id>/*.ppm, gtsrb/GTSRB/Final_Test/Images/*.ppm, gtsrb/GT-final_test.csv",
        {"split": "train"},
        {"split": "test"},
        GTSRB_IMAGE_SIZE,
        description="GTSRB: 43 German traffic signs, resized to 64x64 (torchvision).",
    ),
    _large(
        "dtd",
        "DTD",
        "DTD",
        "dtd/dtd",
        "dtd/dtd/images/<class>/*.jpg and dtd/dtd/labels/{train,test}1.txt",
        {"split": "train"},
        {"split": "test"},
        "DTD: 47 describable textures, 224x224 (torchvision, partition 1).",
    ),
    _large(
        "cars",
        "StanfordCars",
        "StanfordCars",
        "stanford_cars",
        "stanford_cars/{devkit/cars_meta.mat,devkit/cars_train_annos.mat,cars_train/,cars_test/,"
        "cars_test_annos_withlabels.mat}",
        {"split": "train"},
        {"split": "test"},
        "Stanford Cars: 196 car models, 224x224 (torchvision; needs scipy).",
        downloadable=False,
    ),
    _large(
        "food101",
        "Food101",
        "Food101",
        "food-101",
        "food-101/images/<class>/*.jpg and food-101/meta/{train,test}.json",
        {"split": "train"},
        {"split": "test"},
        "Food-101: 101 dishes, 224x224 (torchvision; 15 GB decoded, on disk in the cache).",
    ),
    _large(
        "flowers102",
        "Flowers102",
        "Flowers102",
        "flowers-102",
        "flowers-102/jpg/image_NNNNN.jpg, flowers-102/imagelabels.mat and flowers-102/setid.mat",
        {"split": "train"},
        {"split": "test"},
        "Oxford Flowers-102: 102 flowers, 224x224 (torchvision; needs scipy).",
    ),
    _large(
        "aircraft",
        "FGVCAircraft",
        "FGVCAircraft",
        "fgvc-aircraft-2013b",
        "fgvc-aircraft-2013b/data/{images/,variants.txt,images_variant_trainval.txt,images_variant_test.txt}",
        {"split": "trainval", "annotation_level": "variant"},
        {"split": "test", "annotation_level": "variant"},
        "FGVC-Aircraft: 100 aircraft variants, 224x224 (torchvision, trainval/test).",
    ),
    _large(
        "pets",
        "OxfordIIITPet",
        "OxfordIIITPet",
        "oxford-iiit-pet",
        "oxford-iiit-pet/images/*.jpg and oxford-iiit-pet/annotations/{trainval,test}.txt",
        {"split": "trainval"},
        {"split": "test"},
        "Oxford-IIIT Pet: 37 cat and dog breeds, 224x224 (torchvision).",
    ),
    _large(
        "caltech101",
        "Caltech101",
        "Caltech101",
        "caltech101/101_ObjectCategories",
        "caltech101/101_ObjectCategories/<category>/image_NNNN.jpg",
        {},
        None,
        "Caltech-101: 101 object categories, 224x224 (torchvision; seeded 20% test).",
    ),
]

for _spec in SPECS:
    _register(_spec)
