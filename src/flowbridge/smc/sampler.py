r"""``flowbridge.smc.sample``: sequential Monte Carlo with Feynman–Kac weights along a Gaussian path.

One kernel protocol moves the particles: any registered solver with a Gaussian transition
(:attr:`~flowbridge.samplers.Solver.gaussian_transition`: ``euler_maruyama``, ``ddpm_ancestral``,
``dpmpp_2m_sde``, ...) is a weighted driver's kernel. The driver

1. initialises the solver once on the grid, ``state = solver.init(target.field, x, grid)``;
2. per step asks it for the transition of the target's field at the particles,
   ``solver.transition(target.kernel_field(x, cache), x, state, i) -> (mean, std, state)``, the
   field's evaluation being the one the target already made for its weights (no extra NFE);
3. lets the target draw :math:`x' = \text{mean} + \text{std}\,\xi` from the noise source (shifted by
   a twist for tilted targets) and return the log-weight increments;
4. records the ESS and lets the resampling policy decide whether to resample (the solver's
   per-particle history, e.g. ``dpmpp_2m_sde``'s previous data prediction, is resampled with the
   particles).

The built-in ``exponential`` move (:mod:`flowbridge.smc.coefficients`), which uses the target's
exponent sum, takes the place of step 2 when named. The running estimate of the log normalising
constant is the usual product of mean incremental weights,

.. math::
    \log\hat Z = \log Z_{t_0} + \sum_{\text{resampling epochs } e} \log\frac1N\sum_i w^i_e,

where :math:`w_e` are the weights accumulated since the previous resampling (reset to 1 after each);
it is unbiased for :math:`Z` (not for :math:`\log Z`) given exact increments.

The loop has no host syncs: coefficients are precomputed, ESS-triggered resampling selects
ancestors with ``torch.where``, and weight collapse and non-finite increments are recorded in
tensors and reported once after the loop.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from flowbridge._progress import Progress
from flowbridge.errors import ArgumentError, CapabilityError
from flowbridge.paths.gaussian import GaussianPath
from flowbridge.random import RandomSource, grouped_noise_source
from flowbridge.samplers.base import SOLVERS, Observer, SamplingError, SamplingResult, Solver, StepInfo, get_solver
from flowbridge.samplers.grids import explicit_grid, make_grid
from flowbridge.samplers.presets import TunedSolver
from flowbridge.smc.base import InitialParticles, SMCTarget, WeightCollapseError
from flowbridge.smc.coefficients import step_coefficients
from flowbridge.smc.geometric import WEIGHT_RULES
from flowbridge.smc.particles import Particles
from flowbridge.smc.pcnl import PCNL, pcnl_initial
from flowbridge.smc.policies import ResamplePolicy, get_policy
from flowbridge.smc.resampling import get_resampler, resample_groups, take_particles


#: the moves built into the targets (not registered solvers); see :mod:`flowbridge.smc.coefficients`
BUILTIN_MOVES: tuple[str, ...] = ("exponential",)


def kernels() -> list[str]:
    """The names :func:`sample` accepts as ``solver``: the built-in moves and every registered
    solver with a Gaussian transition."""
    return sorted([*BUILTIN_MOVES, *(n for n, cls in SOLVERS.items() if cls.gaussian_transition)])


def get_kernel(
    solver: str | Solver, path: GaussianPath, noise_scale: float, extra_noise: float, **options: Any,
) -> Solver | None:
    r"""The kernel of :func:`sample`: ``None`` for a built-in move, else a registered solver.

    ``euler_maruyama`` by name is built on the SMC diffusion level,
    :math:`\epsilon = \nu\,\sigma^2\dot\lambda + \epsilon_+` (``noise_scale``, ``extra_noise``).
    Any other kernel fixes its own level (its options, e.g. ``DDPMAncestral(eta=)``:
    :math:`\epsilon = \eta^2\sigma^2\dot\lambda`; ``DPMSolverPP2MSDE(eta=)``:
    :math:`\epsilon = \eta\,\sigma^2\dot\lambda`; an ``EulerMaruyama`` instance its own
    ``noise_scale``/``eps``), so ``noise_scale`` and ``extra_noise`` must keep their defaults there.

    Raises:
        ArgumentError: an unknown name or a non-solver.
        CapabilityError: a solver without a Gaussian transition, or ``noise_scale``/``extra_noise``
            given with a kernel that fixes its own diffusion level.
    """
    if isinstance(solver, str):
        if solver in BUILTIN_MOVES:
            if options:
                raise ArgumentError(
                    f"the built-in {solver!r} move has no option(s) {sorted(options)}; its diffusion level is set by "
                    "smc.sample's noise_scale and extra_noise"
                )
            return None
        if solver not in SOLVERS:
            raise ArgumentError(f"unknown SMC solver (move) {solver!r}; known: {', '.join(kernels())}")
    elif not isinstance(solver, Solver):
        raise ArgumentError(
            f"solver must be a name (str) or a Solver instance; got {type(solver).__name__}; known: {', '.join(kernels())}"
        )
    name = solver if isinstance(solver, str) else solver.name
    if not (type(solver) if isinstance(solver, Solver) else SOLVERS[name]).gaussian_transition:
        raise CapabilityError(
            f"solver {name!r} has no Gaussian transition, so SMC cannot use it as a kernel; known: {', '.join(kernels())}"
        )
    if solver == "euler_maruyama":
        from flowbridge.samplers.sde.euler_maruyama import EulerMaruyama

        get_solver(solver, **options)  # unknown options fail here with the solver's options
        level = {k: options.pop(k) for k in ("noise_scale", "eps") if k in options}
        if level:
            raise ArgumentError(
                f"euler_maruyama's {sorted(level)} is SMC's diffusion level: pass noise_scale= / extra_noise= to smc.sample"
            )
        if extra_noise == 0:
            return EulerMaruyama(noise_scale=noise_scale, **options)
        return EulerMaruyama(eps=functools.partial(_smc_level, path=path, noise_scale=noise_scale, extra_noise=extra_noise), **options)
    if noise_scale != 1.0 or extra_noise != 0.0:
        option = "noise_scale" if noise_scale != 1.0 else "extra_noise"
        raise CapabilityError(
            f"{option} sets the diffusion level of solver='euler_maruyama' or 'exponential' given by name; the kernel "
            f"{name!r} given here fixes its own level (set it on the solver instance, e.g. eta= or noise_scale=); got {option}="
            f"{noise_scale if option == 'noise_scale' else extra_noise}"
        )
    return get_solver(solver, **options)


def _smc_level(t: Tensor, *, path: GaussianPath, noise_scale: float, extra_noise: float) -> Tensor:
    """:math:`\\nu\\,\\sigma^2\\dot\\lambda + \\epsilon_+` at ``t`` (the level of :func:`step_coefficients`)."""
    return noise_scale * path.schedule(t).sigma ** 2 * path.schedule.d_log_snr(t) + extra_noise


def take_state(state: object, ancestors: Tensor, n: int) -> object:
    """A kernel's state after resampling: its top-level tensor fields with one row per particle
    (per-particle history, e.g. ``dpmpp_2m_sde``'s previous data prediction) follow ``ancestors``;
    everything else (coefficients, times) is shared by all particles and kept."""
    if not dataclasses.is_dataclass(state):
        return state
    moved = {
        f.name: v.index_select(0, ancestors)
        for f in dataclasses.fields(state)
        if isinstance(v := getattr(state, f.name), Tensor) and v.ndim > 0 and v.shape[0] == n
    }
    return dataclasses.replace(state, **moved) if moved else state  # type: ignore[type-var]


@dataclass(frozen=True)
class SMCResult(SamplingResult):
    """What :func:`sample` returns.

    Attributes:
        x: (N, ...) equally weighted samples (the final particles resampled once more); also
            ``samples``.
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

    particles: Particles
    ess: Tensor
    resampled: Tensor
    num_resamplings: int
    log_normalizer: Tensor | None
    times: Tensor
    init_acceptance: Tensor | None = None

    @property
    def samples(self) -> Tensor:
        """The equally weighted samples (``x``)."""
        return self.x

    @property
    def ess_fraction(self) -> Tensor:
        """The ESS trace divided by the number of particles."""
        return self.ess / self.particles.n


def sample(
    target: SMCTarget,
    solver: str | Solver = "euler_maruyama",
    steps: int = 100,
    *,
    shape: Sequence[int] | None = None,
    particles: int | Particles | None = None,
    resample: str | ResamplePolicy | None = "ess",
    generator: RandomSource = None,
    seeds: Sequence[int] | None = None,
    seed: int | None = None,
    noise_scale: float = 1.0,
    extra_noise: float = 0.0,
    weight_rule: str = "trapezoid",
    init: str | PCNL = "gaussian",
    correct: bool = True,
    grid: str | Sequence[float] | Tensor = "uniform",
    grid_options: dict[str, float] | None = None,
    t_span: tuple[float, float] | None = None,
    batch_size: int | None = None,
    progress: bool = False,
    callback: Observer | None = None,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    **solver_options: Any,
) -> SMCResult:
    r"""Samples a Feynman–Kac target with weighted particles and resampling.

    Args:
        target: :func:`~flowbridge.smc.anneal`, :func:`~flowbridge.smc.product`,
            :func:`~flowbridge.smc.guided` or :func:`~flowbridge.smc.tilted`.
        solver: the kernel that moves the particles, by name or instance: any registered solver
            with a Gaussian transition (``"euler_maruyama"``, the default; ``"ddpm_ancestral"``;
            ``"dpmpp_2m_sde"``; see :func:`kernels`), or the built-in ``"exponential"`` move (exact
            on the linear part of the drift, accurate only for small ``noise_scale``; see
            :mod:`flowbridge.smc.coefficients`). The weights do not depend on the choice (see
            below); ``noise_scale`` and ``extra_noise`` set the diffusion level of
            ``euler_maruyama`` and ``exponential`` only, the other kernels fix theirs
            (:func:`get_kernel`).
        steps: number of moves (grid intervals).
        shape: ``(N, *event)``: ``N >= 2`` particles of shape ``event``, one interacting population
            whose resampled particles are the returned samples.
        particles: the number ``N`` of particles (must agree with ``shape[0]`` when both are
            given; then ``shape`` may also be the per-particle ``event`` alone), or initial
            :class:`Particles` at ``t_span[0]`` (drawn from the target's source law; their weights
            are kept).
        resample: a :class:`ResamplePolicy` (``EveryStep(warmup=, method=)``,
            ``ESSBelow(threshold=, method=)``: options by keyword, ``Never()``) or ``"every"``,
            ``"ess"``, ``"never"``/``None``.
        generator: a ``torch.Generator`` (or :class:`~flowbridge.random.NoiseSource`): one
            stream for the moves, the resampling and the initialisation.
        seeds: ``N`` per-particle seeds, or ``seed``: one integer
            (:func:`~flowbridge.random.grouped_noise_source`, the population as one group). The
            particles interact through the resampling, so the result is reproducible for the same
            ``N`` and seed(s), but particle ``i`` is not independent of ``N`` (unlike
            :func:`flowbridge.sample`). At most one of ``generator``, ``seeds`` and ``seed``.
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
        grid: time grid name (``uniform``, ``quadratic``, ``logsnr``, ``karras``); ``grid_options``
            its options (e.g. ``{"rho": 7}``). Or explicit times: ``steps + 1`` strictly increasing
            times in [0, 1], e.g. a tuned grid (``grid=tuned.grid, steps=tuned.steps`` of a
            :class:`~flowbridge.samplers.presets.TunedSolver`), used as given.
        t_span: (t0, t1), default the path's regular interval.
        batch_size: the population is never split (its particles interact): ``None`` or at least
            ``N``; anything smaller is an :class:`~flowbridge.errors.ArgumentError`.
        progress: show progress (a bar on a terminal, a line per tenth of the steps in a log).
        callback: called after every move with a :class:`~flowbridge.samplers.StepInfo` (step,
            steps, time reached, the particles before resampling, offset 0).
        dtype: of the particles drawn when ``particles`` is a number.
        device: of the particles drawn when ``particles`` is a number.
        **solver_options: passed to the kernel's constructor when ``solver`` is a name (e.g.
            ``eta=0.5`` for ``ddpm_ancestral``); unknown options fail with the kernel's options.

    **Why any kernel.** The particles follow the reverse SDE of :attr:`SMCTarget.field`,

    .. math::
        dx = \big(\kappa x + (\eta + \epsilon)\hat s\big)\,dt + \sqrt{2\epsilon}\,dW,
        \qquad \eta = \sigma^2\dot\lambda,

    and the Feynman–Kac weights (Skreta et al. 2025, "Feynman–Kac correctors") grow at a rate
    :math:`g(x, t)` with :math:`d\log w = g\,dt` that does not involve :math:`\epsilon` nor the
    discretisation of the move: the weighted Fokker–Planck identity
    :math:`g = \partial_t\log\tilde q + \nabla\cdot b + b\cdot\nabla\log\tilde q
    - \epsilon(\Delta\log\tilde q + |\nabla\log\tilde q|^2)` leaves, for the geometric targets,
    :math:`g = (1 - B)\kappa d + \eta(|\hat s|^2 - \sum_k\beta_k|s_k|^2)`. A kernel whose
    transition :math:`N(m_i, s_i^2 I)` satisfies :math:`m_i = x + h_i b(x, t_i) + O(h^2)` and
    :math:`s_i^2 = 2\epsilon(t_i) h_i + O(h^2)` for some :math:`\epsilon \ge 0` is a first-order weak
    discretisation of that SDE, and the quadrature of :math:`g` along its path (``weight_rule``) is
    one of :math:`\int g\,dt`: the weighted law converges to :math:`\tilde q_{t_1}` at first order
    in the step, whichever the kernel. Euler–Maruyama does so with
    :math:`\epsilon = \nu\eta + \epsilon_+`; DDPM ancestral with :math:`\epsilon = \eta_{\rm DDIM}^2\,\eta`
    (its posterior variance :math:`\sigma'^2(1 - e^{-2\Delta\lambda}) = 2\sigma^2\dot\lambda h + O(h^2)`);
    DPM-Solver++(2M) SDE with :math:`\epsilon = \eta_{\rm DPM}\,\eta`
    (:math:`\sigma'^2(1 - e^{-2\eta_{\rm DPM}\Delta\lambda})`). For tilted targets the increment is
    the exact importance ratio of the twisted against the reference transition, so it holds for
    any Gaussian kernel as is.

    Returns:
        :class:`SMCResult`.

    Raises:
        ArgumentError: bad particle counts, shapes, options or coefficients.
        CapabilityError: a solver without a Gaussian transition (a
            :class:`~flowbridge.samplers.presets.TunedSolver` too: the tunable families are
            deterministic multistep ODE solvers), ``noise_scale``/``extra_noise`` with a kernel that
            fixes its own level, or a deterministic kernel for a tilted target.
        WeightCollapseError: every weight became zero (reported with the step and time).
        SamplingError: non-finite weight increments (NaN or ``+inf`` rewards or scores) or samples.
    """
    if not isinstance(target, SMCTarget):
        raise ArgumentError(f"target must be built by anneal, product, guided or tilted; got {type(target).__name__}")
    if isinstance(solver, TunedSolver):
        # Its weight_multipliers are weights of a deterministic multistep ODE step, which has no Gaussian
        # transition to weight; its times are usable, as an explicit grid for a stochastic kernel.
        raise CapabilityError(
            f"a tuned solver ({solver.solver!r}) is a deterministic multistep ODE solver with no Gaussian transition, so "
            f"SMC cannot use it as a kernel (nor its weight_multipliers); use its times with a kernel: "
            f"smc.sample(target, 'ddpm_ancestral', tuned.steps, grid=tuned.grid, ...); kernels: {', '.join(kernels())}"
        )
    if not isinstance(solver, (str, Solver)):
        raise ArgumentError(f"solver must be a name (str) or a Solver instance; got {type(solver).__name__}; known: {', '.join(kernels())}")
    if isinstance(solver, str) and solver not in BUILTIN_MOVES and solver not in SOLVERS:
        raise ArgumentError(f"unknown SMC solver (move) {solver!r}; known: {', '.join(kernels())}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ArgumentError(f"steps must be a positive integer; got {steps!r}")
    if weight_rule not in WEIGHT_RULES:
        raise ArgumentError(f"unknown weight_rule {weight_rule!r}; known: {', '.join(WEIGHT_RULES)}")
    if callback is not None and not callable(callback):
        raise ArgumentError(f"callback must be callable callback(StepInfo); got {type(callback).__name__}")
    if t_span is not None and (not isinstance(t_span, (tuple, list)) or len(t_span) != 2):
        raise ArgumentError(f"t_span must be a pair (t_start, t_end); got {t_span!r}")
    policy = get_policy(resample)
    resampler = get_resampler(policy.method)
    path: GaussianPath = target.path
    if grid is not None and not isinstance(grid, str):
        if grid_options:
            raise ArgumentError(f"grid_options {sorted(grid_options)} apply to a registered grid, not to explicit times")
        times = explicit_grid(grid, steps, t_span)
    else:
        t0, t1 = t_span if t_span is not None else (path.t_min, path.t_max)
        times = make_grid(grid, steps, float(t0), float(t1), path.schedule, **(grid_options or {}))

    given: Particles | None = None
    if isinstance(particles, Particles):
        given = particles
        n, event = given.n, tuple(given.x.shape[1:])
        if shape is not None and tuple(shape) not in ((n, *event), event):
            raise ArgumentError(f"shape={tuple(shape)} disagrees with the given particles of shape {(n, *event)}")
        dtype, dev = given.x.dtype, given.x.device
    else:
        if particles is not None and (isinstance(particles, bool) or not isinstance(particles, int) or particles < 2):
            raise ArgumentError(f"particles must be an integer >= 2 (or Particles); got {particles!r}")
        if shape is None:
            raise ArgumentError("give shape=(N, *event) (N particles of shape event)")
        if isinstance(shape, (str, bytes)) or not isinstance(shape, Sequence):
            raise ArgumentError(f"shape must be (N, *event); got {shape!r}")
        try:
            dims = tuple(operator.index(s) for s in shape)
        except TypeError:
            raise ArgumentError(f"shape must be a sequence of integers (N, *event); got {tuple(shape)!r}") from None
        if particles is None:
            if len(dims) < 2:
                raise ArgumentError(f"shape must be (N, *event) with a non-empty event, e.g. (512, 2); got {dims}")
            n, event = dims[0], dims[1:]
        elif len(dims) >= 2 and dims[0] == particles:
            n, event = particles, dims[1:]
        else:
            n, event = particles, dims
        if n < 2 or not event or min(event) < 1:
            raise ArgumentError(f"shape must be (N, *event) with N >= 2 particles and positive sizes; got {dims}")
        dtype = dtype or torch.get_default_dtype()
        dev = torch.device(device) if device is not None else torch.device("cpu")
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < n):
        raise ArgumentError(
            f"batch_size={batch_size!r}: SMC particles interact through the resampling, so one population of "
            f"{n} is never split into chunks; pass batch_size=None or >= {n}"
        )
    generator = grouped_noise_source(generator, seeds, seed, 1, n, per_particle=True)
    builtin = isinstance(solver, str) and solver in BUILTIN_MOVES
    c = step_coefficients(
        path, times, noise_scale, move=solver if builtin else "euler_maruyama",  # type: ignore[arg-type]
        exponent_sum=target.exponent_sum, extra_noise=extra_noise, dtype=dtype, device=dev,
    )
    kernel = get_kernel(solver, path, noise_scale, extra_noise, **solver_options)
    if kernel is not None:
        kernel.check(target.field, steps)

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
    state = kernel.init(target.field, x, times, generator=generator) if kernel is not None else None
    log_n = math.log(n)
    log_z = torch.zeros((), dtype=dtype, device=dev)
    ess_trace = torch.empty(steps, dtype=dtype, device=dev)
    t_floats = times.tolist() if callback is not None else []  # the grid is a CPU tensor: no device sync
    resampled = torch.zeros(steps, dtype=torch.bool, device=dev)
    collapse_at = torch.full((), -1, dtype=torch.long, device=dev)
    n_bad = torch.zeros((), dtype=torch.long, device=dev)
    meter = Progress(steps, f"SMC ({kernel.name if kernel is not None else solver})") if progress else None
    for i in range(steps):
        final = i == steps - 1
        if kernel is None:
            mean, std = target.builtin_mean(x, cache, i, c), c.noise_std[i]
        else:
            tr = kernel.transition(target.kernel_field(x, cache), x, state, i)
            mean, std, state = tr.mean, tr.std, tr.state
            if i == 0 and target.needs_noise and not std > 0:  # std: a Python float
                raise CapabilityError(
                    f"{type(target).__name__} needs a stochastic kernel; solver {kernel.name!r} made a deterministic "
                    "step (standard deviation 0): set its stochasticity (eta=, noise_scale=) above 0"
                )
        moved = target.advance(x, cache, mean, std, i, c, generator=generator, weight_rule=weight_rule, final=final)
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
        if meter is not None:
            meter.update()
        if callback is not None:
            callback(StepInfo(step=i, steps=steps, t=t_floats[i + 1], x=x))
        if final or not correct:
            continue
        decision = policy.decide(i, ess, n)
        if decision is False:
            continue
        step = resample_groups(log_w, decision, resampler=resampler, generator=generator)
        log_z, log_w, resampled[i] = log_z + step.log_mass, step.log_weights, step.resampled
        x = take_particles(x, step.ancestors)
        cache = cache.take(step.ancestors)
        if kernel is not None:
            state = take_state(state, step.ancestors, n)

    if meter is not None:
        meter.close()
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
        x=samples,
        particles=final_particles,
        ess=ess_trace,
        resampled=resampled,
        num_resamplings=int(resampled.sum()),
        log_normalizer=(log_z + start.log_normalizer) if known_z else None,  # type: ignore[operator]
        nfe=start.nfe + target.nfe(steps, weight_rule),
        times=times,
        init_acceptance=start.acceptance,
    )
