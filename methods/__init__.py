"""The built-in methods: one file each. Every module of this folder is imported here, so
adding a method is dropping a file in (an import error is raised, not swallowed)."""

import importlib
import pkgutil

from benchmark.training.method import METHODS, HeadRows, HeadTools, Method, build_method, register_method

__all__ = ["METHODS", "HeadRows", "HeadTools", "Method", "build_method", "register_method"]

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
