"""The decoded-image cache: a dataset split is decoded once, then mapped from disk by every run.

An entry is one folder ``<cache>/<task>-<role>-<size>px-<key>/`` holding ``images.npy``
(uint8 [N, 3, size, size], numpy's .npy format so ``np.load(mmap_mode="r")`` maps it),
``labels.npy`` (int64 [N]) and ``meta.json`` (what it holds and the key's ingredients). The key
hashes the task name, the split's role, the stored resolution, a fingerprint of the source
files (their paths, sizes and mtimes) and the source positions decoded, so a changed source
gets a new entry and a stale one is never used.

Safety: the decode writes into ``<entry>.tmp-<pid>`` and renames it into place when complete,
so an interrupted decode leaves nothing a later run trusts; an ``fcntl`` lock per entry makes a
second process wait for the first one's decode and then map its result (N processes on a box
share one copy through the page cache). Every completed decode appends one line to
``<cache>/builds.log``. A shared cache may hold anything: entry names are one safe path
component, no link is followed (files opened with ``O_NOFOLLOW``, linked entries not
trusted), and every entry is checked against its meta.json before use (``verify_entry``:
shapes, dtypes, count and a sampled checksum). docs/data_cache_reliability.md says what.

Readers never load a whole split: ``MappedImages`` is a lazy [N, 3, H, W] view whose batches
are gathered on demand (``gather``), so resident memory stays bounded by the batch, not the
dataset (docs/datasets.md, "Decoded-image cache").
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch

from benchmark.errors import UserError
from benchmark.files import flocked, safe_component, suite_cache_root

CACHE_ENV = "LDIFS_BENCH_CACHE"
FORMAT_VERSION = 2  # bump when the entry layout or the decoding changes (2: meta.json has a checksum)
BUILDS_LOG = "builds.log"
ENTRY_FILES = ("images.npy", "labels.npy", "meta.json")
CHECKSUM_ROWS = 64  # image rows read by an entry's checksum (tasks.cache.checksum)
# Free space kept on the cache's disk beyond an entry's size (logs, other writers).
DISK_MARGIN_BYTES = 256 * 2**20


def default_cache_dir(suite_cache: str = "") -> Path:
    """``<suite cache>/data``: the suite cache is model.cache_dir, $LDIFS_BENCH_CACHE or ~/.cache/ldifs-bench."""
    return (Path(suite_cache) if suite_cache else suite_cache_root()) / "data"  # $XDG_CACHE_HOME honoured


def resolve_cache_dir(setting: str, suite_cache: str = "") -> Optional[Path]:
    """The ``data_cache`` setting as a folder: '' is the default, 'none' disables (None)."""
    if setting.strip().lower() == "none":
        return None
    return Path(setting) if setting else default_cache_dir(suite_cache)


# ----------------------------------------------------------------------------- fingerprints


def fingerprint_files(paths: Iterable[Union[str, Path]]) -> str:
    """A hash of each file's path, size and mtime: changes when any file is added, removed or rewritten."""
    digest = hashlib.sha256()
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            digest.update(f"{path}\0missing\n".encode())
            continue
        digest.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:20]


def hash_of(lines: Iterable[str]) -> str:
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:12]


def files_under(folder: Union[str, Path]) -> list[str]:
    """Every file below ``folder`` (or the file itself), in a stable order."""
    folder = str(folder)
    if os.path.isfile(folder):
        return [folder]
    found = []
    for parent, dirs, files in os.walk(folder):
        dirs.sort()
        found += [os.path.join(parent, f) for f in sorted(files)]
    return found


# ----------------------------------------------------------------------------- lazy images


class MappedImages:
    """uint8 [N, 3, H, W] images that stay on disk: chosen rows of a decoded .npy file.

    Indexing with an int gives one image tensor; with a tensor of positions, another lazy
    view (so ``Split.subset`` costs nothing); ``gather`` and ``batches`` read rows into memory.
    Rows are read with ``pread`` straight into the (pinned) batch buffer rather than through
    a mapping: the page cache still shares one copy between processes, and a process's
    resident memory holds its batches only, never the pages of the file it has read.
    Pickles as (file, positions): a checkpoint never copies the dataset.
    """

    dtype = torch.uint8
    ndim = 4

    def __init__(self, path: Union[str, Path], positions: Optional[np.ndarray] = None) -> None:
        self.path = str(path)
        try:
            shape, _, self.offset = npy_header(Path(path))  # the .npy header only, never through a link
        except ValueError as e:
            raise UserError(
                f"decoded-image cache file {self.path} is damaged ({e}); delete its folder to rebuild it"
            ) from None
        self.row_shape = tuple(shape[1:])
        self.row_bytes = int(np.prod(self.row_shape))
        count = int(shape[0])
        self.positions = np.arange(count, dtype=np.int64) if positions is None else np.asarray(positions, np.int64)
        self._fd: Optional[tuple[int, int]] = None  # (pid, descriptor): reopened after a fork

    def __reduce__(self):
        return (MappedImages, (self.path, self.positions))

    def __del__(self) -> None:
        if self._fd is not None and self._fd[0] == os.getpid():
            os.close(self._fd[1])

    def _descriptor(self) -> int:
        if self._fd is None or self._fd[0] != os.getpid():
            self._fd = (os.getpid(), open_nofollow(Path(self.path), os.O_RDONLY))
        return self._fd[1]

    def __len__(self) -> int:
        return len(self.positions)

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self.positions), *self.row_shape))

    def size(self, dim: Optional[int] = None):
        return self.shape if dim is None else self.shape[dim]

    def __getitem__(self, index: Any) -> Union[torch.Tensor, MappedImages]:
        if isinstance(index, (int, np.integer)):
            return self.gather(np.asarray([index]))[0]
        if isinstance(index, torch.Tensor):
            index = index.cpu().numpy()
        return MappedImages(self.path, self.positions[index])

    def gather(self, index: Union[torch.Tensor, np.ndarray, slice], pin: bool = False) -> torch.Tensor:
        """The chosen rows as one uint8 tensor (pinned for an asynchronous copy when ``pin``)."""
        if isinstance(index, torch.Tensor):
            index = index.cpu().numpy()
        rows = self.positions[index]
        out = torch.empty((len(rows), *self.row_shape), dtype=torch.uint8, pin_memory=pin)
        flat = out.numpy().reshape(len(rows), self.row_bytes)
        fd, start = self._descriptor(), 0
        while start < len(rows):  # one read per run of consecutive rows
            end = start + 1
            while end < len(rows) and rows[end] == rows[end - 1] + 1:
                end += 1
            want = (end - start) * self.row_bytes
            got = os.preadv(fd, [flat[start:end]], self.offset + int(rows[start]) * self.row_bytes)  # type: ignore[list-item]
            if got != want:
                raise UserError(f"decoded-image cache file {self.path} is truncated; delete its folder to rebuild it")
            start = end
        return out

    def batches(self, size: int, pin: bool = False) -> Iterator[torch.Tensor]:
        """Consecutive batches of ``size`` rows, in order (what ``Tensor.split`` gives in memory)."""
        for start in range(0, len(self), size):
            yield self.gather(slice(start, start + size), pin)

    def split(self, size: int) -> Iterator[torch.Tensor]:
        return self.batches(size)

    def materialize(self) -> torch.Tensor:
        return self.gather(slice(None))


class RowWriter:
    """Rows of a .npy image file written with ``pwrite``: ``writer[i] = image`` or
    ``writer[a:b] = images``. Unlike a writable mapping, writing a dataset larger than memory
    leaves no dirty pages counted in the decoding process's resident memory."""

    def __init__(self, path: Union[str, Path]) -> None:
        header = np.load(path, mmap_mode="r")
        self.count, self.row_shape = int(header.shape[0]), tuple(header.shape[1:])
        self.row_bytes, self.offset = int(np.prod(self.row_shape)), int(header.offset)
        del header
        self.fd = os.open(path, os.O_WRONLY)

    def __enter__(self) -> RowWriter:
        return self

    def __exit__(self, *exc) -> None:
        os.fsync(self.fd)  # complete on disk before the entry is renamed into place
        os.close(self.fd)

    def __len__(self) -> int:
        return self.count

    def __setitem__(self, index: Union[int, slice], value: np.ndarray) -> None:
        start = (index.start or 0) if isinstance(index, slice) else int(index)
        data = np.ascontiguousarray(value, dtype=np.uint8)
        if data.size % self.row_bytes or start + data.size // self.row_bytes > self.count:
            raise ValueError(f"rows of {self.row_shape} at {start} do not fit {self.count} rows")
        os.pwrite(self.fd, memoryview(data).cast("B"), self.offset + start * self.row_bytes)  # type: ignore[arg-type]


def batches(images: Union[torch.Tensor, MappedImages], size: int, pin: bool = False) -> Iterable[torch.Tensor]:
    """Consecutive batches of an image tensor, gathered from disk when the images are mapped."""
    if isinstance(images, MappedImages):
        return images.batches(size, pin)
    return images.split(size)


# ----------------------------------------------------------------------------- entries


def entry_key(parts: dict[str, Any]) -> str:
    text = json.dumps({"format": FORMAT_VERSION, **parts}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def positions_key(positions: np.ndarray, n: int) -> str:
    """'all' when every source image is kept, else a hash of the positions."""
    if len(positions) == n:
        return "all"
    return hashlib.sha256(np.ascontiguousarray(positions, dtype=np.int64).tobytes()).hexdigest()[:16]


def open_nofollow(path: Path, flags: int, what: str = "file of the decoded-image cache") -> int:
    """``os.open`` that never follows a symbolic link at ``path`` (as the run lock opens its file).

    A link planted in a shared cache (``builds.log`` -> someone's file) would otherwise make
    every run write through it; the suite makes no links, so one found there is refused."""
    try:
        return os.open(path, flags | os.O_NOFOLLOW, 0o644)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise UserError(
                f"{what} {path} is a symbolic link, which the suite never makes or follows; remove it"
            ) from None
        raise


def check_cache_dir(cache: Optional[Path]) -> None:
    """Refuse, without creating anything, a cache setting that names a file or lies under one
    (for a run's up-front checks: one line before the run starts, not after its model loads)."""
    if cache is None:
        return
    for folder in (cache, *cache.parents):
        if os.path.lexists(folder):
            if not folder.is_dir():
                why = "it is a file" if folder == cache else f"{folder} above it is a file"
                raise UserError(
                    f"decoded-image cache {str(cache)!r} cannot be used: {why}; point --data-cache at a "
                    "folder or set --data-cache none"
                )
            return


def prepare_cache(cache: Path) -> Path:
    """The cache folder, created when missing; one line naming it when it cannot be one."""
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        files = {errno.EEXIST: "it is a file", errno.ENOTDIR: "a folder above it is a file"}
        why = files.get(e.errno, e.strerror)
        raise UserError(
            f"decoded-image cache {str(cache)!r} cannot be used: {why}; point --data-cache at a folder "
            "or set --data-cache none"
        ) from None
    if (cache / BUILDS_LOG).is_symlink():  # refused before any decoding, not after it
        open_nofollow(cache / BUILDS_LOG, os.O_RDONLY)
    return cache


@contextmanager
def file_lock(path: Path):
    """An exclusive ``fcntl`` lock: a second process blocks here until the first is done."""
    prepare_cache(path.parent)
    with flocked(path, what="lock file of the decoded-image cache"):  # never through a link
        yield


def is_complete(entry: Path, key: str) -> bool:
    """Trust an entry only when its meta.json (written last, before the rename) names this key.

    An entry or file that is a symbolic link is not one the suite wrote: not complete."""
    if entry.is_symlink() or any((entry / f).is_symlink() for f in ENTRY_FILES):
        return False
    meta = read_meta(entry)
    return meta.get("key") == key and (entry / "images.npy").is_file() and (entry / "labels.npy").is_file()


def read_meta(entry: Path) -> dict:
    try:
        meta = json.loads((entry / "meta.json").read_text())
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


def check_disk_space(folder: Path, needed: int, what: str) -> None:
    """Refuse, before decoding, an entry that would not fit on the cache's disk."""
    folder.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(folder).free
    if needed + DISK_MARGIN_BYTES > free:
        raise UserError(
            f"decoded-image cache {folder}: {what} needs {needed / 2**30:.2f} GiB but only "
            f"{free / 2**30:.2f} GiB are free; free space there, point --data-cache at a larger disk, "
            "or set --data-cache none (decode into memory, with its budget)"
        )


# ----------------------------------------------------------------------------- checks


def npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype, int]:
    """(shape, dtype, data offset) of a .npy file, read without following a link; ValueError
    when it is not a .npy file whose size matches its header (cut short or padded)."""
    fd = open_nofollow(Path(path), os.O_RDONLY)
    with os.fdopen(fd, "rb") as f:
        version = np.lib.format.read_magic(f)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read(f)
        offset = f.tell()
        size = os.fstat(f.fileno()).st_size
    if fortran or dtype.hasobject:
        raise ValueError("not a plain C-ordered array")
    expected = offset + int(np.prod(shape)) * dtype.itemsize
    if size != expected:
        raise ValueError(f"{path.name} is {size} bytes but its header {shape} announces {expected}")
    return tuple(int(d) for d in shape), dtype, offset


def read_labels(path: Path) -> np.ndarray:
    """labels.npy as int64, never unpickled (``allow_pickle=False``), never through a link."""
    fd = open_nofollow(Path(path), os.O_RDONLY)
    with os.fdopen(fd, "rb") as f:
        return np.load(f, allow_pickle=False)


def checksum(images: Path, labels: np.ndarray) -> str:
    """A cheap checksum of an entry: its sizes, every label and CHECKSUM_ROWS image rows spread
    evenly over the file (a full hash would read gigabytes at every use). It catches a file
    replaced, cut short, reshaped or rewritten (zeros, another split), and any changed label;
    a few flipped pixels in rows it does not sample go unnoticed."""
    shape, _, offset = npy_header(images)
    count, row_bytes = shape[0], int(np.prod(shape[1:]))
    digest = hashlib.sha256(f"{shape} {labels.dtype} {labels.shape}".encode())
    digest.update(np.ascontiguousarray(labels).tobytes())
    rows = np.unique(np.linspace(0, count - 1, min(count, CHECKSUM_ROWS)).astype(np.int64)) if count else []  # type: ignore[var-annotated]
    fd = open_nofollow(images, os.O_RDONLY)
    try:
        for row in rows:
            digest.update(os.pread(fd, row_bytes, offset + int(row) * row_bytes))
    finally:
        os.close(fd)
    return digest.hexdigest()[:32]


def verify_entry(entry: Path, count: int, size: int) -> np.ndarray:
    """Check an entry against its meta.json before use: the images' shape and dtype, the
    labels' count and dtype, the checksum. Returns the labels; a damaged entry is one line
    naming its folder (it is not rebuilt behind the user's back: something damaged it)."""
    meta = read_meta(entry)
    try:
        shape, dtype, _ = npy_header(entry / "images.npy")
        if dtype != np.uint8 or shape != (count, 3, size, size):
            raise ValueError(f"images.npy holds {dtype} {list(shape)}, not uint8 {[count, 3, size, size]}")
        labels = read_labels(entry / "labels.npy")
        if labels.dtype != np.int64 or labels.shape != (count,):
            raise ValueError(f"labels.npy holds {labels.dtype} {list(labels.shape)}, not int64 [{count}]")
        if meta.get("checksum") != checksum(entry / "images.npy", labels):
            raise ValueError("its checksum differs from the one in meta.json")
    except (OSError, ValueError, EOFError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(
            f"decoded-image cache entry {entry} is damaged ({reason}); delete that folder to rebuild it"
        ) from None
    return labels


# ----------------------------------------------------------------------------- building


def cached_arrays(
    cache: Path, name: str, parts: dict[str, Any], count: int, image_size: int, fill, what: str
) -> tuple[MappedImages, torch.Tensor]:
    """Map the entry for ``parts``; build it first (once, under a lock) when it is missing.

    ``fill(images, labels)`` decodes ``count`` images into ``images`` (a RowWriter: assign rows
    by index or slice) and ``labels`` (an int64 array). The entry is checked against its
    meta.json (``verify_entry``) before it is used.
    """
    safe_component(name, "decoded-image cache entry")
    key = entry_key(parts)
    entry = prepare_cache(cache) / f"{name}-{key}"
    if not is_complete(entry, key):
        with file_lock(cache / f"{name}-{key}.lock"):
            if not is_complete(entry, key):  # another process may have built it meanwhile
                _build(cache, entry, key, parts, count, image_size, fill, what)
    labels = verify_entry(entry, count, image_size)
    return MappedImages(entry / "images.npy"), torch.from_numpy(labels)


def _remove(path: Path) -> None:
    """Remove a leftover under one of the cache's names: a link itself, never its target."""
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    elif path.is_dir():
        shutil.rmtree(path, ignore_errors=True)


def _build(cache: Path, entry: Path, key: str, parts: dict, count: int, size: int, fill, what: str) -> None:
    for stale in cache.glob(f"{entry.name}.tmp-*"):  # an interrupted decode: never trusted, removed
        _remove(stale)
    _remove(entry)  # an incomplete or foreign leftover under this name
    check_disk_space(cache, count * 3 * size * size + count * 8, f"{what} ({count:,} images at {size}x{size})")
    tmp = cache / f"{entry.name}.tmp-{os.getpid()}"
    tmp.mkdir(parents=True)
    started = time.time()
    try:
        # the header and the file's size, written without touching its pages
        header = np.lib.format.open_memmap(tmp / "images.npy", mode="w+", dtype=np.uint8, shape=(count, 3, size, size))
        del header
        labels = np.zeros(count, dtype=np.int64)
        with RowWriter(tmp / "images.npy") as images:
            fill(images, labels)
        np.save(tmp / "labels.npy", labels)
        meta = {"key": key, "what": what, "count": count, "image_size": size, **parts}
        meta["checksum"] = checksum(tmp / "images.npy", labels)
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
        os.replace(tmp, entry)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    line = f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {entry.name} {count} images {time.time() - started:.1f}s\n"
    fd = open_nofollow(cache / BUILDS_LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def build_count(cache: Path) -> int:
    """How many entries were decoded into ``cache`` (lines of builds.log)."""
    if (cache / BUILDS_LOG).is_symlink():
        return 0
    try:
        return len((cache / BUILDS_LOG).read_text().splitlines())
    except OSError:
        return 0
