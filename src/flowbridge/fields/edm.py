r"""EDM preconditioning (Karras et al. 2022, sec. 5) as a network wrapper on any Gaussian path.

With :math:`\bar\sigma = \sigma_t/\alpha_t` and :math:`\bar x = x_t/\alpha_t = x_1 + \bar\sigma x_0`,
the denoiser is

.. math::
    D(x_t, t) = c_{skip}\,\bar x + c_{out}\,F(c_{in}\,\bar x, t), \quad
    c_{skip} = \frac{\sigma_d^2}{\bar\sigma^2 + \sigma_d^2},\;
    c_{out} = \frac{\bar\sigma\sigma_d}{\sqrt{\bar\sigma^2 + \sigma_d^2}},\;
    c_{in} = \frac{1}{\sqrt{\bar\sigma^2 + \sigma_d^2}},

so that the raw network :math:`F` sees unit-variance inputs and, under the EDM loss weight
:math:`(\bar\sigma^2 + \sigma_d^2)/(\bar\sigma\sigma_d)^2` on the data error, regresses a
unit-variance target. The wrapper's output is a ``data`` prediction :math:`\hat x_1`. The network
receives ``t`` itself as its noise conditioning (a monotone function of :math:`\log\bar\sigma`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from flowbridge._utils import as_time
from flowbridge.errors import ArgumentError
from flowbridge.paths.gaussian import GaussianPath


class EDMPreconditioner(nn.Module):
    """Wraps ``net(x, t, **kw)`` into the EDM-preconditioned data predictor on ``path``.

    Args:
        net: the raw network :math:`F`.
        path: the Gaussian path whose :math:`\\alpha_t, \\sigma_t` define :math:`\\bar\\sigma`.
        sigma_data: :math:`\\sigma_d`, the data's standard deviation.
    """

    def __init__(self, net: nn.Module, path: GaussianPath, sigma_data: float = 0.5) -> None:
        super().__init__()
        if not isinstance(path, GaussianPath):
            raise ArgumentError(f"EDM preconditioning needs a GaussianPath; got {type(path).__name__}")
        if not sigma_data > 0:
            raise ArgumentError(f"sigma_data must be > 0; got {sigma_data}")
        self.net = net
        self.path = path
        self.sigma_data = float(sigma_data)

    def forward(self, x: Tensor, t: Tensor, **condition: Any) -> Tensor:
        t = as_time(t, x)
        c = self.path.coefficients(t, x)
        sigma_bar = c.sigma / c.alpha
        x_bar = x / c.alpha
        total = torch.sqrt(sigma_bar**2 + self.sigma_data**2)
        c_skip = self.sigma_data**2 / total**2
        c_out = sigma_bar * self.sigma_data / total
        if t.ndim == 0:
            t = t.expand(x.shape[0])
        return c_skip * x_bar + c_out * self.net(x_bar / total, t, **condition)

    @property
    def null_label(self) -> int | None:
        """The wrapped network's null label (classifier-free guidance)."""
        return getattr(self.net, "null_label", None)
