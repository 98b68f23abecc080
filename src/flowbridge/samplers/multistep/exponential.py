r"""The :math:`\varphi` functions of exponential integrators in the data-prediction form.

For a step of size :math:`h = \lambda_t - \lambda_s` and the data prediction expanded as
:math:`\hat x_1(\lambda_s + u) = \sum_k \tfrac{u^k}{k!} \hat x_1^{(k)}`, the exact solution is
:math:`x_t = \tfrac{\sigma_t}{\sigma_s}x_s + \alpha_t\sum_k \hat x_1^{(k)}\int_0^h e^{u-h}\tfrac{u^k}{k!}du`,
and

.. math::
    \int_0^h e^{u-h}du = -\varphi_1,\quad \int_0^h e^{u-h}u\,du = h\,\varphi_2,\quad
    \int_0^h e^{u-h}\tfrac{u^2}{2}du = -h^2\varphi_3,

with :math:`\varphi_1 = e^{-h}-1`, :math:`\varphi_2 = \varphi_1/h + 1`, :math:`\varphi_3 = \varphi_2/h - \tfrac12`
(the names DPM-Solver++ uses). Small ``h`` uses the Taylor series (no cancellation).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class PhiFunctions:
    """:math:`\\varphi_1, \\varphi_2, \\varphi_3` at one step size (float64 Python floats)."""

    phi1: float
    phi2: float
    phi3: float


def phi_functions(h: float) -> PhiFunctions:
    """The three :math:`\\varphi` functions at ``h > 0`` (``h = inf``: the step to sigma = 0); a 0-d
    tensor ``h`` gives tensors, differentiable in ``h``."""
    if (bool(torch.isinf(h)) if isinstance(h, torch.Tensor) else math.isinf(h)):
        return PhiFunctions(phi1=-1.0, phi2=1.0, phi3=-0.5)
    if h < 0.25:
        # phi1 = sum_{n>=1} (-h)^n/n!, phi2 = sum_{n>=2} (-1)^n h^(n-1)/n!, phi3 = sum_{n>=3} (-1)^n h^(n-2)/n!
        phi1 = phi2 = phi3 = 0.0
        term = 1.0
        for n in range(1, 25):
            term *= -h / n  # (-h)^n / n!
            phi1 += term
            if n >= 2:
                phi2 += term / h
            if n >= 3:
                phi3 += term / (h * h)
        return PhiFunctions(phi1=phi1, phi2=phi2, phi3=phi3)
    phi1 = torch.expm1(-h) if isinstance(h, torch.Tensor) else math.expm1(-h)  # a tensor h: differentiable (tuning)
    phi2 = phi1 / h + 1.0
    return PhiFunctions(phi1=phi1, phi2=phi2, phi3=phi2 / h - 0.5)
