"""BFN training objectives in flowbridge's ``loss(net, x, t, generator=) -> ObjectiveOutput`` form."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from flowbridge.bfn.base import check_n_steps, step_index, sum_over_dims
from flowbridge.bfn.schedules import ContinuousBFNSchedule
from flowbridge.errors import ArgumentError
from flowbridge.fields.base import Field
from flowbridge.objectives.base import Objective, ObjectiveOutput
from flowbridge.paths.gaussian import GaussianPath
from flowbridge.random import RandomSource


class BFNLoss:
    """The continuous-time loss :math:`L^\\infty` (``n_steps=None``) or the n-step loss :math:`L^n`.

    ``t ~ U[0, 1)`` per sample; for :math:`L^n` it selects the step :math:`\\lfloor tn\\rfloor + 1`.
    The per-sample loss is in nats per datum (summed over dimensions); ``loss`` is its batch mean
    divided by ``normaliser`` (the number of dimensions by default, so that learning rates do not
    depend on the data size).

    Args:
        bfn: a :class:`ContinuousBFN`, :class:`DiscretizedBFN` or :class:`DiscreteBFN`.
        n_steps: ``None`` or the ``n`` of the discrete-time loss.
        normaliser: ``"dims"`` (nats per dimension) or ``"none"`` (nats per datum).
    """

    def __init__(self, bfn: Any, n_steps: int | None = None, normaliser: str = "dims") -> None:
        if n_steps is not None:
            check_n_steps(n_steps)
        if normaliser not in ("dims", "none"):
            raise ArgumentError(f"normaliser must be 'dims' or 'none'; got {normaliser!r}")
        self.bfn, self.n_steps, self.normaliser = bfn, n_steps, normaliser

    def __call__(self, net: nn.Module, x: Tensor, t: Tensor, *, generator: RandomSource = None) -> ObjectiveOutput:
        if self.n_steps is None:
            out = self.bfn.continuous_time_loss(net, x, t, generator=generator)
        else:
            out = self.bfn.n_step_loss(net, x, t, self.n_steps, generator=generator)
        if self.normaliser == "none":
            return out
        dims = x[0].numel()
        return ObjectiveOutput(loss=out.loss / dims, per_sample=out.per_sample, terms={**out.terms, "nats_per_datum": out.loss.detach()})


class ContinuousBFNObjective(Objective):
    r"""The continuous BFN's loss as a flowbridge :class:`~flowbridge.objectives.Objective`, so that
    :class:`~flowbridge.training.GenerativeModule` trains a continuous BFN from a recipe.

    On the path ``GaussianPath(ContinuousBFNSchedule(sigma1))`` the module's noised sample
    :math:`x_t = \gamma x_1 + \sqrt{\gamma(1-\gamma)}x_0` *is* the Bayesian flow's :math:`\mu_t`, and

    * ``n_steps=None``: :math:`L^\infty = -\ln\sigma_1\,\sigma_1^{-2t}|x_1 - \hat x(\mu_t, t)|^2`;
    * ``n_steps=n``: :math:`L^n = \tfrac n2\alpha_i|x_1 - \hat x(\mu_{t_{i-1}}, t_{i-1})|^2`,
      :math:`i = \lfloor tn\rfloor + 1`;

    with :math:`\hat x` = ``field.data`` (any parametrisation or EDM preconditioning). ``t`` should be
    uniform (``UniformTime``; the path's ``t_min = 1e-6`` excludes only the point mass at 0).
    ``loss`` is nats per dimension (``per_sample``: nats per datum).

    Args:
        path: the BFN Gaussian path (``ContinuousBFNSchedule``).
        n_steps: ``None`` or the ``n`` of the discrete-time loss.

    Raises:
        TypeError: if ``path`` is not a continuous BFN path.
    """

    def __init__(self, path: GaussianPath, n_steps: int | None = None) -> None:
        if not isinstance(path, GaussianPath) or not isinstance(path.schedule, ContinuousBFNSchedule):
            raise ArgumentError(
                "ContinuousBFNObjective needs path=GaussianPath(ContinuousBFNSchedule(sigma1)); "
                f"got {getattr(path, 'schedule', path)!r}"
            )
        if n_steps is not None:
            check_n_steps(n_steps)
        self.path, self.n_steps = path, n_steps

    def __call__(self, field: Field, x0: Tensor, x1: Tensor, t: Tensor, *, generator: RandomSource = None) -> ObjectiveOutput:
        log_s = math.log(self.path.schedule.sigma1)
        if self.n_steps is None:
            t_eval = t
            weight = -log_s * torch.exp(-2 * t * log_s)
        else:
            i, t_eval = step_index(t, self.n_steps)
            weight = 0.5 * self.n_steps * torch.exp(-2 * i * log_s / self.n_steps) * (-math.expm1(2 * log_s / self.n_steps))
            # the flow's point mass at t = 0 is mu = 0; the network is never asked there exactly
            t_eval = t_eval.clamp_min(self.path.t_min)
        mu = self.path.sample(x0, x1, t_eval).x_t
        sq = sum_over_dims((x1 - field.data(mu, t_eval)) ** 2)
        per_sample = weight * sq
        dims = x1[0].numel()
        return ObjectiveOutput(loss=per_sample.mean() / dims, per_sample=per_sample, terms={"sq_error": sq.mean().detach()})
