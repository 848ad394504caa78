"""Tasks stored as webdataset shards in the layout CLIP_benchmark publishes.

CLIP_benchmark (LAION, ``clip_benchmark/webdataset_builder.py`` and
``clip_benchmark/datasets/builder.py``) writes each dataset as::

    <root>/classnames.txt                            one class name per line, line i = label i
    <root>/zeroshot_classification_templates.txt     one template per line, with "{c}"
    <root>/<split>/nshards.txt                        the number of shards (one integer)
    <root>/<split>/0.tar, 1.tar, ...                  samples keyed "s%07d" (global index):
                                                      an image (.webp, .png, .jpg or .jpeg) and
                                                      its label (.cls, an integer as text)

with ``<split>`` ``train`` and ``test``. The shards are read in order through the
``webdataset`` library (sample i is the i-th sample of the concatenated shards), decoded
like every other large-image task (shorter side to the stored size, bicubic, centre crop)
and, with the decoded-image cache on, decoded once into it (tasks/cache.py). The labels of a
split are read in a first pass over the shards; with the cache on, that index is kept there
too, so a warm run reads no shard at all.
"""

from __future__ import annotations

import io
import itertools
import multiprocessing
import os
import re
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from benchmark.errors import UserError
from benchmark.files import MAX_TEXT_BYTES, atomic_write, read_text_file
from tasks.base import Split, Task, TaskContext
from tasks.cache import file_lock, fingerprint_files, hash_of, read_labels
from tasks.loading import (
    LARGE_IMAGE_SIZE,
    MIN_IMAGES_FOR_WORKERS,
    TaskSpec,
    build_task,
    first_line,
    to_square_uint8,
)

IMAGE_KEYS = ("webp", "png", "jpg", "jpeg")  # CLIP_benchmark's reader order
SPLITS = ("train", "test")
CLASSNAMES_FILE = "classnames.txt"
TEMPLATES_FILE = "zeroshot_classification_templates.txt"
DECODE_CHUNK = 1024  # encoded samples read ahead of the decoders
MAX_SHARDS = 1_000_000  # CLIP_benchmark writes a few hundred at most; more is not a count


def shard_paths(root: Path, split: str, where: str) -> list[str]:
    """The shards ``<root>/<split>/{0..n-1}.tar`` that ``nshards.txt`` announces, all present.

    The count is checked (digits, at most MAX_SHARDS) and the shards are looked up in order,
    stopping at the first missing one: a count of 10^11 costs one lookup, not 10^11 paths."""
    count_file = root / split / "nshards.txt"
    text = _read_text(count_file, where, max_bytes=64).strip()
    if not re.fullmatch(r"[0-9]{1,12}", text) or not 1 <= int(text) <= MAX_SHARDS:
        raise UserError(
            f"{where}: {count_file} must hold the number of shards (an integer from 1 to {MAX_SHARDS:,}), "
            f"found {text[:40]!r}"
        )
    shards = []
    for i in range(int(text)):
        shard = root / split / f"{i}.tar"
        if not shard.is_file():  # regular files only: a FIFO would block the reader
            raise UserError(f"{where}: no shard {shard} ({count_file} announces {text})")
        shards.append(str(shard))
    return shards


def _read_text(path: Path, where: str, max_bytes: int = MAX_TEXT_BYTES) -> str:
    """A small UTF-8 text file of the layout (one line naming it when missing, binary or huge)."""
    if not path.exists():
        raise UserError(f"{where}: no {path} (CLIP_benchmark's webdataset layout needs it)")
    try:
        return read_text_file(path, "file of the webdataset layout", max_bytes)
    except UserError as e:
        raise UserError(f"{where}: {e}") from None


def read_lines(path: Path, where: str) -> list[str]:
    return [line.strip() for line in _read_text(path, where).splitlines() if line.strip()]


def _samples(shards: list[str], images: bool, where: str = "webdataset"):
    """Raw samples of the shards, in order (``images`` False: only the labels are read).

    A shard that is not a readable tar (cut short, corrupt, empty) is one line naming it."""
    import webdataset as wds

    wanted = (lambda name: True) if images else (lambda name: name.endswith(".cls"))
    stream = iter(wds.WebDataset(shards, shardshuffle=False, empty_check=False, select_files=wanted))
    while True:
        try:
            sample = next(stream)
        except StopIteration:
            return
        except Exception as e:  # noqa: BLE001  tarfile/webdataset on a user's file: any failure means a bad shard
            shard = next((a for a in reversed(e.args) if isinstance(a, str) and a in shards), "a shard")
            raise UserError(
                f"{where}: {shard} is not a readable tar archive ({first_line(e)}); rebuild or re-download it"
            ) from None
        yield sample


def _label(sample: dict, where: str) -> int:
    raw = sample.get("cls")
    try:
        label = int(raw.decode() if isinstance(raw, bytes) else raw)
        if label < 0:
            raise ValueError
        return label
    except (TypeError, ValueError, AttributeError):
        raise UserError(
            f"{where}: sample {sample.get('__key__')!r} of {sample.get('__url__')} has no .cls label "
            f"that is an integer >= 0 (found {raw!r:.40})"
        ) from None


def _decode_one(job: tuple[int, bytes, str, int]) -> tuple[int, Optional[np.ndarray], str]:
    slot, data, name, size = job
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            return slot, to_square_uint8(image, size).numpy(), ""
    except Exception as e:  # noqa: BLE001  as a folder task's decode (tasks/loading.py): corrupt, cut short, too large
        return slot, None, f"{name}: {first_line(e)}"


def _load_index(path: Path) -> Optional[np.ndarray]:
    """A kept label index, or None when it is absent, a link, or not one (re-read from the shards)."""
    if path.is_symlink() or not path.is_file():
        return None
    try:
        labels = read_labels(path)
    except (OSError, ValueError, EOFError):
        return None
    ok = labels.dtype == np.int64 and labels.ndim == 1 and len(labels) and labels.min() >= 0
    return labels if ok else None


class WebDatasetSource:
    """One split's shards: sample i is the i-th sample of the shards in order."""

    def __init__(self, shards: list[str], image_size: int, where: str, index_dir: Optional[Path]) -> None:
        self.shards = shards
        self.image_size = image_size
        self.where = where
        self.index_dir = index_dir  # where the label index is kept (the cache), or None
        self._labels: Optional[np.ndarray] = None
        self.fingerprint = lambda: fingerprint_files(shards)

    @property
    def labels(self) -> np.ndarray:
        if self._labels is None:
            self._labels = self._read_index()
        return self._labels

    def __len__(self) -> int:
        return len(self.labels)

    def _read_index(self) -> np.ndarray:
        if self.index_dir is None:
            return self._scan_labels()
        path = self.index_dir / f"wds-index-{hash_of(self.shards)}-{self.fingerprint()}.npy"
        with file_lock(path.with_suffix(".lock")):
            labels = _load_index(path)
            if labels is not None:
                return labels
            labels = self._scan_labels()
            # complete or absent, never half-written, never through a link planted at the name
            atomic_write(path, lambda stream: np.save(stream, labels), binary=True)
            return labels

    def _scan_labels(self) -> np.ndarray:
        labels = [_label(s, self.where) for s in _samples(self.shards, False, self.where)]
        if not labels:
            raise UserError(f"{self.where}: the shards {self.shards[0]} ... hold no samples")
        return np.asarray(labels, dtype=np.int64)

    def select(self, indices: torch.Tensor, what: str) -> Split:
        n, size = len(indices), self.image_size
        images = np.empty((n, 3, size, size), dtype=np.uint8)
        labels = np.empty(n, dtype=np.int64)
        self.decode_into(indices.numpy(), images, labels, what)
        return Split(torch.from_numpy(images), torch.from_numpy(labels))

    def decode_into(self, indices: np.ndarray, images: np.ndarray, labels: np.ndarray, what: str) -> None:
        """Decode the chosen samples (any order) in one ordered pass over the shards."""
        from tqdm import tqdm

        jobs = self._jobs({int(i): k for k, i in enumerate(indices)})
        workers = min(8, os.cpu_count() or 1) if len(indices) >= MIN_IMAGES_FOR_WORKERS else 0
        pool = multiprocessing.get_context("fork").Pool(workers) if workers else None
        try:
            with tqdm(total=len(indices), desc=f"decoding {what}", unit="img", leave=False, disable=None) as bar:
                # a bounded number of encoded images in flight: memory stays small at any dataset size
                while chunk := list(itertools.islice(jobs, DECODE_CHUNK)):
                    for slot, image, error in pool.map(_decode_one, chunk, 16) if pool else map(_decode_one, chunk):
                        if image is None:
                            raise UserError(f"{what}: cannot decode image {error}; rebuild the shard")
                        images[slot], labels[slot] = image, self.labels[indices[slot]]
                    bar.update(len(chunk))
        finally:
            if pool is not None:
                pool.terminate()

    def _jobs(self, slot: dict[int, int]):
        """(slot, image bytes, name, size) of the chosen samples, in shard order."""
        for i, sample in enumerate(_samples(self.shards, True, self.where)):
            if i not in slot:
                continue
            ext = next((e for e in IMAGE_KEYS if e in sample), None)
            name = f"sample {sample.get('__key__')!r} of {sample.get('__url__')}"
            if ext is None:
                raise UserError(f"{self.where}: {name} has no image ({', '.join(IMAGE_KEYS)})")
            yield slot[i], sample[ext], name, self.image_size


def webdataset_task(name: str, root: Path, where: str, templates: Optional[list[str]] = None, description: str = ""):
    """A task factory for a CLIP_benchmark webdataset root (layout: this module's docstring)."""

    def make(ctx: TaskContext) -> Task:
        classnames = read_lines(root / CLASSNAMES_FILE, where)
        found = templates or [t.replace("{c}", "{}") for t in read_lines(root / TEMPLATES_FILE, where)]
        index_dir = Path(ctx.data_cache) if ctx.data_cache is not None else None
        sources = {
            s: WebDatasetSource(shard_paths(root, s, where), LARGE_IMAGE_SIZE, f"{where} ({s})", index_dir)
            for s in SPLITS
        }
        for split, source in sources.items():
            top = int(source.labels.max())
            if top >= len(classnames):
                raise UserError(
                    f"{where}: {split} label {top} but {root / CLASSNAMES_FILE} names only {len(classnames)} classes"
                )
        spec = TaskSpec(
            name, classnames, found, description or f"{name}: webdataset shards at {root}", f"webdataset {root}"
        )
        return build_task(spec, ctx, sources["train"], sources["test"])

    make.__doc__ = description or f"Webdataset shards (CLIP_benchmark layout) at {root}."
    return make
