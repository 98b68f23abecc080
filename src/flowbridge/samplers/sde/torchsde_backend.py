r"""torchsde backends for the reverse SDE: ``torchsde:euler``, ``torchsde:srk``, ``torchsde:reversible_heun``.

The SDE :math:`dx = (u + \epsilon s)\,dt + \sqrt{2\epsilon}\,dW` is handed to ``torchsde.sdeint``
with diagonal noise :math:`g = \sqrt{2\epsilon(t)}\,\mathbf 1`. The noise is additive (independent of
``x``), so Itô and Stratonovich coincide and the Stratonovich-only reversible Heun applies.

The Brownian motion is a :class:`~flowbridge.samplers.sde.common.BrownianPath` (a
``torchsde.BrownianInterval``) whose entropy is drawn from the torch generator, so the same seed
gives the same solution; pass a ``BrownianPath`` as the generator to query one path at several step
counts. torchsde steps with one fixed ``dt``, so the grid must be uniform; its solvers also take
one step size for the whole batch and synchronise with the host at every step (``curr_t < out_t``),
which is why the native samplers are the default.

Strong orders here (additive noise): Euler 1, SRK 1.5 in theory with additive-noise tableaux
(torchsde uses its diagonal-noise SRK, strong order 1, on this diagonal-noise SDE), reversible Heun 1.
"""

from __future__ import annotations

from typing import Callable, ClassVar

import torch
from torch import Tensor, nn

from flowbridge.errors import ArgumentError
from flowbridge.fields.base import Field
from flowbridge.random import RandomSource, torch_generator
from flowbridge.samplers.base import Observer, SolveResult, Solver, check_evaluable, register_solver
from flowbridge.samplers.sde.common import (
    BrownianPath,
    EpsFn,
    check_eps_callable,
    check_eps_on_span,
    check_noise_scale,
    check_score_field,
    eps_at,
)

# Relative spread of step sizes below which a grid counts as uniform.
_UNIFORM_TOL = 1e-9


class _ReverseSDE(nn.Module):
    """The reverse SDE in torchsde's interface, on flattened states (B, n); counts drift calls."""

    def __init__(
        self, field: Field, shape: tuple[int, ...], sde_type: str, level: Callable[[Tensor], Tensor]
    ) -> None:
        super().__init__()
        self.noise_type = "diagonal"
        self.sde_type = sde_type
        self.field, self.shape, self.level = field, shape, level
        self.calls = 0

    def f(self, t: Tensor, y: Tensor) -> Tensor:
        self.calls += 1
        x = y.reshape(self.shape)
        return self.field.sde_drift(x, t, self.level(t)).reshape(y.shape)

    def g(self, t: Tensor, y: Tensor) -> Tensor:
        return torch.sqrt(2 * self.level(t)).expand_as(y)


class TorchsdeSolver(Solver[None]):
    """Solves the reverse SDE with ``torchsde.sdeint`` on a uniform grid.

    Args:
        noise_scale: multiplier of the default diffusion level.
        eps: a callable ``eps(t)`` overriding ``noise_scale`` (receives a 0-dim tensor).
        halfway_tree: make the Brownian path a function of the seed alone (slower).
    """

    method: ClassVar[str] = "euler"
    sde_type: ClassVar[str] = "ito"
    levy_area: ClassVar[str] = "none"
    stochastic = True
    nfe_per_step = 0

    def __init__(self, noise_scale: float = 1.0, eps: EpsFn | None = None, halfway_tree: bool = False) -> None:
        check_eps_callable(eps)
        self.noise_scale, self.eps, self.halfway_tree = check_noise_scale(noise_scale), eps, bool(halfway_tree)

    def check(self, field: Field, steps: int) -> None:
        super().check(field, steps)
        check_score_field(field, self.name)

    def validate_span(self, field: Field, t_start: float, t_end: float) -> None:
        check_eps_on_span(field, t_start, t_end, self.noise_scale, self.eps, self.name)
        check_evaluable(self.name, field, torch.linspace(t_start, t_end, 1025, dtype=torch.float64), evaluates=("sde_drift",))

    def init(self, field: Field, x: Tensor, grid: Tensor, *, generator: RandomSource = None) -> None:
        return None

    def step(self, field: Field, x: Tensor, state: None, i: int, *, generator: RandomSource = None) -> tuple[Tensor, None]:
        raise NotImplementedError(f"{self.name!r} runs torchsde's own loop: call solve()")

    def solve(
        self, field: Field, x: Tensor, grid: Tensor, *, generator: RandomSource | BrownianPath = None,
        return_trajectory: bool = False, observer: Observer | None = None,
    ) -> SolveResult:
        import torchsde

        steps = len(grid) - 1
        self.check(field, steps)
        g = grid.to(torch.float64)
        h = g[1:] - g[:-1]
        if not (h > 0).all() or float(h.max() - h.min()) > _UNIFORM_TOL * float(h.mean()):
            raise ArgumentError(f"{self.name} steps with one fixed dt: use grid='uniform' (got a non-uniform grid)")
        t0, t1 = float(g[0]), float(g[-1])
        self.validate_span(field, t0, t1)
        ts = (g if return_trajectory else g[[0, -1]]).to(dtype=x.dtype, device=x.device)
        # torchsde queries the Brownian path at the times in the state's dtype: a float32 end can round
        # past the float64 span, so the path covers both roundings (else torchsde warns on every query).
        # sync-ok: two reads before the solve.
        lo, hi = min(t0, float(ts[0])), max(t1, float(ts[-1]))
        if isinstance(generator, BrownianPath):
            path = generator
            if path.t0 > t0 or path.t1 < t1 or path.shape != tuple(x.shape):
                raise ArgumentError(
                    f"the BrownianPath covers [{path.t0}, {path.t1}] with shape {path.shape}; "
                    f"this solve needs [{t0}, {t1}] and shape {tuple(x.shape)}"
                )
        else:
            path = BrownianPath(
                tuple(x.shape), lo, hi, generator=torch_generator(generator, f"{self.name} (one Brownian path for the batch)"), dtype=x.dtype, device=x.device,
                levy_area=self.levy_area, halfway_tree=self.halfway_tree,
            )

        def level(t: Tensor) -> Tensor:
            # sync-ok: torchsde owns this loop and hands over its times (tensors already on the device)
            return eps_at(field, torch.as_tensor(t, dtype=x.dtype, device=x.device), self.noise_scale, self.eps)

        sde = _ReverseSDE(field, tuple(x.shape), self.sde_type, level)
        # torchsde accumulates `t + dt`; rounding may add one sliver step of ~1e-16 at the end
        # (counted in the NFE), which is harmless, whereas an inflated dt would move every query time.
        dt = (t1 - t0) / steps
        ys = torchsde.sdeint(sde, x.reshape(x.shape[0], -1), ts, bm=path.interval,
                             method=self.method, dt=dt)
        ys = ys.reshape(ys.shape[0], *x.shape)
        return SolveResult(x=ys[-1], nfe=sde.calls, trajectory=ys if return_trajectory else None)


@register_solver("torchsde:euler")
class TorchsdeEuler(TorchsdeSolver):
    """torchsde's Euler–Maruyama (strong order 1 on additive noise)."""

    order = 1.0
    method = "euler"
    sde_type = "ito"


@register_solver("torchsde:srk")
class TorchsdeSRK(TorchsdeSolver):
    """torchsde's stochastic Runge–Kutta (Rößler 2010) with space-time Lévy area."""

    order = 1.0
    method = "srk"
    sde_type = "ito"
    levy_area = "space-time"


@register_solver("torchsde:reversible_heun")
class TorchsdeReversibleHeun(TorchsdeSolver):
    """torchsde's reversible Heun (Kidger et al. 2021; Stratonovich = Itô here, additive noise)."""

    order = 1.0
    method = "reversible_heun"
    sde_type = "stratonovich"
