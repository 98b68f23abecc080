r"""SB-CFM / [SF]²M (Tong et al. 2024): simulation-free Schrödinger bridges from entropic minibatch plans.

Recipe (derived in flowbridge's convention, source at :math:`t = 0`):

1. couple each minibatch by the entropic OT plan for the cost :math:`|x_0 - x_1|^2` with
   regularisation :math:`2\sigma^2` (the plan of the SB with Brownian reference variance
   :math:`\varepsilon = \sigma^2`), drawing pairs with the torch generator
   (:class:`~flowbridge.couplings.MinibatchOTCoupling`, POT underneath);
2. interpolate along the Brownian bridge :math:`x_t = (1-t)x_0 + t x_1 + \sigma\sqrt{t(1-t)}\,z`
   (:func:`~flowbridge.paths.BrownianBridge`);
3. regress the probability-flow drift :math:`v` and the denoiser :math:`\eta \approx E[z\mid x_t]`
   with :class:`~flowbridge.objectives.InterpolantObjective` (flow + score matching, score
   :math:`s = -\eta/(\sigma\sqrt{t(1-t)})`).

The bridge's forward SDE is :math:`dX = \big(v + \tfrac{\sigma^2}{2}s\big)dt + \sigma\,dW`
(:class:`SBCFMBridgeField`, solver ``"bridge_euler_maruyama"``); the ODE :math:`dX = v\,dt` has the
same marginals (``field.velocity``, any ODE solver).
"""

from __future__ import annotations

import math
import time

import torch
from torch import Tensor, nn

from flowbridge._utils import as_time, expand_like
from flowbridge.bridges.coupling import LogSinkhornCoupling
from flowbridge.bridges.lightsb import FitHistory, check_samples
from flowbridge.couplings import CouplingError, MinibatchOTCoupling
from flowbridge.errors import ArgumentError
from flowbridge.fields.bridge import BridgeField, check_eps
from flowbridge.fields.interpolant import InterpolantField
from flowbridge.nets.mlp import MLP
from flowbridge.objectives.interpolant import InterpolantObjective
from flowbridge.paths.interpolant import BrownianBridge
from flowbridge.random import RandomSource, rand

__all__ = ["SBCFM", "SBCFMBridgeField"]


class SBCFMBridgeField(BridgeField):
    r"""The forward SB drift :math:`v + \tfrac{\sigma^2}{2}s = v - \tfrac{\sigma}{2}\eta/\sqrt{t(1-t)}`
    of an SB-CFM :class:`~flowbridge.fields.InterpolantField`.

    The score factor :math:`1/\sqrt{t(1-t)}` is evaluated with :math:`t` clipped to
    ``[t_clip, 1 - t_clip]``: the exact product :math:`\eta/\sqrt{t(1-t)}` stays finite at the ends
    (:math:`\eta \to 0`), but a learned :math:`\eta` is not exactly zero there.

    Args:
        field: the trained drift + denoiser field on ``BrownianBridge(sigma)``.
        t_clip: the clipping margin.
    """

    def __init__(self, field: InterpolantField, t_clip: float = 1e-3) -> None:
        sigma = field.interpolant.gamma_scale
        super().__init__(sigma**2)
        if not 0 < t_clip < 0.5:
            raise ArgumentError(f"t_clip must lie in (0, 0.5); got {t_clip}")
        self.inner, self.sigma, self.t_clip = field, sigma, float(t_clip)

    def drift(self, x: Tensor, t: Tensor | float) -> Tensor:
        t = as_time(t, x)
        tc = t.clamp(self.t_clip, 1 - self.t_clip)
        gamma = torch.sqrt(tc * (1 - tc))
        eta = self.inner.denoise(x, t)
        return self.inner.velocity(x, t) - 0.5 * self.sigma * eta / expand_like(gamma, x)


class SBCFM(nn.Module):
    r"""Simulation-free Schrödinger bridge: entropic minibatch OT + Brownian bridge + flow/score matching.

    Args:
        dim: data dimension.
        sigma: bridge noise :math:`\sigma` (reference variance :math:`\varepsilon = \sigma^2`).
        drift_net: network ``net(x, t)`` of the drift; default :class:`~flowbridge.nets.MLP`
            with ``hidden`` units and ``depth`` layers.
        denoiser_net: network ``net(x, t)`` of the denoiser; default as for ``drift_net``.
        hidden: width of the default networks.
        depth: depth of the default networks.
        reg: entropic regularisation of the minibatch plan for the cost :math:`|x_0 - x_1|^2`;
            default :math:`2\sigma^2` (the SB's own); raise it if Sinkhorn overflows.
        t_margin: training times are drawn from ``[t_margin, 1 - t_margin]``.
        sinkhorn_method: ``"sinkhorn"`` (POT's fast iteration; raises
            :class:`~flowbridge.couplings.CouplingError` when the kernel underflows) or
            ``"sinkhorn_log"`` (log domain, any ``reg``; needed for small ``sigma`` on spread data).

    Raises:
        ValueError: for a non-positive ``sigma``/``reg`` or ``dim``.
    """

    def __init__(
        self,
        dim: int,
        sigma: float = 1.0,
        drift_net: nn.Module | None = None,
        denoiser_net: nn.Module | None = None,
        hidden: int = 256,
        depth: int = 3,
        reg: float | None = None,
        t_margin: float = 1e-3,
        sinkhorn_method: str = "sinkhorn",
    ) -> None:
        super().__init__()
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ArgumentError(f"dim must be a positive integer; got {dim!r}")
        if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not (math.isfinite(sigma) and sigma > 0):
            raise ArgumentError(f"sigma must be a finite number > 0 (bridge noise; eps = sigma**2); got {sigma!r}")
        sigma = float(sigma)
        self.dim, self.sigma = dim, sigma
        self.reg = 2 * sigma**2 if reg is None else check_eps(reg, "reg")
        if not 0 <= t_margin < 0.5:
            raise ArgumentError(f"t_margin must lie in [0, 0.5); got {t_margin}")
        self.t_margin = float(t_margin)
        self.bridge = BrownianBridge(sigma)
        self.field = InterpolantField(
            drift_net if drift_net is not None else MLP(dim, hidden=hidden, depth=depth),
            denoiser_net if denoiser_net is not None else MLP(dim, hidden=hidden, depth=depth),
            self.bridge,
        )
        if sinkhorn_method == "sinkhorn":
            self.coupling: MinibatchOTCoupling = MinibatchOTCoupling(method="sinkhorn", reg=self.reg, normalize_cost=False)
        elif sinkhorn_method == "sinkhorn_log":
            self.coupling = LogSinkhornCoupling(reg=self.reg)
        else:
            raise ArgumentError(f"sinkhorn_method must be 'sinkhorn' or 'sinkhorn_log'; got {sinkhorn_method!r}")
        self.objective = InterpolantObjective(self.bridge)

    @property
    def eps(self) -> float:
        """Variance of the Brownian reference, :math:`\\sigma^2`."""
        return self.sigma**2

    def loss(self, x0: Tensor, x1: Tensor, *, generator: RandomSource = None) -> Tensor:
        """Couples the minibatch, draws times and returns the flow + score matching loss."""
        try:
            pairs = self.coupling(x0, x1, generator=generator)
        except CouplingError as err:
            if isinstance(self.coupling, LogSinkhornCoupling):
                raise
            raise CouplingError(f"{err}; or build SBCFM(..., sinkhorn_method='sinkhorn_log')") from err
        u = rand((x1.shape[0],), generator=generator, dtype=x1.dtype, device=x1.device)
        t = self.t_margin + (1 - 2 * self.t_margin) * u
        return self.objective(self.field, pairs.x0, pairs.x1, t, generator=generator).loss

    def fit(
        self,
        x0: Tensor,
        x1: Tensor,
        *,
        steps: int = 5000,
        batch_size: int = 256,
        lr: float = 1e-3,
        generator: torch.Generator | None = None,
        log_every: int = 100,
    ) -> FitHistory:
        """Trains on unpaired samples ``x0`` (N0, d) and ``x1`` (N1, d) with Adam.

        Raises:
            ValueError: for mismatched dimensions or non-positive sizes.
            flowbridge.couplings.CouplingError: if Sinkhorn overflows (raise ``reg``).
        """
        check_samples(x0, "x0", finite=True)
        check_samples(x1, "x1", finite=True)
        if x0.shape[1] != x1.shape[1] or x0.shape[1] != self.dim:
            raise ArgumentError(f"x0 and x1 must both have dimension dim={self.dim}; got {x0.shape[1]} and {x1.shape[1]}")
        for name, value in (("steps", steps), ("batch_size", batch_size), ("log_every", log_every)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ArgumentError(f"{name} must be a positive integer; got {value!r}")
        opt = torch.optim.Adam(self.field.parameters(), lr=lr)
        history, start = FitHistory(), time.perf_counter()
        for step in range(steps):
            i0 = torch.randint(x0.shape[0], (batch_size,), generator=generator)
            i1 = torch.randint(x1.shape[0], (batch_size,), generator=generator)
            loss = self.loss(x0[i0], x1[i1], generator=generator)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if step % log_every == 0 or step == steps - 1:
                history.losses.append(float(loss.detach()))  # sync-ok: logging in the training loop
        history.seconds, history.steps = time.perf_counter() - start, steps
        return history

    def bridge_field(self, t_clip: float = 1e-3) -> SBCFMBridgeField:
        """The forward SB SDE drift as a :class:`~flowbridge.bridges.BridgeField`."""
        return SBCFMBridgeField(self.field, t_clip=t_clip)

    def sample(self, x0: Tensor, steps: int = 100, *, generator: torch.Generator | None = None) -> Tensor:
        """Transports ``x0`` to the target by Euler–Maruyama on the learned SB SDE."""
        from flowbridge.samplers.api import sample

        return sample(self.bridge_field(), "bridge_euler_maruyama", steps, x0=x0, generator=generator).x
