"""Loading any checkpoint ``flowbridge fit`` writes: :func:`load` (``flowbridge.load``) and its data module.

A checkpoint of the flowbridge CLI stores its module's configuration (class paths and arguments,
not pickled objects) and, with an EMA callback, the averaged weights as ``state_dict`` next to the
raw weights (``current_model_state``). :func:`load` reads it with ``weights_only=True`` (no code in
the file runs), rebuilds the module it names -- any :class:`~flowbridge.training.base.FlowbridgeModule`:
flow matching, interpolants, DDPM/EDM, BFN, LightSB, SB-CFM, DSBM -- and loads the weights.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import Any

import torch

from flowbridge.errors import ArgumentError, CheckpointError

# Packages whose modules a checkpoint may name (imported before resolving its class).
MODULE_PACKAGES = ("flowbridge.training", "flowbridge.bfn.module", "flowbridge.bridges.lightning")
# Packages whose data modules a checkpoint may name.
DATA_PACKAGES = ("flowbridge.training", "flowbridge.bfn.text", "flowbridge.bridges.lightning")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else ""


def read_checkpoint(path: str | Path) -> tuple[bytes, dict[str, Any]]:
    """The file's bytes and its contents (``weights_only=True``); :class:`CheckpointError` otherwise."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{p}: no such checkpoint")
    data = p.read_bytes()
    try:
        checkpoint = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated, corrupt, pickled objects, or another kind of file
        raise CheckpointError(f"{p}: not a readable checkpoint ({type(exc).__name__}: {_first_line(exc)})") from exc
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise CheckpointError(f"{p}: not a Lightning checkpoint (no state_dict)")
    return data, checkpoint


def _module_class(path: Path, checkpoint: dict[str, Any]) -> type:
    import importlib

    from flowbridge.training.base import FlowbridgeModule
    from flowbridge.training.module import GenerativeModule

    for package in MODULE_PACKAGES:
        importlib.import_module(package)
    hparams = checkpoint.get("hyper_parameters") or {}
    class_path = hparams.get("_class_path") or (checkpoint.get("flowbridge") or {}).get("module")
    if not class_path:
        return GenerativeModule  # trained with `flowbridge fit` on a GenerativeModule recipe
    module_name, _, name = str(class_path).rpartition(".")
    # Only classes already imported: resolving a checkpoint never imports (runs) new code.
    cls = getattr(sys.modules.get(module_name), name, None)
    if not (isinstance(cls, type) and issubclass(cls, FlowbridgeModule)):
        raise CheckpointError(
            f"{path}: the checkpoint names {class_path!r}, which is not an imported flowbridge module "
            "(import the module that defines it first)"
        )
    return cls


def load(
    ckpt: str | Path, map_location: str | torch.device = "cpu", *, weights: str = "ema", **arguments: Any
) -> Any:
    """Loads a module trained by ``flowbridge fit`` (any module type) from a checkpoint.

    Args:
        ckpt: the checkpoint file (``last.ckpt``, ...).
        map_location: where the weights go (``"cpu"``, ``"cuda"``, ...).
        weights: ``"ema"`` (default): the averaged weights where an EMA callback was used (else the
            weights); ``"raw"``: the optimizer's weights.
        **arguments: constructor arguments that replace the stored ones; needed for modules built
            in Python, whose networks and paths are objects a checkpoint does not hold.

    Returns:
        The module in evaluation mode, with ``event_shape`` and the sampler preset of training:
        ``module.generate(num)`` samples it.

    Raises:
        CheckpointError: a missing or unreadable file, or one that needs ``arguments`` it lacks.
    """
    path = Path(ckpt)
    if weights not in ("ema", "raw"):
        raise ArgumentError(f"weights must be 'ema' or 'raw'; got {weights!r}")
    data, checkpoint = read_checkpoint(path)
    cls = _module_class(path, checkpoint)
    missing = [k for k in (checkpoint.get("flowbridge") or {}).get("missing_arguments", []) if k not in arguments]
    if missing:
        raise CheckpointError(
            f"{path}: this module was built in Python, and its checkpoint holds no {', '.join(missing)}; "
            f"pass them: flowbridge.load(path, {', '.join(f'{k}=...' for k in missing)})"
        )
    try:
        module = cls.load_from_checkpoint(io.BytesIO(data), map_location=map_location, weights_only=True, **arguments)
    except Exception as exc:
        raise CheckpointError(f"{path}: could not rebuild {cls.__name__} ({type(exc).__name__}: {_first_line(exc)})") from exc
    if weights == "raw":
        if "current_model_state" not in checkpoint:
            raise CheckpointError(f"{path}: holds one set of weights (trained without EMA); use weights='ema'")
        module.load_state_dict(checkpoint["current_model_state"])
    return module.eval()


def load_datamodule(ckpt: str | Path) -> Any:
    """Rebuilds the checkpoint's data module (for data-to-data sampling and plots), or None if not stored.

    Only :class:`~flowbridge.training.GenerativeDataModule` subclasses that are already imported are
    accepted, so a checkpoint cannot make this import or run arbitrary code.
    """
    import importlib

    from flowbridge.training.data import GenerativeDataModule

    for package in DATA_PACKAGES:
        importlib.import_module(package)
    _, checkpoint = read_checkpoint(ckpt)
    hparams = checkpoint.get("datamodule_hyper_parameters") or {}
    module_name, _, name = str(hparams.get("_class_path", "")).rpartition(".")
    cls = getattr(sys.modules.get(module_name), name, None) if module_name.startswith("flowbridge.") else None
    if not (isinstance(cls, type) and issubclass(cls, GenerativeDataModule)):
        return None
    kwargs = {k: v for k, v in hparams.items() if not k.startswith("_")}
    return cls(**kwargs)
