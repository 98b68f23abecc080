r"""Conditional flow matching (Lipman et al. 2023; Liu et al. 2023; Albergo & Vanden-Eijnden 2023).

.. math::
    L(\theta) = E_{t, (x_0, x_1)} \big\| u_\theta(x_t, t) - (\dot\alpha_t x_1 + \dot\sigma_t x_0) \big\|^2,

whose minimiser is the marginal velocity :math:`u(x, t) = E[\dot x_t | x_t = x]`. The loss equals
:math:`E\|u_\theta - u\|^2` plus a constant (the conditional variance of the target).
"""

from __future__ import annotations

from torch import Tensor

from flowbridge.fields.base import Field
from flowbridge.objectives.base import Objective, ObjectiveOutput, mean_over_features
from flowbridge.paths.gaussian import GaussianPath
from flowbridge.random import RandomSource


class FlowMatching(Objective):
    """Flow matching on a Gaussian path, regressing the field's velocity on the conditional velocity.

    Args:
        path: the :class:`GaussianPath` (or a schedule name) defining :math:`x_t`.
    """

    def __init__(self, path: GaussianPath | str = "linear") -> None:
        self.path = path if isinstance(path, GaussianPath) else GaussianPath(path)

    def __call__(
        self, field: Field, x0: Tensor, x1: Tensor, t: Tensor, *, generator: RandomSource = None
    ) -> ObjectiveOutput:
        s = self.path.sample(x0, x1, t)
        sq = (field.velocity(s.x_t, t) - s.dx_t) ** 2
        # Every sample has the same number of features, so the mean of all entries is the mean of
        # per_sample; taking it directly keeps two nodes off the backward pass of every step.
        loss = sq.mean()
        per_sample = mean_over_features(sq)
        return ObjectiveOutput(loss=loss, per_sample=per_sample, terms={"fm": loss.detach()})
