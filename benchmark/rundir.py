"""The run folder: the names of every file a run writes, the staging folder, the lock.

One owner for the layout, as timm's checkpoint saver owns its folder: the runner, the
reports and the leaderboard ask this module for names instead of spelling them. It also
owns what a run may touch: a run name is one safe folder name, every path it hands out
stays inside the results folder, and a folder is only ever replaced or removed when it
holds a run of the same config (its config.yaml has the same config hash).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from pathlib import Path
from typing import Optional

from benchmark.errors import UserError
from benchmark.files import COMPONENT_RULE, COMPONENT_RULE_TEXT, flocked, safe_component

LONG_CSV = "accuracy_long.csv"
FEATURE_DRIFT_CSV = "feature_drift.csv"  # per-layer feature drift (benchmark.evaluation.drift)
SUMMARY_CSV = "summary.csv"
REPORT_MD = "report.md"
PLOTS_DIR = "plots"
LEADERBOARD_CSV = "leaderboard.csv"
LEADERBOARD_MD = "leaderboard.md"
LEADERBOARD_HTML = "leaderboard.html"
CONFIG_YAML = "config.yaml"
MANIFEST_JSON = "manifest.json"
RUN_LOG = "run.log"
CHECKPOINTS_DIR = "checkpoints"
MERGE_JSON = "merge.json"  # marks a folder written by the leaderboard's merge
STAGE0_JSON = "stage0.json"
AVALANCHE_LOGS = "avalanche_logs"
IN_USE = "is in use by process"  # the lock's message: a sweep recognises a cell another process runs

# One path component (benchmark.files.safe_component, shared by every name that becomes a path).
NAME_RULE = COMPONENT_RULE
NAME_RULE_TEXT = COMPONENT_RULE_TEXT
# results/index.csv and the results/latest link (benchmark.run.index): no run may take them.
RESERVED_NAMES = ("index.csv", "latest")
# A folder the suite names itself: a user's name plus "-<config hash>" (11 characters more).
FOLDER_RULE = r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}"


def check_run_name(name: str, what: str = "--name") -> str:
    """``name`` if it is a safe run name, else a one-line UserError naming it and the rule."""
    safe_component(name, what)
    if name in RESERVED_NAMES:
        raise UserError(f"{what} {name!r} is reserved for the results folder's own files ({', '.join(RESERVED_NAMES)})")
    return name


def safe_name(name: str) -> str:
    """A method name made safe for a file name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def run_title(run_dir: Path) -> str:
    """The run's folder name; inside the runner's staging folder ``.NAME.partial``, the final NAME."""
    name = Path(run_dir).resolve().name
    staging = re.fullmatch(r"\.(.+)\.partial(-\d+)?", name)
    return staging.group(1) if staging else name


class RunLock:
    """An exclusive lock on a run folder: a second process on the same run refuses to start."""

    def __init__(self, lock_path: Path) -> None:
        self.path = lock_path
        self._held: Optional[contextlib.ExitStack] = None

    def __enter__(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        held = contextlib.ExitStack()
        # never through a symlink (flocked's O_NOFOLLOW): the lock file is truncated and then removed
        fd = held.enter_context(flocked(self.path, what="lock file", on_busy=self._refuse))
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._held = held
        return self

    def _refuse(self, fd: int) -> None:
        holder = os.read(fd, 64).decode(errors="replace").strip() or "another process"
        raise UserError(
            f"run {self.path.stem.lstrip('.')!r} {IN_USE} {holder} (lock {self.path}); wait for it or use another --name"
        )

    def __exit__(self, *exc) -> None:
        if self._held is not None:
            self._held.close()  # closing releases the flock; a killed process releases it too
            self.path.unlink(missing_ok=True)


# The first line of a run's config.yaml: the hash of the config as it ran (of the sequence
# file's content then, not now: an edited sequence file is another config).
HASH_HEADER = "# config hash "


def config_hash_of(folder: Path) -> Optional[str]:
    """The config hash of the run a folder holds (its config.yaml), None when it holds none."""
    from benchmark.config import config_hash, load_yaml

    saved = Path(folder) / CONFIG_YAML
    if not saved.is_file() or saved.is_symlink():
        return None
    try:
        config = load_yaml(saved)  # a config of this suite, or None below
        with open(saved, encoding="utf-8") as stream:
            first = stream.readline()
        recorded = re.fullmatch(re.escape(HASH_HEADER) + r"([0-9a-f]{10})\s*", first)
        return recorded.group(1) if recorded else config_hash(config)
    except Exception:  # unreadable or not a config: not a run this suite can vouch for
        return None


class RunDir:
    """One run's folder ``ROOT/NAME``, its staging folder ``ROOT/.NAME.partial`` and its lock.

    Every path it hands out is checked to resolve inside ``ROOT`` (a symlinked NAME cannot
    lead outside), and ``remove`` only deletes a folder that holds a run of the same config.
    """

    def __init__(self, root: Path, name: str, what: str = "--name") -> None:
        self.root = Path(root)
        self.name = name
        if not re.fullmatch(FOLDER_RULE, name):
            check_run_name(name, what)  # the one-line error, naming the rule
        for path in (self.path, self.staging, self.lock_path):
            self.inside(path)

    @property
    def path(self) -> Path:
        return self.root / self.name

    @property
    def staging(self) -> Path:
        """Where the run is written until it is complete, then renamed to ``path``."""
        return self.root / f".{self.name}.partial"

    @property
    def lock_path(self) -> Path:
        return self.root / f".{self.name}.lock"

    @property
    def title(self) -> str:
        return self.name

    def lock(self) -> RunLock:
        return RunLock(self.lock_path)

    def with_name(self, name: str) -> RunDir:
        return RunDir(self.root, name)

    def inside(self, path: Path) -> Path:
        """``path`` if it resolves to a direct child of the results folder, else a UserError."""
        if Path(path).resolve().parent != self.root.resolve():
            raise UserError(f"{path} resolves outside the results directory {str(self.root)!r}; refusing to use it")
        return Path(path)

    def holds_run_of(self, folder: Path, cfg_hash: str) -> bool:
        """True when ``folder`` (this run's final or staging folder) holds a run of that config."""
        return config_hash_of(self.inside(folder)) == cfg_hash

    def claimable(self, folder: Path, cfg_hash: str) -> bool:
        """May this run (of config ``cfg_hash``) use ``folder``: absent, an empty folder or a
        run of the same config. Anything else (a file, another config, a folder the suite did
        not write) belongs to someone else."""
        folder = self.inside(folder)
        if not os.path.lexists(folder):
            return True
        if folder.is_symlink() or not folder.is_dir():
            return False
        return not any(folder.iterdir()) or self.holds_run_of(folder, cfg_hash)

    def remove(self, folder: Path, cfg_hash: str) -> None:
        """Delete ``folder`` only if it is this run's and holds a run of the same config."""
        if folder not in (self.path, self.staging):
            raise UserError(f"refusing to remove {folder}: not this run's folder")
        if not os.path.lexists(folder):
            return
        if not self.claimable(folder, cfg_hash):
            raise UserError(f"refusing to remove {folder}: it does not hold a run of this config")
        shutil.rmtree(folder)
