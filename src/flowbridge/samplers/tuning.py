r"""Solvers tuned to a field: a time grid and per-step multistep coefficients fitted at a fixed NFE.

A fixed-step solver with :math:`N` steps maps the initial state :math:`x_{t_0}` to
:math:`\Phi_\theta(x_{t_0}) \approx x_{t_N}`, the probability-flow ODE's solution. Its error depends on
where the field is evaluated (the grid :math:`t_0 < t_1 < \dots < t_N`) and on how the history is
combined. :func:`tune` fits both to one field by minimising the mean endpoint error against a
high-accuracy reference :math:`x^\star` (float64 ``dopri5`` at tolerance :math:`10^{-10}` by default)
over ``n`` training noises,

.. math::
    L(\theta) = \frac1n\sum_{k=1}^n \big\|\Phi_\theta(x^{(k)}_{t_0}) - x^{\star(k)}_{t_N}\big\|_2,

by differentiating through the sampling loop (torch autograd, Adam), and keeps the parameters with
the smallest error on ``num_val`` fresh validation noises. When the validation error has not improved
for ``patience`` iterations, it restarts from the best parameters with a smaller learning rate
(:data:`LR_DECAY`), and stops after :data:`LR_DECAYS` such restarts (early stopping). With
``minibatch``, each iteration uses a fresh random subset of a larger pool of training noises: the
endpoint error is heavy-tailed (noises near a boundary between modes can be sent to the wrong mode by
a few-step solver), and a large pool is what keeps those rare noises in the fit.

**The grid** keeps its ends (those of the initial grid, inside the path's span) and moves the
interior through unconstrained logits :math:`u \in \mathbb{R}^N`:

.. math::
    t_k = t_0 + (t_N - t_0)\sum_{j<k}\operatorname{softmax}(u)_j, \qquad k = 1, \dots, N-1,

so every candidate is strictly increasing and inside :math:`[t_0, t_N]` by construction (a candidate
whose increments fall below the float64 resolution is skipped). The logits start at
:math:`u = \log(t_{k+1} - t_k)` of the initial grid.

**The coefficients.** The multistep families (:data:`TUNABLE`) are linear multistep methods,
:math:`x_{i+1} = a_i x_i + \sum_j w_{ij} y_{i-j}` with :math:`y` the history of field outputs (see
:mod:`flowbridge.samplers.multistep.common`); the weights are recomputed from the current grid by the
solver's own ``plan`` (so the grid's gradient includes how the coefficients move with it) and then
multiplied per step and per history term, :math:`w_{ij} \to m_{ij} w_{ij}`, with
:math:`m = m^{(0)} + \delta`, :math:`\delta` starting at 0 (:math:`m^{(0)} = 1`: the solver itself).
The linear part :math:`a_i` (exact for the solver's variables) is kept. The multipliers are the
solvers' ``weight_multipliers`` option.

Iteration 0 is the untuned solver exactly: its validation error is measured on the initial grid and
multipliers themselves, and if no iterate beats it the result is that solver, bit for bit.

The result, a :class:`TunedSolver`, is a ``solver`` for :func:`flowbridge.sample` (its steps, explicit
grid and ``weight_multipliers`` option are used) and is saved as a ``samplers/*.yaml``-style preset,
its ``grid`` a list of times, whose float64 values round-trip bit for bit. One reader,
:func:`load_preset` (:mod:`flowbridge.samplers.presets`), reads tuned and plain presets; ``flowbridge
sample --config tuned.yaml`` samples a checkpoint with it, and ``flowbridge tune --ckpt CKPT --nfe 10``
tunes a checkpoint's field and writes it. ``smc.sample`` and ``inverse.sample`` take the tuned times
as ``grid`` (their kernels are not multistep ODE solvers, so the multipliers do not apply there).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from flowbridge._progress import Progress
from flowbridge._utils import registry_error
from flowbridge.errors import ArgumentError, CapabilityError
from flowbridge.fields.base import Field, check_field
from flowbridge.random import noise_source
from flowbridge.samplers.api import initial_state, resolve_grid
from flowbridge.samplers.base import SOLVERS, get_solver
from flowbridge.samplers.grids import GRIDS, explicit_grid, make_grid
from flowbridge.samplers.multistep.common import (
    GaussianGrid,
    GaussianMultistep,
    GridValues,
    MultistepState,
    check_weight_multipliers,
    gaussian_grid,
    scale_weights,
)
from flowbridge.samplers.presets import TunedSolver, TuningReport, load_preset

#: On a validation plateau (``patience`` iterations without improvement) the optimiser restarts from
#: the best iterate with its learning rate multiplied by ``LR_DECAY``; after ``LR_DECAYS`` such restarts it stops.
LR_DECAY: float = 0.3
LR_DECAYS: int = 3

#: Solver families :func:`tune` fits (grid and ``weight_multipliers``): their plans are plain
#: linear multistep coefficients, recomputed differentiably from the grid.
TUNABLE: tuple[str, ...] = ("ddim", "dpmpp_2m", "dpmpp_3m", "plms", "ghvb")


@dataclass(frozen=True)
class _TensorGrid(GaussianGrid):
    """A :class:`GaussianGrid` whose :attr:`values` are 0-d tensors that carry gradients, so that the
    solvers' own ``plan`` computes differentiable coefficients."""

    @property
    def values(self) -> GridValues:  # type: ignore[override]
        return GridValues(*(tuple(v.unbind(0)) for v in (self.alpha, self.sigma, self.log_snr, self.sigma_bar)))


def _tensor_grid(solver: GaussianMultistep, field: Field, times: Tensor) -> _TensorGrid:
    """The schedule at ``times`` (float64, with gradients), with the same end conventions as
    :func:`~flowbridge.samplers.multistep.common.gaussian_grid` (which validates it)."""
    checked = gaussian_grid(solver.name, field, times.detach(), solver.final_step)
    v = field.gaussian_path.schedule(times)
    alpha = torch.where(checked.alpha == v.alpha.detach(), v.alpha, checked.alpha)  # ends replaced by the solver
    sigma = torch.where(checked.sigma == v.sigma.detach(), v.sigma, checked.sigma)
    return _TensorGrid(t=times, alpha=alpha, sigma=sigma, log_snr=torch.log(alpha) - torch.log(sigma), sigma_bar=sigma / alpha)


def run_tuned(
    solver: GaussianMultistep, field: Field, x: Tensor, times: Tensor, multipliers: Sequence[Sequence[Any]] | None
) -> Tensor:
    """The solver's own step loop with coefficients recomputed from ``times`` and multiplied by
    ``multipliers``; differentiable in both when they carry gradients.

    Args:
        solver: a solver of :data:`TUNABLE` (its ``weight_multipliers`` option is ignored here).
        field: the field on a Gaussian path.
        x: (B, ...) states at ``times[0]``.
        times: (N+1,) float64 grid, strictly increasing.
        multipliers: one row per step of 0-d tensors or floats, or ``None`` (the solver's weights).

    Returns:
        (B, ...) states at ``times[-1]``.
    """
    g = _tensor_grid(solver, field, times)
    plans = solver.plan(g)
    if multipliers is not None:
        plans = scale_weights(solver.name, plans, multipliers)
    t = times.to(device=x.device, dtype=x.dtype)
    points = tuple(t[i].expand(x.shape[0]) for i in range(g.steps))
    state = MultistepState(t=points, plans=plans)
    for i in range(g.steps):
        x, state = solver.step(field, x, state, i)
    return x


def _endpoint_errors(x: Tensor, ref: Tensor) -> Tensor:
    return (x - ref).reshape(x.shape[0], -1).norm(dim=1)


def _positive_int(name: str, value: object, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ArgumentError(f"{name} must be an integer >= {minimum}; got {value!r}")
    return value


def tune(
    field: Field,
    solver: str = "dpmpp_2m",
    nfe: int = 10,
    *,
    shape: Sequence[int],
    num_val: int | None = None,
    solver_options: Mapping[str, Any] | None = None,
    grid: str | Sequence[float] | Tensor | None = None,
    grid_options: dict[str, float] | None = None,
    t_span: tuple[float, float] | None = None,
    tune_grid: bool = True,
    tune_coefficients: bool = True,
    reference: str = "dopri5",
    reference_options: Mapping[str, Any] | None = None,
    reference_steps: int = 1000,
    reference_grid: str = "uniform",
    max_iters: int = 300,
    lr: float = 0.01,
    patience: int = 40,
    minibatch: int | None = None,
    validate_every: int = 1,
    generator: torch.Generator | None = None,
    seed: int | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float64,
    progress: bool = False,
) -> TunedSolver:
    """Fits the time grid and the per-step history weights of a multistep solver to ``field``.

    See the module docstring for the objective and the parametrisation. The network of a field is not
    changed: gradients are taken with respect to the grid and the multipliers only.

    Args:
        field: the field to tune for (analytic, network, guided), on a Gaussian path.
        solver: a solver family of :data:`TUNABLE`.
        nfe: the budget: number of steps (one field evaluation each), at least the solver's ``min_steps``.
        shape: ``(num_train, *event)``: the training noises (drawn at the grid's first time).
        num_val: validation noises, fresh (default ``num_train``); at least 2.
        solver_options: the solver's options (``order``, ``beta``, ``variant``, ``final_step``, and
            ``weight_multipliers`` as a starting point instead of all ones).
        grid: the initial grid: a registered name (default the solver's ``default_grid``) or explicit
            times (e.g. a previously tuned grid); its ends are kept.
        grid_options: options of a registered initial grid.
        t_span: the span of a registered initial grid (default the solver's ``default_span``).
        tune_grid: fit the grid's interior times.
        tune_coefficients: fit the ``weight_multipliers``.
        reference: a registered solver giving the target endpoints (default ``dopri5``).
        reference_options: its options (default for an adaptive solver ``rtol = atol = 1e-10`` with
            float64 states, 100 ulps of ``dtype`` otherwise: 1.2e-5 in float32).
        reference_steps: steps of a fixed-step reference (ignored by adaptive ones).
        reference_grid: the registered grid of a fixed-step reference, on the initial grid's span
            (default ``uniform``: equal steps in time). On a network field, whose ODE is stiff near the
            data, a multistep reference on ``logsnr`` reaches a given accuracy in several times fewer
            evaluations (``reference="dpmpp_3m"``, ``reference_grid="logsnr"``).
        max_iters: most optimiser (Adam) iterations; 0 returns the untuned solver.
        lr: Adam's learning rate (on the grid logits and on the multipliers).
        patience: iterations without a better validation error before the learning rate is cut
            (and, after :data:`LR_DECAYS` cuts, before stopping).
        minibatch: training noises per iteration, a fresh random subset of the ``num_train`` (in a
            fixed order: seed 0); default all of them. A large pool seen in minibatches covers the rare
            noises near the boundary between modes (where a few steps can send a sample to the wrong
            mode) at the cost of a small batch per iteration.
        validate_every: validate every this many iterations (validation is a forward pass over
            ``num_val`` noises; the history has ``nan`` for the iterations in between).
        generator: a ``torch.Generator`` for the noises; or ``seed`` (one of them at most).
        seed: an integer seed for the noises.
        device: where the noises and the sampling live (the field must be there).
        dtype: of the states (default float64; the grid, the coefficients and the multipliers are
            float64 whatever it is). A network field must accept it: a float32 network is tuned with
            ``dtype=torch.float32`` (as ``flowbridge tune`` does) or converted (``net.double()``).
        progress: show a progress bar over the iterations.

    Returns:
        :class:`TunedSolver` with the best grid and multipliers and its :class:`TuningReport`.

    Raises:
        ArgumentError: a bad budget (``nfe`` not an integer or below the solver's minimum), shape,
            option or grid, naming it.
        CapabilityError: a solver that cannot be tuned, or that cannot run on ``field`` (e.g. a field
            not on a Gaussian path).
    """
    check_field(field)
    if not isinstance(solver, str):
        raise ArgumentError(f"solver must be the name of a tunable family {list(TUNABLE)}; got {type(solver).__name__}")
    if solver not in SOLVERS:
        raise registry_error("solver", solver, list(SOLVERS))
    if solver not in TUNABLE:
        raise CapabilityError(f"solver {solver!r} cannot be tuned (its coefficients are not a plain multistep plan); "
                              f"tunable solvers: {', '.join(TUNABLE)}")
    options = dict(solver_options or {})
    start_multipliers = options.pop("weight_multipliers", None)
    base = get_solver(solver, **options)
    assert isinstance(base, GaussianMultistep)  # every TUNABLE family is one
    if isinstance(nfe, bool) or not isinstance(nfe, int):
        raise ArgumentError(f"nfe must be an integer number of field evaluations; got {nfe!r}")
    if nfe < base.min_steps:
        raise ArgumentError(f"nfe must be >= {base.min_steps} for solver {solver!r}; got nfe={nfe}")
    base.check(field, nfe)
    if not isinstance(shape, (tuple, list, torch.Size)) or len(shape) < 2:
        raise ArgumentError(f"shape must be (num_train, *event); got {shape!r}")
    try:
        shape = tuple(operator.index(s) for s in shape)
    except TypeError:
        raise ArgumentError(f"shape must hold integers (num_train, *event); got {shape!r}") from None
    num_train = _positive_int("shape[0] (num_train)", shape[0])
    num_val = _positive_int("num_val", num_train if num_val is None else num_val, 2)
    max_iters = _positive_int("max_iters", max_iters, 0)
    patience = _positive_int("patience", patience)
    validate_every = _positive_int("validate_every", validate_every)
    if minibatch is not None:
        minibatch = min(_positive_int("minibatch", minibatch), num_train)
    reference_steps = _positive_int("reference_steps", reference_steps)
    if not isinstance(reference_grid, str):
        raise ArgumentError(f"reference_grid must be the name of a registered grid; got {type(reference_grid).__name__}")
    if reference_grid not in GRIDS:
        raise registry_error("grid", reference_grid, list(GRIDS))
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not 0.0 < lr < math.inf:
        raise ArgumentError(f"lr must be a positive finite number; got {lr!r}")
    for name, flag in (("tune_grid", tune_grid), ("tune_coefficients", tune_coefficients)):
        if not isinstance(flag, bool):
            raise ArgumentError(f"{name} must be True or False; got {flag!r}")
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ArgumentError(f"dtype must be a floating-point torch.dtype; got {dtype!r}")
    if not (tune_grid or tune_coefficients):
        raise ArgumentError("tune_grid and tune_coefficients are both False: nothing to tune")

    # The initial grid, as fb.sample builds it.
    if grid is not None and not isinstance(grid, str):
        if grid_options:
            raise ArgumentError("grid_options apply to a registered grid, not to explicit times")
        init_grid = explicit_grid(grid, nfe, t_span)
    else:
        name = resolve_grid(field, base, grid)
        t0, t1 = t_span if t_span is not None else base.default_span(field)
        init_grid = make_grid(name, nfe, float(t0), float(t1), field.gaussian_path.schedule, **(grid_options or {}))
    plans = base.plan(gaussian_grid(solver, field, init_grid, base.final_step))
    if start_multipliers is None:
        m0 = [[1.0] * len(p.weights) for p in plans]
    else:
        rows = check_weight_multipliers(start_multipliers)
        assert rows is not None
        scale_weights(solver, plans, rows)  # one row per step, one entry per history term
        m0 = [list(r) for r in rows]

    # Noises (training, then fresh validation ones) and reference endpoints.
    total = num_train + num_val
    source = noise_source(generator, None, seed, total)
    x_all = initial_state(field, shape=(total, *shape[1:]), x0=None, t_start=float(init_grid[0]), generator=source,
                          dtype=dtype, device=device)
    # An adaptive reference's tolerance: 1e-10 in float64; in a lower precision the error estimate
    # cannot go below its rounding (dopri5 would shrink its step to nothing), so 100 ulps of the dtype.
    tol = 1e-10 if dtype == torch.float64 else max(1e-10, 100 * torch.finfo(dtype).eps)
    ref_solver = get_solver(reference, **dict(reference_options if reference_options is not None else (
        {"rtol": tol, "atol": tol} if SOLVERS[reference].nfe_per_step == 0 else {})))
    if reference_grid == "uniform":
        ref_grid = torch.linspace(float(init_grid[0]), float(init_grid[-1]), reference_steps + 1, dtype=torch.float64)
    else:
        ref_grid = make_grid(reference_grid, reference_steps, float(init_grid[0]), float(init_grid[-1]),
                             field.gaussian_path.schedule)
    ref_grid[0], ref_grid[-1] = init_grid[0], init_grid[-1]
    with torch.no_grad():
        ref_all = ref_solver.solve(field, x_all, ref_grid).x
    x_train, x_val = x_all[:num_train], x_all[num_train:]
    ref_train, ref_val = ref_all[:num_train], ref_all[num_train:]

    # Parameters: grid logits u (interior times), multiplier offsets delta (m = m0 + delta).
    t_first, t_last = init_grid[:1], init_grid[-1:]
    logits = torch.log(init_grid[1:] - init_grid[:-1]).clone().requires_grad_(tune_grid)
    deltas = [torch.zeros(len(row), dtype=torch.float64, requires_grad=tune_coefficients) for row in m0]
    m0_t = [torch.tensor(row, dtype=torch.float64) for row in m0]
    params = ([logits] if tune_grid else []) + (deltas if tune_coefficients else [])
    optimiser = torch.optim.Adam(params, lr=float(lr))

    def grid_of(u: Tensor) -> Tensor:
        inc = torch.softmax(u, 0) * (t_last - t_first)
        return torch.cat([t_first, t_first + torch.cumsum(inc, 0)[:-1], t_last])

    def multipliers_of() -> list[list[Tensor]]:
        return [list((m + d).unbind(0)) for m, d in zip(m0_t, deltas)]

    def validate(times: Tensor, mult: Sequence[Sequence[Any]]) -> Tensor:
        with torch.no_grad():
            return _endpoint_errors(run_tuned(base, field, x_val, times, mult), ref_val)

    errors0 = validate(init_grid, m0)
    best = (float(errors0.mean()), 0, init_grid, [list(r) for r in m0], errors0)
    untuned = best
    best_params = [p.detach().clone() for p in params]
    rate, decays, since = float(lr), 0, 0
    history: list[tuple[int, float, float]] = [(0, math.nan, best[0])]
    meter = Progress(max_iters, f"tuning {solver} at NFE {nfe}", unit="iter") if progress and max_iters else None
    iterations = 0
    order = torch.Generator().manual_seed(0)  # which training noises each minibatch holds
    try:
        for it in range(1, max_iters + 1):
            iterations = it
            times = grid_of(logits) if tune_grid else init_grid
            mult = multipliers_of()
            if minibatch is None or minibatch == num_train:
                x_b, ref_b = x_train, ref_train
            else:
                pick = torch.randperm(num_train, generator=order)[:minibatch].to(x_train.device)
                x_b, ref_b = x_train[pick], ref_train[pick]
            loss = _endpoint_errors(run_tuned(base, field, x_b, times, mult), ref_b).mean()
            if not torch.isfinite(loss):
                break
            grads = torch.autograd.grad(loss, params)  # not .backward(): a network field's weights get no gradient
            for p, gr in zip(params, grads):
                p.grad = gr
            optimiser.step()
            candidate = (grid_of(logits) if tune_grid else init_grid).detach()
            if it % validate_every and it != max_iters:
                history.append((it, float(loss.detach()), math.nan))
            elif bool((candidate[1:] > candidate[:-1]).all()):
                cand_mult = [[float(v) for v in (m + d.detach()).tolist()] for m, d in zip(m0_t, deltas)]  # sync-ok: CPU float64 multipliers, once per optimiser iteration
                errors = validate(candidate, cand_mult)
                val = float(errors.mean())
                history.append((it, float(loss.detach()), val))
                if val < best[0]:
                    best = (val, it, candidate.clone(), cand_mult, errors)
                    best_params = [p.detach().clone() for p in params]
                    since = 0
            else:  # increments below float64 resolution: not a usable grid
                history.append((it, float(loss.detach()), math.nan))
            since += 1
            if meter is not None:
                meter.update()
            if since >= patience:  # plateau: back to the best iterate with a smaller step, at most LR_DECAYS times
                if decays == LR_DECAYS:
                    break
                decays, since, rate = decays + 1, 0, rate * LR_DECAY
                with torch.no_grad():
                    for p, b in zip(params, best_params):
                        p.copy_(b)
                optimiser = torch.optim.Adam(params, lr=rate)
    finally:
        if meter is not None:
            meter.close()

    def stderr(e: Tensor) -> float:
        return float(e.std() / math.sqrt(e.numel()))

    report = TuningReport(
        untuned_error=untuned[0], tuned_error=best[0], untuned_stderr=stderr(untuned[4]), tuned_stderr=stderr(best[4]),
        best_iteration=best[1], iterations=iterations, history=tuple(history), reference=reference,
    )
    out_options: dict[str, Any] = {**options, "weight_multipliers": [list(r) for r in best[3]]}
    return TunedSolver(solver=solver, steps=nfe, grid=best[2].detach().clone(), options=out_options, report=report)


__all__ = ["TUNABLE", "TunedSolver", "TuningReport", "load_preset", "tune"]
