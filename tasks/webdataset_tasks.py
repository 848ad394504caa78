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
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from benchmark.errors import UserError
from tasks.base import Split, Task, TaskContext
from tasks.cache import file_lock, fingerprint_files, hash_of
from tasks.loading import LARGE_IMAGE_SIZE, MIN_IMAGES_FOR_WORKERS, TaskSpec, build_task, to_square_uint8

IMAGE_KEYS = ("webp", "png", "jpg", "jpeg")  # CLIP_benchmark's reader order
SPLITS = ("train", "test")
CLASSNAMES_FILE = "classnames.txt"
TEMPLATES_FILE = "zeroshot_classification_templates.txt"
DECODE_CHUNK = 1024  # encoded samples read ahead of the decoders


def shard_paths(root: Path, split: str, where: str) -> list[str]:
    """The shards ``<root>/<split>/{0..n-1}.tar`` that ``nshards.txt`` announces, all present."""
    count_file = root / split / "nshards.txt"
    try:
        text = count_file.read_text().strip()
    except OSError:
        raise UserError(f"{where}: no {count_file} (CLIP_benchmark's webdataset layout needs it)") from None
    if not text.isdigit() or int(text) < 1:
        raise UserError(f"{where}: {count_file} must hold the number of shards (an integer >= 1), found {text!r}")
    shards = [str(root / split / f"{i}.tar") for i in range(int(text))]
    missing = [s for s in shards if not os.path.isfile(s)]
    if missing:
        raise UserError(f"{where}: no shard {missing[0]} ({count_file} announces {text})")
    return shards


def read_lines(path: Path, where: str) -> list[str]:
    try:
        return [line.strip() for line in path.read_text().splitlines() if line.strip()]
    except OSError:
        raise UserError(f"{where}: no {path} (CLIP_benchmark's webdataset layout needs it)") from None


def _samples(shards: list[str], images: bool):
    """Raw samples of the shards, in order (``images`` False: only the labels are read)."""
    import webdataset as wds

    wanted = (lambda name: True) if images else (lambda name: name.endswith(".cls"))
    return iter(wds.WebDataset(shards, shardshuffle=False, empty_check=False, select_files=wanted))


def _label(sample: dict, where: str) -> int:
    raw = sample.get("cls")
    try:
        return int(raw.decode() if isinstance(raw, bytes) else raw)
    except (TypeError, ValueError, AttributeError):
        raise UserError(
            f"{where}: sample {sample.get('__key__')!r} of {sample.get('__url__')} has no integer .cls label"
        ) from None


def _decode_one(job: tuple[int, bytes, str, int]) -> tuple[int, Optional[np.ndarray], str]:
    slot, data, name, size = job
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            return slot, to_square_uint8(image, size).numpy(), ""
    except (OSError, ValueError, SyntaxError) as e:
        return slot, None, f"{name}: {str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}"


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
            if path.is_file():
                return np.load(path)
            labels = self._scan_labels()
            tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}.npy")
            np.save(tmp, labels)
            os.replace(tmp, path)  # complete or absent, never half-written
            return labels

    def _scan_labels(self) -> np.ndarray:
        labels = [_label(s, self.where) for s in _samples(self.shards, images=False)]
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
        for i, sample in enumerate(_samples(self.shards, images=True)):
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
