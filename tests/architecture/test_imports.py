"""The import graph: layers import only downward, and ``import flowbridge`` stays light.

Layers (docs/architecture.md, shared DESIGN.md), lowest first; a module may import its own layer and
the ones below, never above, whether at module level or inside a function.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "flowbridge"

LAYERS: list[set[str]] = [
    {"_utils", "errors", "random", "_progress", "py"},
    {"paths", "metrics", "nets", "couplings"},
    {"fields"},
    {"analytic", "samplers", "objectives", "likelihood"},
    {"smc", "training"},
    {"inverse", "bridges", "bfn", "scale", "dynamics"},
    {"interop", "viz"},
    {"cli", "demo", "__main__"},
]
# Heavy optional packages that `import flowbridge` must not pull in (imported where used).
HEAVY = ("ot", "sklearn", "pyro", "lightning", "matplotlib", "diffusers", "torchsde", "torchdiffeq", "scipy", "pandas")


def layer_of(package: str) -> int:
    for k, names in enumerate(LAYERS):
        if package in names:
            return k
    raise AssertionError(f"flowbridge.{package} is in no layer: add it to LAYERS (and to docs/architecture.md)")


def top_package(module: Path) -> str:
    rel = module.relative_to(SRC)
    return rel.parts[0].removesuffix(".py") if len(rel.parts) > 0 else ""


def imported_packages(module: Path) -> set[tuple[str, int]]:
    out = set()
    for node in ast.walk(ast.parse(module.read_text())):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "flowbridge" and len(parts) > 1:
                out.add((parts[1], node.lineno))
    return out


def test_layers_import_only_downward():
    violations = []
    for module in sorted(SRC.rglob("*.py")):
        if module.name == "__init__.py" and module.parent == SRC:
            continue  # the package root re-exports from every layer
        if module.name == "__main__.py":
            continue  # `python -m flowbridge.x` entry points run the command line: the top layer
        own = layer_of(top_package(module))
        for package, line in imported_packages(module):
            if layer_of(package) > own:
                violations.append(f"{module.relative_to(SRC)}:{line} imports flowbridge.{package}")
    assert not violations, "upward imports:\n" + "\n".join(violations)


def test_import_flowbridge_is_light():
    """The heavy optional packages stay out of ``import flowbridge`` (the time it takes is measured,
    not asserted here: timings belong to benchmarks; see docs/benchmarks.md)."""
    code = "import sys, torch; before = set(sys.modules); import flowbridge; print(' '.join(sorted({m.split('.')[0] for m in set(sys.modules) - before})))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = set(out.split())
    assert not loaded & set(HEAVY), f"import flowbridge loads {sorted(loaded & set(HEAVY))}"
