"""The public API the sweep must cover: every name in ``flowbridge.__all__`` and in the ``__all__``
of every module under ``flowbridge``, and the names that are plain data.

Plain data (dataclasses holding results, constants, registries, exceptions, abstract protocols,
registration decorators) have no inputs to corrupt; they are covered by the construction and type
checks of ``test_coverage.py``, which say for each one what is checked.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterator
from typing import Any

import flowbridge


def public_modules() -> list[str]:
    """``flowbridge`` and every importable module under it (``__main__`` entry points excluded:
    importing them runs the command line)."""
    names = ["flowbridge"]
    for info in pkgutil.walk_packages(flowbridge.__path__, "flowbridge."):
        if info.name.rsplit(".", 1)[-1] == "__main__":
            continue
        names.append(info.name)
    return names


def public_names() -> Iterator[tuple[str, str, Any]]:
    """``(module, name, object)`` for every name listed in an ``__all__``."""
    for module_name in public_modules():
        module = importlib.import_module(module_name)
        for name in getattr(module, "__all__", ()):
            yield module_name, name, getattr(module, name)


def resolve(dotted: str) -> Any:
    """The object behind a public dotted name such as ``flowbridge.paths.GaussianPath``."""
    module_name, _, attr = dotted.rpartition(".")
    return getattr(importlib.import_module(module_name), attr)


def package_of(dotted: str) -> str:
    """The top-level subpackage a dotted name belongs to (``flowbridge`` for the root)."""
    parts = dotted.split(".")
    return parts[1] if len(parts) > 2 else "flowbridge"
