r"""Bayesian flows as Gaussian paths: the bridge from BFNs to flowbridge's exponential integrators.

**Continuous (and discretized) data** (Graves et al. 2023, §4). The input distribution is
:math:`N(\mu, \rho^{-1} I)` with prior :math:`(\mu, \rho) = (0, 1)`; the accuracy schedule is
:math:`\beta(t) = \sigma_1^{-2t} - 1` so that :math:`\rho(t) = 1 + \beta(t) = \sigma_1^{-2t}` and
:math:`\gamma(t) = \beta/(1+\beta) = 1 - \sigma_1^{2t}`. The Bayesian flow distribution is

.. math::
    \mu_t \sim N\big(\gamma(t)\,x,\; \gamma(t)(1-\gamma(t))\,I\big),

i.e. :math:`\mu_t = \alpha(t)\,x + \sigma(t)\,\epsilon` with :math:`\alpha = \gamma` and
:math:`\sigma = \sqrt{\gamma(1-\gamma)} = \sqrt{\gamma}\,\sigma_1^{t}`: **a Gaussian path** in
flowbridge's sense (``t = 0`` source, ``t = 1`` data). Equivalently :math:`\mu_t/\gamma \sim
N(x, \tfrac{1-\gamma}{\gamma} I)` is a variance-exploding path with
:math:`\bar\sigma^2 = (1-\gamma)/\gamma = 1/\beta`. Its half log-SNR is

.. math::
    \lambda(t) = \log\frac{\alpha}{\sigma} = \tfrac12\log\frac{\gamma}{1-\gamma}
    = \tfrac12\log\beta(t), \qquad e^{-2(\lambda_t - \lambda_s)} = \beta_s/\beta_t .

The BFN network's output :math:`\hat x(\mu, t)` is trained by
:math:`L^\infty = -\ln\sigma_1\,\sigma_1^{-2t}\,|x - \hat x|^2 = \tfrac12\dot\beta(t)|x-\hat x|^2`,
a weighted *data-prediction* denoising loss on this path, so its minimiser is
:math:`E[x \mid \mu_t]` — the ``data`` parametrisation of a :class:`~flowbridge.fields.Field`. Hence
every Gaussian-path solver applies, in particular the exponential integrators DDIM and
DPM-Solver++ in :math:`\lambda` (BFN-Solver, Xue et al. 2024). In these variables the original BFN
sampling step (draw :math:`y \sim N(\hat x, \alpha_i^{-1})`, update
:math:`\mu' = (\rho\mu + \alpha_i y)/(\rho + \alpha_i)`) reads, with :math:`\alpha_i = \beta_t -
\beta_s`,

.. math::
    \mu_t = \frac{\rho_s}{\rho_t}\mu_s + \frac{\alpha_i}{\rho_t}\hat x + \frac{\sqrt{\alpha_i}}{\rho_t}\xi
    = \frac{\sigma_t}{\sigma_s}e^{-h}\mu_s + \alpha_t(1 - e^{-2h})\hat x + \sigma_t\sqrt{1-e^{-2h}}\,\xi,

exactly the first-order exponential integrator of the data-prediction reverse SDE (flowbridge's
``ddpm_ancestral`` with ``eta = 1``): the original sampler *is* BFN-Solver's SDE solver of order one,
and the deterministic solvers of the same path (``ddim``, ``dpmpp_2m``) are its probability-flow
counterparts.

**Discrete data** (§6). With :math:`\beta(t) = \beta_1 t^2` the summed sender messages are
:math:`y_t = \beta(t)(K e_x - \mathbf 1) + \sqrt{K\beta(t)}\,\epsilon` and the input distribution is
:math:`\theta = \mathrm{softmax}(y_t)`. In the logits :math:`y` this is again a Gaussian path, with
data :math:`K e_x - \mathbf 1 \in R^K`, :math:`\alpha = \beta(t)`, :math:`\sigma = \sqrt{K\beta(t)}` and
:math:`\lambda = \tfrac12\log(\beta/K)`; the network's expected one-hot :math:`\hat e(\theta, t)`
gives the data prediction :math:`K\hat e - \mathbf 1`, and the original sampler's step
:math:`y \mathrel{+}= \alpha_i(K e_k - \mathbf 1) + \sqrt{\alpha_i K}\,\xi`, :math:`k \sim p_O`, is the
first-order SDE integrator with the prediction replaced by a draw of the same mean.

Both schedules have :math:`\alpha(0) = \sigma(0) = 0` (the prior is a point mass), so their
log-SNR is :math:`-\infty` at ``t = 0``; ``t_min`` is where samplers start by default, with the
source approximation :math:`N(0, \sigma(t_{min})^2 I)` whose neglected term :math:`\alpha x` is
:math:`\alpha/\sigma \approx 2\cdot10^{-3}` (continuous) and :math:`10^{-4}\sqrt{\beta_1/K}`
(discrete) of the noise there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn.functional import logsigmoid

from flowbridge.errors import ArgumentError
from flowbridge.paths.schedules import Schedule, ScheduleValues, register_schedule


def check_sigma1(sigma1: float) -> float:
    """Validates the continuous BFN's final standard deviation ``sigma1`` in (0, 1)."""
    if isinstance(sigma1, bool) or not isinstance(sigma1, (int, float)) or not 0.0 < float(sigma1) < 1.0:
        raise ArgumentError(
            f"sigma1 must lie in the open interval (0, 1) (the input distribution's standard deviation at t=1, "
            f"e.g. 0.001 for 256-level images, sqrt(1e-3) for 16 levels); got {sigma1!r}"
        )
    return float(sigma1)


def check_beta1(beta1: float) -> float:
    """Validates the discrete BFN's final accuracy ``beta1 > 0``."""
    if isinstance(beta1, bool) or not isinstance(beta1, (int, float)) or not math.isfinite(beta1) or beta1 <= 0:
        raise ArgumentError(f"beta1 must be a finite number > 0 (the accuracy beta(1)); got {beta1!r}")
    return float(beta1)


def check_num_classes(num_classes: int, name: str = "num_classes") -> int:
    """Validates a category or bin count: an int >= 2."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ArgumentError(f"{name} must be an integer >= 2; got {num_classes!r}")
    return num_classes


@register_schedule("bfn_continuous")
@dataclass(frozen=True)
class ContinuousBFNSchedule(Schedule):
    r"""The continuous BFN flow :math:`\mu_t = \gamma x + \sqrt{\gamma(1-\gamma)}\,\epsilon`,
    :math:`\gamma = 1 - \sigma_1^{2t}` (see the module docstring).

    Args:
        sigma1: standard deviation of the input distribution at ``t = 1``, in (0, 1).
        t_min: default start of samplers (log-SNR is :math:`-\infty` at 0).
        t_max: default end (1: the schedule is regular there).
    """

    sigma1: float = 0.02
    t_min: float = 1e-6
    t_max: float = 1.0

    def __post_init__(self) -> None:
        check_sigma1(self.sigma1)
        super().__post_init__()

    @property
    def log_sigma1(self) -> float:
        return math.log(self.sigma1)

    def gamma(self, t: Tensor) -> Tensor:
        r""":math:`\gamma(t) = 1 - \sigma_1^{2t}` (``-expm1`` keeps it accurate near ``t = 0``)."""
        return -torch.expm1(2 * t * self.log_sigma1)

    def beta(self, t: Tensor) -> Tensor:
        r"""The accuracy :math:`\beta(t) = \sigma_1^{-2t} - 1` (precision minus the prior's)."""
        return torch.expm1(-2 * t * self.log_sigma1)

    def __call__(self, t: Tensor) -> ScheduleValues:
        gamma = self.gamma(t)
        one_minus = torch.exp(2 * t * self.log_sigma1)  # 1 - gamma = sigma1^(2t)
        d_gamma = -2 * self.log_sigma1 * one_minus
        sigma = torch.sqrt(gamma * one_minus)
        # d sigma / dt = (1 - 2 gamma) gamma' / (2 sigma); infinite at t = 0 like every start of a
        # path whose sigma vanishes there.
        d_sigma = (1 - 2 * gamma) * d_gamma / (2 * sigma)
        return ScheduleValues(alpha=gamma, sigma=sigma, d_alpha=d_gamma, d_sigma=d_sigma)

    def log_snr(self, t: Tensor) -> Tensor:
        # lambda = log(beta) / 2, computed without the cancellation of log(gamma) - log(1 - gamma).
        return 0.5 * torch.log(self.beta(t))

    def inverse_log_snr(self, lam: Tensor) -> Tensor:
        # 1 - gamma = sigmoid(-2 lambda) and 1 - gamma = sigma1^(2t).
        return logsigmoid(-2 * lam) / (2 * self.log_sigma1)


@register_schedule("bfn_discrete")
@dataclass(frozen=True)
class DiscreteBFNSchedule(Schedule):
    r"""The discrete BFN flow in logit space: :math:`y_t = \beta(t)(K e_x - 1) + \sqrt{K\beta(t)}\,\epsilon`,
    :math:`\beta(t) = \beta_1 t^2` (see the module docstring).

    Args:
        beta1: final accuracy :math:`\beta(1) > 0`.
        num_classes: number of categories ``K >= 2``.
        t_min: start of the default sampling span.
        t_max: end of the default sampling span.
    """

    beta1: float = 3.0
    num_classes: int = 2
    t_min: float = 1e-4
    t_max: float = 1.0

    def __post_init__(self) -> None:
        check_beta1(self.beta1)
        check_num_classes(self.num_classes)
        super().__post_init__()

    def beta(self, t: Tensor) -> Tensor:
        r""":math:`\beta(t) = \beta_1 t^2`."""
        return self.beta1 * t * t

    def __call__(self, t: Tensor) -> ScheduleValues:
        scale = math.sqrt(self.num_classes * self.beta1)
        return ScheduleValues(
            alpha=self.beta1 * t * t, sigma=scale * t, d_alpha=2 * self.beta1 * t, d_sigma=torch.full_like(t, scale)
        )

    def log_snr(self, t: Tensor) -> Tensor:
        return torch.log(t) + 0.5 * math.log(self.beta1 / self.num_classes)

    def inverse_log_snr(self, lam: Tensor) -> Tensor:
        return torch.exp(lam - 0.5 * math.log(self.beta1 / self.num_classes))
