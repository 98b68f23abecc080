r"""The posterior-sampler protocol, its registry, the shared time grid and the Gaussian kernels.

Every sampler draws from :math:`p(x_1 \mid y) \propto p(x_1)\,p(y \mid A(x_1))` with a prior given as a
:class:`~flowbridge.fields.Field` on a :class:`~flowbridge.paths.GaussianPath`
(:math:`x_t = \alpha_t x_1 + \sigma_t x_0`, ``t = 0`` noise, ``t = 1`` data). Samplers declare what they
need as class attributes; :meth:`PosteriorSampler.check` refuses before any work is done.

Time grid: ``steps`` field evaluations at :math:`t_0 < \dots < t_{N-1}` on the path, then a final
"clean" node with :math:`\alpha = 1, \sigma = 0`; step ``i`` moves from node ``i`` to node ``i+1``.

The reverse kernel between nodes :math:`(\alpha, \sigma) \to (\alpha', \sigma')` given a data estimate
:math:`\hat x_1` is the Gaussian bridge of the path: with :math:`a = \alpha/\alpha'` and
:math:`\beta^2 = \sigma^2 - a^2\sigma'^2`,

.. math::
    q(x' \mid x, \hat x_1) = N\Big(\frac{a\sigma'^2}{\sigma^2} x + \frac{\alpha'\beta^2}{\sigma^2}\hat x_1,\;
    \frac{\sigma'^2\beta^2}{\sigma^2} I\Big),

(DDPM's ancestral step in any Gaussian path); DDIM with parameter :math:`\eta` keeps the mean direction
:math:`\alpha'\hat x_1 + \sqrt{\sigma'^2 - c^2}\,\hat x_0` and adds noise of variance
:math:`c^2 = \eta^2\sigma'^2\beta^2/\sigma^2`.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Sequence
from dataclasses import dataclass, field as dc_field
from typing import Any, Callable, ClassVar

import torch
from torch import Tensor

from flowbridge.errors import ArgumentError, CapabilityError
from flowbridge._utils import register_in, registry_error
from flowbridge.fields.base import Field
from flowbridge.inverse.measurement import Measurement
from flowbridge.paths.gaussian import GaussianPath
from flowbridge.random import RandomSource, randn_like
from flowbridge.samplers.base import Observer, SamplingResult, StepInfo
from flowbridge.samplers.grids import explicit_grid
from flowbridge.samplers.grids import make_grid

POSTERIOR_SAMPLERS: dict[str, type["PosteriorSampler"]] = {}


def register_posterior_sampler(name: str) -> Callable[[type["PosteriorSampler"]], type["PosteriorSampler"]]:
    """Class decorator adding a posterior sampler to :data:`POSTERIOR_SAMPLERS`.

    Raises:
        ValueError: if ``name`` is already registered to another class (as ``register_solver``,
            ``register_grid`` and ``register_schedule``: a silent replacement would change every caller).
    """

    def wrap(cls: type[PosteriorSampler]) -> type[PosteriorSampler]:
        register_in(POSTERIOR_SAMPLERS, "posterior sampler", name, cls)
        cls.name = name
        return cls

    return wrap


def get_posterior_sampler(name: "str | PosteriorSampler", **options: Any) -> "PosteriorSampler":
    """Builds a registered posterior sampler by name (or returns an instance as is); unknown names
    and options fail with the known ones (:class:`~flowbridge.errors.ArgumentError`)."""
    if isinstance(name, PosteriorSampler):
        if options:
            raise ArgumentError(f"options {sorted(options)} given with a posterior sampler instance; set them on the instance")
        return name
    if not isinstance(name, str):
        raise ArgumentError(
            f"method must be a registered name or a PosteriorSampler instance; got {type(name).__name__}; "
            f"known posterior samplers: {', '.join(sorted(POSTERIOR_SAMPLERS))}"
        )
    if name not in POSTERIOR_SAMPLERS:
        raise registry_error("posterior sampler", name, list(POSTERIOR_SAMPLERS))
    cls = POSTERIOR_SAMPLERS[name]
    params = [k for k in inspect.signature(cls.__init__).parameters if k != "self"]
    unknown = sorted(k for k in options if k not in params)
    if unknown:
        raise ArgumentError(f"posterior sampler {name!r} has no option(s) {unknown}; its options: {params or 'none'}")
    return cls(**options)


@dataclass
class Counters:
    """Work done per sample (per particle for particle methods); plain Python ints, no device syncs.

    Attributes:
        nfe: prior-field (network) evaluations.
        network_backprops: backward passes through the network.
        operator_calls: forward-model evaluations (each vjp counts one more).
        adjoint_calls: adjoint / vjp applications of the forward model.
    """

    nfe: int = 0
    network_backprops: int = 0
    operator_calls: int = 0
    adjoint_calls: int = 0


@dataclass(frozen=True)
class PosteriorSamples(SamplingResult):
    """What :func:`flowbridge.inverse.sample` returns.

    Attributes:
        x: (num_samples, *shape) posterior draws (also ``samples``); for particle samplers, one
            draw from each independent group's final weighted particles.
        nfe: prior-field evaluations per sample or particle (``counters.nfe``).
        method: the sampler's name.
        counters: work per sample or per particle (:class:`Counters`).
        log_weights: (num_samples, particles) normalised final log-weights, or ``None``.
        particles: (num_samples, particles, *shape) final particles, or ``None``.
        ess: (num_samples,) final effective sample size of each group, or ``None``.
        min_ess: (num_samples,) smallest ESS seen during the run (before resampling), or ``None``.
    """

    method: str
    counters: Counters
    log_weights: Tensor | None = None
    particles: Tensor | None = None
    ess: Tensor | None = None
    min_ess: Tensor | None = None

    @property
    def samples(self) -> Tensor:
        """The posterior draws (``x``)."""
        return self.x


@dataclass(frozen=True)
class TimeGrid:
    """Grid nodes as Python floats (index them with Python ints inside the loop: no syncs).

    Attributes:
        t: the path times of the ``steps`` evaluation nodes (the final clean node has ``t = 1``).
        alpha, sigma: path coefficients at every node, the last being (1, 0).
    """

    t: tuple[float, ...]
    alpha: tuple[float, ...]
    sigma: tuple[float, ...]

    @property
    def steps(self) -> int:
        return len(self.t) - 1

    def sigma_bar(self, i: int) -> float:
        r""":math:`\sigma/\alpha` at node ``i`` (the noise level in data units)."""
        return self.sigma[i] / self.alpha[i]

    def bridge(self, i: int) -> tuple[float, float, float]:
        r"""Coefficients ``(c_x, c_1, var)`` of the ancestral kernel from node ``i`` to ``i + 1``:
        mean ``c_x x + c_1 x1_hat``, variance ``var``."""
        a0, s0, a1, s1 = self.alpha[i], self.sigma[i], self.alpha[i + 1], self.sigma[i + 1]
        a = a0 / a1
        beta2 = max(s0 * s0 - a * a * s1 * s1, 0.0)
        return a * s1 * s1 / (s0 * s0), a1 * beta2 / (s0 * s0), s1 * s1 * beta2 / (s0 * s0)

    @staticmethod
    def build(path: GaussianPath, steps: int, *, grid: str | Sequence[float] | Tensor = "uniform",
              t_start: float | None = None, t_end: float | None = None,
              grid_options: dict[str, float] | None = None) -> "TimeGrid":
        """``steps`` nodes from ``t_start`` to ``t_end`` on ``path`` plus the clean node.

        ``grid`` is a registered grid's name, or ``steps + 1`` explicit times (e.g. a tuned grid): the
        first ``steps`` are the nodes, where the field is evaluated (as a solver on those times
        evaluates it), and the last, where a solver would stop, is replaced by the clean node ``t = 1``
        (every posterior sampler ends on clean data). ``t_start``/``t_end``, if given, must be the
        explicit grid's ends.
        """
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ArgumentError(f"steps must be a positive integer; got {steps!r}")
        if grid is not None and not isinstance(grid, str):
            if grid_options:
                raise ArgumentError(f"grid_options {sorted(grid_options)} apply to a registered grid, not to explicit times")
            span = None if t_start is None and t_end is None else (
                float(grid[0]) if t_start is None else t_start, float(grid[-1]) if t_end is None else t_end)
            given = explicit_grid(grid, steps, span)
            nodes = given[:-1]
            v = path.schedule(nodes)
            if not bool((v.alpha > 0).all()) or not bool((v.sigma > 0).all()):
                raise ArgumentError(
                    f"grid: every node but the last must have alpha > 0 and sigma > 0 on the prior's path (sigma/alpha "
                    f"finite and non-zero); got times {nodes.tolist()}"
                )
            return TimeGrid(t=tuple(nodes.tolist()) + (1.0,), alpha=tuple(v.alpha.tolist()) + (1.0,),
                            sigma=tuple(v.sigma.tolist()) + (0.0,))
        start = path.t_min if t_start is None else t_start
        end = path.t_max if t_end is None else t_end
        if float(path.schedule(torch.tensor(start, dtype=torch.float64)).alpha) <= 0:
            start = 1e-3  # alpha = 0 (e.g. the linear schedule) makes sigma/alpha infinite
        if float(path.schedule(torch.tensor(end, dtype=torch.float64)).sigma) <= 0:
            end = 1 - 1e-3
        if steps == 1:
            times = torch.tensor([start], dtype=torch.float64)
        else:
            times = make_grid(grid, steps - 1, start, end, path.schedule, **(grid_options or {}))
        v = path.schedule(times)
        return TimeGrid(
            t=tuple(times.tolist()) + (1.0,),
            alpha=tuple(v.alpha.tolist()) + (1.0,),
            sigma=tuple(v.sigma.tolist()) + (0.0,),
        )


@dataclass
class Context:
    """Everything fixed during one run, shared by ``init``, ``step`` and ``finish``."""

    field: Field
    measurement: Measurement
    grid: TimeGrid
    shape: tuple[int, ...]
    counters: Counters = dc_field(default_factory=Counters)
    cache: dict[str, Any] = dc_field(default_factory=dict)

    def time(self, i: int, like: Tensor) -> Tensor:
        """The time of node ``i`` as a (B,) tensor for the field."""
        return torch.full((like.shape[0],), self.grid.t[i], dtype=like.dtype, device=like.device)

    def denoise(self, x: Tensor, i: int) -> Tensor:
        r""":math:`\hat x_1 = E[x_1 \mid x_{t_i}]` (one NFE per sample)."""
        return self.field.data(x, self.time(i, x))

    def forward(self, x: Tensor) -> Tensor:
        return self.measurement.operator.forward(x)

    def y(self, like: Tensor) -> Tensor:
        return self.measurement.batched(like)


def ddim_step(grid: TimeGrid, i: int, x: Tensor, x1_hat: Tensor, eta: float, *, generator: RandomSource) -> Tensor:
    r"""DDIM from node ``i`` to ``i+1``: :math:`\alpha'\hat x_1 + \sqrt{\sigma'^2 - c^2}\,\hat x_0 + c\,\xi`.

    :math:`\eta = 1` is the ancestral (DDPM) kernel, :math:`\eta = 0` the deterministic DDIM map.
    """
    a1, s1, s0, a0 = grid.alpha[i + 1], grid.sigma[i + 1], grid.sigma[i], grid.alpha[i]
    x0_hat = (x - a0 * x1_hat) / s0
    c2 = eta * eta * grid.bridge(i)[2]
    out = a1 * x1_hat + math.sqrt(max(s1 * s1 - c2, 0.0)) * x0_hat
    if c2 > 0:
        out = out + math.sqrt(c2) * randn_like(x, generator=generator)
    return out


class PosteriorSampler:
    """Base class of all posterior samplers.

    Class attributes declare requirements, checked by :meth:`check`:
        needs_svd: the operator must provide an SVD (``LinearOperator.svd``).
        needs_linear: the operator must be linear (adjoint / normal equations).
        needs_vjp: the operator must be differentiable (gradients flow through it).
        needs_gaussian_noise: the noise model must be :class:`~flowbridge.inverse.Gaussian`.
        network_backprop: the sampler differentiates through the prior field.
        uses_particles: the sampler runs groups of interacting particles (``particles >= 2``).
        exact: asymptotically exact (as particles and steps grow).
        returns_all_particles: every particle is a sample (unweighted ensembles): ``num_samples``
            samples come from ``ceil(num_samples / particles)`` groups.
    """

    name: ClassVar[str] = "posterior"
    needs_svd: ClassVar[bool] = False
    needs_linear: ClassVar[bool] = False
    needs_vjp: ClassVar[bool] = False
    needs_gaussian_noise: ClassVar[bool] = False
    network_backprop: ClassVar[bool] = False
    uses_particles: ClassVar[bool] = False
    exact: ClassVar[bool] = False
    returns_all_particles: ClassVar[bool] = False
    default_particles: ClassVar[int] = 1

    def check(self, field: Field, measurement: Measurement, particles: int) -> None:
        """Raises TypeError / ValueError naming what is missing before any work is done."""
        op = measurement.operator
        if not isinstance(field.path, GaussianPath):
            raise CapabilityError(f"posterior sampler {self.name!r} needs a prior field on a GaussianPath; got path={field.path!r}")
        others = lambda pred: ", ".join(sorted(n for n, c in POSTERIOR_SAMPLERS.items() if pred(c)))  # noqa: E731
        if self.needs_vjp and not op.differentiable:
            raise CapabilityError(
                f"posterior sampler {self.name!r} needs gradients through the forward model, but "
                f"{type(op).__name__} has differentiable=False; derivative-free samplers that apply: "
                f"{others(lambda c: not c.needs_vjp and not c.needs_linear and not c.needs_svd)}"
            )
        if (self.needs_linear or self.needs_svd) and not op.linear:
            raise CapabilityError(
                f"posterior sampler {self.name!r} needs a linear operator; {type(op).__name__} is not linear. "
                f"Samplers for nonlinear models: {others(lambda c: not c.needs_linear and not c.needs_svd)}"
            )
        if self.needs_svd and not op.has_svd:
            raise CapabilityError(
                f"posterior sampler {self.name!r} needs the operator's SVD; {type(op).__name__} provides none. "
                f"Samplers without an SVD: {others(lambda c: not c.needs_svd)}"
            )
        if self.needs_gaussian_noise and not measurement.noise.gaussian:
            raise CapabilityError(
                f"posterior sampler {self.name!r} needs Gaussian observation noise; got {measurement.noise!r}"
            )
        if self.uses_particles and (not isinstance(particles, int) or particles < 2):
            raise ArgumentError(f"posterior sampler {self.name!r} runs particles: particles must be an integer >= 2; got {particles!r}")

    # Subclasses implement init / step / finish.
    def init(self, ctx: Context, x: Tensor, *, generator: RandomSource) -> Any:
        raise NotImplementedError

    def step(self, ctx: Context, state: Any, i: int, *, generator: RandomSource) -> Any:
        raise NotImplementedError

    def finish(self, ctx: Context, state: Any, *, generator: RandomSource) -> PosteriorSamples:
        raise NotImplementedError

    def run(self, ctx: Context, x_init: Tensor, *, generator: RandomSource, observer: Observer | None = None,
            offset: int = 0) -> PosteriorSamples:
        """``init``, then ``step`` for every grid interval (``observer`` sees a
        :class:`~flowbridge.samplers.StepInfo` after each, ``offset`` the chunk's first sample),
        then ``finish``."""
        state = self.init(ctx, x_init, generator=generator)
        steps = ctx.grid.steps
        for i in range(steps):
            state = self.step(ctx, state, i, generator=generator)
            if observer is not None:
                observer(StepInfo(step=i, steps=steps, t=ctx.grid.t[i + 1], x=state.x, offset=offset))
        return self.finish(ctx, state, generator=generator)


def data_with_grad(ctx: Context, x: Tensor, i: int) -> tuple[Tensor, Tensor]:
    """``(x_leaf, x1_hat(x_leaf))`` with autograd enabled, for guidance through the network."""
    with torch.enable_grad():
        leaf = x.detach().requires_grad_(True)
        return leaf, ctx.denoise(leaf, i)


def gradient(output: Tensor, leaf: Tensor) -> Tensor:
    """:math:`\\nabla` of ``output.sum()`` w.r.t. ``leaf``: per-sample gradients when samples are independent."""
    (g,) = torch.autograd.grad(output.sum(), leaf)
    return g
