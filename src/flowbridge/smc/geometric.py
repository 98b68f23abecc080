r"""Feynman–Kac correctors for geometric combinations of fields: annealing, products, guidance.

Given fields with marginals :math:`p^1_t, \dots, p^K_t` on one Gaussian path and real exponents
:math:`\beta_k` with :math:`B = \sum_k \beta_k > 0`, the target family is

.. math::
    \tilde q_t(x) = \prod_k p^k_t(x)^{\beta_k}, \qquad \hat s = \nabla\log\tilde q_t = \sum_k\beta_k s_k .

With :math:`u_k = \kappa x + \eta s_k` (see :mod:`flowbridge.smc.coefficients`) the particles follow

.. math::
    dx = \big(\kappa x + (\eta + \epsilon)\,\hat s\big)\,dt + \sqrt{2\epsilon}\,dW,

(integrated by the exponential move of :mod:`flowbridge.smc.coefficients` or Euler–Maruyama) and their log-weights grow at the rate (derived in ``docs/smc.md`` from the Fokker–Planck equation)

.. math::
    \frac{d\log w}{dt} = (1 - B)\,\kappa\,d + \eta\Big(|\hat s|^2 - \sum_k\beta_k|s_k|^2\Big)
      = (1 - B)\,\kappa\,d + \eta\Big(\tfrac{B-1}{B}|\hat s|^2 - \sum_k\beta_k|s_k - \hat s/B|^2\Big),

the second form being free of cancellation. The rate does not depend on :math:`\epsilon`; the
constant :math:`(1-B)\kappa d` cancels in self-normalised weights but is kept because it makes
:math:`\frac1N\sum_i w^i` an unbiased estimate of :math:`\int\tilde q_t / \int\tilde q_{t_0}`.

Special cases: :func:`anneal` (:math:`p^\beta`), :func:`product` (:math:`p^1 p^2\cdots`),
:func:`guided` (:math:`p_u^{1-w}p_c^w`, corrected classifier-free guidance).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from flowbridge.errors import ArgumentError, CapabilityError
from flowbridge.fields.base import Field, same_path
from flowbridge.paths.gaussian import GaussianPath
from flowbridge.random import RandomSource, randn, randn_like
from flowbridge.smc.base import InitialParticles, MoveResult, PointCache, PointField, SMCTarget, features, sum_features
from flowbridge.smc.coefficients import StepCoefficients

WEIGHT_RULES: tuple[str, ...] = ("trapezoid", "euler")


@dataclass(frozen=True)
class GeometricCache(PointCache):
    """At the particles: the combined score :math:`\\hat s` and data prediction
    :math:`\\hat X = \\sum_k\\beta_k\\hat x_1^k` (N, ...), and the weight rate (N,)."""

    score: Tensor
    data: Tensor
    rate: Tensor


class GeometricField(Field):
    r"""The field of the geometric combination: score :math:`\hat s = \sum_k\beta_k s_k` on the
    fields' Gaussian path (parametrisation ``score``).

    Its probability-flow velocity is :math:`\kappa x + \eta\hat s` and its reverse SDE
    :math:`dx = (\kappa x + (\eta + \epsilon)\hat s)\,dt + \sqrt{2\epsilon}\,dW` — the dynamics of
    the particles. Sampled alone (``flowbridge.sample(target.field, ...)``) it is the uncorrected
    heuristic (scaled score, summed scores, CFG).
    """

    def __init__(self, fields: Sequence[Field], exponents: Sequence[float], path: GaussianPath) -> None:
        super().__init__(path, "score")
        self.members = torch.nn.ModuleList(fields)
        self.exponents = [float(b) for b in exponents]

    def predict(self, x: Tensor, t: Tensor) -> Tensor:
        return sum(b * f.score(x, t) for b, f in zip(self.exponents, self.members))  # type: ignore[return-value]


class GeometricTarget(SMCTarget):
    r"""The target :math:`\prod_k p^k_t{}^{\beta_k}` of fields on one Gaussian path.

    Args:
        fields: one or more fields on the same :class:`GaussianPath`.
        exponents: one finite real exponent per field, with a positive sum.

    Raises:
        TypeError: if an entry is not a Field.
        ValueError: fields on different or non-Gaussian paths, exponents of the wrong length, not
            finite, or with a sum <= 0.
    """

    def __init__(self, fields: Sequence[Field], exponents: Sequence[float]) -> None:
        fields = list(fields)
        if not fields:
            raise ArgumentError("a geometric target needs at least one field")
        for k, f in enumerate(fields):
            if not isinstance(f, Field):
                raise ArgumentError(f"fields[{k}] must be a flowbridge Field; got {type(f).__name__}")
        path = same_path(*fields)
        if not isinstance(path, GaussianPath):
            raise CapabilityError(f"Feynman–Kac correctors need fields on a GaussianPath; got path {path!r}")
        exps = [float(b) for b in exponents]
        if len(exps) != len(fields):
            raise ArgumentError(f"need one exponent per field: {len(fields)} fields, {len(exps)} exponents")
        if not all(math.isfinite(b) for b in exps):
            raise ArgumentError(f"exponents must be finite; got {exps}")
        if not sum(exps) > 0:
            raise ArgumentError(f"the exponents must have a positive sum (else the target is not normalisable); got {exps}")
        self.fields, self.exponents, self.path = fields, exps, path
        self.total = sum(exps)
        self.exponent_sum = self.total
        self.field = GeometricField(fields, exps, path)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(exponents={self.exponents}, path={self.path!r})"

    def initial(
        self, n: int, shape: tuple[int, ...], c: StepCoefficients, *, generator: RandomSource,
        dtype: torch.dtype, device: torch.device,
    ) -> InitialParticles:
        r"""Draws from :math:`\prod_k N(0, \sigma_0^2 I)^{\beta_k} \propto N(0, \sigma_0^2/B\; I)`.

        Every marginal is :math:`N(0, \sigma_0^2 I)` at the source (exact where
        :math:`\alpha(t_0) = 0`, a negligible approximation where :math:`\alpha(t_0)` is tiny). Its
        normaliser is :math:`(2\pi\sigma_0^2)^{(1-B)d/2} B^{-d/2}`.
        """
        x = randn((n, *shape), generator=generator, dtype=dtype, device=device) * (c.sigma0 / math.sqrt(self.total))
        d = features(x)
        log_z0 = (1 - self.total) * 0.5 * d * math.log(2 * math.pi * c.sigma0**2) - 0.5 * d * math.log(self.total)
        return InitialParticles(
            x=x, log_weights=torch.zeros(n, dtype=dtype, device=device),
            log_normalizer=torch.tensor(log_z0, dtype=dtype, device=device),  # sync-ok: once, before the loop
        )

    def evaluate(self, x: Tensor, i: int, c: StepCoefficients, *, final: bool) -> GeometricCache:
        t = c.t[i]
        scores, data = [], []
        for f in self.fields:
            # One evaluation per field gives both posterior means (score and data prediction).
            x1_hat, x0_hat = self.path.to_posterior_means(f.predict(x, t), f.parametrisation, x, t)
            scores.append(self.path.from_posterior_means(x1_hat, x0_hat, "score", x, t))
            data.append(x1_hat)
        combined = sum(b * s for b, s in zip(self.exponents, scores))
        mean = combined / self.total
        spread = sum(b * sum_features((s - mean) ** 2) for b, s in zip(self.exponents, scores))
        quad = ((self.total - 1) / self.total) * sum_features(combined**2) - spread
        rate = (1 - self.total) * c.kappa[i] * features(x) + c.eta[i] * quad
        return GeometricCache(score=combined, data=sum(b * d for b, d in zip(self.exponents, data)), rate=rate)

    def kernel_field(self, x: Tensor, cache: PointCache) -> PointField:
        assert isinstance(cache, GeometricCache)
        return PointField(self.field, x, cache.score, "score")

    def builtin_mean(self, x: Tensor, cache: PointCache, i: int, c: StepCoefficients) -> Tensor:
        assert isinstance(cache, GeometricCache)
        if c.move == "exponential":
            return c.decay[i] * x + c.gain[i] * cache.data
        return x + c.h[i] * (c.kappa[i] * x + (c.eta[i] + c.eps[i]) * cache.score)

    def advance(
        self, x: Tensor, cache: PointCache, mean: Tensor, std: Tensor | float, i: int, c: StepCoefficients, *,
        generator: RandomSource, weight_rule: str, final: bool,
    ) -> MoveResult:
        assert isinstance(cache, GeometricCache)
        x_new = mean + std * randn_like(x, generator=generator)
        if final and weight_rule == "euler":
            # The left-point rule needs nothing at the last point: skip the evaluation.
            return MoveResult(x_new, cache, c.h[i] * cache.rate)
        new = self.evaluate(x_new, i + 1, c, final=final)
        if weight_rule == "euler":
            return MoveResult(x_new, new, c.h[i] * cache.rate)
        return MoveResult(x_new, new, 0.5 * c.h[i] * (cache.rate + new.rate))

    def nfe(self, steps: int, weight_rule: str) -> int:
        return len(self.fields) * (steps + (1 if weight_rule == "trapezoid" else 0))


def anneal(field: Field, beta: float) -> GeometricTarget:
    r"""The annealed target :math:`p_t^\beta` (:math:`\beta > 1` sharpens, :math:`\beta < 1` flattens).

    Raises:
        ValueError: if ``beta`` is not a finite number > 0.
    """
    if not (isinstance(beta, (int, float)) and math.isfinite(beta) and beta > 0):
        raise ArgumentError(f"beta must be a finite number > 0; got {beta!r}")
    return GeometricTarget([field], [beta])


def product(*fields: Field) -> GeometricTarget:
    r"""The product of experts :math:`p^1_t p^2_t \cdots p^K_t` (``K >= 2``, one Gaussian path)."""
    if len(fields) == 1 and isinstance(fields[0], (list, tuple)):
        fields = tuple(fields[0])
    if len(fields) < 2:
        raise ArgumentError(f"a product of experts needs at least two fields; got {len(fields)}")
    return GeometricTarget(list(fields), [1.0] * len(fields))


def guided(cond: Field, uncond: Field, w: float) -> GeometricTarget:
    r"""Corrected classifier-free guidance: the geometric mean :math:`p_u^{1-w} p_c^{w}`.

    Its score :math:`(1-w)s_u + w s_c` is the CFG score; the Feynman–Kac weights, rate
    :math:`\eta\,w(w-1)|s_c - s_u|^2`, correct the law toward the geometric mean itself.

    Raises:
        ValueError: if ``w`` is not finite or the fields live on different paths.
    """
    if not (isinstance(w, (int, float)) and math.isfinite(w)):
        raise ArgumentError(f"guidance weight w must be a finite number; got {w!r}")
    return GeometricTarget([cond, uncond], [float(w), 1.0 - float(w)])
