r"""Shared machinery of the multistep solvers for Gaussian paths.

Every solver in this package is a *linear* multistep method: one step is

.. math::
    x_{i+1} = a_i\,x_i + \sum_j w_{ij}\,y_{i-j},

where :math:`y` is a history of field outputs (data predictions :math:`\hat x_1`, noise predictions
:math:`\hat x_0`, or a momentum average of them) and the coefficients depend only on the grid. They
are therefore computed once, in :meth:`GaussianMultistep.init`, on the CPU in float64, and kept as
Python floats: ``step(i)`` indexes them with a Python int and launches a handful of fused
``mul``/``add_`` kernels, with no host synchronisation and nothing stored on ``self``.

Variables (Wizadwongsa et al. 2023; Lu et al. 2022): with :math:`\bar x = x/\alpha`,
:math:`\bar\sigma = \sigma/\alpha = e^{-\lambda}` the probability-flow ODE is
:math:`d\bar x/d\bar\sigma = \hat x_0(x, t)` (noise prediction), so PLMS / GHVB / DEIS are Adams
methods in :math:`\bar\sigma`; in half log-SNR :math:`\lambda = \log(\alpha/\sigma)` it is
:math:`x_t = \tfrac{\sigma_t}{\sigma_s}x_s + \sigma_t\int_{\lambda_s}^{\lambda_t} e^{\lambda}\hat x_1\,d\lambda`,
which DDIM, DPM-Solver++ and UniPC integrate exponentially.

Where these variables break down:

* :math:`\alpha(t) = 0` (the linear path at ``t = 0``): :math:`\bar\sigma` and :math:`\lambda` are
  infinite. The solvers refuse such a grid with a clear error; start at ``t > 0`` (the ``logsnr``
  and ``karras`` grids clip to :math:`\bar\sigma \le 80`, or pass ``t_span=(t0, ...)``).
* :math:`\sigma(t) = 0` at the *last* grid time (the linear path at ``t = 1``) is allowed:
  :math:`\bar\sigma = 0` is finite for the Adams methods, and the exponential methods take the exact
  limit :math:`h \to \infty` of a first-order step, :math:`x = \alpha\,\hat x_1`.

Final-step choices (option ``final_step``):

* ``"solver"``: the last step has the solver's order (first order where it must be, see above);
* ``"first_order"``: the order ramps down over the last steps to a first-order (DDIM) last step,
  ``min(k, steps - i)`` (diffusers' ``lower_order_final``);
* ``"denoise"``: the last step jumps from ``grid[-2]`` to the noise-free end, returning
  :math:`\hat x_1(x, t_{N-1})` (diffusers' ``final_sigmas_type="zero"``; no extra evaluation).

Warm-up (option ``warmup``): ``"lower_order"``, the only one implemented, uses the history that
exists, so step ``i`` of a ``k``-step method has order ``min(k, i + 1)``.

Tuned coefficients (option ``weight_multipliers``, on the families that take it): one row per step,
one multiplier per history term, :math:`w_{ij} \to m_{ij} w_{ij}`; all ones is the solver itself,
bit for bit. :func:`flowbridge.samplers.tuning.tune` fits them (with the grid) to a field.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any, ClassVar, NamedTuple, Sequence

import torch
from torch import Tensor

from flowbridge._utils import TimePoint, check_unit_interval
from flowbridge.errors import ArgumentError
from flowbridge.fields.base import Field, check_field
from flowbridge.paths.gaussian import GaussianPath
from flowbridge.random import RandomSource
from flowbridge.samplers.base import Solver, combine, prepare_times

FINAL_STEPS: tuple[str, ...] = ("solver", "first_order", "denoise")
WARMUPS: tuple[str, ...] = ("lower_order",)
SIGMA_BAR_ZERO = 1e-12  # a final sigma/alpha below this is taken as exactly 0


@dataclass(frozen=True)
class GaussianGrid:
    r"""Schedule quantities at the grid times, float64 on the CPU, and the same as Python floats.

    Attributes:
        t: (N+1,) times.
        alpha, sigma: :math:`\alpha(t_i)`, :math:`\sigma(t_i)`; with ``final_step="denoise"`` the
            last entries are replaced by the noise-free end (:math:`\alpha = 1`, :math:`\sigma = 0`).
        log_snr: :math:`\lambda_i = \log(\alpha_i/\sigma_i)` (``+inf`` where :math:`\sigma = 0`).
        sigma_bar: :math:`\bar\sigma_i = \sigma_i/\alpha_i`.
        values: the four rows above as tuples of Python floats, ``values.alpha[i]`` etc.: the plans
            are computed from these (reading a tensor element costs microseconds, a float nothing).
    """

    t: Tensor
    alpha: Tensor
    sigma: Tensor
    log_snr: Tensor
    sigma_bar: Tensor

    @cached_property
    def values(self) -> "GridValues":
        return GridValues(*(tuple(v.tolist()) for v in (self.alpha, self.sigma, self.log_snr, self.sigma_bar)))  # sync-ok: CPU

    @property
    def steps(self) -> int:
        return self.t.shape[0] - 1

    def step_size_log_snr(self, i: int) -> float:
        """:math:`h_i = \\lambda_{i+1} - \\lambda_i` (``inf`` for a step to :math:`\\sigma = 0`)."""
        lam = self.values.log_snr
        return lam[i + 1] - lam[i]

    def data_step(self, i: int) -> tuple[float, float]:
        r"""First-order exponential step :math:`x_{i+1} = a x_i + b\,\hat x_1` in the data form:
        :math:`a = \sigma_{i+1}/\sigma_i`, :math:`b = \alpha_{i+1}(1 - e^{-h}) = \alpha_{i+1} - a\,\alpha_i`
        (written so that it stays finite when :math:`\sigma_{i+1} = 0`)."""
        v = self.values
        a = v.sigma[i + 1] / v.sigma[i]
        return a, v.alpha[i + 1] - a * v.alpha[i]

    def noise_scale(self, i: int) -> tuple[float, float]:
        r"""Adams step in :math:`\bar x`: :math:`x_{i+1} = a x_i + c\,\sum_j \beta_j \hat x_0^{(i-j)}` with
        :math:`a = \alpha_{i+1}/\alpha_i` and :math:`c = \alpha_{i+1}(\bar\sigma_{i+1} - \bar\sigma_i)`."""
        v = self.values
        return v.alpha[i + 1] / v.alpha[i], v.alpha[i + 1] * (v.sigma_bar[i + 1] - v.sigma_bar[i])


class GridValues(NamedTuple):
    """Rows of a :class:`GaussianGrid` as Python floats."""

    alpha: tuple[float, ...]
    sigma: tuple[float, ...]
    log_snr: tuple[float, ...]
    sigma_bar: tuple[float, ...]


def gaussian_grid(solver: str, field: Field, grid: Tensor, final_step: str) -> GaussianGrid:
    """Evaluates and validates the schedule on ``grid`` (float64, CPU).

    Raises:
        ValueError: if the grid is not increasing, if :math:`\\alpha = 0` at a grid time (infinite
            :math:`\\bar\\sigma` and :math:`\\lambda`), or if :math:`\\sigma = 0` before the last time.
    """
    check_field(field)
    path = field.path
    if not isinstance(path, GaussianPath):  # check() already refuses; keep init self-contained
        raise ArgumentError(f"solver {solver!r} needs a field on a GaussianPath; got path {path!r}")
    t = grid.detach().to(device="cpu", dtype=torch.float64)
    if t.ndim != 1 or t.shape[0] < 2:
        raise ArgumentError(f"grid must be a 1-D tensor with at least 2 times; got shape {tuple(t.shape)}")
    check_unit_interval(t, "grid")
    if not bool((t[1:] > t[:-1]).all()):
        raise ArgumentError(f"solver {solver!r} needs an increasing grid (t=0 source to t=1 target); got {t.tolist()}")  # sync-ok: CPU grid in init, error path
    v = path.schedule(t)
    alpha, sigma = v.alpha.clone(), v.sigma.clone()
    if not bool(torch.isfinite(alpha).all() and torch.isfinite(sigma).all()):  # sync-ok: CPU grid in init
        raise ArgumentError(f"solver {solver!r}: the schedule is not finite on the grid {t.tolist()} (times outside [0, 1]?)")  # sync-ok: CPU grid, error path
    if not bool((alpha > 0).all()):
        first = float(t[int(torch.nonzero(alpha <= 0)[0])])
        raise ArgumentError(
            f"solver {solver!r} works in sigma/alpha and log-SNR, which are infinite where alpha(t) = 0; "
            f"the grid contains t={first:g} with alpha = 0 on {path.schedule!r}. Start at t > 0: use "
            "grid='logsnr' or grid='karras' (clipped to sigma/alpha <= 80) or t_span=(t0, t1) with t0 > 0"
        )
    if not bool((sigma[:-1] > 0).all()):
        raise ArgumentError(
            f"solver {solver!r}: sigma(t) = 0 is allowed only at the last grid time; grid {t.tolist()} "  # sync-ok: CPU grid in init, error path
            f"reaches sigma = 0 earlier on {path.schedule!r}"
        )
    if final_step == "denoise":
        alpha[-1], sigma[-1] = 1.0, 0.0
    elif float(sigma[-1] / alpha[-1]) < SIGMA_BAR_ZERO:
        # sigma = 0 up to rounding (the trig schedule's cos(pi/2) = 6e-17): without this the last
        # log-SNR step would be ~35 against ~0.7 before it, and multistep extrapolation would explode.
        sigma[-1] = 0.0
    log_snr = torch.log(alpha) - torch.log(sigma)  # +inf where sigma = 0 (only the last time)
    return GaussianGrid(t=t, alpha=alpha, sigma=sigma, log_snr=log_snr, sigma_bar=sigma / alpha)


@dataclass(frozen=True)
class StepPlan:
    r"""Coefficients of one step, as Python floats: :math:`x' = \text{scale}\cdot x + \sum_j
    \text{weights}_j\, y_j` with the history :math:`y` newest first. Subclasses add what they need."""

    scale: float
    weights: tuple[float, ...]


@dataclass(frozen=True)
class MultistepState:
    """Explicit state of a multistep solver (nothing lives on the solver object).

    Attributes:
        t: the grid times as :class:`~flowbridge._utils.TimePoint` s (indexed with a Python int:
            no sync, no schedule evaluation on the device).
        plans: one precomputed :class:`StepPlan` (or subclass) per step.
        history: past field outputs, newest first (at most the solver's order).
        velocity: the momentum average (heavy-ball family), else ``None``.
        anchor: the state the last predictor started from (UniPC's corrector), else ``None``.
    """

    t: tuple[TimePoint, ...]
    plans: tuple[Any, ...]
    history: tuple[Tensor, ...] = ()
    velocity: Tensor | None = None
    anchor: Tensor | None = None


def check_option(name: str, value: object, allowed: Sequence[object]) -> None:
    """Raises a ValueError naming the option and its allowed values."""
    if value not in allowed:
        raise ArgumentError(f"{name} must be one of {list(allowed)}; got {value!r}")


def check_beta(beta: float) -> float:
    """Momentum weight on the new term: 0 < beta <= 1 (beta = 1 is the base solver)."""
    beta = float(beta)
    if not (0.0 < beta <= 1.0):
        raise ArgumentError(f"beta must lie in (0, 1] (beta = 1 means no momentum); got {beta}")
    return beta


def check_order(order: int, low: int, high: int) -> int:
    """Raises a ValueError unless ``order`` is an int in ``[low, high]``; returns it."""
    if not isinstance(order, int) or isinstance(order, bool) or not (low <= order <= high):
        raise ArgumentError(f"order must be an integer in [{low}, {high}]; got {order!r}")
    return order


class GaussianMultistep(Solver[MultistepState]):
    """Base class: validates options and the grid, precomputes :class:`StepPlan` s in :meth:`init`.

    Subclasses implement :meth:`plan` (the coefficients, from a :class:`GaussianGrid`) and
    :meth:`step`.

    Args:
        final_step: ``"solver"``, ``"first_order"`` or ``"denoise"`` (see the module docstring).
        warmup: ``"lower_order"`` (orders ``1, 2, ..., k`` while the history fills).
        weight_multipliers: per-step multipliers of the history weights (one row per step), as fitted by
            :func:`flowbridge.samplers.tuning.tune`; ``None`` (default): the solver's own coefficients.
    """

    needs_gaussian_path: ClassVar[bool] = True
    min_steps: ClassVar[int] = 2
    default_final_step: ClassVar[str] = "solver"
    # Exponential integrators step in log-SNR, which is infinite where sigma = 0; the Adams methods in
    # sigma/alpha are not affected (sigma/alpha = 0 is finite).
    works_in_log_snr: ClassVar[bool] = True

    # What the step asks of the field ("data" for the exponential integrators, "noise" for the
    # Adams methods in sigma/alpha); checked up front at every grid time the field is evaluated.
    evaluates: ClassVar[str] = "data"

    def __init__(
        self, final_step: str | None = None, warmup: str = "lower_order",
        weight_multipliers: Sequence[Sequence[float]] | None = None,
    ) -> None:
        final_step = self.default_final_step if final_step is None else final_step
        check_option("final_step", final_step, FINAL_STEPS)
        check_option("warmup", warmup, WARMUPS)
        self.final_step = final_step
        self.warmup = warmup
        self.weight_multipliers = check_weight_multipliers(weight_multipliers)

    def step_order(self, g: GaussianGrid, i: int, order: int) -> int:
        """Order used at step ``i``: ``min(order, i + 1)`` during warm-up; with ``final_step="first_order"``
        also ``min(order, steps - i)`` (the order ramps down to 1 at the last step, as diffusers'
        ``lower_order_final``); 1 on a ``"denoise"`` last step or one to sigma = 0 in log-SNR."""
        remaining = g.steps - i
        if remaining == 1 and (self.final_step == "denoise" or (self.works_in_log_snr and g.values.sigma[-1] == 0.0)):
            return 1
        if self.final_step == "first_order":
            order = min(order, remaining)
        return min(order, i + 1)

    def plan(self, g: GaussianGrid) -> tuple[Any, ...]:
        raise NotImplementedError

    def init(self, field: Field, x: Tensor, grid: Tensor, *, generator: RandomSource = None) -> MultistepState:
        g = gaussian_grid(self.name, field, grid, self.final_step)
        plans = self.plan(g)
        if self.weight_multipliers is not None:
            plans = scale_weights(self.name, plans, self.weight_multipliers)
        bad = [i for i, p in enumerate(plans) if not all(math.isfinite(c) for c in _floats(p))]
        if bad:
            raise ArgumentError(f"solver {self.name!r}: non-finite coefficients at steps {bad} of grid {g.t.tolist()}")  # sync-ok: CPU grid in init, error path
        points = prepare_times(self.name, field, g.t[:-1], x, evaluates=(self.evaluates,))
        return MultistepState(t=points, plans=plans)


def check_weight_multipliers(value: Sequence[Sequence[float]] | None) -> tuple[tuple[float, ...], ...] | None:
    """``weight_multipliers`` as a tuple of rows of finite Python floats (``None`` stays ``None``).

    Raises:
        ArgumentError: not a sequence of sequences of finite numbers.
    """
    if value is None:
        return None
    try:
        rows = tuple(tuple(float(m) for m in row) for row in value)
    except (TypeError, ValueError):
        raise ArgumentError(
            f"weight_multipliers must be a list of rows (one per step) of numbers (one per history term); got {value!r}"
        ) from None
    if any(isinstance(row, (str, bytes)) for row in value) or not all(math.isfinite(m) for row in rows for m in row):
        raise ArgumentError(f"weight_multipliers must hold finite numbers, one row per step; got {value!r}")
    return rows


def scale_weights(solver: str, plans: Sequence[Any], multipliers: Sequence[Sequence[Any]]) -> tuple[Any, ...]:
    r"""The plans with their history weights multiplied, :math:`w_{ij} \to m_{ij} w_{ij}` (floats or
    0-d tensors alike: the tuner passes tensors that carry gradients).

    Raises:
        ArgumentError: ``multipliers`` has not one row per step or a row not one entry per weight.
    """
    if len(multipliers) != len(plans):
        raise ArgumentError(
            f"solver {solver!r}: weight_multipliers has {len(multipliers)} rows but the grid has {len(plans)} steps; "
            "sample with the grid (and steps) they were tuned on"
        )
    out = []
    for i, (plan, row) in enumerate(zip(plans, multipliers)):
        if len(row) != len(plan.weights):
            raise ArgumentError(
                f"solver {solver!r}: weight_multipliers row {i} has {len(row)} entries but step {i} combines "
                f"{len(plan.weights)} history terms (expected lengths {[len(p.weights) for p in plans]})"
            )
        out.append(replace(plan, weights=tuple(w * m for w, m in zip(plan.weights, row))))
    return tuple(out)


def _floats(plan: Any) -> list[float]:
    out: list[float] = []
    for value in vars(plan).values():
        if isinstance(value, float):
            out.append(value)
        elif isinstance(value, tuple):
            out.extend(v for v in value if isinstance(v, float))
        elif isinstance(value, StepPlan):
            out.extend(_floats(value))
    return out


def push(history: tuple[Tensor, ...], value: Tensor, keep: int) -> tuple[Tensor, ...]:
    """Prepends ``value`` and keeps the newest ``keep`` entries."""
    return ((value,) + history)[:keep]


__all__ = [
    "FINAL_STEPS",
    "GaussianGrid",
    "GaussianMultistep",
    "MultistepState",
    "StepPlan",
    "combine",
    "gaussian_grid",
    "push",
]
