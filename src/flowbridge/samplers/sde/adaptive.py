r"""Adaptive SDE solver of Jolicoeur-Martineau et al. 2021 ("Gotta Go Fast"), per-sample steps.

Every sample carries its own time :math:`t` and step :math:`h`. One attempt takes the Brownian
increment :math:`\Delta W` of :math:`[t, t + h]` and forms, with :math:`f = u + \epsilon s` and
:math:`g = \sqrt{2\epsilon}`,

.. math::
    K_1 = h f(x, t) + g(t)\,\Delta W, \quad K_2 = h f(x + K_1, t + h) + g(t + h)\,\Delta W,

the Euler–Maruyama proposal :math:`x' = x + K_1` and the stochastic improved-Euler proposal
:math:`x'' = x + (K_1 + K_2)/2`. The error :math:`E = (K_2 - K_1)/2` is measured in the mixed norm
:math:`E_q = \|E/\delta\|_2/\sqrt n` with :math:`\delta = \max(\text{atol}, \text{rtol}\cdot
\max(|x'|, |x'_{prev}|))`; the attempt is accepted (keeping :math:`x''`) where :math:`E_q \le 1`, and
every sample's step becomes :math:`h \leftarrow \theta\,h\,E_q^{-r}`, clipped to the time left (the
last step lands exactly on the end). Samples that are done take zero-length steps and are left
unchanged.

**Rejections must not select the noise.** Redrawing the noise after a rejection keeps only the
draws that made the error small, which biases the law (measured: the variance of a Gaussian target
came out 28% too large at tight tolerances, and on a 5-mode mixture the mode weights were off,
chi^2 = 21 on 4 dof at n = 40000, when revealed points were dropped). As in RSwM (Rackauckas & Nie
2017) each sample keeps the points of its Brownian path it has already revealed beyond its current
time (*knots*, up to ``bridge_depth`` of them). The value at a new time is drawn from the Brownian
bridge between the neighbouring known points, or as a fresh increment past the last one; a
rejected attempt adds its end point as a knot, an accepted one drops the knots it passed. Every
sample therefore follows one Brownian path whatever steps it takes (a knot lost to a full stack is
the only exception; :attr:`AdaptiveSDEResult.dropped` counts them, 0 in the benchmarks at the
defaults). Each attempt draws one standard normal per sample: a new point is either inside a
bridge or past the last knot, never both.

**A clock in whole ticks.** Times are counted in ticks of :math:`2^{-24}` of the span, held as
integers in floating point, and proposed steps are rounded down to whole ticks. Without this, one
ulp of difference in a step time (batched kernels round differently for different batch sizes, and
different machines differently again) changes the Brownian increment, hence the error estimate,
hence the next step, and grows from attempt to attempt (measured: from 1e-16 to O(1) within about
100 attempts). With it a decision changes only where :math:`h` lies within rounding of a whole tick
or :math:`E_q` within rounding of 1, and the samples differ only by rounding.

**Defaults.** ``atol = 0.0078`` is the paper's (a 256-level pixel for data in [-1, 1]); ``rtol =
0.05`` is within the paper's range (0.01-0.1). The controller is gentler than the paper's
(:math:`\theta = 0.8, r = 0.5` instead of 0.9, 0.9): with a noisy error estimate (a few dimensions,
or any dimension early in the path) the paper's setting rejected 39% of the attempts on the
2-D mixture against 25%, lost revealed Brownian points, and needed more evaluations for the same
quality (``experiments/results/sde.md``). There is no final denoising step (the paper's code has
one): the paths' ``t_max`` already leaves a residual noise :math:`\sigma(t_\text{max})` (0.01 on
the VP path) far below the data's scale. The default diffusion level is interpolated from its
values at 4097 nodes of the span (see :meth:`AdaptiveSDE._levels`).

**Cost on a GPU.** An attempt is two batched field evaluations and a fixed number of batched
tensor operations (about 80, none of them built from Python numbers on the device). The loop tests
whether every sample is done only every few attempts: it reads back, in one transfer, a lower bound
on the attempts the slowest running sample still needs (its time left over its step; 0 when all
are done), and runs that many attempts (at most ``check_every``) before it looks again. Finished
samples are frozen by masks, so an attempt after the last sample finished changes nothing. The NFE
reported is that of the batch (twice the number of attempts made); the per-sample counts are in
:class:`AdaptiveSDEResult`. With per-sample seeds a sample's draws depend only on its own
attempts, so its result does not depend on its batch beyond the rounding of batched kernels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from flowbridge._utils import expand_like
from flowbridge.errors import ArgumentError
from flowbridge.fields.base import Field
from flowbridge.paths.gaussian import GaussianPath
from flowbridge.random import RandomSource, randn_like
from flowbridge.samplers.base import (
    Observer,
    SamplingError,
    Solver,
    SolveResult,
    register_solver,
)
from flowbridge.samplers.sde.common import (
    BrownianPath,
    EpsFn,
    check_eps_callable,
    check_levels,
    check_noise_scale,
    check_score_field,
    eps_at,
    plain_generator,
)

# Floor of E_q in the step update, so that a zero error (a finished sample) gives a finite factor.
_MIN_ERROR = 1e-10
# Ticks of the solver's clock in the span (exact integers in float32 and wider).
_TICKS = float(2**24)
# Intervals of the default diffusion level's table (2^12: 2^12 ticks each).
_LEVEL_NODES = 2**12
# Points of the closed span at which the drift's coefficients are checked before the loop.
_SPAN_CHECK_POINTS = 1001


@dataclass(frozen=True)
class AdaptiveSDEResult:
    """What :meth:`AdaptiveSDE.solve_detailed` returns.

    Attributes:
        x: the samples at the end time.
        nfe: batched field evaluations (2 per attempt; the cost of the batch).
        nfe_per_sample: (B,) evaluations each sample needed until it was done.
        accepted: (B,) accepted steps per sample.
        rejected: (B,) rejected attempts per sample.
        attempts: number of batched attempts.
        checks: host synchronisations the loop made to test for the end.
        dropped: (B,) knots of the revealed Brownian path each sample lost to a full stack.
    """

    x: Tensor
    nfe: int
    nfe_per_sample: Tensor
    accepted: Tensor
    rejected: Tensor
    attempts: int
    checks: int
    dropped: Tensor


@dataclass(frozen=True)
class _Knots:
    r"""Each sample's revealed Brownian path: its current point and up to K knots after it.

    Times are counted in ticks of the solver's clock (integers held exactly in floating point; see
    :class:`AdaptiveSDE`). ``t`` (B,) and ``w`` (B, ...) are the current time and :math:`W(t)`, with
    :math:`W` in units where one tick has variance 1. The knots sit in K slots
    in no particular order: ``times`` (B, K + 1) (:math:`+\infty` marks a free slot) and ``values``
    ((K + 1) * B, ...), slot k of sample b in row k * B + b (so that reading or writing one slot per
    sample is one row gather or copy). Slot K is scratch: samples that store nothing write there.
    An attempt reads two rows per sample and writes one, whatever K is.
    """

    t: Tensor
    w: Tensor
    times: Tensor
    values: Tensor
    rows: Tensor  # (2B,) 0..B-1 twice
    scratch: Tensor  # () the scratch slot's number, K

    @staticmethod
    def start(t0: Tensor, like: Tensor, depth: int) -> "_Knots":
        batch, device = like.shape[0], like.device
        return _Knots(
            t=t0, w=torch.zeros_like(like),
            times=torch.full((batch, depth + 1), math.inf, dtype=t0.dtype, device=device),
            values=torch.zeros(((depth + 1) * batch, *like.shape[1:]), dtype=like.dtype, device=device),
            rows=torch.arange(batch, device=device).repeat(2),
            scratch=torch.full((), depth, device=device),
        )

    def at(self, tau: Tensor, z: Tensor) -> Tensor:
        r""":math:`W(\tau)` per sample, using the standard normals ``z`` where it is not yet known.

        Between the neighbouring known points :math:`(T_l, W_l)` and :math:`(T_r, W_r)` it is the
        Brownian bridge :math:`W_l + \frac{\tau - T_l}{T_r - T_l}(W_r - W_l) +
        \sqrt{\frac{(\tau - T_l)(T_r - \tau)}{T_r - T_l}}\,z` (exactly :math:`W_r` when
        :math:`\tau = T_r`); past the last knot, :math:`W_l + \sqrt{\tau - T_l}\,z`.
        """
        knots = self.times[:, :-1]
        after = knots >= tau[:, None]
        t_before, i_left = knots.masked_fill(after, -math.inf).max(1)
        t_right, i_right = knots.masked_fill(~after, math.inf).min(1)
        # Knots lie after t: with none before tau the left point is the current one.
        t_left = torch.maximum(t_before, self.t)
        batch = self.t.shape[0]
        # Past the last knot w_right is a free slot's stale (finite) value, weighted by 0 below.
        w_left, w_right = self.values.index_select(0, torch.add(self.rows, torch.cat((i_left, i_right)), alpha=batch)).chunk(2)
        w_left = torch.where(expand_like(t_before > self.t, self.w), w_left, self.w)
        elapsed = tau - t_left
        # Past the last knot T_r = inf and frac = 0; the bridge variance (tau - T_l)(T_r - tau)/(T_r - T_l)
        # is elapsed * (1 - frac), which is then elapsed. tau > T_l and T_r >= tau (ticks are exact).
        frac = elapsed / (t_right - t_left)
        std = torch.addcmul(elapsed, elapsed, frac, value=-1).clamp_(min=0.0).sqrt_()
        w_tau = torch.lerp(w_left, w_right, expand_like(frac, w_left).to(w_left.dtype))
        return torch.addcmul(w_tau, expand_like(std, z).to(z.dtype), z)

    def advance(self, tau: Tensor, w_tau: Tensor, accept: Tensor, running: Tensor) -> tuple["_Knots", Tensor]:
        """The knots after an attempt to ``tau``: accepted, ``tau`` becomes the current point and the
        knots up to it are freed; rejected (and running), ``tau`` is stored as a knot (if it is one
        already, as a harmless duplicate). The slot is the first free one (the maximum of the times
        is then inf); with none free the farthest point, stored or new, is lost.

        Returns the new knots and where a point was lost (B,) bool.
        """
        batch = self.t.shape[0]
        insert = running & ~accept
        t_far, i_far = self.times[:, :-1].max(1)
        slot = torch.where(insert & (tau < t_far), i_far, self.scratch)
        lost = insert & (t_far < math.inf)
        times = self.times.scatter(1, slot[:, None], tau[:, None])
        times = times.masked_fill_((times <= tau[:, None]) & accept[:, None], math.inf)
        # In place: one row per sample is written, not a copy of all K slots.
        values = self.values.index_copy_(0, torch.add(self.rows[:batch], slot, alpha=batch), w_tau)
        return _Knots(
            t=torch.where(accept, tau, self.t), w=torch.where(expand_like(accept, self.w), w_tau, self.w),
            times=times, values=values, rows=self.rows, scratch=self.scratch,
        ), lost


def _first_good(times: list[float], good: list[bool]) -> float | None:
    return next((t for t, ok in zip(times, good) if ok), None)


def check_drift_on_span(field: Field, t_start: float, t_end: float, noise_scale: float, eps: EpsFn | None, solver: str) -> None:
    r"""Refuses a span on whose *closed* interval the reverse-SDE drift is not finite.

    The adaptive solver evaluates the drift at both ends of the span (its last stage is at
    ``t_end``), unlike the fixed-step samplers which stop at the last left point. Checked on a CPU
    float64 grid: the diffusion level :math:`\epsilon(t)` finite and :math:`\ge 0`, and on a
    Gaussian path the schedule finite with :math:`\sigma > 0` (the score is :math:`-\hat x_0/\sigma`).

    Raises:
        ValueError: naming the first bad time and a span that avoids it.
    """
    times = torch.linspace(t_start, t_end, _SPAN_CHECK_POINTS, dtype=torch.float64)
    levels = eps_at(field, times, noise_scale, eps).to(torch.float64)
    good = torch.isfinite(levels)
    what = torch.where(good, 0, 1)  # 1: eps not finite
    path = field.path
    if isinstance(path, GaussianPath):
        v = path.schedule(times)
        coefficients = torch.stack((v.alpha, v.sigma, v.d_alpha, v.d_sigma))
        schedule_ok = torch.isfinite(coefficients).all(0) & (v.sigma > 0)
        what = torch.where(~schedule_ok, 2, what)  # 2: the score coefficient 1/sigma (the cause of a NaN eps too)
        good &= schedule_ok
    if bool(good.all()):
        if bool((levels < 0).any()):
            bad = float(times[levels < 0][0])
            raise ArgumentError(
                f"{solver}: the diffusion level eps(t) must be >= 0 everywhere; got eps={float(levels.min()):.3g} "
                f"(first negative at t={bad:.3g})"
            )
        return
    first_bad = int((~good).nonzero()[0])
    t_bad = float(times[first_bad])
    reason = (
        "the diffusion level eps(t) is not finite" if int(what[first_bad]) == 1
        else "the path's sigma(t) is 0 or its schedule is not finite there, so the score -x0_hat/sigma is not"
    )
    grid = [float(t) for t in times]
    ok = good.tolist()
    lo = _first_good(grid, ok)
    hi = _first_good(grid[::-1], ok[::-1])
    span = f"t_span=({lo:.6g}, {hi:.6g})" if lo is not None and hi is not None and lo < hi else "another t_span"
    raise ArgumentError(
        f"{solver}: {reason} at t={t_bad:.6g}, inside the span ({t_start:.6g}, {t_end:.6g}) whose both ends "
        f"this solver evaluates; use {span} or pass eps=callable"
    )


@register_solver("adaptive_sde")
class AdaptiveSDE(Solver[None]):
    """EM / stochastic improved Euler pair with per-sample error control (weak order 1).

    ``steps`` of :func:`flowbridge.sample` is ignored except for its span: the controller picks the steps.

    Args:
        atol: absolute tolerance (> 0); the paper uses 0.0078 for data in [-1, 1].
        rtol: relative tolerance (> 0).
        noise_scale: multiplier of the default diffusion level.
        eps: a callable ``eps(t)`` overriding ``noise_scale``; it receives a 1-D tensor of
            per-sample times on the state's device (and a float64 CPU grid once, for the check).
        h_init: first step size.
        safety: :math:`\\theta` in the step update.
        exponent: :math:`r` in the step update.
        max_attempts: raise :class:`SamplingError` after this many batched attempts.
        bridge_depth: knots of revealed Brownian path kept per sample.
        check_every: the most attempts run between two tests for the end (each test is one host
            synchronisation; up to this many attempts may run after the last sample finished).
    """

    order = 1.0
    stochastic = True
    nfe_per_step = 0

    def __init__(
        self, atol: float = 0.0078, rtol: float = 0.05, noise_scale: float = 1.0, eps: EpsFn | None = None,
        h_init: float = 0.01, safety: float = 0.8, exponent: float = 0.5, max_attempts: int = 100_000,
        bridge_depth: int = 8, check_every: int = 8,
    ) -> None:
        for label, value in (("atol", atol), ("rtol", rtol), ("h_init", h_init), ("safety", safety), ("exponent", exponent)):
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 < value < math.inf:
                raise ArgumentError(f"{label} must be > 0 and finite; got {value!r}")
        for label, value in (("max_attempts", max_attempts), ("bridge_depth", bridge_depth), ("check_every", check_every)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ArgumentError(f"{label} must be a positive integer; got {value!r}")
        check_eps_callable(eps)
        self.atol, self.rtol = float(atol), float(rtol)
        self.noise_scale, self.eps = check_noise_scale(noise_scale), eps
        self.h_init, self.safety, self.exponent = float(h_init), float(safety), float(exponent)
        self.max_attempts, self.bridge_depth, self.check_every = max_attempts, bridge_depth, check_every

    def check(self, field: Field, steps: int) -> None:
        super().check(field, steps)
        check_score_field(field, self.name)

    def validate_span(self, field: Field, t_start: float, t_end: float) -> None:
        check_drift_on_span(field, t_start, t_end, self.noise_scale, self.eps, self.name)

    def init(self, field: Field, x: Tensor, grid: Tensor, *, generator: RandomSource = None) -> None:
        return None

    def step(self, field: Field, x: Tensor, state: None, i: int, *, generator: RandomSource = None) -> tuple[Tensor, None]:
        raise NotImplementedError(f"{self.name!r} is adaptive: call solve(), it has no fixed steps")

    def _level_table(self, field: Field, t_start: float, t_end: float, like: Tensor) -> Tensor | None:
        """The default diffusion level at the span's ``_LEVEL_NODES + 1`` nodes, as (nodes, 2) pairs
        (left, right) on the state's device; ``None`` for a user ``eps``, which is called as given."""
        if self.eps is not None:
            return None
        nodes = torch.linspace(t_start, t_end, _LEVEL_NODES + 1, dtype=torch.float64)
        levels = eps_at(field, nodes, self.noise_scale, None)
        check_levels(levels, nodes, self.name)
        return torch.stack((levels[:-1], levels[1:]), 1).to(device=like.device, dtype=torch.promote_types(like.dtype, torch.float32))

    def _levels(
        self, field: Field, ticks: Tensor, times: Tensor, table: Tensor | None, tick: float
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """:math:`\\epsilon` and :math:`g\\sqrt{\\text{tick}} = \\sqrt{2\\epsilon\\,\\text{tick}}` at both stage
        times (``ticks`` and ``times`` (2B,): the current ones, then the proposed ones).

        The default level is interpolated linearly between the table's nodes (whole numbers of
        ticks apart, so node and weight are exact). The marginals of the SDE hold for every
        :math:`\\epsilon \\ge 0`, and the same interpolated :math:`\\epsilon` enters the drift and the
        noise: this samples exactly an SDE whose level differs from the default by the
        interpolation error, at 8 tensor operations instead of the schedule's ~25.
        """
        if table is None:
            eps = eps_at(field, times, self.noise_scale, self.eps)
        else:
            position = ticks * (_LEVEL_NODES / _TICKS)
            node = position.floor().clamp_(max=_LEVEL_NODES - 1)
            weight = position - node
            left, right = table.index_select(0, node.long()).unbind(1)
            eps = torch.lerp(left, right, weight)
        eps_t, eps_tau = eps.chunk(2)
        g_t, g_tau = eps.mul(2 * tick).sqrt_().chunk(2)
        return eps_t, eps_tau, g_t, g_tau

    def solve_detailed(self, field: Field, x: Tensor, grid: Tensor, *, generator: RandomSource = None) -> AdaptiveSDEResult:
        """Integrates from ``grid[0]`` to ``grid[-1]`` and returns the per-sample counts as well."""
        self.check(field, len(grid) - 1)
        generator = plain_generator(generator, self.name, "per-sample adaptive steps")
        t_start, t_end = float(grid[0]), float(grid[-1])
        if not t_end > t_start:
            raise ArgumentError(f"{self.name}: need t_end > t_start; got {t_start}, {t_end}")
        check_drift_on_span(field, t_start, t_end, self.noise_scale, self.eps, self.name)
        table = self._level_table(field, t_start, t_end, x)
        batch, device = x.shape[0], x.device
        # The clock counts ticks of tick = span / 2^24, held as integers in floating point (exact in
        # float32 and wider). Proposed steps are rounded down to whole ticks, so that a rounding
        # difference in h (batched kernels round differently for different batch sizes) changes a
        # step only where h / tick lies within that rounding of an integer, and the times at which
        # each sample queries its Brownian path are exact: otherwise a change of one ulp in a time
        # changes the Brownian increment, hence the error estimate, hence the next step, and grows
        # from step to step (measured: from 1e-16 to O(1) within ~100 attempts).
        time_dtype = torch.promote_types(x.dtype, torch.float32)
        tick = (t_end - t_start) / _TICKS
        dims = tuple(range(1, x.ndim))
        # Everything the loop needs from Python numbers is made here, once.
        h = torch.full((batch,), min(self.h_init / tick, _TICKS), dtype=time_dtype, device=device)
        knots = _Knots.start(torch.zeros(batch, dtype=time_dtype, device=device), x, self.bridge_depth)
        # delta = max(atol, rtol * max(|x'|, |x'_prev|)); x'_prev starts as x (as in the paper's code).
        scale_previous = x.abs().mul_(self.rtol)
        accepted = torch.zeros(batch, dtype=torch.long, device=device)
        tried = torch.zeros_like(accepted)
        dropped = torch.zeros_like(accepted)
        # E_q = ||(K2 - K1) / delta||_2 / (2 sqrt(n)): accept where ||(K2 - K1) / delta||_2 <= 2 sqrt(n);
        # the step factor theta * E_q^-r is (norm * c)^-r with c = theta^(-1/r) / (2 sqrt(n)).
        n = x[0].numel()
        accept_norm = 2 * math.sqrt(n)
        norm_scale = self.safety ** (-1 / self.exponent) / accept_norm
        attempts = checks = 0
        budget = 1
        while True:
            for _ in range(budget):
                k = knots.t
                running = k < _TICKS
                # Whole ticks, at least one; a NaN h (a failed sample, stopped at the next check) steps one.
                tau = (k + h.clamp(1, _TICKS).nan_to_num_(1.0).floor_()).clamp_(max=_TICKS)  # the last step lands on the end
                step = tau - k
                w_tau = knots.at(tau, randn_like(x, generator=generator))
                dw = w_tau - knots.w  # in tick units: g is scaled by sqrt(tick) instead
                ticks = torch.cat((k, tau))
                times = ticks.mul(tick).add_(t_start).clamp_(max=t_end)
                t, t_tau = times.chunk(2)
                eps_t, eps_tau, g_t, g_tau = self._levels(field, ticks, times, table, tick)
                step_x = expand_like(step, x).to(x.dtype)
                k1 = torch.addcmul(expand_like(g_t, x).to(x.dtype) * dw, step_x, field.sde_drift(x, t, expand_like(eps_t, x)), value=tick)
                x_em = x + k1
                k2 = torch.addcmul(expand_like(g_tau, x).to(x.dtype) * dw, step_x, field.sde_drift(x_em, t_tau, expand_like(eps_tau, x)), value=tick)
                diff = k2 - k1
                scale_em = x_em.abs().mul_(self.rtol)
                delta = torch.maximum(scale_em, scale_previous).clamp_(min=self.atol)
                norm = torch.linalg.vector_norm(diff / delta, dim=dims).to(time_dtype)
                accept = (norm <= accept_norm) & running
                keep = expand_like(accept, x)
                x = torch.where(keep, torch.add(x_em, diff, alpha=0.5), x)
                scale_previous = torch.where(keep, scale_em, scale_previous)
                # Done samples get h = 0; a non-finite error gives h = NaN (found at the next check).
                h = norm.mul_(norm_scale).clamp_(min=_MIN_ERROR).pow_(-self.exponent).mul_(step)
                knots, lost = knots.advance(tau, w_tau, accept, running)
                accepted += accept
                tried += running
                dropped += lost
            attempts += budget
            # The one host synchronisation, every `budget` attempts. A running sample whose error
            # was not finite (h NaN) or whose controller asks for less than one tick would be
            # rejected until max_attempts: it stops here as NaN, and sample() reports it. Then: is
            # any sample still running, and how many attempts does the slowest one need at least?
            running = knots.t < _TICKS
            failed = running & ~(h >= 1)
            x = x.masked_fill(expand_like(failed, x), math.nan)
            knots.t.masked_fill_(failed, _TICKS)
            left = ((_TICKS - knots.t) / h).masked_fill_(~(running & ~failed), 0.0).max()
            checks += 1
            needed = math.ceil(float(left))  # sync-ok: the loop's amortised exit test
            if needed == 0:
                break
            if attempts >= self.max_attempts:
                unfinished = int((knots.t < _TICKS).sum())  # sync-ok: error path
                raise SamplingError(
                    f"{self.name}: {unfinished} of {batch} samples unfinished after {attempts} attempts; "
                    "loosen atol/rtol or raise max_attempts"
                )
            budget = min(needed, self.check_every, self.max_attempts - attempts)
        return AdaptiveSDEResult(
            x=x, nfe=2 * attempts, nfe_per_sample=2 * tried, accepted=accepted, rejected=tried - accepted,
            attempts=attempts, checks=checks, dropped=dropped,
        )

    def solve(
        self, field: Field, x: Tensor, grid: Tensor, *, generator: RandomSource | BrownianPath = None,
        return_trajectory: bool = False, observer: Observer | None = None,
    ) -> SolveResult:
        if return_trajectory:
            raise ArgumentError(f"{self.name} gives every sample its own times, so it has no trajectory on a grid; "
                             "use a fixed-step solver for trajectories")
        result = self.solve_detailed(field, x, grid, generator=generator)
        return SolveResult(x=result.x, nfe=result.nfe)
