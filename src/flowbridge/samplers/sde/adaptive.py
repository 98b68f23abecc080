r"""Adaptive SDE solver of Jolicoeur-Martineau et al. 2021 ("Gotta Go Fast"), per-sample steps.

Every sample carries its own time :math:`t` and step :math:`h`. One attempt draws one noise
:math:`z` and forms, with :math:`f = u + \epsilon s` and :math:`g = \sqrt{2\epsilon}`,

.. math::
    K_1 = h f(x, t) + g(t)\sqrt h\,z, \quad K_2 = h f(x + K_1, t + h) + g(t + h)\sqrt h\,z,

the Euler–Maruyama proposal :math:`x' = x + K_1` and the stochastic improved-Euler proposal
:math:`x'' = x + (K_1 + K_2)/2`. The error :math:`E = (K_2 - K_1)/2` is measured in the mixed norm
:math:`E_q = \|E/\delta\|_2/\sqrt n` with :math:`\delta = \max(\text{atol}, \text{rtol}\cdot
\max(|x'|, |x'_{prev}|))`; the attempt is accepted (keeping :math:`x''`) where :math:`E_q \le 1`, and
every sample's step becomes :math:`h \leftarrow \theta\,h\,E_q^{-r}` (:math:`\theta = r = 0.9`),
clipped to the time left. Samples that are done keep a zero step and are left unchanged.

Rejections must not select the noise: redrawing :math:`z` after a rejection keeps only the draws
that made the error small, which biases the law (measured here: the variance of a Gaussian target
came out 28% too large at tight tolerances). As in RSwM (Rackauckas & Nie 2017) each sample keeps
the Brownian increments it has already revealed as a short stack of future segments; a shorter
retry is drawn from the Brownian bridge inside the rejected segment, and the rest of that segment is
used by the following steps, so that every sample follows one Brownian path whatever steps it takes.
The stack holds ``bridge_depth`` segments (a deeper one is dropped, which only happens after that
many consecutive rejections).

Each attempt costs two batched field evaluations. The loop ends when every sample has reached the
end, which is the one host synchronisation per attempt (``bool(done.all())``). The NFE reported is
that of the batch (twice the number of attempts); the per-sample counts are in
:class:`AdaptiveSDEResult`. With per-sample seeds a sample's draws depend only on its own
attempts, so its result does not depend on its batch.
"""

from __future__ import annotations

import math

from dataclasses import dataclass

import torch
from torch import Tensor

from flowbridge._utils import expand_like
from flowbridge.fields.base import Field
from flowbridge.random import RandomSource, randn_like
from flowbridge.samplers.base import SamplingError, SolveResult, Solver, register_solver
from flowbridge.samplers.sde.common import (
    BrownianPath,
    EpsFn,
    check_eps_callable,
    check_eps_on_span,
    check_noise_scale,
    check_score_field,
    eps_at,
    plain_generator,
)

# Floor of E_q in the step update, so that a zero error (a finished sample) gives a finite factor.
_MIN_ERROR = 1e-10


@dataclass(frozen=True)
class AdaptiveSDEResult:
    """What :meth:`AdaptiveSDE.solve_detailed` returns.

    Attributes:
        x: the samples at the end time.
        nfe: batched field evaluations (2 per attempt; the cost of the batch).
        nfe_per_sample: (B,) evaluations each sample needed until it was done.
        accepted: (B,) accepted steps per sample.
        rejected: (B,) rejected attempts per sample.
        attempts: number of batched attempts.
    """

    x: Tensor
    nfe: int
    nfe_per_sample: Tensor
    accepted: Tensor
    rejected: Tensor
    attempts: int


@dataclass(frozen=True)
class _BrownianStack:
    """Per-sample revealed Brownian segments after the current time, nearest first.

    ``lengths`` (B, K) are the segments' durations (0 = empty slot) and ``increments`` (K, B, ...)
    their Brownian increments.
    """

    lengths: Tensor
    increments: Tensor

    @staticmethod
    def empty(x: Tensor, depth: int) -> "_BrownianStack":
        return _BrownianStack(
            lengths=torch.zeros(x.shape[0], depth, dtype=x.dtype, device=x.device),
            increments=torch.zeros((depth, *x.shape), dtype=x.dtype, device=x.device),
        )

    def increment(self, h: Tensor, generator: RandomSource) -> tuple[Tensor, "_BrownianStack"]:
        """The increment over ``[t, t + h]`` and the stack with that part consumed.

        Whole segments are used as they are, a longer one is split by its Brownian bridge, and
        time beyond the stack gets fresh noise. Every sample draws the same number of normals per
        call, so per-sample streams stay independent of the batch.
        """
        need = h
        dw = torch.zeros_like(self.increments[0])
        lengths, increments = [], []
        for k in range(self.lengths.shape[1]):
            length, inc = self.lengths[:, k], self.increments[k]
            take = torch.minimum(need, length)
            safe = torch.where(length > 0, length, torch.ones_like(length))
            frac = torch.where(length > 0, take / safe, torch.zeros_like(take))
            std = torch.sqrt((take * (length - take) / safe).clamp_min(0.0))
            part = expand_like(frac, inc) * inc + expand_like(std, inc) * randn_like(inc, generator=generator)
            dw = dw + part
            lengths.append(length - take)
            increments.append(inc - part)
            need = need - take
        dw = dw + expand_like(torch.sqrt(need.clamp_min(0.0)), dw) * randn_like(dw, generator=generator)
        return dw, _BrownianStack(lengths=torch.stack(lengths, 1), increments=torch.stack(increments))

    def after(self, accept: Tensor, active: Tensor, h: Tensor, dw: Tensor) -> "_BrownianStack":
        """The stack after an attempt: compacted; a rejected attempt's segment pushed on top.

        ``self`` is the stack returned by :meth:`increment` (with ``[t, t + h]`` consumed).
        """
        depth = self.lengths.shape[1]
        empty = self.lengths <= 0
        order = (empty.long() * depth + torch.arange(depth, device=empty.device)).argsort(dim=1)
        lengths = torch.gather(self.lengths, 1, order).clamp_min(0.0)
        gather_index = order.T.reshape(depth, -1, *([1] * (dw.ndim - 1))).expand_as(self.increments)
        increments = torch.gather(self.increments, 0, gather_index)
        reject = active & ~accept
        pushed_lengths = torch.cat([h[:, None], lengths[:, :-1]], 1)
        pushed_increments = torch.cat([dw[None], increments[:-1]], 0)
        return _BrownianStack(
            lengths=torch.where(reject[:, None], pushed_lengths, lengths),
            increments=torch.where(expand_like(reject, dw)[None], pushed_increments, increments),
        )


@register_solver("adaptive_sde")
class AdaptiveSDE(Solver[None]):
    """EM / stochastic improved Euler pair with per-sample error control (weak order 1).

    ``steps`` of :func:`flowbridge.sample` is ignored except for its span: the controller picks the steps.

    Args:
        atol: absolute tolerance (> 0); the paper uses 0.0078 for data in [-1, 1].
        rtol: relative tolerance (> 0).
        noise_scale: multiplier of the default diffusion level.
        eps: a callable ``eps(t)`` overriding ``noise_scale``; it receives per-sample times (B,) on
            the state's device.
        h_init: first step size.
        safety: :math:`\\theta` in the step update.
        exponent: :math:`r` in the step update.
        max_attempts: raise :class:`SamplingError` after this many batched attempts.
        bridge_depth: segments of revealed Brownian path kept per sample.
    """

    order = 1.0
    stochastic = True
    nfe_per_step = 0

    def __init__(
        self, atol: float = 0.0078, rtol: float = 0.05, noise_scale: float = 1.0, eps: EpsFn | None = None,
        h_init: float = 0.01, safety: float = 0.9, exponent: float = 0.9, max_attempts: int = 100_000,
        bridge_depth: int = 4,
    ) -> None:
        for label, value in (("atol", atol), ("rtol", rtol), ("h_init", h_init), ("safety", safety), ("exponent", exponent)):
            if not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"{label} must be > 0; got {value!r}")
        if not isinstance(max_attempts, int) or max_attempts < 1:
            raise ValueError(f"max_attempts must be a positive integer; got {max_attempts!r}")
        if not isinstance(bridge_depth, int) or bridge_depth < 1:
            raise ValueError(f"bridge_depth must be a positive integer; got {bridge_depth!r}")
        self.bridge_depth = bridge_depth
        check_eps_callable(eps)
        self.atol, self.rtol = float(atol), float(rtol)
        self.noise_scale, self.eps = check_noise_scale(noise_scale), eps
        self.h_init, self.safety, self.exponent, self.max_attempts = float(h_init), float(safety), float(exponent), max_attempts

    def check(self, field: Field, steps: int) -> None:
        super().check(field, steps)
        check_score_field(field, self.name)

    def init(self, field: Field, x: Tensor, grid: Tensor, *, generator: RandomSource = None) -> None:
        return None

    def step(self, field: Field, x: Tensor, state: None, i: int, *, generator: RandomSource = None) -> tuple[Tensor, None]:
        raise NotImplementedError(f"{self.name!r} is adaptive: call solve(), it has no fixed steps")

    def _stage(self, field: Field, x: Tensor, t: Tensor, h: Tensor, dw: Tensor) -> Tensor:
        """:math:`h f(x, t) + \\sqrt{2\\epsilon(t)}\\,\\Delta W` with per-sample ``t`` and ``h`` (B,)."""
        eps = eps_at(field, t, self.noise_scale, self.eps)
        drift = field.sde_drift(x, t, expand_like(eps, x))
        return expand_like(h, x) * drift + expand_like(torch.sqrt(2 * eps), x) * dw

    def solve_detailed(self, field: Field, x: Tensor, grid: Tensor, *, generator: RandomSource = None) -> AdaptiveSDEResult:
        """Integrates from ``grid[0]`` to ``grid[-1]`` and returns the per-sample counts as well."""
        self.check(field, len(grid) - 1)
        generator = plain_generator(generator, self.name, "per-sample adaptive steps")
        t_start, t_end = float(grid[0]), float(grid[-1])
        if not t_end > t_start:
            raise ValueError(f"{self.name}: need t_end > t_start; got {t_start}, {t_end}")
        check_eps_on_span(field, t_start, t_end, self.noise_scale, self.eps, self.name)
        batch = x.shape[0]
        dims = tuple(range(1, x.ndim))
        like = dict(device=x.device, dtype=x.dtype)
        t = torch.full((batch,), t_start, **like)
        h = torch.full((batch,), min(self.h_init, t_end - t_start), **like)
        end = torch.full((batch,), t_end, **like)
        previous = x
        done = torch.zeros(batch, dtype=torch.bool, device=x.device)
        failed = torch.zeros_like(done)
        accepted = torch.zeros(batch, dtype=torch.long, device=x.device)
        rejected = torch.zeros_like(accepted)
        nfe_per_sample = torch.zeros_like(accepted)
        stack = _BrownianStack.empty(x, self.bridge_depth)
        attempts = 0
        while True:
            remaining = end - t
            h_step = torch.minimum(h, remaining)
            dw, consumed = stack.increment(h_step, generator)
            k1 = self._stage(field, x, t, h_step, dw)
            x_em = x + k1
            k2 = self._stage(field, x_em, t + h_step, h_step, dw)
            x_ie = x + 0.5 * (k1 + k2)
            delta = torch.maximum(torch.abs(x_em), torch.abs(previous)).mul(self.rtol).clamp_min(self.atol)
            error = torch.sqrt(torch.mean((0.5 * (k2 - k1) / delta) ** 2, dim=dims))
            active = ~done
            # A non-finite error estimate can never fall below 1: such a sample would be rejected
            # until max_attempts (a hang). It stops here as NaN, and sample() reports it.
            failed |= active & ~torch.isfinite(error)
            active = active & ~failed
            accept = (error <= 1) & active
            keep = expand_like(accept, x)
            x = torch.where(keep, x_ie, x)
            previous = torch.where(keep, x_em, previous)
            t = torch.where(accept, torch.where(h_step >= remaining, end, t + h_step), t)
            h = torch.where(active, self.safety * h_step * error.clamp_min(_MIN_ERROR) ** (-self.exponent), h)
            stack = consumed.after(accept, active, h_step, dw)
            accepted += accept.long()
            rejected += (active & ~accept).long()
            nfe_per_sample += 2 * active.long()
            x = torch.where(expand_like(failed, x), torch.full_like(x, math.nan), x)
            done = (t >= end) | failed
            attempts += 1
            if bool(done.all()):  # sync-ok: the loop's one exit test, once per batched attempt
                break
            if attempts >= self.max_attempts:
                raise SamplingError(
                    f"{self.name}: {int((~done).sum())} of {batch} samples unfinished after {attempts} attempts; "  # sync-ok: error path
                    "loosen atol/rtol or raise max_attempts"
                )
        return AdaptiveSDEResult(
            x=x, nfe=2 * attempts, nfe_per_sample=nfe_per_sample, accepted=accepted, rejected=rejected, attempts=attempts
        )

    def solve(
        self, field: Field, x: Tensor, grid: Tensor, *, generator: RandomSource | BrownianPath = None,
        return_trajectory: bool = False, progress: bool = False,
    ) -> SolveResult:
        if return_trajectory:
            raise ValueError(f"{self.name} gives every sample its own times, so it has no trajectory on a grid; "
                             "use a fixed-step solver for trajectories")
        result = self.solve_detailed(field, x, grid, generator=generator)
        return SolveResult(x=result.x, nfe=result.nfe)
