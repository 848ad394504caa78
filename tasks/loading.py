"""From an on-disk image dataset to in-memory Splits: the authors' split, limits, a memory budget.

Shared by tasks/torchvision_tasks.py, tasks/folder_tasks.py and tasks/webdataset_tasks.py.
The protocol follows the LDIFS authors' code (omegafragger/ldifs_code ``datasets/registry.py``; docs/protocol.md):
fine-tuning uses 90% of the train split and the other 10%, at most 20,000 images, is the
validation split, drawn by ``torch.utils.data.random_split`` with a generator seeded 0.
``train_val_indices`` reproduces that draw index for index.

Every index set is chosen before any image is decoded, so a limit also saves decoding time.
Decoded sources go through the decoded-image cache (tasks/cache.py) when the context names
one; without it, a task that would not fit the memory budget fails at once with a UserError
naming the limits to set, rather than after minutes of decoding or an out-of-memory kill.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Protocol

import numpy as np
import torch
from torch.utils.data import Dataset

from benchmark.errors import UserError
from tasks.base import Split, Task, TaskContext
from tasks.cache import cached_arrays, positions_key

SPLIT_SEED = 0  # the authors' random_split generator seed; fixed, whatever the run seed
VAL_FRACTION = 0.1
MAX_VAL_IMAGES = 20_000
# Datasets without an official test split (EuroSAT and Caltech101 in torchvision, a folder
# dataset without a test folder) hold out this seeded fraction as the test split.
HELD_OUT_TEST_FRACTION = 0.2
# Large-image datasets are stored at CLIP ViT-B's input size: resize the shorter side
# (bicubic, as CLIP's preprocessing does) and centre-crop, so batches need no resize later.
LARGE_IMAGE_SIZE = 224
MEMORY_BUDGET_ENV = "LDIFS_BENCH_TASK_MEMORY_GB"
DEFAULT_MEMORY_BUDGET_GB = 8.0
# Below this many images the worker processes cost more than they save.
MIN_IMAGES_FOR_WORKERS = 512
DECODE_BATCH = 64


# ----------------------------------------------------------------------------- indices


def _seeded_perm(n: int, seed: int) -> torch.Tensor:
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))


def train_val_indices(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, val) positions of the authors' split of n train images.

    Same draw as ``random_split(ds, [n - v, v], generator=torch.Generator().manual_seed(0))``
    with v = min(int(0.1 n), 20000): one randperm of n, the first n - v go to train.
    """
    n_val = min(int(n * VAL_FRACTION), MAX_VAL_IMAGES)
    perm = _seeded_perm(n, SPLIT_SEED)
    return perm[: n - n_val], perm[n - n_val :]


def held_out_indices(n: int, fraction: float = HELD_OUT_TEST_FRACTION) -> tuple[torch.Tensor, torch.Tensor]:
    """(rest, held-out) positions: a seeded test split for datasets that ship none."""
    n_held = max(1, int(round(n * fraction))) if n > 1 else 0
    perm = _seeded_perm(n, SPLIT_SEED + 1)  # a different draw from the train/val one
    return perm[n_held:], perm[:n_held]


def limit_indices(
    indices: torch.Tensor, limit: Optional[int], seed: int, labels: Optional[torch.Tensor] = None
) -> torch.Tensor:
    """At most ``limit`` of ``indices``: the same draw as ``Split.subset(limit, seed)``; with
    ``labels`` (of the whole source), drawn per class instead (``stratified_indices``)."""
    if limit is None or limit >= len(indices):
        return indices
    if labels is not None:
        return stratified_indices(indices, labels[indices], limit, seed)
    return indices[_seeded_perm(len(indices), seed)[:limit]]


def stratified_indices(indices: torch.Tensor, labels: torch.Tensor, limit: int, seed: int) -> torch.Tensor:
    """``limit`` of ``indices`` (labels ``labels``), each class's share of them kept: class c
    gets limit * n_c / n images, rounded by largest remainder (ties in a seeded random order,
    not by class index) so that the shares sum to ``limit``; within a class, the first ones
    of one seeded permutation."""
    classes, counts = torch.unique(labels, return_counts=True)
    exact = counts.double() * limit / len(labels)
    quota = exact.floor().long()
    left = limit - int(quota.sum())
    tie = torch.rand(len(classes), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    remainder = (exact - quota) + tie * 1e-6  # remainders differ by >= 1/n where they differ at all
    quota[torch.argsort(remainder, descending=True)[:left]] += 1
    perm = _seeded_perm(len(indices), seed)
    cls = torch.searchsorted(classes, labels[perm])  # class position of each permuted item
    order = torch.argsort(cls, stable=True)  # permuted items grouped by class, permutation order kept
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.empty_like(order)
    rank[order] = torch.arange(len(order)) - starts[cls[order]]
    return indices[perm[rank < quota[cls]]]


def source_labels(source: Any) -> Optional[torch.Tensor]:
    """Every label of a source without decoding an image, where it keeps them: an array
    source's, a folder's (path, label) list, a torchvision dataset's ``targets``; else None."""
    if isinstance(source, ArraySource):
        return source.labels
    dataset = getattr(source, "dataset", None)
    items = getattr(dataset, "items", None)
    if isinstance(items, list) and all(isinstance(i, tuple) and len(i) == 2 for i in items[:1]):
        return torch.as_tensor([label for _, label in items], dtype=torch.long)
    targets = getattr(dataset, "targets", None)
    if targets is not None and len(targets) == len(dataset):
        return torch.as_tensor(list(targets), dtype=torch.long)
    return None


# ----------------------------------------------------------------------------- sources


@dataclass
class ArraySource:
    """A dataset already decoded by its reader (CIFAR, MNIST, SVHN, STL10): no decoding work."""

    images: torch.Tensor  # uint8 [N, C, H, W], C = 1 (grey, expanded on selection) or 3
    labels: torch.Tensor  # int64 [N]

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def image_size(self) -> int:
        return int(self.images.shape[-1])

    def select(self, indices: torch.Tensor, what: str) -> Split:
        images = self.images[indices]
        if images.shape[1] == 1:
            images = images.expand(-1, 3, -1, -1)
        return Split(images.contiguous(), self.labels[indices].long())


@dataclass
class DecodeSource:
    """A dataset of (PIL image, label) pairs decoded, resized and centre-cropped on selection.

    ``fingerprint`` (when given) hashes the source files, which makes the source cacheable:
    tasks/cache.py keys its decoded entries on it.
    """

    dataset: Any  # anything with __len__ and __getitem__ -> (PIL.Image, int)
    image_size: int
    fingerprint: Optional[Callable[[], str]] = None

    def __len__(self) -> int:
        return len(self.dataset)

    def select(self, indices: torch.Tensor, what: str) -> Split:
        return decode(self.dataset, indices, self.image_size, what)

    def decode_into(self, indices: np.ndarray, images: np.ndarray, labels: np.ndarray, what: str) -> None:
        decode_into(self.dataset, torch.as_tensor(indices), self.image_size, what, images, labels)


def to_square_uint8(image: Any, size: int) -> torch.Tensor:
    """PIL image -> uint8 [3, size, size]: RGB, shorter side to ``size`` (bicubic), centre crop."""
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as TF

    image = image.convert("RGB")
    if min(image.size) != size:
        image = TF.resize(image, size, interpolation=InterpolationMode.BICUBIC, antialias=True)
    if image.size != (size, size):
        image = TF.center_crop(image, [size, size])
    return TF.pil_to_tensor(image)


class _Selected(Dataset):
    """The chosen items of a dataset, as uint8 tensors (runs inside DataLoader workers)."""

    def __init__(self, dataset: Any, indices: Sequence[int], size: int) -> None:
        self.dataset, self.indices, self.size = dataset, list(indices), size

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, str]:
        # A file PIL cannot read comes back as a message, not an exception: an exception
        # raised in a DataLoader worker reaches the user as a multi-line traceback.
        where = item_path(self.dataset, self.indices[i])
        try:
            if not_regular(where):  # a FIFO named like an image would block the decoder forever
                raise ValueError("not a regular file (a FIFO, socket or device?)")
            image, label = self.dataset[self.indices[i]]
            return to_square_uint8(image, self.size), int(label), ""
        except Exception as e:  # noqa: BLE001  PIL/numpy/torchvision on a user's file: corrupt, cut short, not an image
            return torch.zeros((3, self.size, self.size), dtype=torch.uint8), -1, f"{where}: {first_line(e)}"


def first_line(error: BaseException) -> str:
    """The first line of an error's message (its type when it has none): what a one-line error quotes."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def not_regular(path: str) -> bool:
    """True when ``path`` exists and is not a regular file (following links, as a reader does)."""
    try:
        return not stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


def item_path(dataset: Any, i: int) -> str:
    """The file behind item ``i`` of a folder or torchvision dataset, for error messages."""
    for attr in ("items", "samples", "_samples", "_image_files", "_images", "imgs"):
        entries = getattr(dataset, attr, None)
        if entries is not None and i < len(entries):
            entry = entries[i]
            return str(entry[0] if isinstance(entry, (tuple, list)) else entry)
    return f"image {i} of {type(dataset).__name__}"


def decode_workers(n_images: int) -> int:
    if n_images < MIN_IMAGES_FOR_WORKERS:
        return 0
    return min(8, os.cpu_count() or 1)


def decode(dataset: Any, indices: torch.Tensor, size: int, what: str) -> Split:
    """Decode the chosen images in parallel into one preallocated uint8 tensor, with progress."""
    n = len(indices)
    images = torch.empty((n, 3, size, size), dtype=torch.uint8)
    labels = torch.empty(n, dtype=torch.long)
    decode_into(dataset, indices, size, what, images.numpy(), labels.numpy())
    return Split(images, labels)


def decode_into(
    dataset: Any, indices: torch.Tensor, size: int, what: str, images: np.ndarray, labels: np.ndarray
) -> None:
    """Decode the chosen images in parallel into ``images``/``labels`` (in memory or a mapped file)."""
    from torch.utils.data import DataLoader
    from tqdm import tqdm

    n = len(indices)
    loader = DataLoader(
        _Selected(dataset, indices.tolist(), size),
        batch_size=DECODE_BATCH,
        num_workers=decode_workers(n),
        shuffle=False,
    )
    done = 0
    # disable=None: a bar on a terminal, silence in logs and tests
    with tqdm(total=n, desc=f"decoding {what}", unit="img", leave=False, disable=None) as bar:
        for batch_images, batch_labels, errors in loader:
            bad = next((e for e in errors if e), None)
            if bad:
                raise UserError(f"{what}: cannot decode image {bad}; remove or replace the file")
            k = len(batch_labels)
            images[done : done + k] = batch_images.numpy()
            labels[done : done + k] = batch_labels.numpy()
            done += k
            bar.update(k)


# ----------------------------------------------------------------------------- budget


def memory_budget_bytes() -> float:
    raw = os.environ.get(MEMORY_BUDGET_ENV, "")
    try:
        return float(raw or DEFAULT_MEMORY_BUDGET_GB) * 2**30
    except ValueError:
        raise UserError(f"{MEMORY_BUDGET_ENV}={raw!r} must be a number of GiB") from None


def check_memory_budget(task: str, counts: dict[str, int], image_size: int) -> None:
    """Refuse, before decoding, a task whose chosen images would not fit the budget."""
    needed = sum(counts.values()) * 3 * image_size * image_size
    budget = memory_budget_bytes()
    if needed <= budget:
        return
    listed = " + ".join(f"{n:,} {split}" for split, n in counts.items())
    raise UserError(
        f"task {task!r}: {listed} images at {image_size}x{image_size} need {needed / 2**30:.1f} GiB in memory, "
        f"over the budget of {budget / 2**30:.1f} GiB per task; cap the images loaded with train.train_limit and "
        f"eval.lp_train_limit (train split) and eval.test_limit (test and val splits), "
        f"or raise the budget with {MEMORY_BUDGET_ENV}"
    )


# ----------------------------------------------------------------------------- assembly


@dataclass
class TaskSpec:
    """What a loaded dataset contributes to a Task, besides its images."""

    name: str
    classnames: list[str]
    templates: list[str]
    description: str
    source: str
    raw_classnames: Optional[list[str]] = None  # the dataset's own names (Task.raw_classnames)


class Decodable(Protocol):
    """A source whose images are decoded on selection (DecodeSource, webdataset shards)."""

    image_size: int
    fingerprint: Optional[Callable[[], str]]

    def __len__(self) -> int: ...

    def select(self, indices: torch.Tensor, what: str) -> Split: ...

    def decode_into(self, indices: np.ndarray, images: np.ndarray, labels: np.ndarray, what: str) -> None: ...


Source = Any  # ArraySource or a Decodable


def build_task(spec: TaskSpec, ctx: TaskContext, train: Source, test: Optional[Source]) -> Task:
    """Split, limit, check the budget, then load: train = 90%, val = 10% (<= 20k), test.

    ``test`` None: the test split is a seeded held-out part of ``train`` (before the 90/10
    split). ``ctx.train_limit`` caps train; ``ctx.test_limit`` caps test and val. A decoded
    source with a fingerprint goes through the decoded-image cache when ``ctx.data_cache``
    is set (tasks/cache.py): its splits stay on disk, mapped, and no memory budget applies.
    A task of fewer than 2 classes (it would score 100% whatever the model, lifting every
    mean) or with an empty test split (NaN accuracies) is refused, before any decoding.
    """
    if len(spec.classnames) < 2:  # one class scores 100% whatever the model: it would inflate every mean
        raise UserError(
            f"task {spec.name!r} has {len(spec.classnames)} class ({spec.source}); a classification task "
            "needs at least 2 classes"
        )
    pool = torch.arange(len(train))
    test_pool = None
    if test is None:
        pool, test_pool = held_out_indices(len(train))
        test = train
    else:
        test_pool = torch.arange(len(test))
    train_pos, val_pos = train_val_indices(len(pool))
    # ctx.stratified (a class-incremental dataset): limits keep every class's share
    train_labels = source_labels(train) if ctx.stratified else None
    test_labels = train_labels if test is train else source_labels(test) if ctx.stratified else None
    chosen = {
        "train": limit_indices(pool[train_pos], ctx.train_limit, ctx.seed, train_labels),
        "val": limit_indices(pool[val_pos], ctx.test_limit, ctx.seed, train_labels),
        "test": limit_indices(test_pool, ctx.test_limit, ctx.seed, test_labels),
    }
    if not len(chosen["test"]):  # scored, it would be NaN accuracies in every table
        raise UserError(f"task {spec.name!r}: its test split holds no images ({spec.source}); add test images")
    sources = {k: (test if k == "test" else train) for k in chosen}
    if ctx.data_cache is not None and getattr(train, "fingerprint", None) is not None:
        splits = _cached_splits(spec, Path(ctx.data_cache), sources, chosen)
    else:
        if not isinstance(train, ArraySource):
            check_memory_budget(spec.name, {k: len(v) for k, v in chosen.items()}, train.image_size)
        splits = {k: sources[k].select(idx, f"{spec.name} {k}") for k, idx in chosen.items()}
    _check_labels(spec, splits)
    return Task(
        spec.name,
        spec.classnames,
        spec.templates,
        splits["train"],
        splits["test"],
        spec.description,
        spec.source,
        val=splits["val"] if len(splits["val"]) else None,
        raw_classnames=spec.raw_classnames,
    )


def _cached_splits(
    spec: TaskSpec, cache: Path, sources: dict[str, Source], chosen: dict[str, torch.Tensor]
) -> dict[str, Split]:
    """One cache entry per source (its chosen images, in source order); splits map into it."""
    splits: dict[str, Split] = {}
    for source in {id(s): s for s in sources.values()}.values():
        roles = [k for k in chosen if sources[k] is source]
        role = "train" if "train" in roles else "test"
        needed = np.unique(np.concatenate([chosen[k].numpy() for k in roles]))
        if not len(needed):
            size = source.image_size
            splits.update({k: Split(torch.empty((0, 3, size, size), dtype=torch.uint8), torch.empty(0)) for k in roles})
            continue
        parts = {
            "task": spec.name,
            "split": role,
            "image_size": source.image_size,
            "fingerprint": source.fingerprint(),
            "positions": positions_key(needed, len(source)),
        }
        what = f"{spec.name} {role}"

        def fill(images: np.ndarray, labels: np.ndarray, source=source, needed=needed, what=what) -> None:
            source.decode_into(needed, images, labels, what)

        name = f"{spec.name}-{role}-{source.image_size}px"
        images, labels = cached_arrays(cache, name, parts, len(needed), source.image_size, fill, what)
        for k in roles:
            at = np.searchsorted(needed, chosen[k].numpy())
            splits[k] = Split(images[at], labels[torch.from_numpy(at)])  # type: ignore[arg-type]
    return splits


def _check_labels(spec: TaskSpec, splits: dict[str, Split]) -> None:
    for what, split in splits.items():
        if len(split) and int(split.labels.min()) < 0:
            raise UserError(
                f"task {spec.name!r}: {what} label {int(split.labels.min())} is negative; labels count from 0"
            )
        if len(split) and int(split.labels.max()) >= len(spec.classnames):
            raise UserError(
                f"task {spec.name!r}: {what} label {int(split.labels.max())} but only "
                f"{len(spec.classnames)} class names; the dataset on disk has more classes than expected"
            )
