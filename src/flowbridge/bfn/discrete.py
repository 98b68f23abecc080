r"""Bayesian flow networks for discrete (categorical) data (Graves et al. 2023, §6).

Data: ``x`` of shape (B, *positions), integers in ``[0, K)``. Per position:

* input distribution :math:`\theta \in \Delta^{K-1}`, prior uniform; kept as logits :math:`y` with
  :math:`\theta = \mathrm{softmax}(y)` (the prior is :math:`y = 0`);
* sender :math:`p_S(y\mid x;\alpha) = N(\alpha(K e_x - \mathbf 1), \alpha K I)`;
* Bayesian update :math:`\theta' \propto e^{y}\theta`, i.e. logits add: after messages
  :math:`y_1..y_n`, :math:`\theta = \mathrm{softmax}(\sum_i y_i)`;
* accuracy schedule :math:`\beta(t) = \beta_1 t^2`; flow
  :math:`\theta = \mathrm{softmax}(y)`, :math:`y \sim N(\beta(K e_x - \mathbf 1), \beta K I)`;
* n-step accuracies :math:`\alpha_i = \beta(i/n) - \beta((i-1)/n) = \beta_1(2i - 1)/n^2`;
* n-step loss, one draw :math:`y \sim p_S(\cdot\mid x;\alpha_i)`: the Gaussian terms cancel between
  sender and receiver :math:`p_R = \sum_k p_O(k)\,p_S(\cdot\mid k;\alpha_i)` and leave
  :math:`\ln p_S - \ln p_R = y_x - \mathrm{logsumexp}_k(\ln p_O(k) + y_k)`, so
  :math:`L^n = n\,E[\,y_x - \mathrm{logsumexp}_k(\ln p_O(k) + y_k)]`;
* continuous-time loss :math:`L^\infty = K\beta_1 t\,|e_x - \hat e(\theta, t)|^2`, with
  :math:`\hat e = p_O(\cdot\mid\theta, t)` the output probabilities;
* reconstruction :math:`L^r = -\ln p_O(x\mid\theta_1, 1)`.

The network sees :math:`2\theta - 1` (all positions' probability vectors) and ``t``, and outputs
logits. ``layout="flat"`` feeds an MLP with the (B, prod(positions) * K) vector;
``layout="channels"`` feeds a U-Net with the K probabilities of each channel as K channels,
(B, C*K, H, W). The Bayes-optimal output of independent categorical positions with marginals
:math:`p` is :math:`\hat e \propto p\,\theta` (see :mod:`flowbridge.bfn.optimal`).

Sampling: the logits follow a Gaussian path (:mod:`flowbridge.bfn.schedules`) with data prediction
:math:`K\hat e - \mathbf 1`, so the fast samplers are flowbridge's Gaussian-path solvers on ``y``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from flowbridge._utils import as_time, expand_like
from flowbridge.bfn.base import (
    BFNSample,
    check_n_steps,
    check_times,
    sample_categorical,
    sample_on_flow,
    step_index,
    sum_over_dims,
)
from flowbridge.bfn.continuous import BFNField
from flowbridge.bfn.schedules import DiscreteBFNSchedule, check_beta1, check_num_classes
from flowbridge.errors import ArgumentError
from flowbridge.fields.base import call_net
from flowbridge.objectives.base import ObjectiveOutput
from flowbridge.paths.gaussian import GaussianPath
from flowbridge.random import RandomSource, randn_like
from flowbridge.samplers.base import Observer, Solver

LAYOUTS: tuple[str, ...] = ("flat", "channels")


class DiscreteBFN:
    r"""A categorical-data BFN: flow, updates, losses, likelihood bound and samplers.

    Args:
        num_classes: number of categories ``K >= 2``.
        beta1: final accuracy :math:`\\beta(1)` (the paper: 3 for binarized MNIST, 0.75 for text8).
        layout: ``"flat"`` (MLP) or ``"channels"`` (U-Net on (C, H, W) positions).
        logit_skip: add :math:`\log\theta` to the network's logits, :math:`p_O \propto \theta\,e^{F}`.
            The Bayes-optimal output of independent positions is :math:`p\,\theta` normalised, so
            with the skip the network learns only the data's correction to the input distribution
            (a prior and context) instead of re-deriving :math:`\log\theta` from :math:`2\theta - 1`.

    Raises:
        ValueError: ``num_classes < 2``, ``beta1 <= 0`` or an unknown layout.
    """

    def __init__(self, num_classes: int, beta1: float = 3.0, layout: str = "flat", logit_skip: bool = False) -> None:
        self.num_classes = check_num_classes(num_classes)
        self.beta1 = check_beta1(beta1)
        if layout not in LAYOUTS:
            raise ArgumentError(f"layout must be one of {list(LAYOUTS)}; got {layout!r}")
        self.layout = layout
        self.logit_skip = bool(logit_skip)
        self.schedule = DiscreteBFNSchedule(beta1=self.beta1, num_classes=self.num_classes)
        self.path = GaussianPath(self.schedule)

    def __repr__(self) -> str:
        return f"DiscreteBFN(num_classes={self.num_classes}, beta1={self.beta1}, layout={self.layout!r}, logit_skip={self.logit_skip})"

    # ------------------------------------------------------------------ data
    def check_data(self, x: Tensor) -> None:
        """Raises a TypeError unless ``x`` is an integer tensor, a ValueError unless its values lie in [0, K)."""
        if not isinstance(x, Tensor) or x.is_floating_point() or x.is_complex() or x.dtype == torch.bool:
            raise ArgumentError(
                f"discrete data must be an integer tensor of class indices in [0, {self.num_classes}); "
                f"got {getattr(x, 'dtype', type(x).__name__)}"
            )
        if x.ndim < 2:
            raise ArgumentError(f"x must have shape (B, *positions); got {tuple(x.shape)}")
        # sync-ok: input validation, once per call
        lo, hi = int(x.min()), int(x.max())
        if lo < 0 or hi >= self.num_classes:
            raise ArgumentError(
                f"discrete data must take values in [0, {self.num_classes}) for num_classes={self.num_classes}; "
                f"got values in [{lo}, {hi}]"
            )

    def one_hot(self, x: Tensor, dtype: torch.dtype | None = None) -> Tensor:
        """(B, *positions, K) one-hot encoding."""
        return nn.functional.one_hot(x.long(), self.num_classes).to(dtype or torch.get_default_dtype())

    # ------------------------------------------------------------------ Bayesian flow
    def beta(self, t: Tensor) -> Tensor:
        r""":math:`\beta(t) = \beta_1 t^2`."""
        return self.schedule.beta(t)

    def accuracies(self, n_steps: int) -> Tensor:
        r"""The n-step accuracies :math:`\alpha_i = \beta_1(2i-1)/n^2`, float64 CPU (n,)."""
        check_n_steps(n_steps)
        i = torch.arange(1, n_steps + 1, dtype=torch.float64)
        return self.beta1 * (2 * i - 1) / n_steps**2

    def sender_sample(self, x: Tensor, alpha: Tensor | float, *, generator: RandomSource = None, dtype: torch.dtype | None = None) -> Tensor:
        r"""A message :math:`y \sim N(\alpha(K e_x - 1), \alpha K I)`, shape (B, *positions, K)."""
        e = self.one_hot(x, dtype)
        a = torch.as_tensor(alpha, dtype=e.dtype, device=e.device)
        if a.ndim == 1:
            a = expand_like(a, e)
        return a * (self.num_classes * e - 1) + torch.sqrt(a * self.num_classes) * randn_like(e, generator=generator)

    @staticmethod
    def bayesian_update(theta: Tensor, y: Tensor) -> Tensor:
        r"""The update :math:`\theta' = e^{y}\theta / \sum_k e^{y_k}\theta_k` (on probabilities)."""
        return torch.softmax(torch.log(theta) + y, dim=-1)

    def flow_sample(self, x: Tensor, t: Tensor, *, generator: RandomSource = None, dtype: torch.dtype | None = None) -> Tensor:
        r"""Logits :math:`y \sim N(\beta(t)(K e_x - 1), \beta(t) K I)` of the flow at times ``t`` (B,);
        the input distribution is ``softmax(y, -1)``."""
        return self.sender_sample(x, self.beta(t.to(dtype or torch.get_default_dtype())), generator=generator, dtype=dtype)

    # ------------------------------------------------------------------ network I/O
    def network_input(self, theta: Tensor) -> Tensor:
        """:math:`2\\theta - 1` in the network's layout."""
        inp = 2 * theta - 1
        if self.layout == "flat":
            return inp.reshape(inp.shape[0], -1)
        if inp.ndim < 4:
            raise ArgumentError(f"layout='channels' needs positions (C, H, W, ...); got data positions {tuple(inp.shape[1:-1])}")
        moved = inp.movedim(-1, 2)  # (B, C, K, *spatial)
        return moved.reshape(moved.shape[0], -1, *moved.shape[3:])

    def output_logits(self, net: nn.Module, y: Tensor, t: Tensor | float) -> Tensor:
        r"""Logits of :math:`p_O(\cdot\mid\theta, t)`, shape (B, *positions, K), from the input logits ``y``."""
        t = as_time(t, y)  # checks the state's type and the times' shape once, metadata only
        out = call_net(net, self.network_input(torch.softmax(y, dim=-1)), t, {})
        if out.numel() != y.numel():
            raise ArgumentError(
                f"a discrete BFN's network must output K={self.num_classes} logits per position: {y.numel() // y.shape[0]} "
                f"values per datum; got output shape {tuple(out.shape)}"
            )
        if self.layout == "flat":
            logits = out.reshape(y.shape)
        else:
            b, c, k = y.shape[0], y.shape[1], self.num_classes
            logits = out.reshape(b, c, k, *out.shape[2:]).movedim(2, -1)
        return logits + torch.log_softmax(y, dim=-1) if self.logit_skip else logits

    def output_probs(self, net: nn.Module, y: Tensor, t: Tensor | float) -> Tensor:
        r""":math:`\hat e(\theta, t) = p_O(\cdot\mid\theta, t)`."""
        return torch.softmax(self.output_logits(net, y, t), dim=-1)

    def data_prediction(self, net: nn.Module, y: Tensor, t: Tensor | float) -> Tensor:
        r"""The flow's data prediction in logit space, :math:`K\hat e - \mathbf 1`."""
        return self.num_classes * self.output_probs(net, y, t) - 1

    def field(self, net: nn.Module) -> BFNField:
        """The network as a data-prediction field on the logit-space Gaussian path."""
        return BFNField(self, net)

    # ------------------------------------------------------------------ losses
    def continuous_time_loss(self, net: nn.Module, x: Tensor, t: Tensor, *, generator: RandomSource = None) -> ObjectiveOutput:
        r""":math:`L^\infty = K\beta_1 t|e_x - \hat e|^2`, nats per datum."""
        self.check_data(x)
        t = check_times(t, x)
        e = self.one_hot(x, t.dtype)
        y = self.flow_sample(x, t, generator=generator, dtype=t.dtype)
        sq = sum_over_dims((e - self.output_probs(net, y, t)) ** 2)
        per_sample = self.num_classes * self.beta1 * t * sq
        return ObjectiveOutput(loss=per_sample.mean(), per_sample=per_sample, terms={"sq_error": sq.mean()})

    def n_step_loss(
        self, net: nn.Module, x: Tensor, t: Tensor, n_steps: int, *, generator: RandomSource = None
    ) -> ObjectiveOutput:
        r""":math:`L^n`, one sender draw: :math:`n[y_x - \mathrm{logsumexp}_k(\ln p_O(k) + y_k)]` summed over positions."""
        self.check_data(x)
        t = check_times(t, x)
        i, t_prev = step_index(t, n_steps)
        alpha = self.beta1 * (2 * i - 1) / n_steps**2
        y_prev = self.flow_sample(x, t_prev, generator=generator, dtype=t.dtype)
        log_p = torch.log_softmax(self.output_logits(net, y_prev, t_prev), dim=-1)
        msg = self.sender_sample(x, alpha, generator=generator, dtype=t.dtype)
        picked = torch.gather(msg, -1, x.long()[..., None])[..., 0]
        per_sample = n_steps * sum_over_dims(picked - torch.logsumexp(log_p + msg, dim=-1))
        return ObjectiveOutput(loss=per_sample.mean(), per_sample=per_sample, terms={})

    def reconstruction_loss(self, net: nn.Module, x: Tensor, *, generator: RandomSource = None, dtype: torch.dtype | None = None) -> Tensor:
        r""":math:`L^r = -\ln p_O(x\mid\theta_1, 1)` per datum (B,)."""
        self.check_data(x)
        dtype = dtype or torch.get_default_dtype()
        one = torch.ones(x.shape[0], dtype=dtype, device=x.device)
        log_p = torch.log_softmax(self.output_logits(net, self.flow_sample(x, one, generator=generator, dtype=dtype), one), dim=-1)
        return -sum_over_dims(torch.gather(log_p, -1, x.long()[..., None])[..., 0])

    # ------------------------------------------------------------------ sampling
    def final_sample(self, net: nn.Module, y: Tensor, *, generator: RandomSource = None, mode: bool = False) -> Tensor:
        """A draw (or the mode) of :math:`p_O(\\cdot\\mid\\theta_1, 1)`: long class indices (B, *positions)."""
        logits = self.output_logits(net, y, torch.ones((), dtype=y.dtype, device=y.device))
        return logits.argmax(-1) if mode else sample_categorical(logits, generator=generator)

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
        r"""The paper's sampler on ``shape = (B, *positions)``: for :math:`i = 1..n` draw
        :math:`k \sim p_O(\cdot\mid\theta, t_{i-1})`, add the message
        :math:`\alpha_i(K e_k - 1) + \sqrt{\alpha_i K}\,\xi` to the logits; finally draw from
        :math:`p_O(\cdot\mid\theta, 1)`. ``steps + 1`` evaluations."""
        check_n_steps(steps, "steps")
        dtype = dtype or torch.get_default_dtype()
        k = self.num_classes
        y = torch.zeros((*shape, k), dtype=dtype, device=device)
        alphas = [float(a) for a in self.accuracies(steps)]
        times = torch.arange(steps + 1, dtype=torch.float64).div(steps).to(dtype=dtype, device=y.device)
        for i in range(steps):
            drawn = sample_categorical(self.output_logits(net, y, times[i]), generator=generator)
            e = nn.functional.one_hot(drawn, k).to(dtype)
            y = y + alphas[i] * (k * e - 1) + math.sqrt(alphas[i] * k) * randn_like(y, generator=generator)
        return BFNSample(x=self.final_sample(net, y, generator=generator), nfe=steps + 1, params=y)

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
        """Fast sampling: a Gaussian-path solver on the logits from ``t_start`` to 1, then a draw
        from :math:`p_O(\\cdot\\mid\\theta_1, 1)`. ``steps + 1`` evaluations for one-evaluation solvers.

        The arguments are flowbridge's sampling vocabulary (as :func:`flowbridge.sample`, with the
        network in place of the field); ``t_span`` defaults to ``(schedule.t_min, 1)``."""
        return sample_on_flow(
            self, net, solver, steps, shape=shape, flow_shape=(*shape, self.num_classes), generator=generator, seeds=seeds,
            seed=seed, grid=grid, grid_options=grid_options, t_span=t_span, batch_size=batch_size, progress=progress,
            callback=callback, dtype=dtype, device=device, solver_options=solver_options,
        )
