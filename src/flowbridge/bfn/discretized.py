r"""Bayesian flow networks for discretized data: K bins on [-1, 1] (Graves et al. 2023, §5).

The data take the bin centres :math:`k_c = (2k - 1)/K - 1`, :math:`k = 1..K` (bin width
:math:`2/K`). Input distribution, sender, Bayesian update and flow are those of continuous data
(:class:`~flowbridge.bfn.ContinuousBFN`); only the output distribution changes: per dimension, a
Gaussian :math:`N(\mu_x, \sigma_x^2)` discretized onto the bins, the first and last bins taking the
tails,

.. math::
    p_O(k\mid\theta, t) = \Phi\Big(\frac{k_r - \mu_x}{\sigma_x}\Big) - \Phi\Big(\frac{k_l - \mu_x}{\sigma_x}\Big),
    \qquad k_l = k_c - 1/K\;(-\infty\text{ for }k = 1),\; k_r = k_c + 1/K\;(+\infty\text{ for }k = K).

The network outputs two numbers per dimension (``2C`` channels for images, ``2D`` features for
vectors), :math:`(F_\mu, F_\sigma)`, preconditioned like the continuous ``"edm"`` output:
:math:`\mu_x = c_{skip}z + c_{out}F_\mu`, :math:`\sigma_x = c_{out}\,e^{F_\sigma}`.

Losses, with :math:`\hat k(\theta, t) = \sum_k p_O(k)\,k_c` the output mean:

* continuous time: :math:`L^\infty = -\ln\sigma_1\,\sigma_1^{-2t}|x - \hat k|^2`;
* n steps: :math:`L^n = n\,E[\ln p_S(y\mid x;\alpha_i) - \ln p_R(y\mid\theta;t_{i-1},\alpha_i)]`,
  :math:`y \sim N(x, \alpha_i^{-1})`, with the receiver the mixture
  :math:`p_R = \sum_k p_O(k)N(y\mid k_c, \alpha_i^{-1})` (one Monte-Carlo draw of ``y``);
* reconstruction :math:`L^r = -\ln p_O(x\mid\theta_1, 1)`: a bound on a discrete likelihood.

The output mean :math:`\hat k` is the data prediction of the Gaussian path (it minimises
:math:`L^\infty`), so the fast samplers are the continuous ones; the original sampler sends a
*draw* :math:`k \sim p_O` instead.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from flowbridge._utils import as_time, expand_like
from flowbridge.bfn.base import (
    BFNSample,
    check_n_steps,
    check_times,
    sample_categorical,
    step_index,
    sum_over_dims,
)
from flowbridge.bfn.continuous import _TINY, ContinuousBFN
from flowbridge.bfn.schedules import check_num_classes
from flowbridge.errors import ArgumentError
from flowbridge.objectives.base import ObjectiveOutput
from flowbridge.random import RandomSource, randn_like

# Floor of a bin probability inside logarithms (a bin of probability 0 costs ~28 nats, not inf).
_PROB_FLOOR = 1e-12


class DiscretizedBFN(ContinuousBFN):
    """A BFN for data quantised to ``num_bins`` levels on [-1, 1].

    Args:
        num_bins: the number of levels ``K`` (16 for 4-bit images, 256 for 8-bit).
        sigma1: input standard deviation at ``t = 1`` (the paper: ``sqrt(1e-3)`` for 16 bins,
            ``sqrt(1e-6)`` for 256).
        data_std: data scale of the preconditioning.
        min_log_std: floor of :math:`\\log\\sigma_x` (keeps the CDF differences finite).

    Raises:
        ValueError: ``num_bins < 2``, ``sigma1`` outside (0, 1).
    """

    def __init__(self, num_bins: int = 16, sigma1: float = math.sqrt(1e-3), data_std: float = 0.5, min_log_std: float = -12.0) -> None:
        super().__init__(sigma1=sigma1, parametrisation="edm", data_std=data_std)
        self.num_bins = check_num_classes(num_bins, "num_bins")
        self.min_log_std = float(min_log_std)

    def __repr__(self) -> str:
        return f"DiscretizedBFN(num_bins={self.num_bins}, sigma1={self.sigma1}, data_std={self.data_std})"

    # ------------------------------------------------------------------ bins
    def bin_centres(self, like: Tensor) -> Tensor:
        """The (K,) centres :math:`(2k-1)/K - 1` on ``like``'s device and dtype."""
        k = torch.arange(1, self.num_bins + 1, dtype=like.dtype, device=like.device)
        return (2 * k - 1) / self.num_bins - 1

    def to_bins(self, x: Tensor) -> Tensor:
        """Bin indices (long, 0-based) of data on the bin centres."""
        return torch.round((x + 1) * self.num_bins / 2 - 0.5).long().clamp(0, self.num_bins - 1)

    def quantise(self, x: Tensor) -> Tensor:
        """Maps data in [-1, 1] to the nearest of the ``K`` bin centres."""
        idx = torch.floor((x.clamp(-1, 1) + 1) * self.num_bins / 2).clamp(0, self.num_bins - 1)
        return (2 * idx + 1) / self.num_bins - 1

    def check_data(self, x: Tensor) -> None:
        """Raises unless ``x`` is a floating batch whose values lie on the ``K`` bin centres.

        Raises:
            TypeError: integer or non-tensor data.
            ValueError: values outside [-1, 1] or off the bin centres, which is what data quantised
                to another number of levels looks like (the error names the likely level count).
        """
        super().check_data(x)
        # sync-ok: input validation, once per call
        if bool(((x < -1) | (x > 1)).any()):
            raise ArgumentError(f"discretized data must lie in [-1, 1]; got values in [{float(x.min()):.4g}, {float(x.max()):.4g}]")
        pos = (x + 1) * self.num_bins / 2 - 0.5
        off = (pos - torch.round(pos)).abs()
        if bool((off > 1e-3).any()):
            levels = torch.unique(x.detach().reshape(-1)).numel()
            raise ArgumentError(
                f"discretized data must lie on the num_bins={self.num_bins} bin centres (2k-1)/{self.num_bins} - 1; "
                f"found values off the centres (the data have {levels} distinct values; quantise them with "
                f"DiscretizedBFN.quantise or set num_bins to the data's level count)"
            )

    # ------------------------------------------------------------------ output distribution
    def output_params(self, net: nn.Module, mu: Tensor, t: Tensor | float) -> tuple[Tensor, Tensor]:
        r"""The discretized Gaussian's :math:`(\mu_x, \log\sigma_x)`, each shaped like ``mu``."""
        t = as_time(t, mu)  # checks the state's type and the times' shape once, metadata only
        out = self._net_output(net, self._scaled_input(mu, t), t)
        if out.shape[1] != 2 * mu.shape[1] or out.shape[2:] != mu.shape[2:]:
            raise ArgumentError(
                f"a discretized BFN's network must output 2 values per dimension: shape (B, {2 * mu.shape[1]}, ...) "
                f"for input {tuple(mu.shape)}; got {tuple(out.shape)} (set the net's out_dim / out_channels)"
            )
        f_mean, f_log_std = out.chunk(2, dim=1)
        gamma = self.gamma(expand_like(t, mu))
        sd2 = self.data_std**2
        denom = 1 - gamma + gamma * sd2
        c_out = self.data_std * torch.sqrt((1 - gamma) / denom)
        mean = sd2 * mu / denom + c_out * f_mean
        log_std = torch.clamp(torch.log(c_out) + f_log_std, min=self.min_log_std)
        return mean, log_std

    def _scaled_input(self, mu: Tensor, t: Tensor) -> Tensor:
        gamma = self.gamma(expand_like(t, mu))
        return mu * torch.rsqrt(torch.clamp(gamma * (1 - gamma) + gamma * gamma * self.data_std**2, min=_TINY))

    def bin_probs_from_params(self, mean: Tensor, log_std: Tensor) -> Tensor:
        """Bin probabilities (..., K) of a Gaussian discretized onto the bins, tails in the end bins."""
        k = self.num_bins
        edges = torch.arange(1, k, dtype=mean.dtype, device=mean.device) * (2.0 / k) - 1  # the K-1 inner edges
        z = (edges - mean[..., None]) * torch.exp(-log_std)[..., None]
        cdf = 0.5 * (1 + torch.erf(z / math.sqrt(2)))
        zeros = torch.zeros_like(cdf[..., :1])
        cdf = torch.cat([zeros, cdf, zeros + 1], dim=-1)
        return (cdf[..., 1:] - cdf[..., :-1]).clamp_min(0.0)

    def output_probs(self, net: nn.Module, mu: Tensor, t: Tensor | float) -> Tensor:
        r""":math:`p_O(k\mid\theta, t)` of shape ``mu.shape + (K,)``."""
        return self.bin_probs_from_params(*self.output_params(net, mu, t))

    def data_prediction(self, net: nn.Module, mu: Tensor, t: Tensor | float) -> Tensor:
        r"""The output mean :math:`\hat k = \sum_k p_O(k)k_c` (the data prediction of the flow)."""
        probs = self.output_probs(net, mu, t)
        return probs @ self.bin_centres(mu)

    # ------------------------------------------------------------------ losses
    def n_step_loss(
        self, net: nn.Module, x: Tensor, t: Tensor, n_steps: int, *, generator: RandomSource = None
    ) -> ObjectiveOutput:
        r""":math:`L^n` with one draw of the sender sample: :math:`n[\ln p_S(y|x) - \ln p_R(y|\theta)]`."""
        self.check_data(x)
        t = check_times(t, x)
        i, t_prev = step_index(t, n_steps)
        log_s = math.log(self.sigma1)
        alpha = torch.exp(-2 * i * log_s / n_steps) * (-math.expm1(2 * log_s / n_steps))
        a = expand_like(alpha, x)
        mu = self.flow_sample(x, t_prev, generator=generator)
        probs = self.output_probs(net, mu, t_prev)
        y = x + randn_like(x, generator=generator) / torch.sqrt(a)
        # ln p_S - ln p_R; the Gaussian normalisers are equal and cancel.
        log_sender = -0.5 * a * (y - x) ** 2
        log_components = -0.5 * a[..., None] * (y[..., None] - self.bin_centres(x)) ** 2
        log_receiver = torch.logsumexp(torch.log(probs.clamp_min(_PROB_FLOOR)) + log_components, dim=-1)
        per_sample = n_steps * sum_over_dims(log_sender - log_receiver)
        return ObjectiveOutput(loss=per_sample.mean(), per_sample=per_sample, terms={})

    def continuous_time_loss(self, net: nn.Module, x: Tensor, t: Tensor, *, generator: RandomSource = None) -> ObjectiveOutput:
        r""":math:`L^\infty = -\ln\sigma_1\,\sigma_1^{-2t}|x - \hat k(\theta, t)|^2`, nats per datum."""
        self.check_data(x)
        return super().continuous_time_loss(net, x, t, generator=generator)

    def reconstruction_loss(self, net: nn.Module, x: Tensor, *, generator: RandomSource = None) -> Tensor:
        r""":math:`L^r = -\ln p_O(x\mid\theta_1, 1)` per datum (B,)."""
        self.check_data(x)
        one = torch.ones(x.shape[0], dtype=x.dtype, device=x.device)
        probs = self.output_probs(net, self.flow_sample(x, one, generator=generator), one)
        picked = torch.gather(probs, -1, self.to_bins(x)[..., None])[..., 0]
        return -sum_over_dims(torch.log(picked.clamp_min(_PROB_FLOOR)))

    # ------------------------------------------------------------------ sampling
    def sample_original(
        self,
        net: nn.Module,
        steps: int,
        *,
        shape: tuple[int, ...],
        generator: RandomSource = None,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> BFNSample:
        """The paper's sampler: draw bins :math:`k \\sim p_O`, send :math:`N(k_c, \\alpha_i^{-1})`, update;
        finally draw from :math:`p_O(\\cdot\\mid\\theta_1, 1)`. ``steps + 1`` evaluations."""
        check_n_steps(steps, "steps")
        dtype = dtype or torch.get_default_dtype()
        mu = torch.zeros(tuple(shape), dtype=dtype, device=device)
        centres = self.bin_centres(mu)
        alphas = [float(a) for a in self.accuracies(steps)]
        # The network is asked at max(t, t_min): at t = 0 the flow is the point mass mu = 0, and
        # wrappers that divide by gamma (flowbridge's EDMPreconditioner) would return 0/0 there.
        times = torch.arange(steps + 1, dtype=torch.float64).div(steps).clamp_min(self.schedule.t_min)
        times = times.to(dtype=dtype, device=mu.device)
        rho = 1.0
        for i in range(steps):
            probs = self.output_probs(net, mu, times[i])
            k = sample_categorical(torch.log(probs.clamp_min(_PROB_FLOOR)), generator=generator)
            y = centres[k] + randn_like(mu, generator=generator) / math.sqrt(alphas[i])
            mu, rho = self.bayesian_update(mu, rho, y, alphas[i])
        return BFNSample(x=self.final_sample(net, mu, generator=generator), nfe=steps + 1, params=mu)

    def final_sample(self, net: nn.Module, mu: Tensor, *, generator: RandomSource = None, mode: bool = False) -> Tensor:
        """A draw (or the mode) of :math:`p_O(\\cdot\\mid\\mu, 1)`, as bin centres."""
        probs = self.output_probs(net, mu, torch.ones((), dtype=mu.dtype, device=mu.device))
        logp = torch.log(probs.clamp_min(_PROB_FLOOR))
        k = logp.argmax(-1) if mode else sample_categorical(logp, generator=generator)
        return self.bin_centres(mu)[k]
