r"""Bayesian flow networks for continuous data (Graves et al. 2023, §4).

Everything is stated in flowbridge's time (``t = 0`` prior, ``t = 1`` data), which is also BFN's.

* Input distribution :math:`N(\mu, \rho^{-1}I)`, prior :math:`(0, 1)`.
* Sender :math:`p_S(y\mid x;\alpha) = N(x, \alpha^{-1}I)`; Bayesian update
  :math:`\rho' = \rho + \alpha`, :math:`\mu' = (\rho\mu + \alpha y)/\rho'`.
* Accuracy schedule :math:`\beta(t) = \sigma_1^{-2t} - 1`, :math:`\gamma = 1 - \sigma_1^{2t}`; flow
  distribution :math:`\mu_t \sim N(\gamma x, \gamma(1-\gamma)I)` (a Gaussian path: see
  :mod:`flowbridge.bfn.schedules`).
* n-step accuracies :math:`\alpha_i = \beta(i/n) - \beta((i-1)/n) = \sigma_1^{-2i/n}(1 - \sigma_1^{2/n})`;
  n-step loss :math:`L^n = \tfrac n2 E_{i,\mu}\,\alpha_i|x - \hat x(\mu_{t_{i-1}}, t_{i-1})|^2` (the KL
  between sender and receiver, both Gaussians of precision :math:`\alpha_i`).
* Continuous-time loss :math:`L^\infty = -\ln\sigma_1\,E_{t,\mu}\,\sigma_1^{-2t}|x - \hat x(\mu_t, t)|^2`,
  the limit of :math:`L^n` (:math:`n\alpha_i \to \dot\beta = -2\ln\sigma_1\,\sigma_1^{-2t}`).
* Reconstruction :math:`L^r = -E\ln N(x\mid\hat x(\mu_1, 1), \sigma_1^2 I)`: the output distribution at
  ``t = 1`` is read as a Gaussian of the flow's final width, which makes :math:`L^n + L^r` the
  negative ELBO of a proper latent-variable model (a bound in nats on continuous densities).

Network parametrisations of :math:`\hat x(\mu, t)` (``net(input, t)``):

* ``"edm"`` (default): EDM-style preconditioning in the VE variable :math:`z = \mu/\gamma \sim
  N(x, s^2)`, :math:`s^2 = (1-\gamma)/\gamma`, with data scale :math:`s_d`:
  :math:`\hat x = c_{skip} z + c_{out} F(c_{in} z, t)` where, written without dividing by
  :math:`\gamma` (finite at ``t = 0``),
  :math:`c_{skip}z = s_d^2\mu/(1-\gamma+\gamma s_d^2)`,
  :math:`c_{out} = s_d\sqrt{1-\gamma}/\sqrt{1-\gamma+\gamma s_d^2}`,
  :math:`c_{in}z = \mu/\sqrt{\gamma(1-\gamma)+\gamma^2 s_d^2}`;
* ``"noise"`` (the paper's): :math:`\hat x = \mu/\gamma - \sqrt{(1-\gamma)/\gamma}\,\hat\epsilon`,
  with :math:`\hat x = 0` below ``t = 1e-6``;
* ``"data"``: :math:`\hat x = F(\mu, t)` (also how exact, analytic outputs are plugged in).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from flowbridge._utils import as_time, expand_like
from flowbridge.bfn.base import (
    BFNSample,
    check_n_steps,
    check_times,
    sample_on_flow,
    step_index,
    sum_over_dims,
)
from flowbridge.bfn.schedules import ContinuousBFNSchedule, check_sigma1
from flowbridge.errors import ArgumentError
from flowbridge.fields.base import Field, call_net
from flowbridge.objectives.base import ObjectiveOutput
from flowbridge.paths.gaussian import GaussianPath
from flowbridge.random import RandomSource, randn_like
from flowbridge.samplers.base import Observer, Solver

PARAMETRISATIONS: tuple[str, ...] = ("edm", "noise", "data")

# Below this time the paper's noise parametrisation outputs x_hat = 0 (1/gamma blows up).
_NOISE_T_MIN = 1e-6
# Floor of the squared input scale at t = 0, where mu = 0 exactly and 0 / 0 must read as 0.
_TINY = 1e-30


class BFNField(Field):
    """A BFN network read as a data-prediction field on its Bayesian-flow Gaussian path.

    ``predict(params, t)`` is the BFN's data prediction in the path's variable (``mu`` for
    continuous and discretized data, the logits ``y`` for discrete data), so every flowbridge
    Gaussian-path solver (``ddim``, ``dpmpp_2m``, ``ddpm_ancestral``, ...) samples the flow.

    Args:
        bfn: the BFN (continuous, discretized or discrete) that defines the path and the output.
        net: the network.
    """

    def __init__(self, bfn: Any, net: nn.Module) -> None:
        super().__init__(bfn.path, "data")
        self.bfn = bfn
        self.net = net

    def predict(self, x: Tensor, t: Tensor) -> Tensor:
        return self.bfn.data_prediction(self.net, x, t)


class ContinuousBFN:
    """A continuous-data BFN: flow, updates, losses, likelihood bound and samplers.

    Args:
        sigma1: input standard deviation at ``t = 1``, in (0, 1) (0.001 in the paper for 8-bit
            images; smaller is sharper and needs more steps).
        parametrisation: ``"edm"``, ``"noise"`` or ``"data"`` (see the module docstring).
        data_std: the data scale :math:`s_d` of the ``"edm"`` preconditioning.
        clip: optional ``(low, high)`` to clamp :math:`\\hat x` into (the data range).

    Raises:
        ValueError: on ``sigma1`` outside (0, 1), an unknown parametrisation, ``data_std <= 0`` or a
            bad ``clip``.
    """

    def __init__(
        self,
        sigma1: float = 0.02,
        parametrisation: str = "edm",
        data_std: float = 1.0,
        clip: tuple[float, float] | None = None,
    ) -> None:
        self.sigma1 = check_sigma1(sigma1)
        if parametrisation not in PARAMETRISATIONS:
            raise ArgumentError(f"parametrisation must be one of {list(PARAMETRISATIONS)}; got {parametrisation!r}")
        if not isinstance(data_std, (int, float)) or not data_std > 0:
            raise ArgumentError(f"data_std must be > 0; got {data_std!r}")
        if clip is not None:
            if len(clip) != 2 or not float(clip[0]) < float(clip[1]):
                raise ArgumentError(f"clip must be None or (low, high) with low < high; got {clip!r}")
            clip = (float(clip[0]), float(clip[1]))
        self.parametrisation = parametrisation
        self.data_std = float(data_std)
        self.clip = clip
        self.schedule = ContinuousBFNSchedule(sigma1=self.sigma1)
        self.path = GaussianPath(self.schedule)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(sigma1={self.sigma1}, parametrisation={self.parametrisation!r}, data_std={self.data_std})"

    # ------------------------------------------------------------------ data
    def check_data(self, x: Tensor) -> None:
        """Raises a TypeError / ValueError unless ``x`` is a finite floating (B, ...) batch."""
        if not isinstance(x, Tensor) or not x.is_floating_point():
            raise ArgumentError(f"x must be a floating-point tensor of shape (B, ...); got {getattr(x, 'dtype', type(x).__name__)}")
        if x.ndim < 2:
            raise ArgumentError(f"x must have shape (B, *dims); got {tuple(x.shape)}")
        if not bool(torch.isfinite(x).all()):  # sync-ok: input validation, once per call
            raise ArgumentError("x contains non-finite values")

    # ------------------------------------------------------------------ Bayesian flow
    def gamma(self, t: Tensor) -> Tensor:
        r""":math:`\gamma(t) = 1 - \sigma_1^{2t}`."""
        return self.schedule.gamma(t)

    def accuracies(self, n_steps: int) -> Tensor:
        r"""The n-step accuracies :math:`\alpha_i = \sigma_1^{-2i/n}(1 - \sigma_1^{2/n})`, float64 CPU (n,)."""
        check_n_steps(n_steps)
        i = torch.arange(1, n_steps + 1, dtype=torch.float64)
        return self.sigma1 ** (-2 * i / n_steps) * (1 - self.sigma1 ** (2.0 / n_steps))

    def flow_sample(self, x: Tensor, t: Tensor, *, generator: RandomSource = None) -> Tensor:
        r"""A draw of :math:`\mu_t \sim N(\gamma x, \gamma(1-\gamma)I)` for times ``t`` (B,)."""
        c = self.path.coefficients(t, x)
        return c.alpha * x + c.sigma * randn_like(x, generator=generator)

    def sender_sample(self, x: Tensor, alpha: Tensor | float, *, generator: RandomSource = None) -> Tensor:
        r"""A draw of the sender :math:`y \sim N(x, \alpha^{-1}I)` (``alpha`` broadcastable to ``x``)."""
        return x + randn_like(x, generator=generator) / torch.sqrt(torch.as_tensor(alpha, dtype=x.dtype, device=x.device))

    @staticmethod
    def bayesian_update(mu: Tensor, rho: Tensor | float, y: Tensor, alpha: Tensor | float) -> tuple[Tensor, Tensor | float]:
        r"""The conjugate update :math:`\rho' = \rho + \alpha`, :math:`\mu' = (\rho\mu + \alpha y)/\rho'`."""
        rho_new = rho + alpha
        return (rho * mu + alpha * y) / rho_new, rho_new

    # ------------------------------------------------------------------ output
    def _net_output(self, net: nn.Module, inputs: Tensor, t: Tensor) -> Tensor:
        return call_net(net, inputs, t, {})

    def data_prediction(self, net: nn.Module, mu: Tensor, t: Tensor | float) -> Tensor:
        r"""The network's estimate :math:`\hat x(\mu, t)` of :math:`E[x\mid\mu_t]`."""
        t = as_time(t, mu)  # checks the state's type and the times' shape once, metadata only
        x_hat = self._precondition(lambda inp: self._net_output(net, inp, t), mu, t)
        return x_hat if self.clip is None else x_hat.clamp(*self.clip)

    def _precondition(self, f: Callable[[Tensor], Tensor], mu: Tensor, t: Tensor) -> Tensor:
        tt = expand_like(t, mu)
        gamma = self.gamma(tt)
        if self.parametrisation == "data":
            return f(mu)
        if self.parametrisation == "noise":
            safe = torch.clamp(tt, min=_NOISE_T_MIN)
            g = self.gamma(safe)
            x_hat = mu / g - torch.sqrt((1 - g) / g) * f(mu)
            return torch.where(tt < _NOISE_T_MIN, torch.zeros_like(x_hat), x_hat)
        sd2 = self.data_std**2
        denom = 1 - gamma + gamma * sd2
        c_in = torch.rsqrt(torch.clamp(gamma * (1 - gamma) + gamma * gamma * sd2, min=_TINY))
        c_out = self.data_std * torch.sqrt((1 - gamma) / denom)
        return sd2 * mu / denom + c_out * f(mu * c_in)

    def field(self, net: nn.Module) -> BFNField:
        """The network as a data-prediction :class:`~flowbridge.fields.Field` on :attr:`path`."""
        return BFNField(self, net)

    # ------------------------------------------------------------------ losses
    def continuous_time_loss(self, net: nn.Module, x: Tensor, t: Tensor, *, generator: RandomSource = None) -> ObjectiveOutput:
        r""":math:`L^\infty` at times ``t`` (B,): :math:`-\ln\sigma_1\,\sigma_1^{-2t}|x - \hat x|^2`, nats per datum."""
        self.check_data(x)
        t = check_times(t, x)
        mu = self.flow_sample(x, t, generator=generator)
        sq = sum_over_dims((x - self.data_prediction(net, mu, t)) ** 2)
        weight = -math.log(self.sigma1) * torch.exp(-2 * t * math.log(self.sigma1))
        per_sample = weight * sq
        return ObjectiveOutput(loss=per_sample.mean(), per_sample=per_sample, terms={"sq_error": sq.mean()})

    def n_step_loss(
        self, net: nn.Module, x: Tensor, t: Tensor, n_steps: int, *, generator: RandomSource = None
    ) -> ObjectiveOutput:
        r""":math:`L^n` with step :math:`i = \lfloor tn\rfloor + 1` per sample: :math:`\tfrac n2\alpha_i|x - \hat x(\mu_{t_{i-1}})|^2`."""
        self.check_data(x)
        t = check_times(t, x)
        i, t_prev = step_index(t, n_steps)
        log_s = math.log(self.sigma1)
        alpha = torch.exp(-2 * i * log_s / n_steps) * (-math.expm1(2 * log_s / n_steps))
        mu = self.flow_sample(x, t_prev, generator=generator)
        sq = sum_over_dims((x - self.data_prediction(net, mu, t_prev)) ** 2)
        per_sample = 0.5 * n_steps * alpha * sq
        return ObjectiveOutput(loss=per_sample.mean(), per_sample=per_sample, terms={"sq_error": sq.mean()})

    def reconstruction_loss(self, net: nn.Module, x: Tensor, *, generator: RandomSource = None) -> Tensor:
        r""":math:`L^r = -\ln N(x\mid\hat x(\mu_1, 1), \sigma_1^2 I)` per datum (B,), one draw of :math:`\mu_1`."""
        self.check_data(x)
        one = torch.ones(x.shape[0], dtype=x.dtype, device=x.device)
        x_hat = self.data_prediction(net, self.flow_sample(x, one, generator=generator), one)
        var = self.sigma1**2
        return sum_over_dims(0.5 * (x - x_hat) ** 2 / var + 0.5 * math.log(2 * math.pi * var))

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
        r"""The paper's n-step sampler: from the prior :math:`(\mu, \rho) = (0, 1)`, for
        :math:`i = 1..n` predict :math:`\hat x(\mu, t_{i-1})`, send :math:`y \sim N(\hat x, \alpha_i^{-1})`
        and update; return :math:`\hat x(\mu, 1)`. ``steps + 1`` network evaluations."""
        check_n_steps(steps, "steps")
        dtype = dtype or torch.get_default_dtype()
        mu = torch.zeros(tuple(shape), dtype=dtype, device=device)
        alphas = [float(a) for a in self.accuracies(steps)]  # Python floats: no device syncs in the loop
        # The network is asked at max(t, t_min): at t = 0 the flow is the point mass mu = 0, and
        # wrappers that divide by gamma (flowbridge's EDMPreconditioner) would return 0/0 there.
        times = torch.arange(steps + 1, dtype=torch.float64).div(steps).clamp_min(self.schedule.t_min)
        times = times.to(dtype=dtype, device=mu.device)
        rho = 1.0
        for i in range(steps):
            x_hat = self.data_prediction(net, mu, times[i])
            y = x_hat + randn_like(mu, generator=generator) / math.sqrt(alphas[i])
            mu, rho = self.bayesian_update(mu, rho, y, alphas[i])
        return BFNSample(x=self.final_sample(net, mu, generator=generator), nfe=steps + 1, params=mu)

    def final_sample(self, net: nn.Module, mu: Tensor, *, generator: RandomSource = None, mode: bool = False) -> Tensor:
        """The sample read off the flow at ``t = 1``: :math:`\\hat x(\\mu_1, 1)` (the output distribution of
        continuous data is a point mass; ``generator`` and ``mode`` are for the other variants)."""
        return self.data_prediction(net, mu, torch.ones((), dtype=mu.dtype, device=mu.device))

    def sample(
        self,
        net: nn.Module,
        solver: str | Solver[Any] = "dpmpp_2m",
        steps: int = 20,
        *,
        shape: Sequence[int],
        generator: RandomSource = None,
        seeds: Sequence[int] | None = None,
        seed: int | None = None,
        grid: str | None = "logsnr",
        grid_options: dict[str, float] | None = None,
        t_span: tuple[float, float] | None = None,
        batch_size: int | None = None,
        progress: bool = False,
        callback: Observer | None = None,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
        **solver_options: Any,
    ) -> BFNSample:
        """Fast sampling: any flowbridge Gaussian-path solver on the Bayesian flow (BFN-Solver), from
        ``t_start`` (default the schedule's ``t_min``) to ``t = 1``, then :meth:`final_sample`.
        ``steps + 1`` evaluations for one-evaluation-per-step solvers.

        The default grid is uniform in log-SNR (``"logsnr"``, which also clips the start to
        :math:`\\sigma/\\alpha \\le 80`): BFN's own uniform-``t`` grid puts most of the log-SNR range into
        its first step (:math:`\\gamma(0.1) = 0.54` for :math:`\\sigma_1 = 0.02`) and is 2-4x worse in sliced
        Wasserstein at 10-20 steps (measured in ``experiments/bench_bfn.py``).

        The arguments are flowbridge's sampling vocabulary (as :func:`flowbridge.sample`, with the
        network in place of the field); ``t_span`` defaults to ``(schedule.t_min, 1)``."""
        return sample_on_flow(
            self, net, solver, steps, shape=shape, flow_shape=tuple(shape), generator=generator, seeds=seeds,
            seed=seed, grid=grid, grid_options=grid_options, t_span=t_span, batch_size=batch_size, progress=progress,
            callback=callback, dtype=dtype, device=device, solver_options=solver_options,
        )
