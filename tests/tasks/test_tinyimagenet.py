"""TinyImageNet as the cs231n archive unpacks, labelled in wnids.txt line order (ZSCL's labels).

The expected lists below come from Thunderbeee/ZSCL (commit b96e714): ``WNIDS_AS_SHIPPED`` is
the second column of ``cil/dataset_reqs/tinyimagenet_classes.txt`` (line i = label i, the
archive's wnids.txt order that continuum's TinyImageNet200 labels by) and ``ZSCL_ORDER`` the
``class_order`` of ``cil/class_orders/tinyimagenet.yaml``; both copied here by hand, so the
test checks the shipped sequence file against them, not against itself.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from benchmark.errors import UserError
from tasks import TASKS, TaskContext, load_sequence
from tasks.class_incremental import group_tasks

WNIDS_AS_SHIPPED = """
n02124075 n04067472 n04540053 n04099969 n07749582 n01641577 n02802426 n09246464 n07920052 n03970156
n03891332 n02106662 n03201208 n02279972 n02132136 n04146614 n07873807 n02364673 n04507155 n03854065
n03838899 n03733131 n01443537 n07875152 n03544143 n09428293 n03085013 n02437312 n07614500 n03804744
n04265275 n02963159 n02486410 n01944390 n09256479 n02058221 n04275548 n02321529 n02769748 n02099712
n07695742 n02056570 n02281406 n01774750 n02509815 n03983396 n07753592 n04254777 n02233338 n04008634
n02823428 n02236044 n03393912 n07583066 n04074963 n01629819 n09332890 n02481823 n03902125 n03404251
n09193705 n03637318 n04456115 n02666196 n03796401 n02795169 n02123045 n01855672 n01882714 n02917067
n02988304 n04398044 n02843684 n02423022 n02669723 n04465501 n02165456 n03770439 n02099601 n04486054
n02950826 n03814639 n04259630 n03424325 n02948072 n03179701 n03400231 n02206856 n03160309 n01984695
n03977966 n03584254 n04023962 n02814860 n01910747 n04596742 n03992509 n04133789 n03937543 n02927161
n01945685 n02395406 n02125311 n03126707 n04532106 n02268443 n02977058 n07734744 n03599486 n04562935
n03014705 n04251144 n04356056 n02190166 n03670208 n02002724 n02074367 n04285008 n04560804 n04366367
n02403003 n07615774 n04501370 n03026506 n02906734 n01770393 n04597913 n03930313 n04118538 n04179913
n04311004 n02123394 n04070727 n02793495 n02730930 n02094433 n04371430 n04328186 n03649909 n04417672
n03388043 n01774384 n02837789 n07579787 n04399382 n02791270 n03089624 n02814533 n04149813 n07747607
n03355925 n01983481 n04487081 n03250847 n03255030 n02892201 n02883205 n03100240 n02415577 n02480495
n01698640 n01784675 n04376876 n03444034 n01917289 n01950731 n03042490 n07711569 n04532670 n03763968
n07768694 n02999410 n03617480 n06596364 n01768244 n02410509 n03976657 n01742172 n03980874 n02808440
n02226429 n02231487 n02085620 n01644900 n02129165 n02699494 n03837869 n02815834 n07720875 n02788148
n02909870 n03706229 n07871810 n03447447 n02113799 n12267677 n03662601 n02841315 n07715103 n02504458
""".split()

ZSCL_ORDER = [
    131, 181, 22, 172, 144, 92, 97, 187, 58, 93, 6, 70, 106, 68, 153, 168, 179, 199, 29, 46, 9, 142, 134, 88, 193,
    110, 26, 32, 117, 112, 17, 39, 166, 13, 94, 138, 109, 147, 51, 101, 59, 188, 116, 5, 170, 99, 100, 167, 180, 146,
    65, 1, 104, 43, 38, 184, 123, 171, 137, 162, 71, 44, 95, 174, 12, 7, 54, 152, 21, 47, 28, 176, 34, 2, 132, 118,
    42, 189, 150, 14, 165, 41, 192, 45, 82, 128, 63, 57, 197, 160, 53, 75, 108, 135, 121, 159, 183, 67, 169, 50, 87,
    69, 89, 196, 115, 19, 148, 96, 86, 11, 8, 60, 33, 173, 78, 4, 119, 105, 182, 127, 177, 30, 186, 40, 49, 178, 76,
    157, 161, 73, 164, 151, 31, 74, 191, 27, 125, 198, 81, 20, 155, 114, 139, 36, 61, 56, 145, 48, 16, 83, 62, 85,
    126, 0, 102, 23, 3, 140, 15, 195, 133, 113, 190, 141, 52, 163, 156, 80, 111, 90, 175, 143, 120, 84, 18, 25, 79,
    37, 154, 136, 64, 158, 24, 185, 72, 35, 129, 55, 149, 91, 122, 77, 103, 124, 130, 66, 10, 107, 194, 98,
]  # fmt: skip


def write_standin(root: Path, wnids: list[str], train_per_class: int = 1, val_per_class: int = 1) -> Path:
    """A ``tiny-imagenet-200`` folder as the archive ships it; every image of the class on line
    i of wnids.txt is filled with red value i (lossless PNG data under the archive's .JPEG names,
    which the loader opens by content)."""
    folder = root / "tiny-imagenet-200"
    (folder / "val" / "images").mkdir(parents=True)
    (folder / "wnids.txt").write_text("\n".join(wnids) + "\n")
    (folder / "words.txt").write_text("".join(f"{w}\tname of {w}, another synonym\n" for w in wnids))
    annotations = []
    for i, wnid in enumerate(wnids):
        colour = (i, 0, 7)
        images = folder / "train" / wnid / "images"
        images.mkdir(parents=True)
        (folder / "train" / wnid / f"{wnid}_boxes.txt").write_text("")  # shipped beside images/; not an image
        for k in range(train_per_class):
            Image.new("RGB", (64, 64), colour).save(images / f"{wnid}_{k}.JPEG", format="PNG")
        for k in range(val_per_class):
            name = f"val_{i}_{k}.JPEG"
            Image.new("RGB", (64, 64), colour).save(folder / "val" / "images" / name, format="PNG")
            annotations.append(f"{name}\t{wnid}\t0\t0\t63\t63\n")
    (folder / "val" / "val_annotations.txt").write_text("".join(annotations))
    return folder


def _load(root: Path):
    return TASKS.get("tinyimagenet")(TaskContext(data_root=root, data_cache=None))


def test_label_i_is_the_wnid_on_line_i_of_wnids_txt(tmp_path):
    wnids = ["n09246464", "n01443537", "n07920052", "n02124075", "n04067472"]  # not sorted
    write_standin(tmp_path, wnids, train_per_class=10, val_per_class=3)
    task = _load(tmp_path)
    assert task.classnames == [f"name of {w}" for w in wnids]  # words.txt's first synonym, line order
    for split in (task.train, task.val, task.test):
        assert len(split) and torch.equal(split.images[:, 0, 32, 32].long(), split.labels)  # line i -> label i
    assert (len(task.train) + len(task.val), len(task.test)) == (50, 15)


def test_missing_wnids_txt_or_an_unlisted_train_folder_is_one_line(tmp_path):
    folder = write_standin(tmp_path, ["n02124075", "n04067472"])
    (folder / "train" / "n00000001" / "images").mkdir(parents=True)
    with pytest.raises(UserError, match="n00000001.*not listed in wnids.txt"):
        _load(tmp_path)
    (folder / "wnids.txt").unlink()
    with pytest.raises(UserError, match="no wnids.txt"):
        _load(tmp_path)


def test_tinyimagenet_cil_groups_are_zscls_class_lists(tmp_path):
    write_standin(tmp_path, WNIDS_AS_SHIPPED, train_per_class=1, val_per_class=1)
    task = _load(tmp_path)
    spec = load_sequence("tinyimagenet_cil").classes
    groups = group_tasks(task, spec)
    bounds = [0, 100, *range(110, 201, 10)]
    expected = [[WNIDS_AS_SHIPPED[c] for c in ZSCL_ORDER[a:b]] for a, b in zip(bounds, bounds[1:])]
    got = [[name.removeprefix("name of ") for name in g.classnames] for g in groups.values()]
    assert got == expected
    assert expected[0][0] == "n02123394" and expected[1][:3] == ["n02206856", "n02917067", "n01984695"]
    for group in groups.values():  # each group's images are of its own classes, in group order
        line = group.test.images[:, 0, 32, 32].long()
        assert [WNIDS_AS_SHIPPED[int(i)] for i in line] == [
            group.classnames[int(y)].removeprefix("name of ") for y in group.test.labels
        ]
