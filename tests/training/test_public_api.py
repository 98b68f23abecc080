"""flowbridge uses Lightning through its public API only (no attribute, method or module of
Lightning whose name starts with an underscore), so that a Lightning release that moves its
internals cannot silently change training."""

from __future__ import annotations

import ast
import re
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "flowbridge"
# The check of issue 18, verbatim.
ISSUE_PATTERN = re.compile(r"_current_fx_name|_on_before_step|_on_after_step|\.fit_loop\.|_results\b|trainer\._")
# Names that hold Lightning objects in flowbridge's code.
LIGHTNING_NAMES = {"trainer", "pl_module", "strategy", "accelerator", "precision_plugin", "lightning_module", "optimizer"}


def _lightning_private_names() -> set[str]:
    """Single-underscore names Lightning's base classes define (methods and instance attributes)."""
    import lightning.pytorch as pl

    names: set[str] = set()
    for obj in (pl.LightningModule(), pl.LightningDataModule(), pl.Callback()):
        names |= set(vars(obj)) | set(dir(type(obj)))
    return {n for n in names if n.startswith("_") and not n.startswith("__")}


LIGHTNING_PRIVATE = _lightning_private_names()


def _sources() -> list[Path]:
    files = sorted(SRC.rglob("*.py"))
    assert len(files) > 50
    return files


def test_the_issues_grep_finds_nothing() -> None:
    hits = [f"{p.relative_to(SRC)}:{i}: {line.strip()}" for p in _sources()
            for i, line in enumerate(p.read_text().splitlines(), 1) if ISSUE_PATTERN.search(line)]
    assert not hits, hits


def test_no_private_lightning_name_is_imported_or_read() -> None:
    problems = []
    for path in _sources():
        tree = ast.parse(path.read_text())
        lightning_classes = _lightning_subclasses(tree)
        for node in ast.walk(tree):
            where = f"{path.relative_to(SRC)}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(("lightning", "pytorch_lightning")):
                if any(part.startswith("_") for part in node.module.split(".")):
                    problems.append(f"{where}: import from private module {node.module}")
                problems += [f"{where}: imports private {a.name}" for a in node.names if a.name.startswith("_")]
            elif isinstance(node, ast.Import):
                problems += [f"{where}: imports private module {a.name}" for a in node.names
                             if a.name.startswith("lightning") and any(p.startswith("_") for p in a.name.split("."))]
            elif isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
                owner = _owner(node.value)
                if owner in LIGHTNING_NAMES or owner.startswith(("trainer.", "self.trainer")):
                    problems.append(f"{where}: {owner}.{node.attr}")
                elif owner == "self" and node.attr in LIGHTNING_PRIVATE and _enclosing_class(tree, node) in lightning_classes:
                    problems.append(f"{where}: self.{node.attr} (Lightning's) in a Lightning subclass")
    assert not problems, problems


def _owner(node: ast.AST) -> str:
    return ast.unparse(node)


def _lightning_subclasses(tree: ast.Module) -> set[str]:
    """Classes of this file that derive from a Lightning class (LightningModule, Callback, ...)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            bases = " ".join(ast.unparse(b) for b in node.bases)
            if re.search(r"\bpl\.|Lightning|Callback|ProgressBar|Strategy|Profiler|WeightAveraging|FlowbridgeModule|"
                         r"GenerativeDataModule|GenerativeModule", bases):
                out.add(node.name)
    return out


def _enclosing_class(tree: ast.Module, target: ast.AST) -> str | None:
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and any(child is target for child in ast.walk(node)):
            return node.name
    return None
