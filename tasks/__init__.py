"""The built-in tasks: one file per task family. Every module of this folder is imported
here, so adding a task is dropping a file in (an import error is raised, not swallowed)."""

import importlib
import pkgutil

from tasks.base import TASKS, Split, Task, TaskContext, register_task
from tasks.sequences import SEQUENCES, Sequence, load_sequence

__all__ = ["SEQUENCES", "TASKS", "Sequence", "Split", "Task", "TaskContext", "load_sequence", "register_task"]

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
