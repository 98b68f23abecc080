r"""What every reverse-SDE sampler shares: the score check, the diffusion level and the noise.

All samplers here integrate the marginal-preserving SDE

.. math::
    dx = \big(u(x, t) + \epsilon(t)\,\nabla\log p_t(x)\big)\,dt + \sqrt{2\epsilon(t)}\,dW_t,

forward in flowbridge's time (``t = 0`` source, ``t = 1`` target). For any :math:`\epsilon \ge 0` it
has the marginals of the probability-flow ODE. The score comes from the path's conversions on a
:class:`~flowbridge.paths.GaussianPath`, or from the denoiser (:math:`s = -\eta/\gamma`) on a
:class:`~flowbridge.paths.StochasticInterpolant`.

Default diffusion levels:

* Gaussian path: :math:`\epsilon(t) = \text{noise\_scale}\cdot\sigma^2\dot\lambda`, the level of the
  forward noising (the DDPM / score-SDE reverse SDE);
* interpolant: :math:`\epsilon(t) = \text{noise\_scale}\cdot\gamma(t)`, which vanishes where
  :math:`\gamma` does, so that :math:`\epsilon s = -\text{noise\_scale}\,\eta` stays bounded at both ends.

A user ``eps(t)`` replaces either; it receives a float64 CPU tensor of grid times for fixed-step
solvers (checked once, before the loop) and per-sample times on the state's device for
``adaptive_sde``.
"""

from __future__ import annotations

import math

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from flowbridge.errors import ArgumentError, CapabilityError
from flowbridge.fields.base import Field, check_field
from flowbridge.fields.guidance import GuidedField
from flowbridge.fields.interpolant import InterpolantField
from flowbridge.paths.gaussian import GaussianPath
from flowbridge.paths.interpolant import GAMMAS, StochasticInterpolant
from flowbridge.random import NoiseSource, RandomSource, as_noise_source, randn_like

EpsFn = Callable[[Tensor], Tensor]

# Times at which a user eps(t) is checked when a solver evaluates it off any fixed grid.
_EPS_CHECK_POINTS = 1025


def field_gives_score(field: Field) -> bool:
    """Whether ``field`` can give :math:`\\nabla\\log p_t` (a Gaussian path, or an interpolant field
    with a denoiser; combinators need every member to)."""
    check_field(field)
    if isinstance(field, GuidedField):
        return field_gives_score(field.toward) and field_gives_score(field.base)
    if isinstance(field.path, GaussianPath):
        return True
    if isinstance(field.path, StochasticInterpolant):
        return not (isinstance(field, InterpolantField) and field.denoiser is None)
    return False


def check_score_field(field: Field, solver: str) -> None:
    """Raises a ValueError naming the solver if ``field`` cannot give a score.

    The message also lists the solvers that need no score (the ODE solvers).
    """
    if field_gives_score(field):
        return
    from flowbridge.samplers.base import SOLVERS

    applicable = sorted(n for n, cls in SOLVERS.items() if not cls.stochastic)
    if isinstance(field.path, StochasticInterpolant):
        why = "this interpolant field has no denoiser network (denoiser=None), so it cannot give a score"
    else:
        why = f"this field's path is {field.path!r}, which has no score"
    raise CapabilityError(
        f"solver {solver!r} needs a field that gives a score: a field on a GaussianPath, or an "
        f"InterpolantField with a denoiser; {why}. Solvers that apply: {', '.join(applicable)}"
    )


def natural_eps(field: Field, t: Tensor) -> Tensor:
    r""":math:`\epsilon(t) = \sigma(t)^2\,\dot\lambda(t)`, the diffusion level of the forward noising."""
    check_field(field)
    v = field.gaussian_path.schedule(t)
    # lambda' = alpha'/alpha - sigma'/sigma from the same values: one schedule evaluation, not two
    # (adaptive_sde evaluates this at every attempt).
    return v.sigma**2 * (v.d_alpha / v.alpha - v.d_sigma / v.sigma)


def default_eps(field: Field, t: Tensor) -> Tensor:
    r"""The default level at ``t``: :math:`\sigma^2\dot\lambda` on a Gaussian path, :math:`\gamma(t)` on an
    interpolant (before ``noise_scale``)."""
    path = field.path
    if isinstance(path, StochasticInterpolant):
        return path.gamma_scale * GAMMAS[path.gamma](t)[0]
    return natural_eps(field, t)


def eps_at(
    field: Field, t: Tensor, noise_scale: float, eps: EpsFn | None
) -> Tensor:
    """The diffusion level at times ``t`` (user ``eps`` if given, else ``noise_scale`` times the default)."""
    if eps is not None:
        return torch.as_tensor(eps(t), dtype=t.dtype, device=t.device).expand_as(t)
    return noise_scale * default_eps(field, t)


def check_levels(levels: Tensor, times: Tensor, solver: str) -> None:
    """Raises a ValueError if a CPU tensor of levels is non-finite or negative somewhere."""
    finite = torch.isfinite(levels)
    if not finite.all():
        raise ArgumentError(
            f"{solver}: the diffusion level eps(t) is not finite on the grid (at t={float(times[~finite][0]):.3g}); "
            "start later (t_span=(1e-3, ...)) or pass eps=callable"
        )
    if (levels < 0).any():
        bad = float(times[levels < 0][0])
        raise ArgumentError(
            f"{solver}: the diffusion level eps(t) must be >= 0 everywhere; got eps={float(levels.min()):.3g} "
            f"(first negative at t={bad:.3g})"
        )


def diffusion_levels(
    field: Field, grid: Tensor, noise_scale: float, eps: EpsFn | None, solver: str
) -> Tensor:
    """``eps`` on the grid's left points (float64 CPU), validated: finite and non-negative."""
    check_field(field)
    left = grid[:-1].to(torch.float64)
    levels = eps_at(field, left, noise_scale, eps).to(torch.float64)
    check_levels(levels, left, solver)
    return levels


def check_eps_on_span(field: Field, t_start: float, t_end: float, noise_scale: float, eps: EpsFn | None, solver: str) -> None:
    """Checks ``eps`` on a fine CPU grid of ``[t_start, t_end)`` (for solvers that evaluate it anywhere)."""
    times = torch.linspace(t_start, t_end, _EPS_CHECK_POINTS, dtype=torch.float64)[:-1]
    check_levels(eps_at(field, times, noise_scale, eps).to(torch.float64), times, solver)


def check_noise_scale(noise_scale: float) -> float:
    """Validates ``noise_scale >= 0`` and returns it as a float."""
    if not isinstance(noise_scale, (int, float)) or not 0 <= noise_scale < math.inf:
        raise ArgumentError(f"noise_scale must be >= 0 and finite; got {noise_scale}")
    return float(noise_scale)


def check_eps_callable(eps: object) -> None:
    """Raises a TypeError unless ``eps`` is ``None`` or callable."""
    if eps is not None and not callable(eps):
        raise ArgumentError(f"eps must be a callable eps(t) -> tensor or None; got {type(eps).__name__}")


class BrownianPath(NoiseSource):
    r"""One Brownian path :math:`W_t` over ``[t0, t1]`` for a batch, usable in place of a generator.

    Every fixed-step SDE sampler in :mod:`flowbridge.samplers.sde` accepts a ``BrownianPath`` as its
    ``generator``: the standard normal draw of step ``[t_i, t_{i+1}]`` is then
    :math:`(W_{t_{i+1}} - W_{t_i})/\sqrt{t_{i+1} - t_i}`, so that runs with different step counts see
    the *same* path and strong (pathwise) errors can be measured. The torchsde backends query it
    directly. It wraps a ``torchsde.BrownianInterval`` whose entropy is drawn from a torch generator
    (or given as ``seed``); one instance is a consistent path for any queries, in any order.

    Args:
        shape: (batch, *dims) of the state.
        t0: start of the time span.
        t1: end of the time span.
        generator: a torch generator to draw the entropy from (or pass ``seed``).
        seed: the entropy directly.
        dtype: of the increments.
        device: of the increments.
        levy_area: ``"none"`` or ``"space-time"`` (needed by ``torchsde:srk``).
        halfway_tree: make the path a function of the seed alone, independent of the queries'
            order and locations (slower; needs ``tol > 0``).
        tol: resolution of the path when ``halfway_tree`` is set.
    """

    def __init__(
        self,
        shape: tuple[int, ...],
        t0: float,
        t1: float,
        *,
        generator: torch.Generator | None = None,
        seed: int | None = None,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str = "cpu",
        levy_area: str = "space-time",
        halfway_tree: bool = False,
        tol: float = 1e-9,
    ) -> None:
        import torchsde

        if not (isinstance(t0, (int, float)) and isinstance(t1, (int, float)) and t0 < t1):
            raise ArgumentError(f"BrownianPath needs floats t0 < t1; got t0={t0!r}, t1={t1!r}")
        if not isinstance(shape, (tuple, list, torch.Size)):
            raise ArgumentError(f"shape must be a tuple (batch, *dims); got {type(shape).__name__}")
        if len(shape) < 1 or min(shape) < 1:
            raise ArgumentError(f"shape must be (batch, *dims) with positive sizes; got {tuple(shape)}")
        if seed is None:
            if generator is not None and not isinstance(generator, torch.Generator):
                raise ArgumentError(
                    f"BrownianPath draws its entropy from one torch.Generator; got {type(generator).__name__} "
                    "(per-sample seeds are not supported by a shared Brownian path)"
                )
            # sync-ok: one integer drawn once, before any step, to seed the Brownian tree.
            seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device if generator else "cpu"))
        self.shape = tuple(int(s) for s in shape)
        self.flat_shape = (self.shape[0], max(1, int(torch.Size(self.shape[1:]).numel())))
        self.t0, self.t1, self.seed = float(t0), float(t1), int(seed)
        self.interval = torchsde.BrownianInterval(
            t0=self.t0, t1=self.t1, size=self.flat_shape, dtype=dtype, device=device, entropy=self.seed,
            levy_area_approximation=levy_area, halfway_tree=halfway_tree, tol=tol if halfway_tree else 0.0,
        )

    needs_interval = True

    def increment(self, ta: float, tb: float) -> Tensor:
        """:math:`W_{t_b} - W_{t_a}` shaped like the state (batch, *dims)."""
        return self.interval(ta, tb).reshape(self.shape)

    def standard_normal(self, ta: float, tb: float, like: Tensor) -> Tensor:
        """The increment over ``[ta, tb]`` divided by its standard deviation, on ``like``'s device/dtype."""
        if tuple(like.shape) != self.shape:
            raise ArgumentError(f"the BrownianPath has shape {self.shape} but the state has shape {tuple(like.shape)}")
        return (self.increment(ta, tb) / (tb - ta) ** 0.5).to(device=like.device, dtype=like.dtype)

    def normal(self, shape: Sequence[int], *, dtype: torch.dtype, device: torch.device | str,
               interval: tuple[float, float] | None = None) -> Tensor:
        """The standardised increment over ``interval`` (a Brownian path has no draw without one)."""
        if interval is None:
            raise ArgumentError("a BrownianPath gives increments over a time step; this draw has none (pass a torch.Generator)")
        if tuple(shape) != self.shape:
            raise ArgumentError(f"the BrownianPath has shape {self.shape} but the draw has shape {tuple(shape)}")
        ta, tb = interval
        return (self.increment(ta, tb) / (tb - ta) ** 0.5).to(device=device, dtype=dtype)

    def uniform(self, shape: Sequence[int], *, dtype: torch.dtype, device: torch.device | str) -> Tensor:
        raise ArgumentError("a BrownianPath draws Brownian increments only, not uniforms; pass a torch.Generator")

    def split(self, start: int, stop: int) -> "NoiseSource":
        return _BrownianRows(self, start, stop)


class _BrownianRows(NoiseSource):
    """Samples ``start .. stop - 1`` of a :class:`BrownianPath` (chunked sampling)."""

    needs_interval = True

    def __init__(self, path: BrownianPath, start: int, stop: int) -> None:
        self.path, self.start, self.stop = path, start, stop

    def normal(self, shape: Sequence[int], *, dtype: torch.dtype, device: torch.device | str,
               interval: tuple[float, float] | None = None) -> Tensor:
        full = self.path.normal(self.path.shape, dtype=dtype, device=device, interval=interval)
        return full[self.start:self.stop]

    def uniform(self, shape: Sequence[int], *, dtype: torch.dtype, device: torch.device | str) -> Tensor:
        return self.path.uniform(shape, dtype=dtype, device=device)


@dataclass(frozen=True)
class StepNoise:
    """Where a fixed-step solver's Gaussian draws come from: the grid's left/right times as floats
    (used only when the randomness is a :class:`BrownianPath`)."""

    times: tuple[float, ...]


def step_normal(x: Tensor, noise: StepNoise, i: int, generator: RandomSource) -> Tensor:
    """A standard normal draw shaped like ``x`` for step ``i`` from the noise source (a Brownian
    path gives its increment over ``[t_i, t_{i+1}]``)."""
    return as_noise_source(generator).normal_like(x, interval=(noise.times[i], noise.times[i + 1]))


def plain_generator(generator: RandomSource, solver: str, what: str) -> RandomSource:
    """Returns ``generator`` unless it is a Brownian path, which ``what`` cannot use."""
    if isinstance(generator, NoiseSource) and generator.needs_interval:
        raise ArgumentError(f"{solver}: {what} has no time increment to take from a BrownianPath; pass a torch.Generator")
    return generator
