"""User plugins: methods and tasks registered from outside the suite, without editing it.

Two routes, both imported before any registry is read (so their ``@register_method`` and
``@register_task`` classes appear in ``--list-methods``, compositions, resume and reports
like the built-in ones):

- ``--plugins my_methods.py,my_pkg.more`` (or ``plugins:`` in a config file): each entry is
  a Python file (imported under a module name derived from its absolute path, so a resumed
  run's pickled checkpoint finds its classes again) or an importable module name.
- Installed packages: an entry point in the group ``ldifs_bench.methods``
  (``[project.entry-points."ldifs_bench.methods"] mine = "my_pkg.methods"``), discovered at
  start-up of every run.

A plugin that fails to import is one ``UserError`` line naming it and the exception's
first line (``--debug`` or ``LDIFS_BENCH_DEBUG=1`` prints the traceback); a name it
registers that is already taken is refused, naming both modules.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

from benchmark import errors
from benchmark.errors import UserError
from benchmark.registry import DuplicateName

ENTRY_POINT_GROUP = "ldifs_bench.methods"


def is_file_spec(spec: str) -> bool:
    """A path (ends in .py or names a folder) rather than a dotted module name."""
    return spec.endswith(".py") or "/" in spec or os.sep in spec


def normalise(specs: list[str]) -> list[str]:
    """File entries as absolute paths, so a run's config.yaml re-imports them from anywhere."""
    return [str(Path(s).expanduser().resolve()) if is_file_spec(s) else s for s in specs]


def module_name_for(path: Path) -> str:
    """A stable module name for a plugin file: the same file always gets the same name."""
    digest = hashlib.sha256(str(path).encode()).hexdigest()[:10]
    stem = "".join(c if c.isalnum() else "_" for c in path.stem)
    return f"ldifs_bench_plugin_{stem}_{digest}"


def load_plugins(specs: list[str]) -> list[ModuleType]:
    """Import every plugin entry once (a second call is a no-op), then the entry points."""
    import methods  # noqa: F401  (built-ins first: a clash then names the plugin, not them)
    import tasks  # noqa: F401

    modules = [_load_one(spec) for spec in normalise(specs)]
    return modules + load_entry_points()


def _load_one(spec: str) -> ModuleType:
    if not is_file_spec(spec):
        if os.getcwd() not in sys.path:  # as ``python -m`` would: modules beside the user's files
            sys.path.append(os.getcwd())
        return _guarded(spec, lambda: importlib.import_module(spec))
    path = Path(spec)
    if not path.is_file():
        raise UserError(f"plugin file {spec!r} does not exist; --plugins takes .py files or importable modules")
    name = module_name_for(path)
    if name in sys.modules:
        return sys.modules[name]
    module_spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module  # before executing: dataclasses and pickle look it up by name

    def execute() -> ModuleType:
        module_spec.loader.exec_module(module)
        return module

    try:
        return _guarded(spec, execute)
    except UserError:
        sys.modules.pop(name, None)
        raise


def load_entry_points() -> list[ModuleType]:
    """Import the modules installed packages declare in the ``ldifs_bench.methods`` group."""
    loaded = []
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        loaded.append(_guarded(f"entry point {ep.name} = {ep.value}", ep.load))
    return loaded


def _guarded(what: str, load):
    """Run ``load``; any exception becomes one UserError line (the cause keeps the traceback)."""
    try:
        return load()
    except UserError:
        raise
    except DuplicateName as e:
        raise UserError(f"plugin {what}: {e}") from e
    except BaseException as e:
        if isinstance(e, KeyboardInterrupt):
            raise
        first = (str(e).strip().splitlines() or [""])[0]
        raise UserError(f"plugin {what} failed to import: {type(e).__name__}: {first}{debug_hint()}") from e


def debug_hint() -> str:
    return "" if debug_enabled() else " (--debug or LDIFS_BENCH_DEBUG=1 for the traceback)"


def debug_enabled() -> bool:
    return errors.debug_enabled()  # the one definition, beside the boundary that reads it


def plugin_records(specs: list[str]) -> list[dict]:
    """For the manifest: each plugin's source file and the sha256 of its bytes."""
    records = []
    for spec in normalise(specs):
        if is_file_spec(spec):
            path = Path(spec)
        else:
            module = sys.modules.get(spec) or importlib.import_module(spec)
            path = Path(module.__file__) if getattr(module, "__file__", None) else None
        records.append({"plugin": spec, "path": str(path) if path else None, "sha256": _sha256(path)})
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        module = sys.modules.get(ep.module)
        path = Path(module.__file__) if module is not None and getattr(module, "__file__", None) else None
        records.append(
            {
                "plugin": f"entry point {ep.name} = {ep.value}",
                "path": str(path) if path else None,
                "sha256": _sha256(path),
            }
        )
    return records


def _sha256(path) -> str | None:
    if path is None or not Path(path).is_file():
        return None
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
