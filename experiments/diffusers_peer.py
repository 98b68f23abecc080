"""Driving diffusers' multistep schedulers from a flowbridge field, on flowbridge's grid.

diffusers works on the variance-preserving sample :math:`x_{vp} = x/\\sqrt{\\alpha^2+\\sigma^2}` with
:math:`\\bar\\sigma = \\sigma/\\alpha` as its ``sigmas``. We call ``set_timesteps``, overwrite ``sigmas``
with the grid's :math:`\\bar\\sigma` (so both integrate on the same points, no integer-timestep
rounding), ``set_begin_index(0)``, and feed the field's data prediction (``prediction_type="sample"``),
which is the same in every scaling. ``final_sigmas_type="sigma_min"`` keeps the last point at the
grid's last time (no jump to sigma = 0). Note that ``step`` computes in float32.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from flowbridge.fields.base import Field


def diffusers_available() -> bool:
    try:
        import diffusers  # noqa: F401
    except ImportError:
        return False
    return True


def make_scheduler(kind: str, order: int = 2, variant: str = "bh2", lower_order_final: bool = False) -> Any:
    """``kind``: ``"dpmpp"`` (DPMSolverMultistepScheduler, dpmsolver++) or ``"unipc"``."""
    from diffusers import DPMSolverMultistepScheduler, UniPCMultistepScheduler

    common = dict(solver_order=order, prediction_type="sample", lower_order_final=lower_order_final,
                  final_sigmas_type="sigma_min")
    if kind == "dpmpp":
        return DPMSolverMultistepScheduler(algorithm_type="dpmsolver++", **common)
    if kind == "unipc":
        return UniPCMultistepScheduler(solver_type=variant, predict_x0=True, disable_corrector=[], **common)
    raise ValueError(f"kind must be 'dpmpp' or 'unipc'; got {kind!r}")


def prepare(scheduler: Any, field: Field, grid: Tensor) -> Tensor:
    """Imposes the grid on ``scheduler``; returns :math:`\\sqrt{\\alpha^2+\\sigma^2}` at the grid (float64)."""
    v = field.gaussian_path.schedule(grid.to(torch.float64))
    steps = grid.shape[0] - 1
    scheduler.set_timesteps(steps)
    scheduler.sigmas = (v.sigma / v.alpha).to(torch.float32)
    scheduler.set_begin_index(0)
    return torch.sqrt(v.alpha**2 + v.sigma**2)


def sample_with_scheduler(scheduler: Any, field: Field, x: Tensor, grid: Tensor) -> Tensor:
    """Integrates from ``grid[0]`` to ``grid[-1]`` with a diffusers scheduler; returns x at ``grid[-1]``."""
    norm = prepare(scheduler, field, grid)
    t = grid.to(x)
    sample = x / float(norm[0])
    for i in range(grid.shape[0] - 1):
        x_i = sample.to(x.dtype) * float(norm[i])
        sample = scheduler.step(field.data(x_i, t[i]), scheduler.timesteps[i], sample).prev_sample
    return sample.to(x.dtype) * float(norm[-1])


def reference_solve(field: Field, x: Tensor, grid: Tensor, tol: float = 1e-10) -> Tensor:
    """Float64 dopri5 (torchdiffeq) from ``grid[0]`` to ``grid[-1]`` at ``rtol = atol = tol``.

    ``step_t`` makes the last step land on ``grid[-1]``: dopri5 otherwise steps past the end and
    interpolates back, evaluating the field beyond the schedule's regular interval (VP: t > 1).
    """
    import torchdiffeq

    times = grid[[0, -1]].to(device=x.device, dtype=torch.float64)
    return torchdiffeq.odeint(
        lambda t, y: field.velocity(y, t), x.to(torch.float64), times, rtol=tol, atol=tol, method="dopri5",
        options={"step_t": times[1:]},
    )[-1]
