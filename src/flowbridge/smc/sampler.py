r"""``flowbridge.smc.sample``: sequential Monte Carlo with Feynman–Kac weights along a Gaussian path.

Each step makes one weighted Euler–Maruyama move of every particle (the target decides the drift
and the log-weight increment), records the ESS, and lets the resampling policy decide whether to
resample. The running estimate of the log normalising constant is the usual product of mean
incremental weights,

.. math::
    \log\hat Z = \log Z_{t_0} + \sum_{\text{resampling epochs } e} \log\frac1N\sum_i w^i_e,

where :math:`w_e` are the weights accumulated since the previous resampling (reset to 1 after each);
it is unbiased for :math:`Z` (not for :math:`\log Z`) given exact increments.

The loop has no host syncs: coefficients are precomputed, ESS-triggered resampling selects
ancestors with ``torch.where``, and weight collapse and non-finite increments are recorded in
tensors and reported once after the loop.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from flowbridge.errors import ArgumentError
from flowbridge.paths.gaussian import GaussianPath
from flowbridge.random import RandomSource
from flowbridge.samplers.base import SamplingError
from flowbridge.samplers.grids import make_grid
from flowbridge.smc.base import InitialParticles, SMCTarget, WeightCollapseError
from flowbridge.smc.coefficients import MOVES, step_coefficients
from flowbridge.smc.geometric import WEIGHT_RULES
from flowbridge.smc.particles import Particles
from flowbridge.smc.pcnl import PCNL, pcnl_initial
from flowbridge.smc.policies import ResamplePolicy, get_policy
from flowbridge.smc.resampling import get_resampler



@dataclass(frozen=True)
class SMCResult:
    """What :func:`sample` returns.

    Attributes:
        samples: (N, ...) equally weighted samples (the final particles resampled once more).
        particles: the final weighted particles (before that last resampling).
        ess: (S,) effective sample size after each step's reweighting, before resampling.
        resampled: (S,) whether the policy resampled after each step.
        num_resamplings: how many times the loop resampled.
        log_normalizer: estimate of :math:`\\log\\int\\tilde q_{t_1}` (0-dim), or ``None`` when the
            initial particles' normaliser is unknown (user-given particles, pCNL) or weights were
            not corrected.
        nfe: field evaluations per particle, initialisation included.
        times: (S+1,) the grid.
        init_acceptance: acceptance rate of an MCMC initialisation, else ``None``.
    """

    samples: Tensor
    particles: Particles
    ess: Tensor
    resampled: Tensor
    num_resamplings: int
    log_normalizer: Tensor | None
    nfe: int
    times: Tensor
    init_acceptance: Tensor | None = None

    @property
    def ess_fraction(self) -> Tensor:
        """The ESS trace divided by the number of particles."""
        return self.ess / self.particles.n


def sample(
    target: SMCTarget,
    particles: int | Particles = 1024,
    *,
    shape: Sequence[int] | None = None,
    solver: str = "euler_maruyama",
    steps: int = 100,
    resample: str | ResamplePolicy | None = "ess",
    generator: RandomSource = None,
    noise_scale: float = 1.0,
    extra_noise: float = 0.0,
    weight_rule: str = "trapezoid",
    init: str | PCNL = "gaussian",
    correct: bool = True,
    grid: str = "uniform",
    t_span: tuple[float, float] | None = None,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> SMCResult:
    r"""Samples a Feynman–Kac target with weighted particles and resampling.

    Args:
        target: :func:`~flowbridge.smc.anneal`, :func:`~flowbridge.smc.product`,
            :func:`~flowbridge.smc.guided` or :func:`~flowbridge.smc.tilted`.
        particles: the number ``N >= 2`` of particles, or initial :class:`Particles` at ``t_span[0]``
            (drawn from the target's source law; their weights are kept).
        shape: per-particle shape, e.g. ``(2,)`` (needed when ``particles`` is a number).
        solver: the move: ``"euler_maruyama"`` (default) or ``"exponential"`` (exact on the linear
            part of the drift, accurate only for small ``noise_scale``); see
            :mod:`flowbridge.smc.coefficients`.
        steps: number of moves.
        resample: a :class:`ResamplePolicy` (``EveryStep(warmup=, method=)``,
            ``ESSBelow(threshold=, method=)``: options by keyword, ``Never()``) or ``"every"``,
            ``"ess"``, ``"never"``/``None``.
        generator: the only source of randomness (moves, resampling, initialisation).
        noise_scale: multiplier :math:`\nu` of the natural diffusion level :math:`\eta = \sigma^2\dot\lambda`.
        extra_noise: a constant :math:`\epsilon_+` added to the diffusion level,
            :math:`\epsilon = \nu\eta + \epsilon_+`. The Feynman–Kac weights do not depend on
            :math:`\epsilon` (its part of the dynamics is Langevin on the target itself), but the
            variance does: for sharpening targets (:math:`B > 1`) the drift contracts, and where
            :math:`\eta` is small (near the data) duplicated particles only separate by noise.
        weight_rule: time quadrature of the weight rate for geometric targets: ``"trapezoid"``
            (one extra evaluation in all, second order) or ``"euler"`` (left point).
        init: ``"gaussian"`` (the target's source law) or :class:`PCNL` options (tilted targets).
        correct: ``False`` runs the same drift without weights or resampling: the uncorrected
            heuristic (scaled score, summed scores, plain CFG, reward gradient guidance).
        grid: time grid name (``uniform``, ``quadratic``, ``logsnr``, ``karras``).
        t_span: (t0, t1), default the path's regular interval.
        dtype: of the particles drawn when ``particles`` is a number.
        device: of the particles drawn when ``particles`` is a number.

    Returns:
        :class:`SMCResult`.

    Raises:
        ValueError: bad particle counts, shapes, options or coefficients.
        WeightCollapseError: every weight became zero (reported with the step and time).
        SamplingError: non-finite weight increments (NaN or ``+inf`` rewards or scores) or samples.
    """
    if not isinstance(target, SMCTarget):
        raise ArgumentError(f"target must be built by anneal, product, guided or tilted; got {type(target).__name__}")
    if solver not in MOVES:
        raise ArgumentError(f"unknown SMC solver {solver!r}; known: {', '.join(MOVES)}")
    if not isinstance(steps, int) or steps < 1:
        raise ArgumentError(f"steps must be a positive integer; got {steps!r}")
    if weight_rule not in WEIGHT_RULES:
        raise ArgumentError(f"unknown weight_rule {weight_rule!r}; known: {', '.join(WEIGHT_RULES)}")
    policy = get_policy(resample)
    resampler = get_resampler(policy.method)
    path: GaussianPath = target.path
    t0, t1 = t_span if t_span is not None else (path.t_min, path.t_max)
    times = make_grid(grid, steps, float(t0), float(t1), path.schedule)

    given: Particles | None = None
    if isinstance(particles, Particles):
        given = particles
        n, event = given.n, tuple(given.x.shape[1:])
        dtype, dev = given.x.dtype, given.x.device
    else:
        if isinstance(particles, bool) or not isinstance(particles, int) or particles < 2:
            raise ArgumentError(f"particles must be an integer >= 2 (or Particles); got {particles!r}")
        if shape is None:
            raise ArgumentError("give shape=(d,) (the per-particle shape) when particles is a number")
        event = tuple(int(s) for s in shape)
        if not event or min(event) < 1:
            raise ArgumentError(f"shape must be a non-empty per-particle shape with positive sizes; got {tuple(shape)}")
        n = particles
        dtype = dtype or torch.get_default_dtype()
        dev = torch.device(device) if device is not None else torch.device("cpu")
    c = step_coefficients(
        path, times, noise_scale, move=solver, exponent_sum=target.exponent_sum, extra_noise=extra_noise,
        dtype=dtype, device=dev,
    )

    if given is not None:
        if isinstance(init, PCNL):
            raise ArgumentError("init=PCNL(...) draws the particles itself; do not also pass Particles")
        start = InitialParticles(x=given.x, log_weights=given.log_weights, log_normalizer=None)
        check = getattr(target, "check_reward", None)
        if check is not None:
            check(given.x, c)
    elif isinstance(init, PCNL):
        start = pcnl_initial(target, init, n, event, c, generator=generator, dtype=dtype, device=dev)  # type: ignore[arg-type]
    elif init == "gaussian":
        start = target.initial(n, event, c, generator=generator, dtype=dtype, device=dev)
    else:
        raise ArgumentError(f"init must be 'gaussian' or PCNL(...); got {init!r}")

    cache, log_w = target.start(start, c, final=False)
    if not correct:
        log_w = torch.zeros_like(log_w)
    x = start.x
    log_n = math.log(n)
    log_z = torch.zeros((), dtype=dtype, device=dev)
    ess_trace = torch.empty(steps, dtype=dtype, device=dev)
    resampled = torch.zeros(steps, dtype=torch.bool, device=dev)
    collapse_at = torch.full((), -1, dtype=torch.long, device=dev)
    n_bad = torch.zeros((), dtype=torch.long, device=dev)
    identity = torch.arange(n, device=dev)
    for i in range(steps):
        final = i == steps - 1
        moved = target.move(x, cache, i, c, generator=generator, weight_rule=weight_rule, final=final)
        x, cache = moved.x, moved.cache
        if correct:
            inc = moved.log_increment
            bad = torch.isnan(inc) | (inc == math.inf)
            n_bad = n_bad + bad.sum()
            log_w = log_w + torch.where(bad, torch.full_like(inc, -math.inf), inc)
        lse = torch.logsumexp(log_w, dim=0)
        collapse_at = torch.where((collapse_at < 0) & torch.isneginf(lse), torch.full_like(collapse_at, i), collapse_at)
        ess = torch.exp(2 * lse - torch.logsumexp(2 * log_w, dim=0))
        ess_trace[i] = ess
        if final or not correct:
            continue
        decision = policy.decide(i, ess, n)
        if decision is False:
            continue
        ancestors = resampler(log_w, generator=generator)
        if decision is True:
            log_z = log_z + (lse - log_n)
            log_w = torch.zeros_like(log_w)
            resampled[i] = True
        else:
            ancestors = torch.where(decision, ancestors, identity)
            log_z = log_z + torch.where(decision, lse - log_n, torch.zeros_like(lse))
            log_w = torch.where(decision, torch.zeros_like(log_w), log_w)
            resampled[i] = decision
        x = x.index_select(0, ancestors)
        cache = cache.take(ancestors)

    log_z = log_z + torch.logsumexp(log_w, dim=0) - log_n
    final_particles = Particles(x, log_w)
    samples = x.index_select(0, resampler(log_w, generator=generator))
    # sync-ok: the one report after the loop (collapse, bad increments, resampling count).
    first_collapse, bad_total = int(collapse_at), int(n_bad)
    if bad_total:
        raise SamplingError(
            f"SMC produced NaN or +inf log-weight increments in {bad_total} particle-steps; the reward (or a "
            "field's score) returned non-finite values inside the loop (a reward may return -inf, not NaN or +inf)"
        )
    if first_collapse >= 0:
        t_c = float(times[first_collapse + 1])
        raise WeightCollapseError(
            f"SMC weight collapse: all {n} particle weights became zero after step {first_collapse} (t={t_c:.4g}); "
            "the target puts no mass where the particles are (e.g. a reward of -inf everywhere) — "
            "use more particles, a gentler temperature or fewer hard constraints",
            step=first_collapse, time=t_c, ess=ess_trace,
        )
    if not bool(torch.isfinite(samples).all()):
        raise SamplingError(f"SMC produced non-finite samples ({steps} steps); try more steps")
    known_z = correct and start.log_normalizer is not None
    return SMCResult(
        samples=samples,
        particles=final_particles,
        ess=ess_trace,
        resampled=resampled,
        num_resamplings=int(resampled.sum()),
        log_normalizer=(log_z + start.log_normalizer) if known_z else None,  # type: ignore[operator]
        nfe=start.nfe + target.nfe(steps, weight_rule),
        times=times,
        init_acceptance=start.acceptance,
    )
