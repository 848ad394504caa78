"""Atomic files: every results file and checkpoint of the suite is written through here."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import stat
import tempfile
import time
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import IO, Any, Optional, Union

import yaml

from benchmark.errors import UserError

# One path component: no separators, no "." or "..", nothing a shell or a file system
# reads specially (a leading "-" or ".", spaces, control characters). Every name that
# becomes a path (a run, a sweep, a task, a cache entry) is checked by safe_component.
COMPONENT_RULE = r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}"
COMPONENT_RULE_TEXT = "1-100 letters, digits, '.', '_' or '-', starting with a letter or digit"


def safe_component(name: str, what: str) -> str:
    """``name`` if it is one safe folder or file name, else a one-line UserError naming
    ``what`` (``"--name"``, ``"sweep name"``, ``"task name"``), the value and the rule."""
    if not isinstance(name, str) or not re.fullmatch(COMPONENT_RULE, name):
        raise UserError(f"{what} {name!r} is not a valid name: {COMPONENT_RULE_TEXT} (one folder name, no paths)")
    return name


def atomic_write(path: Path, write: Callable[[IO], None], binary: bool = False) -> None:
    """Write through a temporary file in the same folder, then rename it over ``path``.

    A process killed at any moment leaves either the previous complete file or the new
    complete one, never a torn one (the rename is atomic within a filesystem; the data is
    flushed to disk before it). A file replaced keeps its permission bits (a 0600 file stays
    private); a new one is 0644."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = _mode_of(path)
    handle, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    text_options = {} if binary else {"encoding": "utf-8", "newline": ""}
    try:
        with os.fdopen(handle, "wb" if binary else "w", **text_options) as stream:  # type: ignore[call-overload]
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(tmp_name, mode)  # mkstemp makes owner-only files; results are meant to be shared
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def _mode_of(path: Path) -> int:
    """The permission bits a write of ``path`` keeps: those of the regular file there, else 0644."""
    try:
        info = os.lstat(path)
    except OSError:
        return 0o644
    return stat.S_IMODE(info.st_mode) if stat.S_ISREG(info.st_mode) else 0o644


def suite_cache_root() -> Path:
    """The suite's cache folder (suite-pretrained models, decoded images): $LDIFS_BENCH_CACHE,
    else ``$XDG_CACHE_HOME/ldifs-bench`` (the XDG Base Directory spec), else ~/.cache/ldifs-bench."""
    if os.environ.get("LDIFS_BENCH_CACHE"):
        return Path(os.environ["LDIFS_BENCH_CACHE"])
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache"  # the spec: a relative value is ignored
    return base / "ldifs-bench"


def atomic_text(path: Path, text: str) -> None:
    """Atomically replace ``path`` with ``text`` (UTF-8)."""
    atomic_write(path, lambda stream: stream.write(text))  # type: ignore[arg-type]


def folder_bytes(folder: Path) -> int:
    """Total size of the files under ``folder``."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


# ----------------------------------------------------------------------------- reading
# Every text file the suite reads from the user (config, sequence, a run's config.yaml)
# goes through read_text_file / load_yaml_file: one place that refuses what is not a
# small UTF-8 text file, and YAML that expands (aliases: the "billion laughs" document).

MAX_TEXT_BYTES = 4 * 2**20  # a config or sequence is a few KB; anything this big is the wrong file


def read_text_file(path: Union[str, Path], what: str, max_bytes: int = MAX_TEXT_BYTES) -> str:
    """The UTF-8 text of ``path``, or UserError naming it (missing, not a file, too big, binary)."""
    path = Path(path)
    try:
        if not path.is_file():
            why = "does not exist" if not path.exists() else "is not a regular file"
            raise UserError(f"cannot read {what} {str(path)!r}: it {why}")
        size = path.stat().st_size
        if size > max_bytes:
            raise UserError(f"{what} {str(path)!r} is {size} bytes; a {what} is at most {max_bytes} bytes")
        data = path.read_bytes()
    except OSError as e:
        raise UserError(f"cannot read {what} {str(path)!r}: {e.strerror}") from None
    try:
        if b"\0" in data:
            raise UnicodeError
        return data.decode("utf-8")
    except UnicodeError:
        raise UserError(f"{what} {str(path)!r} is not a text file (binary or not UTF-8)") from None


class _NoAliasLoader(yaml.SafeLoader):
    """yaml.SafeLoader without aliases: ``*ref`` can expand a 1 KB file into gigabytes."""

    def compose_node(self, parent, index):  # noqa: ANN001, ANN201  PyYAML's signature
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, f"YAML aliases (*{event.anchor}) are not accepted", event.start_mark
            )
        return super().compose_node(parent, index)


def load_yaml_file(path: Union[str, Path], what: str) -> Any:
    """Parse a small YAML file safely (no aliases, bounded size and depth); UserError otherwise."""
    return parse_yaml_text(read_text_file(path, what), what, str(path))


def parse_yaml_text(text: str, what: str, where: str = "") -> Any:
    """Parse YAML text as load_yaml_file does (no aliases, bounded depth); UserError otherwise."""
    path = where or text[:40]
    try:
        return yaml.load(text, Loader=_NoAliasLoader)  # noqa: S506  a SafeLoader subclass
    except yaml.YAMLError as e:
        first = str(e).replace("\n", " ")[:200]
        raise UserError(f"{what} {str(path)!r} is not valid YAML: {first}") from None
    except RecursionError:
        raise UserError(f"{what} {str(path)!r} is nested too deeply to be a {what}") from None


# ----------------------------------------------------------------------------- locks
# The suite's one lock (run folders, the run index, the model and data caches, a sweep
# waiting for a cell another process runs): an fcntl flock, released when its descriptor
# closes, so a killed holder releases it too.


@contextlib.contextmanager
def flocked(
    path: Union[str, Path],
    *,
    shared: bool = False,
    create: bool = True,
    follow: bool = False,
    what: Optional[str] = None,
    on_busy: Optional[Callable[[int], None]] = None,
) -> Iterator[int]:
    """Hold a flock on ``path`` for the block; yields its descriptor.

    ``create``: a lock file made when absent (0644), else ``path`` must exist (a folder, or
    a lock file another process made). ``follow=False`` opens with ``O_NOFOLLOW``: a link
    planted where a lock file belongs is refused, never written through. ``what`` names the
    file in a one-line UserError when it cannot be opened (None: the OSError propagates).
    ``on_busy(fd)``: called when another process holds the lock (it may raise to refuse,
    or log that it waits); without it the lock is simply waited for."""
    flags = os.O_RDWR | os.O_CREAT if create else os.O_RDONLY
    try:
        fd = os.open(path, flags | (0 if follow else os.O_NOFOLLOW), 0o644)
    except OSError as e:
        if what is None:
            raise
        why = "it is a symbolic link, which the suite never makes or follows; remove it"
        raise UserError(f"cannot use the {what} {path}: {why if e.errno == errno.ELOOP else e.strerror}") from None
    try:
        mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
        if on_busy is None:
            fcntl.flock(fd, mode)
        else:
            try:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
            except BlockingIOError:
                on_busy(fd)
                fcntl.flock(fd, mode)
        yield fd
    finally:
        os.close(fd)  # closing releases the lock


# ----------------------------------------------------------------------------- tool folders
# One rule for every file a tool writes outside a run folder (pretrain --out, gpu_check
# --out, publish --readme, the run index): it writes only into a folder it created (its
# marker file there, recognised by its content) or an empty one; it replaces only the files
# it writes; it never follows a symbolic link it did not make; a file it replaces keeps its
# permission bits (atomic_write).


def check_tool_folder(
    folder: Union[str, Path],
    tool: str,
    marker: str,
    is_marker: Callable[[Any], bool],
    owned: Collection[str],
    whole: bool = False,
) -> bool:
    """Raise a one-line UserError unless ``tool`` may write the files ``owned`` into
    ``folder``; True when the folder exists (an earlier output of the tool), False when it is
    absent or empty.

    Allowed: an absent folder (not under a file), an empty real folder, or a real folder
    holding ``marker``, a JSON file that ``is_marker`` recognises as the tool's. No owned
    file there may be a link. ``whole``: the tool replaces the folder whole, so it may hold
    nothing but ``owned`` (anything else would be lost)."""
    folder = Path(folder)
    where = f"{tool}: {str(folder)!r}"
    for above in folder.parents:
        if os.path.lexists(above) and not above.is_dir():
            raise UserError(f"{where} lies under {str(above)!r}, which is a file; give a folder")
    if folder.is_symlink():
        raise UserError(f"{where} is a symbolic link, which {tool} never follows; give the folder itself")
    if not folder.exists():
        return False
    if not folder.is_dir():
        raise UserError(f"{where} is a file, not a folder; give a new or empty folder (or one {tool} wrote)")
    entries = sorted(p.name for p in folder.iterdir())
    if not entries:
        return False
    if not _is_marker_file(folder / marker, is_marker):
        raise UserError(
            f"{where} holds files {tool} did not write ({entries[0]!r}{', ...' if len(entries) > 1 else ''}) "
            f"and no {marker} of its own; give a new or empty folder"
        )
    for name in entries:
        if name in owned and (folder / name).is_symlink():
            raise UserError(f"{where}: {name} is a symbolic link, which {tool} never follows or replaces; remove it")
        if whole and name not in owned:
            raise UserError(
                f"{where} holds {name!r}, which {tool} did not write and would be lost when the folder is "
                "replaced; move it or give another folder"
            )
    return True


def _is_marker_file(path: Path, is_marker: Callable[[Any], bool]) -> bool:
    """Is ``path`` a regular file (not a link) whose JSON ``is_marker`` recognises."""
    if path.is_symlink() or not path.is_file():
        return False
    try:
        return bool(is_marker(json.loads(read_text_file(path, "marker"))))
    except (UserError, ValueError):
        return False


def check_replaceable_file(path: Union[str, Path], what: str) -> None:
    """A file a tool edits in place (publish --readme) must be a regular file, not a link:
    replacing a link with a file would cut the user's link, writing through it would follow it."""
    path = Path(path)
    if path.is_symlink():
        raise UserError(
            f"{what} {str(path)!r} is a symbolic link, which the suite never follows or replaces; "
            "give the file it points to"
        )


def move_aside(path: Union[str, Path]) -> Path:
    """Rename a damaged file to ``<name>.damaged-<UTC time>`` beside it (never delete it: it
    may hold history only it has) and return the new path."""
    path = Path(path)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = path.with_name(f"{path.name}.damaged-{stamp}")
    suffix = 0
    while os.path.lexists(target):  # two in one second: never over an earlier one
        suffix += 1
        target = path.with_name(f"{path.name}.damaged-{stamp}-{suffix}")
    os.rename(path, target)
    return target
