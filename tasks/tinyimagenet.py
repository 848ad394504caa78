"""TinyImageNet (Le & Yang, 2015): 200 ImageNet classes at 64x64, as the cs231n archive unpacks.

Expected under ``<data_root>/tiny-imagenet-200`` (the unzipped ``tiny-imagenet-200.zip``)::

    wnids.txt, words.txt
    train/<wnid>/images/*.JPEG           500 a class
    val/images/*.JPEG + val/val_annotations.txt   50 a class (the test split here)

Label i is the WordNet id on line i of ``wnids.txt`` (not the sorted ids): the order
continuum's ``TinyImageNet200`` gives, through which ZSCL (Thunderbeee/ZSCL, ``cil/``) loads
this dataset, so ZSCL's class order (tasks/sequences/tinyimagenet_cil.yaml) indexes the
same classes here; their ``cil/dataset_reqs/tinyimagenet_classes.txt`` lists the ids in that
order (n02124075, n04067472, ...). Every listed id needs its ``train/<wnid>/images`` folder,
and a train folder that ``wnids.txt`` does not list is refused.
Class names: the first synonym ``words.txt`` gives each WordNet id ("goldfish"); ZSCL's own
names list (the third column of that file) differs in places, so zero-shot numbers are
comparable in protocol, not to the decimal.
"""

from __future__ import annotations

from pathlib import Path

from benchmark.errors import UserError
from tasks.base import Task, TaskContext, register_task
from tasks.folder_tasks import class_folders, decode_source, images_in
from tasks.loading import TaskSpec, build_task

FOLDER = "tiny-imagenet-200"
IMAGE_SIZE = 64  # native: the model's preprocessing resizes on the device
TEMPLATES = ["a photo of a {}.", "a bad photo of a {}."]  # CLIP's; ZSCL's CIL prompt is the second


def _missing(root: Path, why: str) -> UserError:
    return UserError(
        f"dataset 'tinyimagenet' not found in {root} ({why}): expects the unzipped tiny-imagenet-200.zip "
        "(train/<wnid>/images, val/images, val/val_annotations.txt, words.txt); place the files there"
    )


def _names(root: Path, wnids: list[str]) -> list[str]:
    words = root / "words.txt"
    table = {}
    if words.is_file():
        for line in words.read_text(encoding="utf-8").splitlines():
            wnid, _, text = line.partition("\t")
            table[wnid] = text.split(",")[0].strip()
    return [table.get(w, w) for w in wnids]


def read_wnids(root: Path) -> list[str]:
    """The WordNet ids in ``wnids.txt`` line order (label i = line i), each with a train folder."""
    path = root / "wnids.txt"
    if not path.is_file():
        raise _missing(root, "no wnids.txt")
    wnids = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if len(set(wnids)) != len(wnids):
        raise UserError(f"dataset 'tinyimagenet': {path} lists a WordNet id twice")
    absent = [w for w in wnids if not (root / "train" / w / "images").is_dir()]
    if absent:
        raise _missing(
            root, f"no train/{absent[0]}/images for the id on line {wnids.index(absent[0]) + 1} of wnids.txt"
        )
    extra = sorted(set(class_folders(root / "train")) - set(wnids))
    if extra:
        raise UserError(
            f"dataset 'tinyimagenet': train folder {extra[0]!r} in {root / 'train'} is not listed in wnids.txt"
        )
    return wnids


def _val_items(root: Path, wnids: list[str]) -> list[tuple[str, int]]:
    annotations = root / "val" / "val_annotations.txt"
    if not annotations.is_file():
        raise _missing(root, "no val/val_annotations.txt")
    label = {w: i for i, w in enumerate(wnids)}
    items = []
    for line in annotations.read_text(encoding="utf-8").splitlines():
        parts = line.split("\t")
        if len(parts) >= 2 and parts[1] in label:
            items.append((str(root / "val" / "images" / parts[0]), label[parts[1]]))
    return items


@register_task("tinyimagenet")
def make_tinyimagenet(ctx: TaskContext) -> Task:
    """TinyImageNet-200: 200 classes, 100,000 train and 10,000 validation (test) images, 64 px."""
    root = Path(ctx.data_root) / FOLDER
    if not (root / "train").is_dir():
        raise _missing(root, "no train folder")
    wnids = read_wnids(root)
    train = [(p, i) for i, w in enumerate(wnids) for p in images_in(root / "train" / w / "images", "tinyimagenet")]
    spec = TaskSpec(
        "tinyimagenet",
        _names(root, wnids),
        TEMPLATES,
        "TinyImageNet-200 (64 px), test = the official validation images",
        source=f"image folders at {root}",
    )
    test = _val_items(root, wnids)
    return build_task(spec, ctx, decode_source(train, IMAGE_SIZE), decode_source(test, IMAGE_SIZE))
