"""Hostile data, as a table (the pattern of tests/benchmark/test_hostile_inputs.py): image
folders, webdataset roots and decoded-image cache entries built to break the readers. Each
case ends in exit 2 with ONE line (or 0 where the input is usable), no traceback, within a
deadline (a FIFO or a shard count must not hang), and changes nothing outside the cache;
inside it, a refused case leaves at most lock files.

Cases run through ``run_command`` (the CLI's exit policy) on the task factories, in-process:
milliseconds each. The last tests go through ``run_benchmark`` end to end."""

from __future__ import annotations

import importlib.util
import io
import os
import re
import shutil
import signal
import struct
import zlib
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from test_declared_tasks import write_folder, write_webdataset

from benchmark.errors import UserError, run_command
from tasks.base import TaskContext
from tasks.cache import cached_arrays, entry_key
from tasks.declared import declarations, task_factory


def _hostile_inputs_kit():
    """tests/benchmark/test_hostile_inputs.py's helpers, loaded by path: ``tests`` is not a
    package here (and an installed package of that name shadows it)."""
    path = Path(__file__).resolve().parents[1] / "benchmark" / "test_hostile_inputs.py"
    spec = importlib.util.spec_from_file_location("hostile_inputs_kit", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_kit = _hostile_inputs_kit()
assert_one_line, changed_outside, snapshot = _kit.assert_one_line, _kit.changed_outside, _kit.snapshot
DEADLINE_S = 20


class Hang(BaseException):
    """Raised by the deadline: a BaseException, so run_command cannot turn it into a line."""


@contextmanager
def deadline(seconds: int = DEADLINE_S):
    def expire(*_args):
        raise Hang(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


# ----------------------------------------------------------------------------- building blocks


def declared(tmp: Path, spec: dict, name: str = "toy") -> Callable[[], object]:
    """Load the declared task ``name`` with the cache at ``tmp/cache``."""

    def body():
        found = declarations({name: spec}, str(tmp / "seq.yaml"), {})
        task_factory(name, found)(TaskContext(data_cache=tmp / "cache"))
        return 0

    return body


def folder(tmp: Path, change: Callable[[Path], None] = lambda root: None, **spec) -> Callable[[], object]:
    root = write_folder(tmp / "birds")
    change(root)
    return declared(tmp, {"folder": str(root), **spec})


def wds(tmp: Path, change: Callable[[Path], None] = lambda root: None) -> Callable[[], object]:
    root = write_webdataset(tmp / "w")
    change(root)
    return declared(tmp, {"webdataset": str(root)})


def warm(tmp: Path, damage: Callable[[Path], None], kind: str = "folder") -> Callable[[], object]:
    """Build the cache once, then damage it (``damage(cache)``) before the run under test."""
    body = folder(tmp) if kind == "folder" else wds(tmp)
    assert body() == 0
    damage(tmp / "cache")
    return body


def train_entry(cache: Path) -> Path:
    (entry,) = [p for p in cache.iterdir() if p.is_dir() and "-train-" in p.name and ".tmp-" not in p.name]
    return entry


def secret(tmp: Path) -> Path:
    """A file of the user's, outside the cache, that a planted link points at."""
    path = tmp / "secret.txt"
    path.write_text("the user's own file\n")
    return path


def plant_link(path: Path, target: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
    path.symlink_to(target)


class Unpickled:
    """A pickle that, if ever loaded, leaves a marker file: proves nothing unpickles it."""

    marker = ""

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def pickled_array(path: Path, marker: Path) -> None:
    evil = Unpickled()
    evil.marker = str(marker)
    np.save(path, np.array([evil, evil], dtype=object), allow_pickle=True)


def png_header_only(width: int, height: int) -> bytes:
    """A PNG's signature and IHDR chunk announcing width x height: what PIL's size check reads."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def rewrite_sample(root: Path, index: int, **fields) -> None:
    """Rewrite train sample ``index`` of the webdataset with some fields replaced."""
    import tarfile

    shard = root / "train" / f"{index // 10}.tar"
    with tarfile.open(shard) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]
    with tarfile.open(shard, "w") as tar:
        for member, data in members:
            key, ext = member.name.split(".", 1)
            if key == f"s{index:07d}" and ext in fields:
                data = fields[ext]
                member.size = len(data)
            tar.addfile(member, io.BytesIO(data))


def fifo(path: Path) -> None:
    os.mkfifo(path)


def shard_index(cache: Path) -> list[Path]:
    return sorted(p for p in cache.glob("wds-index-*.npy"))


# ----------------------------------------------------------------------------- the table
# (id, setup(tmp) -> body, expected exit code, expected part of the line)

CASES: list[tuple[str, Callable[[Path], Callable], int, str]] = [
    # names that become paths: one safe component, refused before any work
    ("task-name-escapes", lambda t: declared(t, {"folder": "x"}, "../../escaped"), 2, "'../../escaped' is not a valid"),
    ("task-name-absolute", lambda t: declared(t, {"folder": "x"}, str(t / "abs")), 2, "is not a valid name"),
    ("task-name-dotdot", lambda t: declared(t, {"folder": "x"}, ".."), 2, "task name '..' is not a valid name"),
    ("task-name-hidden", lambda t: declared(t, {"folder": "x"}, ".hidden"), 2, "'.hidden' is not a valid name"),
    ("task-name-empty", lambda t: declared(t, {"folder": "x"}, ""), 2, "task name '' is not a valid name"),
    (
        "cache-entry-name-escapes",
        lambda t: lambda: cached_arrays(t / "cache", "../up", {"k": 1}, 2, 4, None, "x"),
        2,
        "decoded-image cache entry '../up' is not a valid name",
    ),
    # links planted in a shared cache: never followed
    ("builds-log-link", lambda t: _planted(t, "builds.log", folder(t)), 2, "builds.log is a symbolic link"),
    (
        "builds-log-link-warm",
        lambda t: warm(t, lambda c: plant_link(c / "builds.log", secret(t))),
        2,
        "builds.log is a symbolic link",
    ),
    (
        "lock-file-link",
        lambda t: _planted(t, f"toy-{entry_key({'k': 1})}.lock", _toy_entry(t)),
        2,
        "lock file of the decoded-image cache",
    ),
    ("entry-folder-link", lambda t: warm(t, lambda c: _link_entry(t, c)), 0, ""),
    ("entry-images-link", lambda t: warm(t, lambda c: _link_file(t, c, "images.npy")), 0, ""),
    ("entry-labels-link", lambda t: warm(t, lambda c: _link_file(t, c, "labels.npy")), 0, ""),
    ("shard-index-link", lambda t: warm(t, lambda c: plant_link(shard_index(c)[0], secret(t)), "wds"), 0, ""),
    # damaged entries: checked against meta.json before use
    (
        "entry-replaced-by-8x8-zeros",
        lambda t: warm(t, lambda c: np.save(train_entry(c) / "images.npy", np.zeros((18, 3, 8, 8), np.uint8))),
        2,
        "images.npy holds uint8 [18, 3, 8, 8], not uint8 [18, 3, 224, 224]",
    ),
    ("entry-zeroed-in-place", lambda t: warm(t, _zero_in_place), 2, "checksum differs"),
    ("entry-images-truncated", lambda t: warm(t, lambda c: _cut(train_entry(c) / "images.npy", 5000)), 2, "announces"),
    ("entry-images-empty", lambda t: warm(t, lambda c: _cut(train_entry(c) / "images.npy", 0)), 2, "is damaged"),
    (
        "entry-labels-pickled",
        lambda t: warm(t, lambda c: pickled_array(train_entry(c) / "labels.npy", t / "unpickled")),
        2,
        "allow_pickle=False",
    ),
    ("entry-labels-changed", lambda t: warm(t, _swap_labels), 2, "checksum differs"),
    (
        "entry-labels-float",
        lambda t: warm(t, lambda c: np.save(train_entry(c) / "labels.npy", np.zeros(18))),
        2,
        "labels.npy holds float64 [18], not int64 [18]",
    ),
    ("entry-labels-truncated", lambda t: warm(t, lambda c: _cut(train_entry(c) / "labels.npy", 100)), 2, "is damaged"),
    (
        "shard-index-pickled",
        lambda t: warm(t, lambda c: pickled_array(shard_index(c)[0], t / "unpickled"), "wds"),
        0,
        "",
    ),
    (
        "shard-index-garbage",
        lambda t: warm(t, lambda c: shard_index(c)[0].write_bytes(b"\x93NUMPY junk"), "wds"),
        0,
        "",
    ),
    # the cache folder itself
    (
        "cache-is-a-file",
        lambda t: ((t / "cache").write_text("a file where the cache goes"), folder(t))[1],
        2,
        "cannot be used: it is a file",
    ),
    (
        "cache-under-a-file",
        lambda t: ((t / "afile").write_text(""), _toy_entry(t / "afile"))[1],
        2,
        "cannot be used: a folder above it is a file",
    ),
    # image folders
    ("test-class-folder-empty", lambda t: folder(t, _empty_test), 2, "holds no images"),
    ("one-class-task", lambda t: folder(t, _one_class), 2, "needs at least 2 classes"),
    (
        "fifo-named-like-an-image",
        lambda t: folder(t, lambda r: fifo(r / "train" / "c1" / "zz.png")),
        2,
        "not a regular",
    ),
    (
        "classnames-file-binary",
        lambda t: folder(
            t, lambda r: (r / "names.txt").write_bytes(b"\x00\xff" * 40), classnames_file=str(t / "birds/names.txt")
        ),
        2,
        "is not a text file",
    ),
    (
        "classnames-file-fifo",
        lambda t: folder(
            t, lambda r: (r / "names.txt").unlink() or fifo(r / "names.txt"), classnames_file=str(t / "birds/names.txt")
        ),
        2,
        "is not a regular file",
    ),
    (
        "image-too-large",
        lambda t: folder(t, lambda r: (r / "train" / "c0" / "0.png").write_bytes(png_header_only(14000, 14000))),
        2,
        "decompression bomb",
    ),
    ("torchvision-fifo-named-like-an-image", lambda t: _eurosat(t, fifo), 2, "zz.jpg: not a regular file"),
    ("torchvision-image-too-large", lambda t: _eurosat(t, _bomb), 2, "zz.jpg: Image size"),
    # webdataset roots
    (
        "nshards-huge",
        lambda t: wds(t, lambda r: (r / "train" / "nshards.txt").write_text("99999999999\n")),
        2,
        "an integer from 1 to",
    ),
    (
        "nshards-5000-digits",
        lambda t: wds(t, lambda r: (r / "train" / "nshards.txt").write_text("9" * 5000)),
        2,
        "nshards.txt",
    ),
    (
        "nshards-binary",
        lambda t: wds(t, lambda r: (r / "train" / "nshards.txt").write_bytes(b"\x00\x03")),
        2,
        "nshards.txt",
    ),
    (
        "nshards-fifo",
        lambda t: wds(t, lambda r: _replace_by_fifo(r / "train" / "nshards.txt")),
        2,
        "is not a regular file",
    ),
    (
        "nshards-unicode-digit",
        lambda t: wds(t, lambda r: (r / "train" / "nshards.txt").write_text("\u00b2")),
        2,
        "an integer",
    ),
    ("shard-fifo", lambda t: wds(t, lambda r: _replace_by_fifo(r / "train" / "1.tar")), 2, "no shard"),
    (
        "classnames-txt-binary",
        lambda t: wds(t, lambda r: (r / "classnames.txt").write_bytes(b"\xff\xfe\x00a")),
        2,
        "is not a text file",
    ),
    (
        "templates-binary",
        lambda t: wds(t, lambda r: (r / "zeroshot_classification_templates.txt").write_bytes(b"\x00")),
        2,
        "is not a text file",
    ),
    (
        "shard-truncated",
        lambda t: wds(t, lambda r: _cut(r / "train" / "1.tar", 3000)),
        2,
        "1.tar is not a readable tar archive",
    ),
    (
        "shard-garbage",
        lambda t: wds(t, lambda r: (r / "train" / "0.tar").write_bytes(b"\x00garbage" * 200)),
        2,
        "0.tar is not a readable tar",
    ),
    (
        "shard-empty",
        lambda t: wds(t, lambda r: (r / "test" / "0.tar").write_bytes(b"")),
        2,
        "0.tar is not a readable tar",
    ),
    ("cls-minus-one", lambda t: wds(t, lambda r: rewrite_sample(r, 4, cls=b"-1")), 2, "integer >= 0 (found b'-1')"),
    ("cls-binary", lambda t: wds(t, lambda r: rewrite_sample(r, 4, cls=b"\xff\xfe")), 2, "no .cls label"),
    (
        "image-too-large-in-a-shard",
        lambda t: wds(t, lambda r: rewrite_sample(r, 3, png=png_header_only(14000, 14000))),
        2,
        "decompression bomb",
    ),
    (
        "image-garbage-in-a-shard",
        lambda t: wds(t, lambda r: rewrite_sample(r, 3, png=b"not an image")),
        2,
        "cannot decode image sample 's0000003'",
    ),
]


def _planted(tmp: Path, name: str, body: Callable) -> Callable:
    """``body`` to run with a link named ``name`` planted in the (empty) cache, to the user's file."""
    (tmp / "cache").mkdir(exist_ok=True)
    plant_link(tmp / "cache" / name, secret(tmp))
    return body


def _toy_entry(tmp: Path) -> Callable:
    return lambda: cached_arrays(tmp / "cache", "toy", {"k": 1}, 2, 4, None, "toy")


def _eurosat(tmp: Path, plant: Callable[[Path], None]) -> Callable:
    """torchvision's EuroSAT layout (an ImageFolder) with ``plant(path)`` making one more image."""
    from tasks.base import TASKS
    from tasks.torchvision_tasks import EUROSAT_FOLDER_TO_CLIP

    for c, name in enumerate(EUROSAT_FOLDER_TO_CLIP):
        folder = tmp / "data" / "eurosat" / "2750" / name
        folder.mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (8, 8), (20 * c, 40 * i, 0)).save(folder / f"{i}.jpg")
    plant(tmp / "data" / "eurosat" / "2750" / "Forest" / "zz.jpg")
    ctx = TaskContext(data_root=tmp / "data", data_cache=tmp / "cache")
    return lambda: TASKS.get("eurosat")(ctx)


def _bomb(path: Path) -> None:
    path.write_bytes(png_header_only(14000, 14000))  # PIL reads the format, not the name


def _cut(path: Path, keep: int) -> None:
    path.write_bytes(path.read_bytes()[:keep])


def _replace_by_fifo(path: Path) -> None:
    path.unlink()
    fifo(path)


def _link_entry(tmp: Path, cache: Path) -> None:
    """The entry replaced by a link to a copy elsewhere (identical files): still not trusted."""
    entry = train_entry(cache)
    shutil.copytree(entry, tmp / "elsewhere")
    plant_link(entry, tmp / "elsewhere")


def _link_file(tmp: Path, cache: Path, name: str) -> None:
    entry = train_entry(cache)
    shutil.copy(entry / name, tmp / f"copy-{name}")
    plant_link(entry / name, tmp / f"copy-{name}")


def _zero_in_place(cache: Path) -> None:
    """Every image byte zeroed, header and size kept: only the checksum can tell."""
    path = train_entry(cache) / "images.npy"
    data = bytearray(path.read_bytes())
    offset = len(data) - 18 * 3 * 224 * 224
    data[offset:] = bytes(len(data) - offset)
    path.write_bytes(bytes(data))


def _swap_labels(cache: Path) -> None:
    path = train_entry(cache) / "labels.npy"
    np.save(path, np.load(path)[::-1].copy())


def _empty_test(root: Path) -> None:
    for c in ("c0", "c1", "c2"):
        shutil.rmtree(root / "test" / c)
    (root / "test" / "c1").mkdir()  # a class folder and no images


def _one_class(root: Path) -> None:
    for split in ("train", "test"):
        for c in ("c1", "c2"):
            shutil.rmtree(root / split / c)


def _cache_leftovers(before: dict, after: dict, cache: Path) -> list[str]:
    """New or changed files in the cache other than what a refused case may leave: lock files
    and the label index of shards that read (kept, complete, for the next run)."""
    kept = re.compile(rf"{re.escape(str(cache))}/(.*\.lock|wds-index-[0-9a-f-]+\.npy)")
    return sorted(
        k
        for k in after
        if k.startswith(f"{cache}/") and before.get(k) != after[k] and not kept.fullmatch(k) and after[k][0] is False
    )


@pytest.mark.parametrize("case_id,setup,expected,message", CASES, ids=[c[0] for c in CASES])
def test_hostile_data(case_id, setup, expected, message, tmp_path, capsys):
    body = setup(tmp_path)
    capsys.readouterr()  # what the setup's warm build printed
    cache = tmp_path / "cache"
    before = snapshot(tmp_path)
    with deadline():
        code = run_command(body)
    err = capsys.readouterr().err
    assert_one_line(code, err, expected, message)
    after = snapshot(tmp_path)
    assert not changed_outside(before, after, cache), changed_outside(before, after, cache)
    if expected:
        assert not _cache_leftovers(before, after, cache)
    assert not (tmp_path / "unpickled").exists()  # nothing was ever unpickled
    if (tmp_path / "secret.txt").exists():
        assert (tmp_path / "secret.txt").read_text() == "the user's own file\n"


def test_the_up_front_cache_check_creates_nothing(tmp_path, monkeypatch):
    from tasks.cache import check_cache_dir

    monkeypatch.chdir(tmp_path)
    for fine in (None, Path("rel") / "cache", tmp_path / "new" / "cache", tmp_path):
        check_cache_dir(fine)
    (tmp_path / "f").write_text("")
    with pytest.raises(UserError, match=r"cannot be used: .*/f above it is a file"):
        check_cache_dir(tmp_path / "f" / "a" / "b")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]


def test_a_damaged_entry_once_deleted_is_rebuilt_with_the_same_images(tmp_path):
    """The one-line fix the damaged-entry message gives works: delete the folder, run again."""
    body = warm(tmp_path, lambda c: None)
    cache = tmp_path / "cache"
    good = np.load(train_entry(cache) / "images.npy")
    _zero_in_place(cache)
    with pytest.raises(UserError, match="delete that folder to rebuild it"):
        body()
    shutil.rmtree(train_entry(cache))
    assert body() == 0
    assert np.array_equal(np.load(train_entry(cache) / "images.npy"), good)


def test_a_planted_entry_link_is_replaced_and_its_target_left_alone(tmp_path):
    body = warm(tmp_path, lambda c: _link_entry(tmp_path, c))
    target = snapshot(tmp_path / "elsewhere")
    assert body() == 0
    entry = train_entry(tmp_path / "cache")
    assert not entry.is_symlink() and snapshot(tmp_path / "elsewhere") == target


# ----------------------------------------------------------------------------- end to end


def _toy_sequence(tmp: Path, name: str = "toy") -> Path:
    root = write_folder(tmp / "birds")
    seq = tmp / "seq.yaml"
    seq.write_text(f"tasks:\n  {name!r}: {{folder: {root}}}\nstages: [{name!r}]\n")
    return seq


def _main(args: list[str], micro_cfg, tmp: Path) -> int:
    from benchmark.config import dump_yaml
    from run_benchmark import main

    cfg_path = tmp / "micro.yaml"
    cfg_path.write_text(dump_yaml(micro_cfg))
    with deadline(120):
        return main(["--config", str(cfg_path), "-q", "--methods", "finetune", *args])


def test_a_declared_name_escaping_the_cache_is_refused_before_any_work(micro_cfg, tmp_path, capsys):
    seq = _toy_sequence(tmp_path, "../../escaped")
    before = snapshot(tmp_path)
    code = _main(["--sequence", str(seq), "--data-cache", str(tmp_path / "c" / "d")], micro_cfg, tmp_path)
    assert_one_line(code, capsys.readouterr().err, 2, "task name '../../escaped' is not a valid name")
    after = snapshot(tmp_path)
    assert not changed_outside(before, after, tmp_path / "micro.yaml")
    assert not (tmp_path / "results").exists()


def test_a_data_cache_that_is_a_file_is_named_and_nothing_is_left(micro_cfg, tmp_path, capsys):
    seq = _toy_sequence(tmp_path)
    (tmp_path / "cachefile").write_text("not a folder")
    before = snapshot(tmp_path)
    code = _main(["--sequence", str(seq), "--data-cache", str(tmp_path / "cachefile")], micro_cfg, tmp_path)
    err = capsys.readouterr().err
    assert_one_line(code, err, 2, f"decoded-image cache {str(tmp_path / 'cachefile')!r} cannot be used: it is a file")
    assert not (tmp_path / "results").exists()  # refused in the up-front checks: no .partial folder
    assert changed_outside(before, snapshot(tmp_path), tmp_path / "results") == [str(tmp_path / "micro.yaml")]


@pytest.mark.slow
def test_disk_full_while_saving_a_checkpoint_is_one_line_and_the_resume_is_exact(
    micro_cfg, tmp_path, capsys, monkeypatch
):
    """torch.save reports a full disk as a RuntimeError: one line, exit 2; the previous stage's
    checkpoint is intact and the rerun gives the numbers of an undisturbed run."""
    import benchmark.loop.checkpoints as checkpoints

    seq = tmp_path / "seq.yaml"
    seq.write_text("stages: [shapes, digits]\n")
    args = ["--sequence", str(seq), "--data-cache", "none"]
    assert _main([*args, "--results-dir", str(tmp_path / "clean")], micro_cfg, tmp_path) == 0
    real_save, calls = checkpoints.torch.save, []

    def full_at_stage_2(data, stream, *a, **k):
        calls.append(data.get("stage"))
        if data.get("stage") == 2:
            raise RuntimeError("[enforce fail at inline_container.cc:783] . PytorchStreamWriter failed writing file")
        return real_save(data, stream, *a, **k)

    monkeypatch.setattr(checkpoints.torch, "save", full_at_stage_2)
    capsys.readouterr()
    assert _main(args, micro_cfg, tmp_path) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert "cannot write the checkpoint" in err and "re-run the same command to resume" in err
    staged = [p for p in (tmp_path / "results").iterdir() if p.name.endswith(".partial")]
    assert len(staged) == 1 and not list(staged[0].glob("checkpoints/.*.tmp"))  # no torn temporary file
    monkeypatch.setattr(checkpoints.torch, "save", real_save)
    assert _main(args, micro_cfg, tmp_path) == 0
    (clean,) = (tmp_path / "clean").glob("*/accuracy_long.csv")
    (resumed,) = (tmp_path / "results").glob("*/accuracy_long.csv")
    columns = ["method", "seed", "stage", "eval_task", "kind", "accuracy"]
    pd.testing.assert_frame_equal(pd.read_csv(resumed)[columns], pd.read_csv(clean)[columns])
    assert 1 in calls and 2 in calls


def test_checkpoint_write_failure_keeps_the_previous_file(tmp_path, monkeypatch):
    import benchmark.loop.checkpoints as checkpoints

    store = checkpoints.StageCheckpoints(tmp_path, "finetune", 0)
    assert store.save(checkpoints.StageState(stage=1))
    first = store.path.read_bytes()

    def disk_full(*_a, **_k):
        raise RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed")

    monkeypatch.setattr(checkpoints.torch, "save", disk_full)
    with pytest.raises(UserError, match="cannot write the checkpoint .*file write failed; is the disk full"):
        store.save(checkpoints.StageState(stage=2))
    assert store.path.read_bytes() == first and sorted(p.name for p in store.path.parent.iterdir()) == [store.path.name]
    assert store.load().stage == 1
