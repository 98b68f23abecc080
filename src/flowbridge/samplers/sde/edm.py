r"""EDM's stochastic sampler (Karras et al. 2022, Algorithm 2) in flowbridge's time convention.

EDM integrates in the scaled variables :math:`\bar x = x/\alpha` and :math:`\bar\sigma = \sigma/\alpha`,
where the probability-flow ODE reads :math:`d\bar x/d\bar\sigma = \hat x_0 = E[x_0|x_t]` (the
noise prediction). Step :math:`i` goes from :math:`t_i` to :math:`t_{i+1}` (toward the data,
:math:`\bar\sigma` decreasing):

1. churn: :math:`\gamma_i = \min(S_{churn}/N, \sqrt2 - 1)` if :math:`S_{tmin} \le \bar\sigma_i \le S_{tmax}`
   else 0; :math:`\hat\sigma = \bar\sigma_i(1 + \gamma_i)`, i.e. back to the earlier time :math:`\hat t`
   with :math:`\lambda(\hat t) = -\log\hat\sigma`; :math:`\hat{\bar x} = \bar x_i + S_{noise}
   \sqrt{\hat\sigma^2 - \bar\sigma_i^2}\,\xi`;
2. Heun from :math:`\hat\sigma` to :math:`\bar\sigma_{i+1}` with slopes :math:`\hat x_0` at
   :math:`(\hat t, \alpha(\hat t)\hat{\bar x})` and at the Euler point (the correction is skipped
   where :math:`\bar\sigma_{i+1} = 0`).

With ``S_churn = 0`` this is Heun in :math:`\bar\sigma`, EDM's deterministic sampler. ``S_noise``
slightly above 1 (EDM uses 1.003-1.007 on images) inflates the churn to offset errors of a trained
denoiser; with an exact field it biases the law, so the default is 1.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
from torch import Tensor

from flowbridge.errors import ArgumentError
from flowbridge._utils import TimePoint
from flowbridge.fields.base import Field
from flowbridge.random import RandomSource
from flowbridge.samplers.base import Observer, SolveResult, Solver, combine, prepare_times, register_solver
from flowbridge.samplers.sde.common import BrownianPath, StepNoise, check_score_field, step_normal


@dataclass(frozen=True)
class EDMState:
    r"""Per-step times (:class:`~flowbridge._utils.TimePoint`) and scales (Python floats): the churned
    time of each step, its end, :math:`\alpha` at both and the churn and step sizes in :math:`\bar\sigma`."""

    t_hat: tuple[TimePoint, ...]
    t_next: tuple[TimePoint, ...]
    alpha: tuple[float, ...]
    alpha_hat: tuple[float, ...]
    churn_std: tuple[float, ...]
    step_size: tuple[float, ...]
    corrected: tuple[bool, ...]
    noise: StepNoise


@dataclass(frozen=True)
class EDMCoefficients:
    """Float64 CPU quantities of every step (kept for tests and NFE counting)."""

    t_hat: Tensor
    sigma_bar: Tensor
    sigma_hat: Tensor
    gamma: Tensor


@register_solver("edm_stochastic")
class EDMStochastic(Solver[EDMState]):
    """Heun with churn (EDM Algorithm 2).

    Args:
        S_churn: total churn; each eligible step uses :math:`\\gamma_i = \\min(S_{churn}/N, \\sqrt2-1)`.
        S_tmin: churn only where :math:`S_{tmin} \\le \\bar\\sigma_i`
            (:math:`\\bar\\sigma = \\sigma/\\alpha`).
        S_tmax: churn only where :math:`\\bar\\sigma_i \\le S_{tmax}`.
        S_noise: scale of the churn noise.
    """

    order = 2.0
    stochastic = True
    needs_gaussian_path = True
    nfe_per_step = 2

    def __init__(self, S_churn: float = 40.0, S_tmin: float = 0.05, S_tmax: float = 50.0, S_noise: float = 1.0) -> None:
        for label, value in (("S_churn", S_churn), ("S_tmin", S_tmin), ("S_tmax", S_tmax), ("S_noise", S_noise)):
            if not isinstance(value, (int, float)) or not value >= 0 or not math.isfinite(value):
                raise ArgumentError(f"{label} must be a finite number >= 0; got {value!r}")
        if S_tmin > S_tmax:
            raise ArgumentError(f"need S_tmin <= S_tmax; got S_tmin={S_tmin}, S_tmax={S_tmax}")
        self.S_churn, self.S_tmin, self.S_tmax, self.S_noise = float(S_churn), float(S_tmin), float(S_tmax), float(S_noise)

    def check(self, field: Field, steps: int) -> None:
        super().check(field, steps)
        check_score_field(field, self.name)

    def coefficients(self, field: Field, grid: Tensor) -> EDMCoefficients:
        """The churned times and scales of every step (float64, CPU)."""
        schedule = field.gaussian_path.schedule
        g = grid.to(torch.float64)
        v = schedule(g)
        if (v.alpha[:-1] <= 0).any():
            raise ArgumentError(
                f"{self.name}: sigma/alpha is infinite where alpha(t) = 0 (t={float(g[:-1][v.alpha[:-1] <= 0][0]):.3g}); "
                "start later (t_span=(1e-3, ...)) or use grid='karras'"
            )
        sigma_bar = v.sigma / v.alpha
        n = len(g) - 1
        eligible = (sigma_bar[:-1] >= self.S_tmin) & (sigma_bar[:-1] <= self.S_tmax)
        gamma = torch.where(eligible, min(self.S_churn / n, math.sqrt(2) - 1), 0.0).to(torch.float64)
        sigma_hat = sigma_bar[:-1] * (1 + gamma)
        # Back to the time of sigma_hat; never before t=0, and sigma_hat is then recomputed from the
        # clamped time so that the churn and the ODE step agree.
        t_hat = torch.where(gamma > 0, schedule.inverse_log_snr(-torch.log(sigma_hat)), g[:-1])
        t_hat = torch.minimum(t_hat.clamp_min(0.0), g[:-1])
        vh = schedule(t_hat)
        sigma_hat = torch.where(gamma > 0, vh.sigma / vh.alpha, sigma_bar[:-1])
        return EDMCoefficients(t_hat=t_hat, sigma_bar=sigma_bar, sigma_hat=sigma_hat, gamma=gamma)

    def init(
        self, field: Field, x: Tensor, grid: Tensor, *, generator: RandomSource | BrownianPath = None
    ) -> EDMState:
        co = self.coefficients(field, grid)
        schedule = field.gaussian_path.schedule
        g = grid.to(torch.float64)
        alpha, alpha_hat = schedule(g).alpha, schedule(co.t_hat).alpha
        churn_std = self.S_noise * torch.sqrt((co.sigma_hat**2 - co.sigma_bar[:-1] ** 2).clamp_min(0.0))
        n = len(g) - 1
        points = prepare_times(self.name, field, torch.cat([co.t_hat, g[1:]]), x, evaluates=("noise",))
        return EDMState(  # sync-ok: CPU float64 coefficients, before the loop
            t_hat=points[:n], t_next=points[n:], alpha=tuple(alpha.tolist()), alpha_hat=tuple(alpha_hat.tolist()),
            churn_std=tuple(churn_std.tolist()), step_size=tuple((co.sigma_bar[1:] - co.sigma_hat).tolist()),
            corrected=tuple(bool(s > 0) for s in co.sigma_bar[1:]),
            noise=StepNoise(times=tuple(g.tolist())),
        )

    def step(
        self, field: Field, x: Tensor, state: EDMState, i: int, *, generator: RandomSource | BrownianPath = None
    ) -> tuple[Tensor, EDMState]:
        x_bar = x * (1.0 / state.alpha[i])
        if self.S_churn > 0 and self.S_noise > 0:
            x_bar.add_(step_normal(x, state.noise, i, generator), alpha=state.churn_std[i])
        h = state.step_size[i]
        slope = field.noise(x_bar * state.alpha_hat[i], state.t_hat[i])
        x_bar_next = torch.add(x_bar, slope, alpha=h)
        if state.corrected[i]:
            slope_next = field.noise(x_bar_next * state.alpha[i + 1], state.t_next[i])
            x_bar_next = combine(x_bar, 1.0, (0.5 * h, 0.5 * h), (slope, slope_next))
        return x_bar_next * state.alpha[i + 1], state

    def solve(
        self, field: Field, x: Tensor, grid: Tensor, *, generator: RandomSource | BrownianPath = None,
        return_trajectory: bool = False, observer: Observer | None = None,
    ) -> SolveResult:
        result = super().solve(field, x, grid, generator=generator, return_trajectory=return_trajectory, observer=observer)
        skipped = int((self.coefficients(field, grid).sigma_bar[1:] <= 0).sum())  # CPU grid: no device sync
        return dataclasses.replace(result, nfe=result.nfe - skipped)
