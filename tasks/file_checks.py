"""What is wrong with a dataset file that exists but does not read: one line naming the file.

torchvision's readers fail on a malformed file with whatever the parser raised (``KeyError:
'data'`` for a CIFAR pickle with other keys, ``ValueError`` for an empty idx file, ``OSError``
for a truncated .mat), without the file's name. When a reader fails, ``malformed`` checks the
dataset's files one by one, by format, and names the first that is wrong:

- CIFAR batches (pickles): a dict with ``data`` and ``labels`` / ``fine_labels`` (the meta
  file: ``label_names`` / ``fine_label_names``), as the CIFAR page documents them;
- idx files (MNIST's ``*-ubyte``): the big-endian header (magic 0x08 type byte, dimension
  count, sizes) and a body of exactly the announced size (LeCun et al.'s MNIST page);
- MATLAB ``.mat`` files (SVHN, Flowers102, Stanford Cars): they load with ``scipy.io.loadmat``.
"""

from __future__ import annotations

import os
import pickle
import struct
from pathlib import Path
from typing import Optional

from benchmark.errors import UserError
from tasks.cache import files_under

CIFAR_KEYS = {
    "meta": ({"label_names"}, {"fine_label_names"}),
    "data": ({"data", "labels"}, {"data", "fine_labels"}),
}


def check_pickle(path: Path) -> Optional[str]:
    try:
        with open(path, "rb") as f:
            content = pickle.load(f, encoding="latin1")
    except Exception as e:  # noqa: BLE001 -- any unpickling failure means the file is bad
        return f"is not a readable pickle ({type(e).__name__}: {_first_line(e)})"
    kind = "meta" if "meta" in path.name else "data"
    if not isinstance(content, dict):
        return f"holds a {type(content).__name__}, not the dict of a CIFAR batch"
    if not any(keys <= set(content) for keys in CIFAR_KEYS[kind]):
        wanted = " or ".join("+".join(sorted(k)) for k in CIFAR_KEYS[kind])
        return f"has keys {sorted(map(str, content))[:6]} but a CIFAR {kind} file needs {wanted}"
    return None


def check_idx(path: Path) -> Optional[str]:
    size = os.path.getsize(path)
    if size < 8:
        return f"is {size} bytes, shorter than an idx header"
    with open(path, "rb") as f:
        magic = struct.unpack(">I", f.read(4))[0]
        ndim = magic & 0xFF
        if magic >> 16 != 0 or ndim < 1 or size < 4 + 4 * ndim:
            return f"has no idx header (magic {magic:#010x})"
        dims = struct.unpack(f">{ndim}I", f.read(4 * ndim))
    width = {0x08: 1, 0x09: 1, 0x0B: 2, 0x0C: 4, 0x0D: 4, 0x0E: 8}.get((magic >> 8) & 0xFF)
    if width is None:
        return f"has an unknown idx data type {(magic >> 8) & 0xFF:#04x}"
    expected = 4 + 4 * ndim + width * _product(dims)
    if size != expected:
        return f"is {size} bytes but its header {list(dims)} announces {expected} (truncated or padded)"
    return None


def check_mat(path: Path) -> Optional[str]:
    import scipy.io

    try:
        scipy.io.loadmat(str(path))
    except Exception as e:  # noqa: BLE001 -- scipy raises many types on a bad file
        return f"is not a readable MATLAB file ({type(e).__name__}: {_first_line(e)}; truncated?)"
    return None


def _product(dims: tuple[int, ...]) -> int:
    out = 1
    for d in dims:
        out *= d
    return out


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def check_file(path: Path) -> Optional[str]:
    """What is wrong with one dataset file, by its format; None when it reads (or is not checked)."""
    name = path.name
    if name.endswith("-ubyte"):
        return check_idx(path)
    if name.endswith(".mat"):
        return check_mat(path)
    if path.parent.name.startswith("cifar-") and "." not in name:
        return check_pickle(path)
    return None


def malformed(dataset: str, folder: Path, error: BaseException) -> UserError:
    """One line naming the first malformed file under ``folder`` (else the reader's own error)."""
    for path in map(Path, files_under(folder)):
        problem = check_file(path)
        if problem:
            return UserError(f"dataset {dataset!r}: file {path} {problem}; replace it (re-extract or re-download)")
    return UserError(
        f"dataset {dataset!r}: the files in {folder} do not read "
        f"({type(error).__name__}: {_first_line(error)}); replace them (re-extract or re-download)"
    )
