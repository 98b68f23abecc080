"""The ``flowbridge`` command: LightningCLI's ``fit | validate | test | predict`` plus ``sample``.

::

    flowbridge fit --config models/fm_moons.yaml [--config samplers/heun.yaml] [--trainer.max_steps 500]
    flowbridge fit --config models/fm_moons.yaml --print_config
    flowbridge sample --ckpt last.ckpt [--config samplers/rk4.yaml | --solver heun --steps 20] \\
        --num 2000 --out samples.pt --plot samples.png --seed 0

Repeated ``--config`` files are merged in order, so a model recipe composes with a sampler preset
(which sets ``model.sampler``). Configuration mistakes (an unknown key, an unknown ``class_path``,
a wrong type, unusable data) stop before training with one line naming the key or file.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.profilers import PassThroughProfiler

from flowbridge.training.data import DataError, GenerativeDataModule
from flowbridge.training.module import GenerativeModule, SamplerConfig
from flowbridge.training.profiling import NoOpProfiler


class ConfigError(ValueError):
    """A configuration problem, reported as one line by :func:`main`."""


_KEY = re.compile(r'^(?:Parser key|Key) "([^"]+)":?\s*(.*)$')
_CLASS_PATH = re.compile(r"^Problem with given class_path '([^']+)':?$")
_META = ("Subtypes:", "Errors:", "Given value", "Does not validate against any of the Union subtypes")


def condense_error(message: str) -> str:
    """Turns jsonargparse's nested message into one line: the full key path and the innermost reason.

    jsonargparse writes one indented ``Parser key "..."`` paragraph per nesting level and, for
    unions, lists every alternative's failure. The user needs the joined key (``model.net.hidden``)
    and the deepest concrete reason; a reason directly under ``Problem with given class_path`` is an
    import failure and is reported as an unknown class_path.
    """
    keys: list[str] = []
    reason, reason_depth, reason_class = "", -1, None
    pending_class: str | None = None
    for raw in str(message).splitlines():
        text = raw.strip()
        if not text:
            continue
        depth = len(raw) - len(raw.lstrip())
        m = _KEY.match(text)
        if m:
            keys.append(m.group(1))
            pending_class = None
            if m.group(2) and depth >= reason_depth:
                reason, reason_depth, reason_class = m.group(2), depth, None
            continue
        c = _CLASS_PATH.match(text)
        if c:
            pending_class = c.group(1)
            continue
        text = text.lstrip("- ").strip()
        if text.startswith(_META) or "NoneType" in text:
            continue
        if depth > reason_depth:
            reason, reason_depth, reason_class = text, depth, pending_class
    if not reason:
        lines = [ln.strip() for ln in str(message).splitlines() if ln.strip()]
        reason = lines[-1] if lines else str(message)
    if reason_class is not None:
        reason = f"unknown class_path {reason_class!r} ({reason})"
    key = ".".join(keys)
    return f"{key}: {reason}" if key else reason


class FlowbridgeCLI(LightningCLI):
    """LightningCLI over :class:`GenerativeModule` and any :class:`GenerativeDataModule`."""

    def instantiate_classes(self) -> None:
        try:
            super().instantiate_classes()
        except (ValueError, TypeError) as exc:
            if isinstance(exc, DataError):
                raise
            raise ConfigError(condense_error(str(exc))) from exc
        if type(self.trainer.profiler) is PassThroughProfiler:
            self.trainer.profiler = NoOpProfiler()
        # Checkpoints go to <default_root_dir>/checkpoints rather than into the logger's new
        # version folder, so that `--ckpt_path last` finds the interrupted run's last.ckpt.
        for cb in self.trainer.checkpoint_callbacks:
            if isinstance(cb, ModelCheckpoint) and cb.dirpath is None:
                cb.dirpath = os.path.realpath(os.path.join(self.trainer.default_root_dir, "checkpoints"))


def _config_files(args: Sequence[str]) -> list[Path]:
    files, it = [], iter(args)
    for a in it:
        if a == "--config":
            files.append(Path(next(it, "")))
        elif a.startswith("--config="):
            files.append(Path(a.split("=", 1)[1]))
    return files


def check_config_files(args: Sequence[str]) -> None:
    """Raises one :class:`ConfigError` naming the file for a ``--config`` that is unreadable, not YAML,
    empty, or not a mapping of sections (``model:``, ``data:``, ``trainer:``).

    jsonargparse reports these without the file name ("Unexpected config", a line number in
    "<unicode string>") or with a stack trace (bytes that are not UTF-8).
    """
    import yaml

    for path in _config_files(args):
        if not path.is_file():
            continue  # jsonargparse names a missing file itself
        try:
            config = yaml.safe_load(path.read_text())
        except UnicodeDecodeError:
            raise ConfigError(f"--config {path}: not a text (UTF-8) YAML file") from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            raise ConfigError(f"--config {path}: invalid YAML{where} ({getattr(exc, 'problem', None) or exc})") from None
        if config is None:
            raise ConfigError(f"--config {path}: the file is empty; expected sections such as model:, data:, trainer:")
        if not isinstance(config, dict):
            raise ConfigError(
                f"--config {path}: expected a mapping of sections (model:, data:, trainer:); got a {type(config).__name__}"
            )


def names_module_class(args: Sequence[str]) -> bool:
    """Whether a ``--config`` file picks the LightningModule itself (``model: {class_path: ...}``).

    Recipes for :class:`GenerativeModule` give its arguments directly under ``model:``; recipes for
    other modules (LightSB, DSBM, BFN) name their class, and the CLI then accepts any
    LightningModule / LightningDataModule subclass.
    """
    import yaml

    for path in _config_files(args):
        if path.is_file():
            try:
                config = yaml.safe_load(path.read_text()) or {}
            except yaml.YAMLError:
                continue  # jsonargparse reports the malformed file with its own message
            model = config.get("model") if isinstance(config, dict) else None
            if isinstance(model, dict) and "class_path" in model:
                return True
    return False


def build_cli(args: Sequence[str], *, run: bool = True) -> FlowbridgeCLI:
    """Builds (and with ``run`` executes) the LightningCLI for ``args`` (raises instead of exiting)."""
    from lightning.pytorch import LightningDataModule, LightningModule

    # LightningCLI warns when given args that merely repeat the command line.
    given = None if list(args) == sys.argv[1:] else list(args)
    any_module = names_module_class(args)
    return FlowbridgeCLI(
        LightningModule if any_module else GenerativeModule,
        LightningDataModule if any_module else GenerativeDataModule,
        subclass_mode_model=any_module,
        subclass_mode_data=True,
        args=given,
        run=run,
        save_config_kwargs={"overwrite": True},
        parser_kwargs={"exit_on_error": False} if not run else _subcommand_parser_kwargs(),
        auto_configure_optimizers=False,
    )


def _subcommand_parser_kwargs() -> dict[str, Any]:
    kw = {"exit_on_error": False}
    return {name: dict(kw) for name in ("fit", "validate", "test", "predict")} | kw


def load_module(ckpt: str | Path, map_location: str | torch.device = "cpu") -> GenerativeModule:
    """Loads a trained :class:`GenerativeModule` (its EMA weights, where EMA was used) from a checkpoint."""
    path = Path(ckpt)
    if not path.is_file():
        raise ConfigError(f"--ckpt {path}: no such checkpoint")
    try:
        return GenerativeModule.load_from_checkpoint(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # truncated, corrupt or another kind of file: one line naming it
        raise ConfigError(f"--ckpt {path}: not a readable flowbridge checkpoint ({type(exc).__name__}: {_first_line(exc)})") from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else ""


def load_datamodule(ckpt: str | Path) -> GenerativeDataModule | None:
    """Rebuilds the checkpoint's data module (for data-to-data sampling), or None if not stored.

    Only subclasses of :class:`GenerativeDataModule` that are already imported are accepted, so a
    checkpoint cannot make this import or run arbitrary code.
    """
    from flowbridge import training

    try:
        checkpoint = torch.load(ckpt, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ConfigError(f"--ckpt {ckpt}: not a readable checkpoint ({type(exc).__name__}: {_first_line(exc)})") from exc
    if not isinstance(checkpoint, dict):
        raise ConfigError(f"--ckpt {ckpt}: not a Lightning checkpoint (a {type(checkpoint).__name__}, not a dict)")
    hparams = checkpoint.get("datamodule_hyper_parameters") or {}
    class_path = hparams.get("_class_path", "")
    cls = getattr(training, class_path.rsplit(".", 1)[-1], None) if class_path.startswith("flowbridge.training.") else None
    if not (isinstance(cls, type) and issubclass(cls, GenerativeDataModule)):
        return None
    kwargs = {k: v for k, v in hparams.items() if not k.startswith("_")}
    return cls(**kwargs)


def read_sampler_preset(path: str | Path) -> SamplerConfig:
    """Reads ``model.sampler`` from a ``samplers/*.yaml`` preset."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"--config {p}: no such file")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--config {p}: not valid YAML ({_first_line(exc)})") from exc
    model = data.get("model") if isinstance(data, dict) else None
    section = model.get("sampler") if isinstance(model, dict) else None
    if not isinstance(section, dict):
        raise ConfigError(f"--config {p}: expected a sampler preset with a 'model: sampler:' section")
    unknown = set(section) - {"solver", "steps", "grid", "options", "guidance"}
    if unknown:
        raise ConfigError(f"{p}: model.sampler: unknown keys {sorted(unknown)}")
    try:
        return SamplerConfig(**section)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{p}: model.sampler: {exc}") from exc


def sample_command(argv: Sequence[str]) -> int:
    """``flowbridge sample``: draws samples from a checkpoint and saves them (and a plot)."""
    parser = argparse.ArgumentParser(prog="flowbridge sample", description="Sample a trained model.")
    parser.add_argument("--ckpt", required=True, help="checkpoint written by `flowbridge fit`")
    parser.add_argument("--config", help="sampler preset (samplers/*.yaml)")
    parser.add_argument("--solver", help="solver name (overrides the preset)")
    parser.add_argument("--steps", type=int, help="number of steps (overrides the preset)")
    parser.add_argument("--num", type=int, default=2000, help="number of samples")
    parser.add_argument("--out", default="samples.pt", help="where to save the samples (.pt)")
    parser.add_argument("--plot", help="optional PNG: a scatter plot (2-D) or an image grid")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--guidance", type=float, help="classifier-free guidance weight")
    parser.add_argument("--label", type=int, help="one class for all samples (default: cycle through classes)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(list(argv))
    if args.num < 1:
        raise ConfigError(f"--num must be positive; got {args.num}")
    module = load_module(args.ckpt, args.device).eval()
    cfg = read_sampler_preset(args.config) if args.config else module.sampler_config
    try:
        cfg = SamplerConfig(
            solver=args.solver or cfg.solver, steps=args.steps or cfg.steps, grid=cfg.grid, options=cfg.options,
            guidance=cfg.guidance if args.guidance is None else args.guidance,
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    module.sampler_config = cfg
    labels = None
    if module.null_label is not None:
        labels = torch.full((args.num,), args.label) if args.label is not None else torch.arange(args.num) % module.null_label
    x0 = None
    if module.hparams.get("denoiser") is not None or type(module.path).__name__ == "StochasticInterpolant":
        dm = load_datamodule(args.ckpt)
        if dm is None:
            raise ConfigError(f"{args.ckpt}: a data-to-data model needs its source data, but the checkpoint stores no data module")
        dm.setup("predict")
        src = dm.source_reference()
        x0 = src[torch.arange(args.num) % src.shape[0]]
    g = torch.Generator(device=args.device).manual_seed(args.seed)
    with torch.no_grad():
        x = module.generate(args.num, generator=g, labels=labels, x0=x0, progress=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"x": x.cpu(), "y": None if labels is None else labels.cpu(), "solver": cfg.solver, "steps": cfg.steps}, out)
    print(f"saved {args.num} samples ({cfg.solver}, {cfg.steps} steps) to {out}")
    if args.plot:
        from flowbridge import viz

        xs = x.cpu().float()
        fig = viz.plot_samples(xs) if xs.ndim == 2 and xs.shape[1] == 2 else viz.image_grid(xs[:100], nrow=10)
        print(f"saved plot to {viz.save_figure(fig, args.plot)}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``flowbridge`` and ``python -m flowbridge``; returns the exit status."""
    from jsonargparse import ArgumentError

    args = list(sys.argv[1:] if argv is None else argv)
    try:
        if args and args[0] == "sample":
            return sample_command(args[1:])
        check_config_files(args)
        build_cli(args)
    except ArgumentError as exc:
        print(f"flowbridge: error: {condense_error(str(exc))}", file=sys.stderr)
        return 2
    except (ConfigError, DataError) as exc:
        print(f"flowbridge: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
