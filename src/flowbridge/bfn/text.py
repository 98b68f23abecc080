"""A small character-level corpus built from Python's own standard-library docstrings.

The text is collected at data-setup time (nothing is downloaded or shipped): the docstrings of a
fixed list of standard-library modules and of their public classes and functions, in a fixed
order, reduced text8-style to 27 symbols (``a``-``z`` and space; everything else becomes a space,
runs of spaces collapse). The exact text depends on the Python version, which :class:`CharText`
records in its name. Sequences are non-overlapping windows of ``seq_len`` characters; the
held-out set is the corpus's last ``val_fraction``, so no window straddles the split.
"""

from __future__ import annotations

import importlib
import inspect
import re
import sys
from functools import lru_cache

import torch
from torch import Tensor

from flowbridge.errors import ArgumentError
from flowbridge.training.data import DataSplits, GenerativeDataModule

ALPHABET = " abcdefghijklmnopqrstuvwxyz"

DEFAULT_MODULES: tuple[str, ...] = (
    "abc", "argparse", "ast", "base64", "bisect", "calendar", "collections", "contextlib", "copy", "csv",
    "dataclasses", "datetime", "decimal", "difflib", "email.message", "enum", "fractions", "functools",
    "gettext", "glob", "gzip", "hashlib", "heapq", "hmac", "html.parser", "http.client", "inspect",
    "ipaddress", "itertools", "json", "logging", "mailbox", "numbers", "operator", "optparse", "os",
    "pathlib", "pickle", "pprint", "queue", "random", "re", "sched", "secrets", "shlex", "shutil",
    "smtplib", "socket", "statistics", "string", "struct", "subprocess", "tarfile", "tempfile", "textwrap",
    "threading", "timeit", "tokenize", "traceback", "typing", "unittest", "urllib.parse", "uuid", "warnings",
    "weakref", "zipfile",
)


def _docstrings(module_name: str) -> list[str]:
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return []
    docs = [inspect.getdoc(module) or ""]
    for name in sorted(vars(module)):
        if name.startswith("_"):
            continue
        obj = getattr(module, name)
        if (inspect.isclass(obj) or inspect.isfunction(obj)) and getattr(obj, "__module__", None) == module.__name__:
            docs.append(inspect.getdoc(obj) or "")
    return docs


def normalise(text: str) -> str:
    """Lower-cases and maps every character outside ``a-z`` to a space, collapsing runs."""
    return re.sub(r"[^a-z]+", " ", text.lower()).strip()


@lru_cache(maxsize=4)
def stdlib_corpus(modules: tuple[str, ...] = DEFAULT_MODULES) -> str:
    """The normalised docstring text of ``modules`` (deterministic for one Python version; cached)."""
    return normalise(" ".join(doc for name in modules for doc in _docstrings(name)))


def encode(text: str) -> Tensor:
    """Characters of the 27-symbol alphabet to long indices."""
    lookup = {c: i for i, c in enumerate(ALPHABET)}
    try:
        return torch.tensor([lookup[c] for c in text], dtype=torch.long)
    except KeyError as exc:
        raise ArgumentError(f"text must use only {ALPHABET!r} (normalise it first); found {exc.args[0]!r}") from None


def decode(indices: Tensor) -> str:
    """Long indices (any shape; flattened) back to text."""
    return "".join(ALPHABET[int(i)] for i in indices.reshape(-1))  # sync-ok: for display


class CharText(GenerativeDataModule):
    """Character sequences (as float class indices, shape (N, seq_len)) of the stdlib-docstring corpus.

    Train with ``BFNModule(transform="classes", bfn=DiscreteBFN(num_classes=27))``.

    Args:
        seq_len: characters per sequence.
        val_fraction: the corpus's tail held out.
        batch_size, seed, predict_samples: see :class:`~flowbridge.training.GenerativeDataModule`.
    """

    def __init__(self, seq_len: int = 32, val_fraction: float = 0.1, batch_size: int = 256, seed: int = 0, predict_samples: int = 64) -> None:
        super().__init__(batch_size, seed, predict_samples)
        self.save_hyperparameters()
        if not isinstance(seq_len, int) or seq_len < 2:
            raise ArgumentError(f"seq_len must be an integer >= 2; got {seq_len!r}")
        if not 0.0 < val_fraction < 0.5:
            raise ArgumentError(f"val_fraction must lie in (0, 0.5); got {val_fraction}")
        self.seq_len, self.val_fraction = seq_len, float(val_fraction)

    @property
    def name(self) -> str:
        return f"CharText(stdlib docstrings, Python {sys.version_info.major}.{sys.version_info.minor})"

    def load(self) -> DataSplits:
        ids = encode(stdlib_corpus())
        n = ids.shape[0] // self.seq_len
        windows = ids[: n * self.seq_len].reshape(n, self.seq_len)
        n_val = max(2, int(round(n * self.val_fraction)))
        return DataSplits(train=windows[:-n_val].float(), val=windows[-n_val:].float())
