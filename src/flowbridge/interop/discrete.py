r"""A variance-preserving schedule defined by a discrete ``alphas_cumprod`` table.

Discrete diffusion models (DDPM and every diffusers scheduler derived from its betas) define
:math:`\bar\alpha_k` at integer timesteps :math:`k = 0..N-1` (``k = 0`` least noisy). flowbridge maps
them to continuous time by :math:`t_k = 1 - k/(N-1)` and interpolates the half log-SNR
:math:`\lambda = \tfrac12\log(\bar\alpha/(1-\bar\alpha))` **linearly in t** between knots, with
:math:`\alpha = \mathrm{sigmoid}(2\lambda)^{1/2}`, :math:`\sigma = \mathrm{sigmoid}(-2\lambda)^{1/2}`, so
:math:`\dot\alpha = \alpha\sigma^2\dot\lambda`, :math:`\dot\sigma = -\sigma\alpha^2\dot\lambda`. At the knots
the schedule reproduces the table exactly; a network is called with the fractional timestep
:math:`k(t) = (1-t)(N-1)`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import torch
from torch import Tensor

from flowbridge.errors import ArgumentError
from flowbridge.paths.schedules import Schedule, ScheduleValues


@dataclass(frozen=True)
class DiscreteVPSchedule(Schedule):
    """VP schedule from a table of ``alphas_cumprod`` (index 0 = least noise).

    Args:
        alphas_cumprod: the table :math:`\\bar\\alpha_k`, strictly decreasing in ``k``, in (0, 1).
    """

    alphas_cumprod: tuple[float, ...] = ()
    t_min: float = 0.0
    t_max: float = 1.0

    def __post_init__(self) -> None:
        table = torch.tensor(self.alphas_cumprod, dtype=torch.float64)
        if table.ndim != 1 or table.numel() < 2:
            raise ArgumentError("alphas_cumprod must be a 1-D table with at least 2 entries")
        if not ((table > 0) & (table < 1)).all() or not (table[1:] < table[:-1]).all():
            raise ArgumentError("alphas_cumprod must lie in (0, 1) and decrease strictly with the timestep")
        super().__post_init__()

    @property
    def num_timesteps(self) -> int:
        return len(self.alphas_cumprod)

    @cached_property
    def _knots(self) -> Tensor:
        # Half log-SNR at t_k, ordered by increasing t (k = N-1 first).
        a = torch.tensor(self.alphas_cumprod, dtype=torch.float64).flip(0)
        return 0.5 * (torch.log(a) - torch.log1p(-a))

    def timestep(self, t: Tensor) -> Tensor:
        """The (fractional) discrete timestep :math:`(1-t)(N-1)` a network expects at time ``t``."""
        return (1 - t) * (self.num_timesteps - 1)

    def _lambda_and_rate(self, t: Tensor) -> tuple[Tensor, Tensor]:
        if not isinstance(t, Tensor):
            raise ArgumentError(f"t must be a tensor of times; got {type(t).__name__}")
        knots = self._knots.to(device=t.device, dtype=t.dtype)
        n = self.num_timesteps - 1
        u = (t * n).clamp(0, n)
        # A NaN time would index far out of the table; it keeps a valid index and stays NaN in `u`.
        idx = torch.nan_to_num(torch.floor(u), nan=0.0).clamp(max=n - 1).long()
        lo, hi = knots[idx], knots[idx + 1]
        return lo + (u - idx) * (hi - lo), (hi - lo) * n

    def __call__(self, t: Tensor) -> ScheduleValues:
        lam, rate = self._lambda_and_rate(t)
        alpha, sigma = torch.sigmoid(2 * lam).sqrt(), torch.sigmoid(-2 * lam).sqrt()
        return ScheduleValues(
            alpha=alpha, sigma=sigma, d_alpha=alpha * sigma**2 * rate, d_sigma=-sigma * alpha**2 * rate
        )

    def log_snr(self, t: Tensor) -> Tensor:
        return self._lambda_and_rate(t)[0]

    def inverse_log_snr(self, lam: Tensor) -> Tensor:
        knots = self._knots.to(device=lam.device, dtype=lam.dtype)
        n = self.num_timesteps - 1
        lam = lam.clamp(knots[0], knots[-1])
        idx = (torch.searchsorted(knots, lam.contiguous()) - 1).clamp(0, n - 1)
        lo, hi = knots[idx], knots[idx + 1]
        return (idx + (lam - lo) / (hi - lo)) / n
