"""Sampler presets: the one reader of ``model: sampler:`` sections, and the tuned solver they can hold.

A preset is a YAML file with a ``model: sampler:`` section (``samplers/*.yaml``, and the files
:meth:`TunedSolver.save` writes)::

    model:
      sampler:
        solver: plms          # a registered solver
        steps: 10
        grid: logsnr          # a registered grid, or explicit times: [0.0665, 0.21, ..., 0.999]
        options: {order: 4}   # the solver's options (a tuned preset: weight_multipliers too)
        guidance: 1.0         # classifier-free guidance weight (used by trained models)

:func:`read_preset` (text) and :func:`load_preset` (a file) read and check every such section; every
other reader builds on them (:meth:`TunedSolver.from_yaml`, ``flowbridge sample --config``, the
model's ``SamplerConfig``). A preset with explicit times is what :func:`flowbridge.samplers.tuning.tune`
writes; :meth:`TunedSolver.load` reads it as a :class:`TunedSolver`, which :func:`flowbridge.sample`
takes as its ``solver`` (its steps, times and options then fixed).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from flowbridge.errors import ArgumentError, ConfigError
from flowbridge.samplers.base import SOLVERS, get_solver
from flowbridge.samplers.grids import GRIDS, explicit_grid

#: The keys of a ``model: sampler:`` section.
PRESET_KEYS: tuple[str, ...] = ("solver", "steps", "grid", "options", "guidance")


def _is_number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def read_preset(text: str, *, source: str = "preset") -> dict[str, Any]:
    """Reads and checks the ``model: sampler:`` section of a preset's YAML text.

    Args:
        text: the YAML text.
        source: what to call it in messages (a file name).

    Returns:
        The keys the section gives (a subset of :data:`PRESET_KEYS`), checked: ``solver`` a string,
        ``steps`` a positive integer, ``grid`` a registered grid name or a list of float times
        (strictly increasing in [0, 1]; ``steps`` is then ``len(grid) - 1``, added when absent),
        ``options`` a mapping (the solver's, when the section names a registered solver), ``guidance``
        a finite number. Whether ``solver`` is known is the caller's to check (a model may offer
        methods besides the registered solvers).

    Raises:
        ConfigError: not YAML, no ``model: sampler:`` section, an unknown key or a bad value, naming
            ``source`` and the key.
    """
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML ({str(exc).splitlines()[0]})") from None
    model = data.get("model") if isinstance(data, dict) else None
    section = model.get("sampler") if isinstance(model, dict) else None
    if not isinstance(section, dict):
        raise ConfigError(f"{source}: expected a sampler preset with a 'model: sampler:' section")
    unknown = sorted(str(k) for k in set(section) - set(PRESET_KEYS))
    if unknown:
        raise ConfigError(f"{source}: model.sampler: unknown keys {unknown}; known: {', '.join(PRESET_KEYS)}")
    out = dict(section)
    where = f"{source}: model.sampler"
    if "solver" in out and not isinstance(out["solver"], str):
        raise ConfigError(f"{where}.solver must be a solver name; got {out['solver']!r}")
    if "steps" in out and (isinstance(out["steps"], bool) or not isinstance(out["steps"], int) or out["steps"] < 1):
        raise ConfigError(f"{where}.steps must be a positive integer; got {out['steps']!r}")
    if "options" in out and not isinstance(out["options"], dict):
        raise ConfigError(f"{where}.options must be a mapping of solver options; got {out['options']!r}")
    if "guidance" in out and not (_is_number(out["guidance"]) and math.isfinite(out["guidance"])):
        raise ConfigError(f"{where}.guidance must be a finite number; got {out['guidance']!r}")
    grid = out.get("grid")
    if isinstance(grid, str):
        if grid not in GRIDS:
            raise ConfigError(f"{where}.grid: unknown grid {grid!r}; known grids: {', '.join(sorted(GRIDS))}")
    elif isinstance(grid, list) and grid and all(_is_number(v) for v in grid):
        times = [float(v) for v in grid]
        try:
            explicit_grid(times, out.get("steps", len(times) - 1))
        except ArgumentError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        out["grid"], out["steps"] = times, len(times) - 1
    elif "grid" in out:
        raise ConfigError(f"{where}.grid must be a registered grid ({', '.join(sorted(GRIDS))}) or a list of times; got {grid!r}")
    rows = out.get("options", {}).get("weight_multipliers")
    if isinstance(rows, list) and "steps" in out and len(rows) != out["steps"]:  # one row per step (a cut file has fewer)
        raise ConfigError(f"{where}.options.weight_multipliers has {len(rows)} rows for {out['steps']} steps; give one per step")
    if out.get("solver") in SOLVERS:
        try:  # the options must be the named solver's (a section without a solver leaves them to the model's)
            get_solver(out["solver"], **out.get("options", {}))
        except ArgumentError as exc:
            raise ConfigError(f"{where}.options: {exc}") from None
    return out


def load_preset(path: str | Path) -> dict[str, Any]:
    """:func:`read_preset` of the file at ``path``.

    Raises:
        ConfigError: a missing or unreadable file, or one :func:`read_preset` refuses (naming the file).
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: no such file")
    try:
        text = p.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: not a readable text (UTF-8) file ({type(exc).__name__})") from None
    return read_preset(text, source=str(p))


@dataclass(frozen=True)
class TuningReport:
    """How a tuning run went (not saved in the preset).

    Attributes:
        untuned_error: mean endpoint error of the untuned solver (iteration 0) on the validation noises.
        tuned_error: the same for the tuned solver (the best iterate; equal to ``untuned_error`` if none
            improved on it).
        untuned_stderr: Monte-Carlo standard error of ``untuned_error`` (std of the per-sample errors
            over :math:`\\sqrt{n}`).
        tuned_stderr: the same for ``tuned_error``.
        best_iteration: the iteration kept (0: the untuned solver).
        iterations: optimiser iterations run (fewer than ``max_iters`` when stopped early).
        history: ``(iteration, training loss, validation error)`` per iteration (the training loss is
            that of the parameters before the iteration's update, on its minibatch; ``nan`` at
            iteration 0; the validation error is ``nan`` where none was measured).
        reference: the reference solver's name.
    """

    untuned_error: float
    tuned_error: float
    untuned_stderr: float
    tuned_stderr: float
    best_iteration: int
    iterations: int
    history: tuple[tuple[int, float, float], ...]
    reference: str


@dataclass(frozen=True, eq=False)
class TunedSolver:
    """A solver fitted to a field at a fixed number of steps: a ``solver`` for :func:`flowbridge.sample`.

    ``flowbridge.sample(field, tuned, shape=...)`` samples with its solver, steps, grid and options;
    :meth:`save` writes it as a preset that ``flowbridge sample --config`` reads.

    Attributes:
        solver: the registered solver family (one of :data:`flowbridge.samplers.tuning.TUNABLE`).
        steps: the number of steps (= NFE for these one-evaluation-per-step solvers).
        grid: the (steps+1,) float64 CPU grid, strictly increasing.
        options: the solver's options, ``weight_multipliers`` included (one row per step).
        report: how the tuning went (``None`` for a preset read from a file).
    """

    solver: str
    steps: int
    grid: Tensor
    options: Mapping[str, Any]
    report: TuningReport | None = None

    def __eq__(self, other: object) -> bool:
        """Same solver, steps, options and grid bit for bit (the report is not compared)."""
        if not isinstance(other, TunedSolver):
            return NotImplemented
        return (
            self.solver == other.solver and self.steps == other.steps and _plain(self.options) == _plain(other.options)
            and self.grid.dtype == other.grid.dtype and self.grid.shape == other.grid.shape
            and bool((self.grid.view(torch.int64) == other.grid.view(torch.int64)).all())
        )

    __hash__ = None  # type: ignore[assignment]

    def sample(self, field: Any, **kwargs: Any) -> Any:
        """``flowbridge.sample(field, self, **kwargs)``: ``kwargs`` are the rest of its vocabulary
        (``shape``, ``x0``, ``seed``, ``batch_size``, ``dtype``, ...)."""
        from flowbridge.samplers.api import sample  # api imports this module: resolved at call time

        return sample(field, self, **kwargs)

    def to_yaml(self) -> str:
        """The preset as YAML text (``model: sampler:``, as ``samplers/*.yaml``); floats are written
        with their shortest round-tripping ``repr``, so that :meth:`from_yaml` restores them bit for bit."""
        import yaml

        section = {"solver": self.solver, "steps": self.steps, "grid": [float(v) for v in self.grid.tolist()],
                   "options": _plain(self.options)}
        lines = [f"# {self.solver} tuned at {self.steps} steps by flowbridge.samplers.tuning.tune"]
        if self.report is not None:
            r = self.report
            lines.append(
                f"# validation endpoint error: untuned {r.untuned_error:.6g} +- {r.untuned_stderr:.2g}, "
                f"tuned {r.tuned_error:.6g} +- {r.tuned_stderr:.2g} (reference {r.reference}, iteration {r.best_iteration})"
            )
        body = yaml.safe_dump({"model": {"sampler": section}}, sort_keys=False, default_flow_style=None, width=100)
        return "\n".join(lines) + "\n" + body

    def save(self, path: str | Path) -> None:
        """Writes :meth:`to_yaml` to ``path``."""
        Path(path).write_text(self.to_yaml())

    @classmethod
    def from_section(cls, section: Mapping[str, Any], *, source: str = "preset") -> "TunedSolver":
        """The tuned solver of a section :func:`read_preset` returned.

        Raises:
            ConfigError: a section without a registered solver, options, or explicit times as grid
                (a registered grid is not a tuned solver: sample it by name), or with ``guidance``.
        """
        where = f"{source}: model.sampler"
        missing = [k for k in ("solver", "grid", "options") if k not in section]
        if missing:
            raise ConfigError(f"{where}: a tuned preset needs the keys solver, steps, grid (times), options; missing {missing}")
        if "guidance" in section:
            raise ConfigError(f"{where}.guidance: a tuned solver has no guidance (it belongs to a model's preset)")
        if section["solver"] not in SOLVERS:
            raise ConfigError(f"{where}.solver: unknown solver {section['solver']!r}")
        if isinstance(section["grid"], str):
            raise ConfigError(f"{where}.grid: a tuned preset holds its times (a list of floats), not the registered grid "
                              f"{section['grid']!r}; read such a preset with load_preset")
        return cls(solver=section["solver"], steps=section["steps"], grid=explicit_grid(section["grid"], section["steps"]),
                   options=dict(section.get("options", {})))

    @classmethod
    def from_yaml(cls, text: str, *, source: str = "preset") -> "TunedSolver":
        """Reads a preset written by :meth:`to_yaml` (through :func:`read_preset`).

        Raises:
            ConfigError: not valid YAML, or a section that is not a tuned preset (naming the key).
        """
        return cls.from_section(read_preset(text, source=source), source=source)

    @classmethod
    def load(cls, path: str | Path) -> "TunedSolver":
        """Reads a preset file written by :meth:`save` (through :func:`load_preset`).

        Raises:
            ConfigError: a missing file or one that is not a tuned preset.
        """
        return cls.from_section(load_preset(path), source=str(path))

    def sampling_arguments(
        self, steps: int | None, grid: object, t_span: object, options: Mapping[str, Any],
    ) -> tuple[str, int, Tensor, dict[str, Any]]:
        """``(solver, steps, grid, options)`` for :func:`flowbridge.sample`, refusing what would change them.

        Args:
            steps: the caller's steps (``None``: not given); if given, must be :attr:`steps`.
            grid: the caller's grid; must be ``None`` (the grid is the tuned one).
            t_span: the caller's t_span; ``None`` or the grid's ends.
            options: the caller's solver options; must be empty (they were tuned with these).

        Raises:
            ArgumentError: naming the argument that conflicts with the tuned solver.
        """
        if steps is not None and steps != self.steps:
            raise ArgumentError(f"steps={steps!r} conflicts with the tuned solver's {self.steps} steps; omit steps")
        if grid is not None:
            raise ArgumentError("grid is fixed by the tuned solver (its tuned times); omit grid and grid_options")
        if options:
            raise ArgumentError(f"solver options {sorted(options)} conflict with the tuned solver: its options "
                                f"({', '.join(self.options) or 'none'}) were fitted with it; omit them")
        times = explicit_grid(self.grid, self.steps, t_span)  # type: ignore[arg-type]  # t_span must match its ends
        return self.solver, self.steps, times, dict(self.options)


def _plain(value: Any) -> Any:
    """YAML-safe plain data: tuples to lists, mappings to dicts, floats kept as floats."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


__all__ = ["PRESET_KEYS", "TunedSolver", "TuningReport", "load_preset", "read_preset"]
