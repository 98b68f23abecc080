r"""Stochastic-interpolant objectives (Albergo, Boffi, Vanden-Eijnden 2023).

Drift: :math:`\tfrac12|\hat b|^2 - (\dot a x_0 + \dot b x_1 + \dot\gamma z)\cdot\hat b`, equivalently
the MSE to the target up to a constant. Denoiser: :math:`\tfrac12|\hat\eta|^2 - z\cdot\hat\eta`
(MSE to ``z``). With ``antithetic=True`` both terms are averaged over ``z`` and ``-z``, which cancels
the :math:`\dot\gamma z` term's variance near the endpoints where :math:`\dot\gamma` is large.
"""

from __future__ import annotations

import torch
from torch import Tensor

from flowbridge._utils import check_state
from flowbridge.errors import ArgumentError
from flowbridge.fields.base import Field
from flowbridge.fields.interpolant import InterpolantField
from flowbridge.objectives.base import Objective, ObjectiveOutput, mean_over_features
from flowbridge.paths.interpolant import StochasticInterpolant
from flowbridge.random import RandomSource, randn_like


class InterpolantObjective(Objective):
    """Drift + denoiser regression for an :class:`InterpolantField`.

    Args:
        interpolant: the interpolant defining :math:`x_t`.
        antithetic: average over ``z`` and ``-z``.
        denoiser_weight: weight of the denoiser term (0 trains the drift only).
    """

    def __init__(self, interpolant: StochasticInterpolant, antithetic: bool = True, denoiser_weight: float = 1.0) -> None:
        if not denoiser_weight >= 0:
            raise ArgumentError(f"denoiser_weight must be >= 0; got {denoiser_weight}")
        self.interpolant, self.antithetic, self.denoiser_weight = interpolant, antithetic, float(denoiser_weight)

    def __call__(
        self, field: Field, x0: Tensor, x1: Tensor, t: Tensor, *, generator: RandomSource = None
    ) -> ObjectiveOutput:
        if not isinstance(field, InterpolantField):
            raise ArgumentError(f"InterpolantObjective trains an InterpolantField; got {type(field).__name__}")
        check_state(x0, "x0")
        check_state(x1, "x1")  # before drawing noise like x1
        z = randn_like(x1, generator=generator)
        signs = (1.0, -1.0) if self.antithetic else (1.0,)
        drift_err = torch.zeros(x1.shape[0], dtype=x1.dtype, device=x1.device)
        den_err = torch.zeros_like(drift_err)
        for sign in signs:
            s = self.interpolant.sample(x0, x1, t, z=sign * z)
            drift_err = drift_err + mean_over_features((field.velocity(s.x_t, t) - s.drift_target) ** 2)
            if self.denoiser_weight > 0 and field.denoiser is not None:
                den_err = den_err + mean_over_features((field.denoise(s.x_t, t) - s.z) ** 2)
        drift_err, den_err = drift_err / len(signs), den_err / len(signs)
        per_sample = drift_err + self.denoiser_weight * den_err
        return ObjectiveOutput(
            loss=per_sample.mean(), per_sample=per_sample,
            terms={"drift": drift_err.mean().detach(), "denoiser": den_err.mean().detach()},
        )
