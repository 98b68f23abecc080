r"""Exact, Bayes-optimal BFN outputs for data with known laws: the ground truth of the BFN tests.

* Continuous data from a :class:`~flowbridge.analytic.GaussianMixture`: the flow is the Gaussian
  path :math:`\mu_t = \gamma x + \sqrt{\gamma(1-\gamma)}\,\epsilon`, so the optimal output
  :math:`\hat x(\mu, t) = E[x\mid\mu_t]` is the mixture's posterior mean with :math:`\alpha = \gamma`,
  :math:`\sigma = \sqrt{\gamma(1-\gamma)}` (:meth:`GaussianMixture.posterior_means`). Use it with
  ``ContinuousBFN(parametrisation="data")``.
* Discrete data whose positions are independent with marginals :math:`p_j`: the likelihood of the
  summed messages is :math:`p(y\mid x = k) \propto e^{y_k}` up to a factor free of :math:`k`, so
  :math:`p(x_j = k\mid\theta) \propto p_{jk}\,\theta_{jk}`: the optimal logits are
  :math:`\log p_j + \log\theta_j`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from flowbridge._utils import as_time, check_state
from flowbridge.analytic import GaussianMixture
from flowbridge.bfn.schedules import ContinuousBFNSchedule
from flowbridge.errors import ArgumentError

# gamma is floored here so that t = 0 (mu = 0, gamma = 0) gives the prior mean instead of 0/0.
_GAMMA_FLOOR = 1e-12


class MixturePosteriorMean(nn.Module):
    """``forward(mu, t) = E[x | mu_t = mu]`` for mixture data under the continuous BFN flow.

    Args:
        mixture: the data law.
        sigma1: the BFN's ``sigma1``.
    """

    def __init__(self, mixture: GaussianMixture, sigma1: float) -> None:
        super().__init__()
        self.mixture = mixture
        self.schedule = ContinuousBFNSchedule(sigma1=sigma1)

    def forward(self, mu: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        check_state(mu, "mu")
        if mu.ndim < 2 or math.prod(mu.shape[1:]) != self.mixture.dim:
            raise ArgumentError(f"mu must have {self.mixture.dim} features per sample; got shape {tuple(mu.shape)}")
        # The mixture's eigendecomposition has no half-precision kernel: work in at least float32.
        work = torch.promote_types(mu.dtype, torch.float32)
        flat = mu.reshape(mu.shape[0], self.mixture.dim).to(work)
        gamma = self.schedule.gamma(as_time(t, flat).expand(mu.shape[0]))
        gamma = gamma.clamp_min(_GAMMA_FLOOR)[:, None]
        x_hat, _ = self.mixture.to(dtype=work, device=mu.device).posterior_means(flat, gamma, torch.sqrt(gamma * (1 - gamma)))
        return x_hat.reshape(mu.shape).to(mu.dtype)


class IndependentCategoricalPosterior(nn.Module):
    """Optimal output logits for independent categorical positions (``layout="flat"`` networks).

    Args:
        probs: (P, K) per-position class probabilities (rows sum to 1).
    """

    def __init__(self, probs: Tensor) -> None:
        super().__init__()
        check_state(probs, "probs")
        if probs.ndim != 2 or probs.shape[0] == 0 or not torch.allclose(probs.sum(-1), torch.ones((), dtype=probs.dtype), atol=1e-6):
            raise ArgumentError(f"probs must be (P, K) with rows summing to 1; got shape {tuple(probs.shape)}")
        self.register_buffer("log_probs", torch.log(probs))

    def forward(self, inputs: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        p, k = self.log_probs.shape
        theta = ((inputs + 1) / 2).reshape(inputs.shape[0], p, k)
        logits = self.log_probs.to(inputs) + torch.log(theta.clamp_min(torch.finfo(inputs.dtype).tiny))
        return logits.reshape(inputs.shape[0], -1)

    def sample(self, n: int, *, generator: torch.Generator | None = None) -> Tensor:
        """``n`` exact draws (n, P) of the data law."""
        return torch.stack(
            [torch.multinomial(torch.exp(row), n, replacement=True, generator=generator) for row in self.log_probs], dim=1
        )
