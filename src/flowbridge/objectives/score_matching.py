r"""Denoising score matching in the noise, data or score parametrisation.

For :math:`x_t = \alpha x_1 + \sigma x_0` the three regressions

* noise: :math:`\|\hat x_0 - x_0\|^2`, data: :math:`\|\hat x_1 - x_1\|^2`,
  score: :math:`\sigma^2\|\hat s + x_0/\sigma\|^2`

differ only by a time-dependent weight, since :math:`\hat x_1 - x_1 = -\bar\sigma(\hat x_0 - x_0)`
with :math:`\bar\sigma = \sigma/\alpha`. ``weighting`` fixes the total weight on the data error:

* ``"uniform"``: plain MSE of the native parametrisation (DDPM's :math:`\epsilon` loss);
* ``"edm"``: :math:`\lambda(\bar\sigma) = (\bar\sigma^2 + \sigma_d^2)/(\bar\sigma\sigma_d)^2` on the
  data error (Karras et al. 2022), which makes the effective network target unit-variance.
"""

from __future__ import annotations

from torch import Tensor

from flowbridge._utils import expand_like
from flowbridge.errors import ArgumentError
from flowbridge.fields.base import Field
from flowbridge.objectives.base import Objective, ObjectiveOutput, mean_over_features
from flowbridge.paths.gaussian import GaussianPath
from flowbridge.random import RandomSource

WEIGHTINGS = ("uniform", "edm")


class DenoisingScoreMatching(Objective):
    """Denoising score matching for a field predicting ``noise``, ``data`` or ``score``.

    Args:
        path: the Gaussian path (or schedule name).
        weighting: ``"uniform"`` or ``"edm"``.
        sigma_data: the data standard deviation for the EDM weighting.
    """

    def __init__(self, path: GaussianPath | str = "vp", weighting: str = "uniform", sigma_data: float = 0.5) -> None:
        if weighting not in WEIGHTINGS:
            raise ArgumentError(f"unknown weighting {weighting!r}; known weightings: {', '.join(WEIGHTINGS)}")
        if not sigma_data > 0:
            raise ArgumentError(f"sigma_data must be > 0; got {sigma_data}")
        self.path = path if isinstance(path, GaussianPath) else GaussianPath(path)
        self.weighting, self.sigma_data = weighting, float(sigma_data)

    def _weight(self, parametrisation: str, sigma_bar: Tensor, sigma: Tensor) -> Tensor | float:
        if self.weighting == "uniform":
            return sigma**2 if parametrisation == "score" else 1.0
        sd2 = self.sigma_data**2
        data_weight = (sigma_bar**2 + sd2) / (sigma_bar**2 * sd2)
        # Convert the weight on the data error into the native parametrisation's error.
        if parametrisation == "data":
            return data_weight
        return data_weight * sigma_bar**2 * (sigma**2 if parametrisation == "score" else 1.0)

    def __call__(
        self, field: Field, x0: Tensor, x1: Tensor, t: Tensor, *, generator: RandomSource = None
    ) -> ObjectiveOutput:
        param = field.parametrisation if field.parametrisation in ("noise", "data", "score") else "noise"
        s = self.path.sample(x0, x1, t)
        c = self.path.schedule(t)
        pred = field.predict(s.x_t, t) if param == field.parametrisation else getattr(field, param)(s.x_t, t)
        err = mean_over_features((pred - self.path.target(s, param)) ** 2)
        weight = self._weight(param, c.sigma / c.alpha, c.sigma)
        per_sample = err * weight
        loss = per_sample.mean()
        return ObjectiveOutput(loss=loss, per_sample=per_sample, terms={f"dsm_{param}": err.mean().detach()})
