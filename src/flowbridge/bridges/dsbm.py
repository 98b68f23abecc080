r"""Diffusion Schrödinger bridge matching / iterative Markovian fitting (Shi et al., NeurIPS 2023).

IMF alternates two projections that both keep the Schrödinger bridge fixed:

* **Markovian projection** (bridge matching): given a coupling :math:`\Pi(x_0, x_1)`, the Markov
  process with the marginals of the mixture of Brownian bridges
  :math:`x_t = (1-t)x_0 + t x_1 + \sigma\sqrt{t(1-t)}\,z` has drift
  :math:`E[(x_1 - x_t)/(1-t)\mid x_t]`, learned by regressing a network on
  :math:`(x_1 - x_t)/(1-t) = x_1 - x_0 - \sigma\sqrt{t/(1-t)}\,z`;
* **reciprocal projection**: simulate the learned SDE to get a new coupling.

DSBM learns a forward drift (source to target, time :math:`t`) and a backward drift (target to
source, time :math:`s = 1 - t`, the same regression with the endpoints swapped) and alternates
them: the forward net is trained on couplings simulated by the backward net from true target
samples, and vice versa, so each coupling has one exact marginal and errors do not accumulate.
Iteration 0 trains the forward net on the independent coupling (plain bridge matching).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from dataclasses import field as dataclass_field

import torch
from torch import Tensor, nn

from flowbridge.bridges.lightsb import check_samples
from flowbridge.bridges.sde import DriftNetworkField
from flowbridge.fields.bridge import BridgeField, check_eps
from flowbridge.nets.mlp import MLP
from flowbridge.random import RandomSource, rand, randn_like
from flowbridge.samplers.base import SamplingError

__all__ = ["DSBM", "DSBMHistory", "bridge_matching_loss"]


def bridge_matching_loss(
    field: BridgeField, start: Tensor, end: Tensor, *, t_max: float = 0.99, generator: RandomSource = None
) -> Tensor:
    r"""Bridge matching: :math:`E\,|b(x_t, t) - (x_\text{end} - x_t)/(1-t)|^2` over Brownian-bridge draws.

    Args:
        field: the drift being trained (its ``eps`` is the bridge variance :math:`\sigma^2`).
        start: (B, d) coupled start points (time 0 of this field's clock).
        end: (B, d) coupled end points.
        t_max: times are uniform on ``[0, t_max]`` (the target's variance grows like
            :math:`t/(1-t)` towards 1).
    """
    check_samples(start, "start")
    check_samples(end, "end")
    if start.shape != end.shape:
        raise ValueError(f"start and end must have the same shape; got {tuple(start.shape)} and {tuple(end.shape)}")
    u = rand((start.shape[0],), generator=generator, dtype=start.dtype, device=start.device)
    t = (t_max * u)[:, None]
    z = randn_like(start, generator=generator)
    sigma = math.sqrt(field.eps)
    x_t = (1 - t) * start + t * end + sigma * torch.sqrt(t * (1 - t)) * z
    target = end - start - sigma * torch.sqrt(t / (1 - t)) * z
    return ((field.drift(x_t, t[:, 0]) - target) ** 2).sum(-1).mean()


@dataclass
class DSBMHistory:
    """Per outer iteration: which direction was trained, its final loss and the wall-clock seconds."""

    directions: list[str] = dataclass_field(default_factory=list)
    losses: list[float] = dataclass_field(default_factory=list)
    seconds: list[float] = dataclass_field(default_factory=list)

    @property
    def total_seconds(self) -> float:
        return float(sum(self.seconds))


class DSBM(nn.Module):
    r"""DSBM with forward and backward drift networks (IMF).

    Args:
        dim: data dimension.
        sigma: bridge noise :math:`\sigma` (Brownian reference variance :math:`\sigma^2`).
        forward_net: network ``net(x, t)`` of the forward drift; default :class:`~flowbridge.nets.MLP`.
        backward_net: network ``net(x, t)`` of the backward drift; default :class:`~flowbridge.nets.MLP`.
        hidden: width of the default networks.
        depth: depth of the default networks.
    """

    def __init__(
        self,
        dim: int,
        sigma: float = 1.0,
        forward_net: nn.Module | None = None,
        backward_net: nn.Module | None = None,
        hidden: int = 128,
        depth: int = 3,
    ) -> None:
        super().__init__()
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ValueError(f"dim must be a positive integer; got {dim!r}")
        if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not sigma > 0:
            raise ValueError(f"sigma must be > 0; got {sigma!r}")
        eps = check_eps(float(sigma) ** 2, "sigma**2")
        self.dim, self.sigma = dim, float(sigma)
        self.forward_field = DriftNetworkField(forward_net or MLP(dim, hidden=hidden, depth=depth), eps)
        self.backward_field = DriftNetworkField(backward_net or MLP(dim, hidden=hidden, depth=depth), eps)
        self.last_trained = "none"

    @property
    def eps(self) -> float:
        return self.sigma**2

    def simulate(self, x: Tensor, direction: str, steps: int, *, generator: RandomSource = None) -> Tensor:
        """Runs the forward (from sources) or backward (from targets) SDE with Euler–Maruyama."""
        from flowbridge.samplers.api import sample

        f = self.forward_field if direction == "forward" else self.backward_field
        return sample(f, "bridge_euler_maruyama", steps, x0=x, generator=generator).x

    def sample(self, x0: Tensor, steps: int = 100, *, generator: RandomSource = None) -> Tensor:
        """Transports sources ``x0`` to the target with the forward SDE.

        Raises:
            SamplingError: if any sample is non-finite at the end.
        """
        x = self.simulate(x0, "forward", steps, generator=generator)
        if not bool(torch.isfinite(x).all()):  # sync-ok: one check after sampling, as flowbridge.sample
            raise SamplingError("DSBM.sample produced non-finite values; check that x0 is finite and the fit converged")
        return x

    def sample_backward(self, x1: Tensor, steps: int = 100, *, generator: RandomSource = None) -> Tensor:
        """Transports targets ``x1`` to the source with the backward SDE."""
        return self.simulate(x1, "backward", steps, generator=generator)

    def fit(
        self,
        x0: Tensor,
        x1: Tensor,
        *,
        iterations: int = 10,
        steps_per_iteration: int = 1000,
        batch_size: int = 256,
        lr: float = 1e-3,
        cache_size: int = 10_000,
        sde_steps: int = 100,
        t_max: float = 0.99,
        generator: torch.Generator | None = None,
    ) -> DSBMHistory:
        """Runs ``iterations`` outer IMF iterations (iteration 0: forward net on the independent coupling).

        Each iteration simulates ``cache_size`` pairs with the net trained last (``sde_steps``
        Euler–Maruyama steps, no gradients), then trains the other direction for
        ``steps_per_iteration`` Adam steps on minibatches of the cache.

        Raises:
            ValueError: for mismatched dimensions or non-positive sizes.
        """
        check_samples(x0, "x0", finite=True)
        check_samples(x1, "x1", finite=True)
        if x0.shape[1] != x1.shape[1] or x0.shape[1] != self.dim:
            raise ValueError(f"x0 and x1 must both have dimension dim={self.dim}; got {x0.shape[1]} and {x1.shape[1]}")
        for name, value in (
            ("iterations", iterations), ("steps_per_iteration", steps_per_iteration), ("batch_size", batch_size),
            ("cache_size", cache_size), ("sde_steps", sde_steps),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer; got {value!r}")
        if not 0 < t_max < 1:
            raise ValueError(f"t_max must lie in (0, 1); got {t_max}")
        optims = {
            "forward": torch.optim.Adam(self.forward_field.parameters(), lr=lr),
            "backward": torch.optim.Adam(self.backward_field.parameters(), lr=lr),
        }
        history = DSBMHistory()
        for it in range(iterations):
            start_time = time.perf_counter()
            direction = "forward" if it % 2 == 0 else "backward"
            with torch.no_grad():  # the reciprocal projection: simulation, no gradients needed
                if it == 0:
                    i0 = torch.randint(x0.shape[0], (cache_size,), generator=generator)
                    i1 = torch.randint(x1.shape[0], (cache_size,), generator=generator)
                    src, tgt = x0[i0], x1[i1]
                elif direction == "forward":  # backward net simulates sources from true targets
                    tgt = x1[torch.randint(x1.shape[0], (cache_size,), generator=generator)]
                    src = self.simulate(tgt, "backward", sde_steps, generator=generator)
                else:  # forward net simulates targets from true sources
                    src = x0[torch.randint(x0.shape[0], (cache_size,), generator=generator)]
                    tgt = self.simulate(src, "forward", sde_steps, generator=generator)
            trained = self.forward_field if direction == "forward" else self.backward_field
            start, end = (src, tgt) if direction == "forward" else (tgt, src)
            opt = optims[direction]
            loss = torch.zeros(())
            for _ in range(steps_per_iteration):
                idx = torch.randint(cache_size, (batch_size,), generator=generator)
                loss = bridge_matching_loss(trained, start[idx], end[idx], t_max=t_max, generator=generator)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            self.last_trained = direction
            history.directions.append(direction)
            history.losses.append(float(loss.detach()))  # sync-ok: once per outer iteration
            history.seconds.append(time.perf_counter() - start_time)
        return history

    def sample_plan(self, x0: Tensor, x1: Tensor, steps: int = 100, *, generator: RandomSource = None) -> tuple[Tensor, Tensor]:
        """Pairs from the net trained last: ``(x0, forward(x0))`` or ``(backward(x1), x1)``."""
        if self.last_trained == "backward":
            return self.sample_backward(x1, steps, generator=generator), x1
        return x0, self.sample(x0, steps, generator=generator)
