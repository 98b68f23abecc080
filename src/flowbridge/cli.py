"""The ``flowbridge`` command: ``fit``, ``validate``, ``predict`` (Lightning's CLI), ``sample`` and ``tune``.

::

    flowbridge fit --config models/fm_moons.yaml [--config samplers/heun.yaml] [--trainer.max_steps 500]
    flowbridge fit --config models/fm_moons.yaml --ckpt_path last          # resume (after Ctrl-C too)
    flowbridge validate --config models/fm_moons.yaml --ckpt_path last
    flowbridge predict --config models/fm_moons.yaml --ckpt_path last      # samples through the Trainer
    flowbridge sample --ckpt outputs/fm_moons/checkpoints/last.ckpt [--config samplers/rk4.yaml] \\
        --num 2000 --out samples.pt --plot samples.png --seed 0
    flowbridge tune --ckpt outputs/fm_moons/checkpoints/last.ckpt --nfe 10 [--solver plms] --out tuned.yaml
    flowbridge sample --ckpt outputs/fm_moons/checkpoints/last.ckpt --config tuned.yaml   # the tuned solver

Repeated ``--config`` files are merged in order, so a model recipe composes with a sampler preset
(which sets ``model.sampler``). ``flowbridge tune`` fits a multistep solver's time grid and
history weights to a checkpoint at a fixed NFE (:mod:`flowbridge.samplers.tuning`) and writes them as
such a preset, its grid a list of times. Mistakes (an unknown key or ``class_path``, a wrong type, unusable
data, a missing checkpoint) stop with one line naming the key or file. Non-interactive runs (a log
file, CI) print a progress line every tenth of the run instead of redrawing a bar; Ctrl-C writes a
checkpoint that ``--ckpt_path last`` resumes.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import re
import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.callbacks import Checkpoint, ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.profilers import PassThroughProfiler

from flowbridge.errors import ConfigError
from flowbridge.samplers import SOLVERS, get_solver
from flowbridge.samplers.grids import GRIDS
from flowbridge.samplers.presets import load_preset
from flowbridge.training.base import SamplerConfig
from flowbridge.training.checkpoints import CheckpointError, load, load_datamodule
from flowbridge.training.data import DataError, GenerativeDataModule
from flowbridge.training.interrupt import SaveOnInterrupt, TrainingInterrupted
from flowbridge.training.module import GenerativeModule
from flowbridge.training.profiling import NoOpProfiler
from flowbridge.training.progress import LogProgress, format_seconds
from flowbridge.training.threads import IntraOpThreads

COMMANDS = {
    "fit": "train a model from a recipe (models/*.yaml); --ckpt_path last resumes",
    "validate": "score a checkpoint on held-out data (the recipe's metrics)",
    "predict": "draw samples through the Trainer (any devices) and save them",
    "sample": "draw samples from a checkpoint with any solver; save them and a plot",
    "tune": "fit a multistep solver's grid and weights to a checkpoint at a fixed NFE; save the preset",
}




# --------------------------------------------------------------------------------------------------
# one-line errors
# --------------------------------------------------------------------------------------------------
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


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


# --------------------------------------------------------------------------------------------------
# quiet runs
# --------------------------------------------------------------------------------------------------
#: Third-party warnings a flowbridge run cannot act on (each is filtered by its exact message).
QUIET_WARNINGS = (
    # torch >= 2.10 deprecates a pytree check that Lightning's CombinedLoader still uses on every loader.
    r".*isinstance\(treespec, LeafSpec\)` is deprecated",
    # build_cli(args) is how Python code runs the CLI; Lightning warns when sys.argv is not empty too.
    r"LightningCLI's args parameter is intended to run from within Python",
)


@contextmanager
def quiet() -> Iterator[None]:
    """Lightning's info messages (device lists, tips, seeds) off, the known third-party warnings filtered.

    ``FLOWBRIDGE_VERBOSE=1`` keeps Lightning's messages.
    """
    verbose = os.environ.get("FLOWBRIDGE_VERBOSE", "") not in ("", "0")
    loggers = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric")]
    levels = [lg.level for lg in loggers]
    if not verbose:
        for lg in loggers:
            lg.setLevel(logging.WARNING)
    with warnings.catch_warnings():
        for pattern in QUIET_WARNINGS:
            warnings.filterwarnings("ignore", message=pattern)
        try:
            yield
        finally:
            for lg, level in zip(loggers, levels):
                lg.setLevel(level)


def interactive() -> bool:
    """Whether progress goes to a terminal (else: one line every so often, for logs and CI)."""
    return sys.stderr.isatty() and sys.stdout.isatty()


# --------------------------------------------------------------------------------------------------
# the Lightning CLI
# --------------------------------------------------------------------------------------------------
class FlowbridgeCLI(LightningCLI):
    """LightningCLI over flowbridge's modules and data modules.

    Adds ``--threads`` and, around the Trainer: a CSV logger by default (``metrics.csv``), a
    line-per-interval progress printer when the output is not a terminal, :class:`SaveOnInterrupt`,
    CPU thread selection, checkpoints in ``<default_root_dir>/checkpoints``, a refused
    ``--ckpt_path`` when it names nothing, and a summary of where the outputs went.
    """

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        # No `test`: flowbridge's modules are scored by `validate`.
        return {k: v for k, v in LightningCLI.subcommands().items() if k != "test"}

    def add_arguments_to_parser(self, parser: Any) -> None:
        parser.add_argument(
            "--threads", type=int | None, default=None,
            help="CPU threads for this run (default: chosen from the model's work per step; OMP_NUM_THREADS wins)",
        )

    def section(self, name: str) -> Any:
        """The instantiated config section ``name`` of this run (``trainer``, ``threads``, ...)."""
        config = self.config_init.get(self.subcommand) if self.subcommand else self.config_init
        return config.get(name) if config is not None else None

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

    def instantiate_trainer(self, **kwargs: Any) -> Any:
        trainer_cfg = self.section("trainer") or {}
        if trainer_cfg.get("logger") in (None, True) and "logger" not in kwargs:
            from lightning.pytorch.loggers import CSVLogger

            root = trainer_cfg.get("default_root_dir") or os.getcwd()
            kwargs["logger"] = CSVLogger(save_dir=root)
        callbacks = list(trainer_cfg.get("callbacks") or [])
        extra: list[Any] = [IntraOpThreads(self.section("threads"), verbose=self.subcommand is not None)]
        if self.subcommand in (None, "fit"):
            extra.append(SaveOnInterrupt())
        if trainer_cfg.get("enable_progress_bar") is not False and not interactive():
            if not any(isinstance(cb, (TQDMProgressBar, LogProgress)) or type(cb).__name__.endswith("ProgressBar") for cb in callbacks):
                extra.append(LogProgress())
        if self.subcommand in ("validate", "predict"):
            # Outside fitting an EMA callback has nothing to average (the checkpoint's weights are
            # the average already); Lightning's would warn about it.
            from lightning.pytorch.callbacks import WeightAveraging

            callbacks = [cb for cb in callbacks if not isinstance(cb, WeightAveraging)]
        # Checkpoint callbacks stay last (Lightning reorders them after the others anyway).
        first_checkpoint = next((i for i, cb in enumerate(callbacks) if isinstance(cb, Checkpoint)), len(callbacks))
        kwargs["callbacks"] = callbacks[:first_checkpoint] + extra + callbacks[first_checkpoint:]
        return super().instantiate_trainer(**kwargs)

    # -- before / after the subcommands --------------------------------------------------------------
    def check_ckpt_path(self) -> None:
        """Refuses a ``--ckpt_path`` that names nothing (Lightning would warn and start from scratch)."""
        ckpt_path = self.config[self.subcommand].get("ckpt_path") if self.subcommand else None
        if ckpt_path is None or ckpt_path in ("best", "hpc"):
            return
        if ckpt_path == "last":
            folders = [str(cb.dirpath) for cb in self.trainer.checkpoint_callbacks if isinstance(cb, ModelCheckpoint) and cb.dirpath]
            found = [f for d in folders if os.path.isdir(d) for f in os.listdir(d) if re.match(r"^last(-v?\d+)?\.ckpt$", f)]
            if not found:
                where = ", ".join(folders) or "(checkpointing is disabled)"
                raise ConfigError(f"--ckpt_path last: no last.ckpt in {where}; train without --ckpt_path first, "
                                  "or give the checkpoint's path")
            return
        if not os.path.isfile(ckpt_path):
            raise ConfigError(f"--ckpt_path {ckpt_path}: no such checkpoint")

    def outputs(self) -> dict[str, str]:
        """Where this run writes: checkpoints, metrics, plots."""
        out: dict[str, str] = {}
        trainer = self.trainer
        for cb in trainer.checkpoint_callbacks:
            if isinstance(cb, ModelCheckpoint) and cb.dirpath:
                out["checkpoints"] = str(cb.dirpath)
                break
        if trainer.loggers:
            log_dir = trainer.log_dir or trainer.default_root_dir
            out["logs"] = str(log_dir)
        return out

    def announce(self, verb: str) -> None:
        if not self.trainer.is_global_zero:
            return
        model, data = type(self.model).__name__, getattr(self.datamodule, "name", type(self.datamodule).__name__)
        params = sum(p.numel() for p in self.model.parameters())
        steps = self.trainer.max_steps
        length = f"{steps} steps" if steps and steps > 0 else f"{self.trainer.max_epochs} epochs"
        device = self.trainer.strategy.root_device
        precision = self.trainer.precision
        print(f"flowbridge {verb}: {model} ({params / 1e6:.2g}M parameters) on {data}"
              + (f", {length}" if verb == "fit" else "") + f", {device}, precision {precision}", flush=True)
        where = self.outputs()
        if where:
            print("outputs: " + "; ".join(f"{k} in {v}" for k, v in where.items()), flush=True)

    def before_fit(self) -> None:
        self.check_ckpt_path()
        self.announce("fit")
        self.started = time.monotonic()

    def after_fit(self) -> None:
        if not self.trainer.is_global_zero:
            return
        from flowbridge.training.callbacks import SamplePlot
        from flowbridge.training.interrupt import last_checkpoint_path

        lines = [f"done: {self.trainer.global_step} steps in {format_seconds(time.monotonic() - self.started)}"]
        last = last_checkpoint_path(self.trainer)
        if last and os.path.isfile(last):
            lines.append(f"checkpoint: {last}")
        for logger in self.trainer.loggers:
            metrics = Path(logger.log_dir or "") / "metrics.csv" if hasattr(logger, "log_dir") else None
            if metrics is not None and metrics.is_file():
                lines.append(f"metrics: {metrics}")
        plots = [str(p) for cb in self.trainer.callbacks if isinstance(cb, SamplePlot) for p in (cb.final_path, cb.curves_path) if p]
        if plots:
            lines.append("plots: " + ", ".join(plots))
        if last and os.path.isfile(last):
            lines.append(f"sample it: flowbridge sample --ckpt {last} --plot samples.png")
        print("\n".join(lines), flush=True)

    def before_validate(self) -> None:
        self.check_ckpt_path()
        self.announce("validate")

    def before_predict(self) -> None:
        self.check_ckpt_path()
        self.announce("predict")

    def predict(self, **kwargs: Any) -> Any:
        """Runs ``Trainer.predict`` and saves the samples to ``<default_root_dir>/predictions[_rankR].pt``."""
        predictions = self.trainer.predict(**kwargs)
        if predictions:
            x = torch.cat([p.detach().cpu() for p in predictions])
            rank = self.trainer.global_rank
            name = "predictions.pt" if self.trainer.world_size == 1 else f"predictions_rank{rank}.pt"
            path = Path(self.trainer.default_root_dir) / name
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.save({"x": x}, path)
            print(f"saved {x.shape[0]} samples to {path}", flush=True)
        return predictions


# --------------------------------------------------------------------------------------------------
# configuration files
# --------------------------------------------------------------------------------------------------
def _config_files(args: Sequence[str]) -> list[Path]:
    files, it = [], iter(args)
    for a in it:
        if a in ("--config", "-c"):
            files.append(Path(next(it, "")))
        elif a.startswith("--config="):
            files.append(Path(a.split("=", 1)[1]))
    return files


def check_config_files(args: Sequence[str]) -> None:
    """Raises one :class:`ConfigError` naming the file for a ``--config`` that is missing, unreadable,
    not YAML, empty, or not a mapping of sections (``model:``, ``data:``, ``trainer:``).

    jsonargparse reports these without the file name ("Unexpected config", a line number in
    "<unicode string>") or with a stack trace (bytes that are not UTF-8).
    """
    import yaml

    for path in _config_files(args):
        if not path.is_file():
            raise ConfigError(f"--config {path}: no such file")
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
                continue  # reported by check_config_files
            model = config.get("model") if isinstance(config, dict) else None
            if isinstance(model, dict) and "class_path" in model:
                return True
    return any(a.startswith("--model.class_path") or a == "--model" for a in args)


def build_cli(args: Sequence[str], *, run: bool = True) -> FlowbridgeCLI:
    """Builds (and with ``run`` executes) the LightningCLI for ``args`` (raises instead of exiting)."""
    from lightning.pytorch import LightningDataModule, LightningModule

    # The modules a recipe may name by class_path are importable without it naming their package.
    import flowbridge.bfn.module  # noqa: F401
    import flowbridge.bridges.lightning  # noqa: F401

    any_module = names_module_class(args)
    with quiet():
        return FlowbridgeCLI(
            LightningModule if any_module else GenerativeModule,
            LightningDataModule if any_module else GenerativeDataModule,
            subclass_mode_model=any_module,
            subclass_mode_data=True,
            args=list(args),
            run=run,
            save_config_kwargs={"overwrite": True},
            parser_kwargs={"exit_on_error": False} if not run else _subcommand_parser_kwargs(),
            auto_configure_optimizers=False,
        )


def _subcommand_parser_kwargs() -> dict[str, Any]:
    kw = {"exit_on_error": False}
    return {name: dict(kw) for name in FlowbridgeCLI.subcommands()} | kw


def load_module(ckpt: str | Path, map_location: str | torch.device = "cpu") -> Any:
    """Loads any module ``flowbridge fit`` trained (its EMA weights, where EMA was used): :func:`flowbridge.load`."""
    try:
        return load(ckpt, map_location)
    except CheckpointError as exc:
        raise ConfigError(f"--ckpt {exc}") from exc


# --------------------------------------------------------------------------------------------------
# help
# --------------------------------------------------------------------------------------------------
def top_help() -> str:
    from flowbridge import __version__

    width = max(len(c) for c in COMMANDS)
    lines = [
        "usage: flowbridge [--version] [--help] COMMAND [options]",
        "",
        f"flowbridge {__version__}: train diffusion, flow-matching, interpolant, Schrödinger-bridge and BFN models",
        "from YAML recipes (models/*.yaml) and sample them with any solver (presets in samplers/*.yaml).",
        "",
        "commands:",
        *(f"  {name:<{width}}  {text}" for name, text in COMMANDS.items()),
        "",
        "Run `flowbridge COMMAND --help` for a command's options, e.g. `flowbridge fit --help`.",
    ]
    return "\n".join(lines)


def _plain_text(text: str) -> str:
    """Docstring markup (``code``, :math:`x`, :class:`~a.B`) as plain text."""
    text = re.sub(r":\w+:`~?([^`]*)`", lambda m: m.group(1).rsplit(".", 1)[-1] if "." in m.group(1) and " " not in m.group(1) else m.group(1), text)
    return text.replace("``", "").replace("\\", "\\")


def _doc_args(cls: type) -> list[tuple[str, str]]:
    """(name, description) from a Google-style ``Args:`` section (continuation lines joined)."""
    doc = inspect_doc(cls).splitlines()
    out: list[tuple[str, str]] = []
    inside, indent = False, None
    for line in doc:
        stripped = line.strip()
        if stripped == "Args:":
            inside = True
            continue
        if not inside:
            continue
        if not stripped:
            if out:
                break
            continue
        depth = len(line) - len(line.lstrip())
        m = re.match(r"^([A-Za-z_][\w, ]*):\s*(.*)$", stripped)
        if m and (indent is None or depth <= indent):
            indent = depth
            out.append((m.group(1), m.group(2)))
        elif out and indent is not None and depth > indent:
            out[-1] = (out[-1][0], f"{out[-1][1]} {stripped}")
        else:
            break
    return [(name, _plain_text(text)) for name, text in out]


def inspect_doc(cls: type) -> str:
    import inspect

    return inspect.getdoc(cls) or ""


def command_help(command: str, topic: str | None = None, model_class: str | None = None) -> str | None:
    """The short help of ``fit``/``validate``/``predict`` (``topic``: ``model`` or ``trainer``); None for
    ``--help all`` (Lightning's full reference)."""
    if topic == "all":
        return None
    if topic == "trainer":
        from jsonargparse import ArgumentParser
        from lightning.pytorch import Trainer

        parser = ArgumentParser(prog=f"flowbridge {command}", description="Every Lightning Trainer flag, as --trainer.FLAG VALUE.")
        parser.add_class_arguments(Trainer, "trainer", skip={"callbacks", "plugins", "logger"})
        return parser.format_help()
    if topic in ("model", "data"):
        import flowbridge.bfn.module as bfn_module
        import flowbridge.bridges.lightning as bridges
        from flowbridge import training

        classes: dict[str, type] = {
            "GenerativeModule": GenerativeModule, "BFNModule": bfn_module.BFNModule,
            "LightSBModule": bridges.LightSBModule, "DSBMModule": bridges.DSBMModule,
        } if topic == "model" else {
            name: getattr(training, name) for name in ("Toy2D", "Mixture", "Digits", "TensorFile", "ImageFolder", "PairedToy")
        } | {"GaussianPairData": bridges.GaussianPairData}
        chosen = [model_class] if model_class else list(classes)
        unknown = [c for c in chosen if c not in classes]
        if unknown:
            raise ConfigError(f"--help {topic}: unknown class {unknown[0]!r}; known: {', '.join(classes)}")
        lines = []
        for name in chosen:
            cls = classes[name]
            summary = _plain_text(inspect_doc(cls).splitlines()[0])
            lines += [f"{cls.__module__}.{name}: {summary}"]
            args = _doc_args(cls)
            width = max((len(a) for a, _ in args), default=0)
            lines += [f"  --{topic}.{a:<{width}}  {d}" for a, d in args] + [""]
        prefix = "GenerativeModule's arguments go directly under model:; other modules are named by model.class_path."
        return "\n".join(([prefix, ""] if topic == "model" else []) + lines).rstrip()
    what = {"fit": "Train a model from a recipe.", "validate": "Score a checkpoint on the recipe's held-out data.",
            "predict": "Draw the recipe's data.predict_samples samples from a checkpoint through the Trainer and save them."}[command]
    lines = [
        f"usage: flowbridge {command} --config RECIPE [--config PRESET ...] [--KEY VALUE ...]",
        "",
        what + " Repeated --config files are merged in order; any key can be overridden on the command line.",
        "",
        "options:",
        "  --config FILE            a recipe (models/*.yaml) or a sampler preset (samplers/*.yaml); repeatable",
        "  --ckpt_path PATH|last    " + ("resume from a checkpoint; `last`: the run's last.ckpt (also after Ctrl-C)"
                                          if command == "fit" else "the checkpoint to use; `last`: the run's last.ckpt"),
        "  --print_config           print the merged configuration and exit",
        "  --seed_everything N      the global seed",
        "  --threads N              CPU threads (default: chosen from the model's work per step)",
        "  --model.KEY VALUE        an argument of the model, e.g. --model.optimizer.init_args.lr 0.001",
        "  --data.KEY VALUE         an argument of the data, e.g. --data.batch_size 128",
        "  --trainer.FLAG VALUE     a Lightning Trainer flag, e.g.",
        "      --trainer.max_steps N                 training length (LR schedules and EMA follow it)",
        "      --trainer.accelerator auto|cpu|gpu    --trainer.devices N    --trainer.strategy ddp",
        "      --trainer.precision 32-true|bf16-mixed|16-mixed",
        "      --trainer.default_root_dir DIR        where checkpoints, metrics.csv and plots go",
        "      --trainer.log_every_n_steps N         --trainer.gradient_clip_val X",
        "      --trainer.accumulate_grad_batches N   --trainer.profiler simple|advanced",
        "",
        "more:",
        f"  flowbridge {command} --help model [CLASS]   the arguments of GenerativeModule, BFNModule, LightSBModule, DSBMModule",
        f"  flowbridge {command} --help data [CLASS]    the arguments of the data modules",
        f"  flowbridge {command} --help trainer         every Trainer flag",
        f"  flowbridge {command} --help all             Lightning's full reference (long)",
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# flowbridge sample
# --------------------------------------------------------------------------------------------------
def read_sampler_preset(path: str | Path, base: SamplerConfig | None = None) -> SamplerConfig:
    """Reads ``model.sampler`` from a preset (``samplers/*.yaml`` or a ``flowbridge tune`` output) through
    :func:`~flowbridge.samplers.presets.load_preset` and applies it on top of ``base``.

    The preset's keys replace the module's (its options too, not merged); a preset naming another
    solver starts from no options (they are the keyword arguments of the solver they were written for).

    Raises:
        ConfigError: one line naming the file (and the key) for a file :func:`load_preset` refuses or a
            section the module's :class:`SamplerConfig` refuses.
    """
    try:
        section = load_preset(path)
    except ConfigError as exc:
        raise ConfigError(f"--config {exc}") from None
    try:
        if base is None:
            return SamplerConfig(**section)
        if section.get("solver", base.solver) != base.solver:
            section = {"options": {}, **section}
        import dataclasses

        return dataclasses.replace(base, **section)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"--config {path}: model.sampler: {_first_line(exc)}") from None


#: ``generate``'s own arguments: never solver options (``--option steps=3`` would silently override ``--steps``).
_NOT_OPTIONS = frozenset({"num", "x0", "labels", "generator", "seeds", "seed", "solver", "steps", "grid", "grid_options",
                          "t_span", "batch_size", "guidance", "progress", "shape", "dtype", "device", "callback", "method"})


def parse_t_span(values: Sequence[str]) -> tuple[float, float]:
    """``--t_span T0 T1`` or ``--t_span=T0,T1`` -> ``(T0, T1)``, two finite times with ``0 <= T0 < T1 <= 1``."""
    parts = [p for v in values for p in v.replace(",", " ").split()]
    try:
        t0, t1 = (float(p) for p in parts)
    except ValueError:
        raise ConfigError(f"--t_span: expected two times T0 T1 (or T0,T1); got {' '.join(values)!r}") from None
    if not 0.0 <= t0 < t1 <= 1.0:
        raise ConfigError(f"--t_span: expected 0 <= T0 < T1 <= 1; got {t0:g} {t1:g}")
    return t0, t1


def parse_options(pairs: Sequence[str]) -> dict[str, Any]:
    """``--option key=value`` (repeatable) -> ``{key: value}``, each value read as a YAML scalar."""
    import yaml

    options: dict[str, Any] = {}
    for pair in pairs:
        key, eq, text = pair.partition("=")
        key = key.strip()
        if not eq or not key.isidentifier():
            raise ConfigError(f"--option: expected key=value with a solver option name as key; got {pair!r}")
        if key in _NOT_OPTIONS:
            flag = {"labels": "label", "generator": "seed", "seeds": "seed", "method": "solver", "num": "num"}.get(key, key)
            raise ConfigError(f"--option {key}: not a solver option; use --{flag}")
        try:
            value = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError as exc:
            raise ConfigError(f"--option {key}: value {text!r} is not a YAML scalar ({_first_line(exc)})") from None
        if isinstance(value, str):  # YAML 1.1 reads 1e-5 (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, (dict, list)):
            raise ConfigError(f"--option {key}: value {text!r} must be a scalar (number, string, true/false, null)")
        options[key] = value
    return options


def solver_name_of(solver: str | None, cfg: SamplerConfig) -> str:
    """The solver a run uses: ``--solver`` if given, else the preset's."""
    return solver if solver is not None else cfg.solver


def _positive(flag: str, value: int | None) -> None:
    if value is not None and value < 1:
        raise ConfigError(f"{flag} must be a positive integer; got {value}")


class _OneLineParser(argparse.ArgumentParser):
    """argparse that reports a bad flag as ``flowbridge: error: ...`` (exit status 2) and nothing else."""

    def error(self, message: str) -> Any:  # type: ignore[override]
        raise ConfigError(message)


def sample_command(argv: Sequence[str]) -> int:
    """``flowbridge sample``: draws samples from a checkpoint and saves them (and a plot).

    Speaks the sampling vocabulary of ``flowbridge.sample`` (``docs/architecture.md``): ``--solver``,
    ``--steps``, ``--grid``, ``--t_span``, ``--seed``, ``--batch_size`` and solver options
    (``--option key=value``, merged over the preset's ``options``).
    """
    parser = _OneLineParser(prog="flowbridge sample", description="Draw samples from a checkpoint written by `flowbridge fit`.")
    parser.add_argument("--ckpt", required=True, help="checkpoint written by `flowbridge fit` (any model type)")
    parser.add_argument("--config", help="sampler preset (samplers/*.yaml)")
    parser.add_argument("--solver", help="solver name (overrides the preset)")
    parser.add_argument("--steps", type=int, help="number of steps (overrides the preset)")
    parser.add_argument("--grid", help="time grid: uniform, quadratic, logsnr, karras, ... (overrides the preset)")
    parser.add_argument("--t_span", nargs="+", metavar="T", help="T0 T1 (or T0,T1): the time interval to integrate "
                        "(default: the solver's, moved in from an end where it cannot run)")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="a solver option (repeatable; values read as YAML scalars), merged over the preset's options")
    parser.add_argument("--num", type=int, default=2000, help="number of samples (default 2000)")
    parser.add_argument("--batch_size", type=int, help="draw in chunks of at most this many samples (default: all at once)")
    parser.add_argument("--out", default="samples.pt", help="where to save the samples (.pt; default samples.pt)")
    parser.add_argument("--plot", help="optional PNG: a scatter plot over held-out data (2-D) or an image grid")
    parser.add_argument("--seed", type=int, default=0, help="sample i depends only on (seed, i), whatever --batch_size; torchsde:* solvers: one stream for the "
                        "batch (default 0)")
    parser.add_argument("--guidance", type=float, help="classifier-free guidance weight (class-conditional models)")
    parser.add_argument("--label", type=int, help="one class for all samples (default: cycle through the classes)")
    parser.add_argument("--weights", choices=("ema", "raw"), default="ema", help="averaged (default) or raw weights")
    parser.add_argument("--device", default="auto", help="cpu, cuda, ... (default: cuda if available)")
    parser.add_argument("--threads", type=int, help="CPU threads")
    args = parser.parse_args(list(argv))
    if args.num < 1:
        raise ConfigError(f"--num must be positive; got {args.num}")
    _positive("--steps", args.steps)
    _positive("--batch_size", args.batch_size)
    t_span = None if args.t_span is None else parse_t_span(args.t_span)
    options = parse_options(args.option)
    if args.grid is not None and args.grid not in GRIDS:
        raise ConfigError(f"--grid: unknown grid {args.grid!r}; known grids: {', '.join(sorted(GRIDS))}")
    if args.guidance is not None and not math.isfinite(args.guidance):
        raise ConfigError(f"--guidance must be a finite number; got {args.guidance}")
    if args.threads is not None:
        if args.threads < 1:
            raise ConfigError(f"--threads must be positive; got {args.threads}")
    device, module = _load_checkpoint(args)
    cfg = module.sampler_config
    if args.config:
        cfg = read_sampler_preset(args.config, cfg)
    module.sampler_config = cfg
    labels = None
    if module.num_classes is not None:
        if args.label is not None and not 0 <= args.label < module.num_classes:
            raise ConfigError(f"--label must lie in [0, {module.num_classes}); got {args.label}")
        labels = torch.full((args.num,), args.label) if args.label is not None else torch.arange(args.num) % module.num_classes
    elif args.label is not None:
        raise ConfigError(f"--label: {type(module).__name__} is unconditional")
    dm = load_datamodule(args.ckpt)
    x0 = None
    if module.transports_data:
        if dm is None:
            raise ConfigError(f"{args.ckpt}: a data-to-data model needs its source data, but the checkpoint stores no data module")
        dm.setup("predict")
        src = dm.source_reference()
        x0 = src[torch.arange(args.num) % src.shape[0]]
    if options and solver_name_of(args.solver, cfg) in SOLVERS:  # name the flag when an option is wrong
        name = solver_name_of(args.solver, cfg)
        try:
            get_solver(name, **{**(cfg.options if name == cfg.solver else {}), **options})
        except ValueError as exc:
            raise ConfigError(f"--option: {_first_line(exc)}") from None
    # --seed: per-sample streams (sample i depends on (seed, i) only, whatever --batch_size), except for
    # torchsde's solvers, which draw one Brownian path for the whole batch from one torch stream.
    solver_name = solver_name_of(args.solver, cfg)
    noise: dict[str, Any] = (
        {"generator": torch.Generator(device=device).manual_seed(args.seed)} if solver_name.startswith("torchsde:")
        else {"seed": args.seed}
    )
    start = time.perf_counter()
    try:
        with torch.no_grad():
            x = module.generate(args.num, **noise, labels=labels, x0=x0, solver=args.solver, steps=args.steps,
                                grid=args.grid, t_span=t_span, batch_size=args.batch_size, guidance=args.guidance,
                                progress=interactive(), **options)
    except ValueError as exc:  # ArgumentError and CapabilityError (both ValueErrors): one line, all of it
        raise ConfigError(" ".join(line.strip() for line in str(exc).splitlines() if line.strip())) from exc
    used = module.sampler_config.replace(solver=args.solver, steps=args.steps, grid=args.grid)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"x": x.cpu(), "y": None if labels is None else labels.cpu(), "solver": used.solver, "steps": used.steps,
                "grid": used.grid, "t_span": None if t_span is None else list(t_span), "seed": args.seed}, out)
    steps = "" if used.solver == "plan" else f", {used.steps} steps"
    print(f"saved {args.num} samples ({type(module).__name__}, {used.solver}{steps}, {time.perf_counter() - start:.1f} s) to {out}")
    if args.plot:
        print(f"saved plot to {plot_samples_file(x, labels, module, dm, args.plot, used)}")
    return 0


def plot_samples_file(x: torch.Tensor, labels: torch.Tensor | None, module: Any, dm: Any, path: str, cfg: SamplerConfig) -> Path:
    """Saves a scatter plot (over held-out data, first two coordinates) or an image grid of ``x``."""
    from flowbridge import viz

    xs = x.detach().cpu().float()
    title = f"{type(module).__name__}: {cfg.solver}" + ("" if cfg.solver == "plan" else f", {cfg.steps} steps")
    if type(dm).__name__ == "CharText":  # character sequences: show them as text
        from matplotlib.figure import Figure

        from flowbridge.bfn.text import decode

        lines = [repr(decode(row.round().long())) for row in xs[:20]]
        fig = Figure(figsize=(0.11 * max(len(t) for t in lines) + 1, 0.25 * len(lines) + 0.6))
        fig.text(0.02, 0.98, title + "\n\n" + "\n".join(lines), va="top", ha="left", family="monospace", fontsize=9)
        return viz.save_figure(fig, path)
    if xs.ndim == 2 and xs.shape[1] >= 2:
        ref = None
        if dm is not None:
            dm.setup("predict")
            ref = module.as_model_space(dm.reference()).cpu().float()[:, :2]
        return viz.save_figure(viz.plot_samples(xs[:, :2], ref, title=title, labels=("samples", "held-out data")), path)
    if xs.ndim == 4 and xs.shape[1] in (1, 3):
        classes = module.num_classes
        if classes is not None and labels is not None and bool((labels == labels[0]).all()) is False:
            n = min(xs.shape[0], classes * max(1, 100 // classes))
            names = list(getattr(dm, "class_names", None) or []) if dm is not None else []
            columns = [str(n_) for n_ in names] if len(names) == classes else [str(k) for k in range(classes)]
            return viz.save_figure(viz.image_grid(xs[:n], nrow=classes, title=title, column_labels=columns), path)
        return viz.save_figure(viz.image_grid(xs[:100], nrow=10, title=title), path)
    raise ConfigError(f"--plot: samples of shape {tuple(xs.shape[1:])} are neither points nor images")


# --------------------------------------------------------------------------------------------------
# flowbridge tune
# --------------------------------------------------------------------------------------------------
#: ``flowbridge tune``'s default family: plms (order 4) had the smallest tuned error in 10 of the 12
#: cells of ``experiments/results/tuning.md`` (d = 2, 16, 64; NFE 5 to 15).
TUNE_DEFAULT_SOLVER = "plms"


def _load_checkpoint(args: argparse.Namespace) -> tuple[str, Any]:
    """The device (``--device``, ``auto``: cuda if available) and the module of ``--ckpt`` with
    ``--weights``, after setting ``--threads``; a checkpoint that cannot be read is one ConfigError."""
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    try:
        return device, load(args.ckpt, device, weights=args.weights)
    except CheckpointError as exc:
        raise ConfigError(f"--ckpt {exc}") from exc


def tune_command(argv: Sequence[str]) -> int:
    """``flowbridge tune``: fits a multistep solver's grid and history weights to a checkpoint's field
    (:func:`flowbridge.samplers.tuning.tune`) and writes the preset that ``flowbridge sample --config`` reads.

    The states are in the network's dtype (float32 for a trained net; the grid and the multipliers are
    float64 whatever it is). A class-conditional model is tuned on its unconditional (null-label) field.
    """
    from flowbridge.samplers.tuning import TUNABLE, tune

    parser = _OneLineParser(prog="flowbridge tune", description="Tune a solver to a checkpoint at a fixed number of "
                            "field evaluations and save it as a sampler preset for `flowbridge sample --config`.")
    parser.add_argument("--ckpt", required=True, help="checkpoint written by `flowbridge fit` (a model on a Gaussian path)")
    parser.add_argument("--nfe", type=int, default=10, help="the budget: steps, one field evaluation each (default 10)")
    parser.add_argument("--solver", default=TUNE_DEFAULT_SOLVER,
                        help=f"the family to tune: {', '.join(TUNABLE)} (default {TUNE_DEFAULT_SOLVER}, the best in "
                        "experiments/results/tuning.md)")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="a solver option (repeatable; values read as YAML scalars), e.g. order=3")
    parser.add_argument("--grid", help="the initial grid (default: the solver's); its ends are kept")
    # Defaults: the settings of experiments/bench_tuning_digits.py (NFE 10 on the digits UNet in ~3 min on a CPU core).
    parser.add_argument("--num", type=int, default=1024, help="pool of training noises (default 1024)")
    parser.add_argument("--num_val", type=int, help="validation noises, fresh (default: 256, or --num if smaller)")
    parser.add_argument("--minibatch", type=int, default=128, help="training noises per iteration, from the pool (default 128)")
    parser.add_argument("--validate_every", type=int, default=5, help="validate every this many iterations (default 5)")
    parser.add_argument("--patience", type=int, default=30,
                        help="iterations without a better validation error before the step is cut (default 30)")
    parser.add_argument("--max_iters", type=int, default=250, help="most optimiser iterations (default 250; early stopping)")
    parser.add_argument("--reference", default="dpmpp_3m",
                        help="solver of the target endpoints (default dpmpp_3m on a log-SNR grid; dopri5 for an adaptive one)")
    parser.add_argument("--reference_steps", type=int, default=100, help="steps of a fixed-step reference (default 100)")
    parser.add_argument("--lr", type=float, default=0.01, help="Adam's learning rate (default 0.01)")
    parser.add_argument("--out", default="tuned.yaml", help="where to write the preset (default tuned.yaml)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the training and validation noises (default 0)")
    parser.add_argument("--weights", choices=("ema", "raw"), default="ema", help="averaged (default) or raw weights")
    parser.add_argument("--device", default="auto", help="cpu, cuda, ... (default: cuda if available)")
    parser.add_argument("--threads", type=int, help="CPU threads")
    args = parser.parse_args(list(argv))
    for flag, value in (("--nfe", args.nfe), ("--num", args.num), ("--num_val", args.num_val),
                        ("--minibatch", args.minibatch), ("--threads", args.threads), ("--validate_every", args.validate_every),
                        ("--patience", args.patience), ("--reference_steps", args.reference_steps)):
        _positive(flag, value)
    if args.num_val is not None and args.num_val < 2:
        raise ConfigError(f"--num_val must be at least 2; got {args.num_val}")
    if args.max_iters < 0:
        raise ConfigError(f"--max_iters must be a non-negative integer; got {args.max_iters}")
    if not 0.0 < args.lr < math.inf:
        raise ConfigError(f"--lr must be a positive finite number; got {args.lr}")
    if args.reference not in SOLVERS or SOLVERS[args.reference].stochastic:
        raise ConfigError(f"--reference: {args.reference!r} is not a deterministic solver; e.g. dpmpp_3m, rk4, dopri5")
    if args.solver not in TUNABLE:
        raise ConfigError(f"--solver: {args.solver!r} cannot be tuned; tunable solvers: {', '.join(TUNABLE)}")
    if args.grid is not None and args.grid not in GRIDS:
        raise ConfigError(f"--grid: unknown grid {args.grid!r}; known grids: {', '.join(sorted(GRIDS))}")
    options = parse_options(args.option)
    try:
        get_solver(args.solver, **options)
    except ValueError as exc:
        raise ConfigError(f"--option: {_first_line(exc)}") from None
    out = Path(args.out)
    if out.is_dir():
        raise ConfigError(f"--out {out}: is a folder; give a file name such as tuned.yaml")
    device, module = _load_checkpoint(args)
    if not callable(getattr(module, "field", None)) or module.event_shape is None:
        raise ConfigError(f"--ckpt {args.ckpt}: {type(module).__name__} has no field on a Gaussian path to tune a solver to")
    # Only the grid and the multipliers are fitted: the network's weights need no gradient (less work per step).
    module.requires_grad_(False)
    field = module.field()
    start = time.perf_counter()
    try:
        fixed_step = SOLVERS[args.reference].nfe_per_step > 0
        tuned = tune(field, args.solver, args.nfe, shape=(args.num, *module.event_shape),
                     num_val=args.num_val if args.num_val is not None else min(256, args.num),
                     solver_options=options, grid=args.grid, max_iters=args.max_iters, lr=args.lr, patience=args.patience,
                     minibatch=args.minibatch, validate_every=args.validate_every, reference=args.reference,
                     reference_steps=args.reference_steps, reference_grid="logsnr" if fixed_step else "uniform",
                     seed=args.seed, device=device, dtype=module.dtype, progress=True)
    except ValueError as exc:  # ArgumentError and CapabilityError (both ValueErrors): one line, all of it
        raise ConfigError(" ".join(line.strip() for line in str(exc).splitlines() if line.strip())) from exc
    out.parent.mkdir(parents=True, exist_ok=True)
    tuned.save(out)
    r = tuned.report
    assert r is not None  # tune always reports
    print(f"tuned {tuned.solver} at NFE {tuned.steps} ({type(module).__name__}, {r.iterations} iterations, "
          f"{time.perf_counter() - start:.1f} s): validation error {r.untuned_error:.4g} -> {r.tuned_error:.4g}; "
          f"saved to {out} (flowbridge sample --ckpt {args.ckpt} --config {out})")
    return 0


# --------------------------------------------------------------------------------------------------
# entry point
# --------------------------------------------------------------------------------------------------
def _version() -> str:
    import lightning

    from flowbridge import __version__

    return f"flowbridge {__version__} (torch {torch.__version__}, lightning {lightning.__version__})"


def _help_request(args: list[str]) -> tuple[str | None, str | None] | None:
    """(topic, class) when ``args`` ask a fit/validate/predict command for help, else None."""
    for flag in ("--help", "-h"):
        if flag in args:
            i = args.index(flag)
            rest = [a for a in args[i + 1 :] if not a.startswith("-")]
            return (rest[0] if rest else None), (rest[1] if len(rest) > 1 else None)
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``flowbridge`` and ``python -m flowbridge``; returns the exit status."""
    from jsonargparse import ArgumentError
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    from flowbridge.samplers import SamplingError

    args = list(sys.argv[1:] if argv is None else argv)
    try:
        if not args or args[0] in ("-h", "--help", "help"):
            print(top_help())
            return 0
        if args[0] in ("--version", "-V", "version"):
            print(_version())
            return 0
        command = args[0]
        if command == "sample":
            return sample_command(args[1:])
        if command == "tune":
            return tune_command(args[1:])
        if command not in COMMANDS and not command.startswith("-"):
            raise ConfigError(f"unknown command {command!r}; commands: {', '.join(COMMANDS)} (flowbridge --help)")
        if command in COMMANDS:
            request = _help_request(args[1:])
            if request is not None:
                text = command_help(command, *request)
                if text is not None:
                    print(text)
                    return 0
                args = [command, "--help"]  # Lightning's full reference
        check_config_files(args)
        build_cli(args)
    except BrokenPipeError:  # `flowbridge fit --help | head`
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 -- the closed pipe must not fail again at exit
        return 0
    except SystemExit as exc:  # --help all, --print_config
        return int(exc.code or 0) if isinstance(exc.code, int) or exc.code is None else 2
    except ArgumentError as exc:
        print(f"flowbridge: error: {condense_error(str(exc))}", file=sys.stderr)
        return 2
    except (ConfigError, DataError, CheckpointError) as exc:
        print(f"flowbridge: error: {exc}", file=sys.stderr)
        return 2
    except MisconfigurationException as exc:
        print(f"flowbridge: error: {_first_line(exc)}", file=sys.stderr)
        return 2
    except SamplingError as exc:
        print(f"flowbridge: error: {_first_line(exc)}", file=sys.stderr)
        return 1
    except TrainingInterrupted as exc:
        print(f"flowbridge: {exc}" + ("; resume with --ckpt_path last" if exc.checkpoint else ""), file=sys.stderr)
        return exc.exit_code
    except torch.OutOfMemoryError as exc:
        print(f"flowbridge: error: out of memory ({_first_line(exc)}); lower data.batch_size", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("flowbridge: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
