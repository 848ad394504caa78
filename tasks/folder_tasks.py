"""Datasets in ImageFolder layout: RESISC45, SUN397, ImageNet, and any dataset a user brings.

Expected layout under the task's root (``<data_root>/<name>`` unless given)::

    <root>/train/<class folder>/**/<image>    .jpg .jpeg .png .ppm .bmp .pgm .tif .tiff .webp
    <root>/test/<class folder>/**/<image>     ("val" is used when there is no "test")

- No ``test`` (or ``val``) folder: a seeded 20% of train is held out as the test split.
- No ``train`` folder either: the class folders sit directly in ``<root>`` (e.g. RESISC45's
  ``NWPU-RESISC45`` folder as distributed), and 20% is held out the same way.
- Class order is the sorted class-folder names of train (ImageFolder's order); a test class
  folder must also exist in train.
- Class names: a ``classnames_file`` (one name per line, in that sorted order) when given,
  else the names given in code, else the folder names with underscores as spaces.

Registered: ``resisc45``, ``sun397`` and ``imagenet``, with CLIP's published names and
templates (tasks/clip_prompts.py). ImageNet's class folders are WordNet ids (n01440764 ...);
sorted, they are the standard label order that CLIP's 1000 names follow, so all 1000 must be
there (the official validation images come in one flat folder: sort them into class
folders first, or pass a ``classnames_file`` for a subset). SUN397 folders may be flat names
("abbey", "apse_indoor") or carry the one-letter prefix of the original tree ("a_abbey",
as the LDIFS authors' copy does); the prefix is dropped. A user's own dataset:
``register_folder_task("birds", "/data/birds", templates=["a photo of a {}, a bird."])``.

Images are decoded once at 224x224 (resize shorter side, centre crop), into the decoded-image
cache (tasks/cache.py) or, with the cache off, into memory;
the split protocol, limits and memory budget are tasks/loading.py's.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Optional, Union

from benchmark.errors import UserError
from benchmark.files import read_text_file
from tasks.base import Task, TaskContext, TaskFactory, register_task
from tasks.cache import fingerprint_files, hash_of
from tasks.clip_prompts import clip_prompts
from tasks.loading import LARGE_IMAGE_SIZE, DecodeSource, TaskSpec, build_task

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
DEFAULT_TEMPLATES = ("a photo of a {}.",)
TEST_FOLDERS = ("test", "val")


def underscores_to_spaces(folder: str) -> str:
    return folder.replace("_", " ")


class ImageFiles:
    """(path, label) pairs that open as PIL images; picklable for DataLoader workers."""

    def __init__(self, items: list[tuple[str, int]]) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        from PIL import Image

        path, label = self.items[i]
        with Image.open(path) as image:
            return image.convert("RGB"), label


def class_folders(folder: Path) -> list[str]:
    return sorted(e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith("."))


def images_in(folder: Path, task: str) -> list[str]:
    """Image files below ``folder``, sorted; one named like an image that is not a regular file
    (a FIFO would block the decoder forever, a device would read without end) is refused."""
    found = []
    for parent, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(parent, name)
            if not name.lower().endswith(IMAGE_EXTENSIONS):
                continue
            if not os.path.isfile(path):
                raise UserError(f"task {task!r}: {path} is not a regular file (a FIFO, socket or device?); remove it")
            found.append(path)
    return found


def scan(folder: Path, classes: list[str], task: str, require_all: bool) -> list[tuple[str, int]]:
    """All images of ``folder``/<class>/, labelled by the class's position in ``classes``."""
    unknown = sorted(set(class_folders(folder)) - set(classes))
    if unknown:
        raise UserError(f"task {task!r}: class folder {unknown[0]!r} in {folder} is not a class of the train folder")
    items: list[tuple[str, int]] = []
    for label, name in enumerate(classes):
        paths = images_in(folder / name, task) if (folder / name).is_dir() else []
        if not paths and require_all:
            raise UserError(
                f"task {task!r}: class folder {folder / name} holds no images ({', '.join(IMAGE_EXTENSIONS)})"
            )
        items += [(p, label) for p in paths]
    return items


def folder_layout(root: Path, task: str) -> tuple[Path, Optional[Path]]:
    """(train folder, test folder or None) of a dataset root."""
    if not root.is_dir():
        raise UserError(
            f"dataset {task!r} not found: no folder {root}; put its images in {root}/train/<class>/ "
            f"and {root}/test/<class>/, or all class folders directly in {root} "
            "(ImageFolder layout, see tasks/folder_tasks.py)"
        )
    test = next((root / t for t in TEST_FOLDERS if (root / t).is_dir()), None)
    train = root / "train" if (root / "train").is_dir() else root
    if train == root and test is not None:
        raise UserError(f"dataset {task!r}: {test} exists but {root}/train does not; add the train folder")
    if not class_folders(train):
        raise UserError(
            f"dataset {task!r} not found: no class folders in {train}; expected {root}/train/<class>/<images>"
        )
    return train, test


def read_classnames_file(path: Union[str, Path], expected: int, task: str) -> list[str]:
    text = read_text_file(path, f"class-names file of task {task!r}")  # small UTF-8 text, or one line
    names = [line.strip() for line in text.splitlines() if line.strip()]
    if len(names) != expected:
        raise UserError(
            f"task {task!r}: class-names file {str(path)!r} has {len(names)} names "
            f"but there are {expected} class folders"
        )
    return names


def _classnames(folders: list[str], task: str, classnames_file, classnames, folder_to_classname) -> list[str]:
    if classnames_file is not None:
        return read_classnames_file(classnames_file, len(folders), task)
    if classnames is not None:
        if len(classnames) != len(folders):
            raise UserError(
                f"task {task!r}: {len(folders)} class folders but {len(classnames)} class names; "
                "pass a classnames_file that names the folders present"
            )
        return list(classnames)
    return [folder_to_classname(f) for f in folders]


def folder_task(
    name: str,
    root: Union[str, Path, None] = None,
    classnames_file: Union[str, Path, None] = None,
    templates: Sequence[str] = DEFAULT_TEMPLATES,
    *,
    classnames: Optional[Sequence[str]] = None,
    folder_to_classname: Callable[[str], str] = underscores_to_spaces,
    image_size: int = LARGE_IMAGE_SIZE,
    description: str = "",
) -> TaskFactory:
    """A task factory for an ImageFolder-layout dataset (layout: this module's docstring).

    ``root`` None: ``<ctx.data_root>/<name>``; otherwise the path as given. ``classnames``:
    names in sorted class-folder order (overridden by ``classnames_file``).
    """
    if any(t.count("{}") != 1 for t in templates):
        raise UserError(f"task {name!r}: every template needs exactly one '{{}}' for the class name")

    def make(ctx: TaskContext) -> Task:
        folder = Path(root) if root is not None else Path(ctx.data_root) / name
        train_dir, test_dir = folder_layout(folder, name)
        folders = class_folders(train_dir)
        names = _classnames(folders, name, classnames_file, classnames, folder_to_classname)
        size = min(image_size, ctx.image_size) if ctx.image_size else image_size  # what the model needs
        train = decode_source(scan(train_dir, folders, name, require_all=True), size)
        test = None
        if test_dir is not None:
            test_items = scan(test_dir, folders, name, require_all=False)
            if not test_items:  # scored, an empty test split is NaN accuracies
                raise UserError(
                    f"task {name!r}: the test folder {test_dir} holds no images ({', '.join(IMAGE_EXTENSIONS)})"
                )
            test = decode_source(test_items, size)
        info = TaskSpec(
            name,
            names,
            list(templates),
            description or f"{name}: images from {folder}",
            source=f"image folders at {folder}",
        )
        return build_task(info, ctx, train, test)

    make.__doc__ = description or f"Images in ImageFolder layout under <data_root>/{name}."
    return make


def decode_source(items: list[tuple[str, int]], image_size: int) -> DecodeSource:
    # the cache key follows the file list, sizes and mtimes (and the labels, through the order)
    labelled = [f"{label}:{path}" for path, label in items]
    return DecodeSource(
        ImageFiles(items),
        image_size,
        fingerprint=lambda: fingerprint_files(p for p, _ in items) + str(hash_of(labelled)),
    )


def register_folder_task(name: str, root: Union[str, Path, None] = None, **kwargs) -> TaskFactory:
    """Register a folder dataset under ``name`` (the arguments of ``folder_task``)."""
    return register_task(name)(folder_task(name, root, **kwargs))


# ----------------------------------------------------------------------------- registered


def _published(dataset: str, folder_to_classname: Callable[[str], str]) -> Callable[[str], str]:
    """Folder name -> CLIP's published name when they agree up to case and separators."""
    key = lambda s: re.sub(r"[\s_/]+", " ", s).strip().lower()  # noqa: E731
    by_key = {key(n): n for n in clip_prompts(dataset).classnames}
    return lambda folder: by_key.get(key(folder_to_classname(folder)), folder_to_classname(folder))


def _sun397_folder(folder: str) -> str:
    # "a_abbey" (the original tree's letter level, flattened) -> "abbey"
    return underscores_to_spaces(re.sub(r"^[a-z]_(?=.)", "", folder))


@register_task("resisc45")
def make_resisc45(ctx: TaskContext) -> Task:
    """RESISC45: 45 remote-sensing scene classes, 224x224 (folders under <data_root>/resisc45)."""
    prompts = clip_prompts("RESISC45")
    return folder_task(
        "resisc45",
        templates=prompts.templates,
        folder_to_classname=_published("RESISC45", underscores_to_spaces),
        description=make_resisc45.__doc__,
    )(ctx)


@register_task("sun397")
def make_sun397(ctx: TaskContext) -> Task:
    """SUN397: 397 scene categories, 224x224 (folders under <data_root>/sun397)."""
    prompts = clip_prompts("SUN397")
    return folder_task(
        "sun397",
        templates=prompts.templates,
        folder_to_classname=_published("SUN397", _sun397_folder),
        description=make_sun397.__doc__,
    )(ctx)


@register_task("imagenet")
def make_imagenet(ctx: TaskContext) -> Task:
    """ImageNet-1k: 1000 classes in WordNet-id folders, 224x224 (under <data_root>/imagenet)."""
    prompts = clip_prompts("ImageNet")
    return folder_task(
        "imagenet", templates=prompts.templates, classnames=prompts.classnames, description=make_imagenet.__doc__
    )(ctx)
