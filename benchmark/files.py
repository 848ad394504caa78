"""Atomic files: every results file and checkpoint of the suite is written through here."""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, Union

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
    flushed to disk before it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    text_options = {} if binary else {"encoding": "utf-8", "newline": ""}
    try:
        with os.fdopen(handle, "wb" if binary else "w", **text_options) as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(tmp_name, 0o644)  # mkstemp makes owner-only files; results are meant to be shared
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


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
    atomic_write(path, lambda stream: stream.write(text))


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
