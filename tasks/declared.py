"""Tasks declared as data, beside the registered ones, in a sequence file or the run config::

    tasks:
      birds:    {folder: /data/birds, templates: ["a photo of a {}, a type of bird."], classnames_file: /data/birds/names.txt}
      cifar10w: {webdataset: /data/wds_cifar10}

``folder:`` is an ImageFolder-layout dataset (tasks/folder_tasks.py), ``webdataset:`` a root
in CLIP_benchmark's shard layout (tasks/webdataset_tasks.py). Templates take "{}" (or
CLIP_benchmark's "{c}") where the class name goes. Relative paths are relative to the
sequence file's folder (the working directory for the run config). Every error names the
file (or config key) and the key at fault, in one line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from benchmark.errors import UserError
from benchmark.files import read_text_file, safe_component
from tasks.base import TASKS, TaskFactory
from tasks.folder_tasks import DEFAULT_TEMPLATES, class_folders, folder_layout, folder_task
from tasks.webdataset_tasks import CLASSNAMES_FILE, SPLITS, read_lines, shard_paths, webdataset_task

KINDS = ("folder", "webdataset")
KEYS = {
    "folder": ("folder", "templates", "classnames_file", "description"),
    "webdataset": ("webdataset", "templates", "description"),
}


@dataclass
class Declaration:
    name: str
    spec: dict[str, Any]
    where: str  # "sequence file 'x.yaml'" or "run config"
    base: Path  # relative paths resolve against it

    def at(self, key: str) -> str:
        """The place of ``key`` in error messages: '<file>: tasks.<name>.<key>'."""
        return f"{self.where}: tasks.{self.name}.{key}"

    def path(self, key: str) -> Path:
        value = self.spec[key]
        if not isinstance(value, str) or not value:
            raise UserError(f"{self.at(key)} must be a path, got {value!r}")
        path = Path(value).expanduser()
        return path if path.is_absolute() else self.base / path


def declarations(
    sequence_tasks: dict[str, Any], sequence_file: str, config_tasks: dict[str, Any]
) -> dict[str, Declaration]:
    """Every declared task by name: the sequence file's, then the run config's."""
    found: dict[str, Declaration] = {}
    base = Path(sequence_file).parent if sequence_file else Path(".")
    sources = [(sequence_tasks, f"sequence file {sequence_file!r}", base), (config_tasks, "run config", Path("."))]
    for table, where, folder in sources:
        if not isinstance(table, dict):
            raise UserError(f"{where}: 'tasks' must map task names to declarations, got {table!r}")
        for name, spec in table.items():
            # the name becomes cache entry names (files): one safe component, checked first
            safe_component(name if isinstance(name, str) else repr(name), f"{where}: task name")
            decl = Declaration(str(name), spec, where, folder)
            if str(name) in TASKS:
                raise UserError(f"{where}: tasks.{name} is already a registered task; pick another name")
            if str(name) in found:
                raise UserError(f"{where}: tasks.{name} is declared twice ({found[str(name)].where} and here)")
            check(decl)
            found[str(name)] = decl
    return found


def check(decl: Declaration) -> None:
    """Refuse a declaration that cannot load, before any model or data is touched."""
    spec = decl.spec
    if not isinstance(spec, dict):
        raise UserError(
            f"{decl.where}: tasks.{decl.name} must be a mapping with 'folder' or 'webdataset', got {spec!r}"
        )
    kinds = [k for k in KINDS if k in spec]
    if len(kinds) != 1:
        raise UserError(f"{decl.where}: tasks.{decl.name} needs exactly one of 'folder' or 'webdataset'")
    kind = kinds[0]
    unknown = sorted(set(spec) - set(KEYS[kind]))
    if unknown:
        raise UserError(f"{decl.at(unknown[0])}: unknown key; valid keys: {', '.join(KEYS[kind])}")
    _templates(decl)
    if kind == "folder":
        _check_folder(decl)
    else:
        _check_webdataset(decl)


def _templates(decl: Declaration) -> Optional[list[str]]:
    if "templates" not in decl.spec:
        return None
    raw = decl.spec["templates"]
    if not isinstance(raw, list) or not raw or not all(isinstance(t, str) for t in raw):
        raise UserError(f"{decl.at('templates')} must be a non-empty list of strings, got {raw!r}")
    templates = [t.replace("{c}", "{}") for t in raw]
    bad = next((t for t in templates if t.count("{}") != 1), None)
    if bad is not None:
        raise UserError(f"{decl.at('templates')}: template {bad!r} needs exactly one '{{}}' for the class name")
    return templates


def _check_folder(decl: Declaration) -> None:
    root = decl.path("folder")
    if not root.is_dir():
        raise UserError(f"{decl.at('folder')}: no folder {root}")
    try:
        train, _ = folder_layout(root, decl.name)
    except UserError as e:
        raise UserError(f"{decl.at('folder')}: {e}") from None
    if "classnames_file" in decl.spec:
        names_file = decl.path("classnames_file")
        if not names_file.exists():
            raise UserError(f"{decl.at('classnames_file')}: no file {names_file}")
        try:
            text = read_text_file(names_file, "class-names file")  # small UTF-8 text, or one line
        except UserError as e:
            raise UserError(f"{decl.at('classnames_file')}: {e}") from None
        names = [line for line in text.splitlines() if line.strip()]
        folders = class_folders(train)
        if len(names) != len(folders):
            raise UserError(
                f"{decl.at('classnames_file')}: {names_file} has {len(names)} names "
                f"but {train} has {len(folders)} class folders"
            )


def _check_webdataset(decl: Declaration) -> None:
    root = decl.path("webdataset")
    if not root.is_dir():
        raise UserError(f"{decl.at('webdataset')}: no folder {root}")
    for split in SPLITS:
        shard_paths(root, split, decl.at("webdataset"))
    if not read_lines(root / CLASSNAMES_FILE, decl.at("webdataset")):
        raise UserError(f"{decl.at('webdataset')}: {root / CLASSNAMES_FILE} names no class")


def factory(decl: Declaration) -> TaskFactory:
    templates = _templates(decl)
    description = str(decl.spec.get("description", ""))
    if "folder" in decl.spec:
        names = decl.path("classnames_file") if "classnames_file" in decl.spec else None
        return folder_task(
            decl.name, decl.path("folder"), names, templates or DEFAULT_TEMPLATES, description=description
        )
    return webdataset_task(decl.name, decl.path("webdataset"), decl.at("webdataset"), templates, description)


def task_factory(name: str, declared: dict[str, Declaration]) -> TaskFactory:
    """A declared task's factory, else the registered one (unknown names list the valid ones)."""
    if name in declared:
        return factory(declared[name])
    if name not in TASKS and declared:
        valid = ", ".join(sorted(set(TASKS.names()) | set(declared)))
        raise UserError(f"unknown task {name!r}; valid choices: {valid}")
    return TASKS.get(name)
