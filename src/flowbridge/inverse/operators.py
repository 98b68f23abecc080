r"""Forward operators :math:`y = A(x)` of inverse problems.

An :class:`Operator` needs only a batched :meth:`~Operator.forward` ``(B, *input_shape) ->
(B, *output_shape)``. Everything else is optional and declared, so that a posterior sampler can check
what it needs before doing any work:

* ``differentiable``: :meth:`~Operator.vjp` through autograd (``False`` for black boxes evaluated
  under ``no_grad`` or non-differentiable maps);
* ``linear``: :class:`LinearOperator` adds :meth:`~LinearOperator.adjoint`, the conjugate-gradient
  :meth:`~LinearOperator.normal_solve` of :math:`(I + \gamma A^T A) x = r` and, where the operator
  knows it, a :class:`SpectralDecomposition` (its SVD) and with it :meth:`~LinearOperator.pinv`.

The SVD is represented by functions rather than matrices so that structured operators (blur through
the FFT, inpainting masks, block averaging) never build a dense matrix: ``vt`` maps ``x`` to
:math:`n` orthonormal spectral coordinates, ``ut`` maps ``y`` to the same :math:`n` coordinates
(aligned with ``vt``: :math:`(U^T A x)_i = s_i (V^T x)_i`), ``s`` holds the :math:`n` singular values
(zero off the range) and ``mask = s > 0``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from flowbridge.errors import ArgumentError
from flowbridge._utils import check_state


@dataclass(frozen=True)
class SpectralDecomposition:
    r"""An SVD :math:`A = U \operatorname{diag}(s) V^T` in aligned spectral coordinates.

    Attributes:
        s: (n,) singular values in spectral order, zero where :math:`A` has no range.
        vt: ``x (B, *input_shape) -> (B, n)``, orthonormal (:math:`V^T`).
        v: ``z (B, n) -> (B, *input_shape)``, its inverse (:math:`V`).
        ut: ``y (B, *output_shape) -> (B, n)``, :math:`U^T y` aligned with ``vt`` (entries where
            ``mask`` is false are zero).
        u: ``z (B, n) -> (B, *output_shape)``, the inverse of ``ut`` on the range (entries where
            ``mask`` is false are ignored).
    """

    s: Tensor
    vt: Callable[[Tensor], Tensor]
    v: Callable[[Tensor], Tensor]
    ut: Callable[[Tensor], Tensor]
    u: Callable[[Tensor], Tensor]

    @property
    def mask(self) -> Tensor:
        """(n,) bool: the spectral coordinates that the observation sees."""
        return self.s > 0

    @property
    def rank(self) -> int:
        return int(self.mask.sum())  # sync-ok: called once when a sampler is set up


class Operator:
    r"""A batched forward model :math:`x \mapsto A(x)`.

    Subclasses implement :meth:`forward`; ``input_shape`` and ``output_shape`` (without the batch
    dimension) are used to validate observations.

    Attributes:
        differentiable: whether :meth:`vjp` (autograd through :meth:`forward`) is available.
        linear: whether the operator is linear (then it is a :class:`LinearOperator`).
    """

    differentiable: bool = True
    linear: bool = False

    def __init__(self, input_shape: tuple[int, ...], output_shape: tuple[int, ...]) -> None:
        self.input_shape = tuple(int(s) for s in input_shape)
        self.output_shape = tuple(int(s) for s in output_shape)

    @property
    def input_dim(self) -> int:
        return math.prod(self.input_shape)

    @property
    def output_dim(self) -> int:
        return math.prod(self.output_shape)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, *input_shape) -> (B, *output_shape)``."""
        raise NotImplementedError

    def __call__(self, x: Tensor) -> Tensor:
        return self.forward(x)

    def check_input(self, x: Tensor, name: str = "x") -> None:
        """Raises ValueError unless ``x`` has shape ``(B, *input_shape)`` (TypeError unless it is a
        floating-point tensor)."""
        check_state(x, name)
        if tuple(x.shape[1:]) != self.input_shape:
            raise ArgumentError(
                f"{name} must have shape (B, {', '.join(map(str, self.input_shape))}) for "
                f"{type(self).__name__}; got {tuple(x.shape)}"
            )

    def vjp(self, x: Tensor, cotangent: Tensor) -> Tensor:
        r"""Vector-Jacobian product :math:`J_A(x)^T c` through autograd (one operator call).

        Raises:
            TypeError: if the operator is not differentiable.
        """
        if not self.differentiable:
            raise ArgumentError(
                f"{type(self).__name__} is not differentiable (differentiable=False): no vjp; use a "
                "derivative-free posterior sampler (enkg, ensemble, daps with mcmc='metropolis')"
            )
        with torch.enable_grad():
            xx = x.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(self.forward(xx), xx, cotangent)
        return grad

    @property
    def has_svd(self) -> bool:
        return False

    @property
    def has_adjoint(self) -> bool:
        return False

    def __repr__(self) -> str:
        return f"{type(self).__name__}(input_shape={self.input_shape}, output_shape={self.output_shape})"


class LinearOperator(Operator):
    r"""A linear operator: adds :meth:`adjoint`, :meth:`normal_solve`, optional :meth:`svd` and :meth:`pinv`."""

    linear = True

    def adjoint(self, y: Tensor) -> Tensor:
        """:math:`A^T y`, ``(B, *output_shape) -> (B, *input_shape)``."""
        raise NotImplementedError

    @property
    def has_adjoint(self) -> bool:
        return True

    def svd(self) -> SpectralDecomposition:
        """The operator's SVD; raises TypeError where it is not known."""
        raise ArgumentError(
            f"{type(self).__name__} does not provide an SVD; samplers that need one (ddrm, mcgdiff, pigdm) "
            "cannot run on it; use dds (conjugate gradients), dps or tds instead"
        )

    @property
    def has_svd(self) -> bool:
        return type(self).svd is not LinearOperator.svd

    def vjp(self, x: Tensor, cotangent: Tensor) -> Tensor:
        return self.adjoint(cotangent)

    def pinv(self, y: Tensor, rcond: float = 1e-6) -> Tensor:
        r"""Moore–Penrose pseudo-inverse :math:`A^+ y = V \operatorname{diag}(1/s) U^T y` (needs the SVD).

        Singular values below ``rcond * max(s)`` are treated as zero.
        """
        dec = self.svd()
        s = dec.s.to(y)
        keep = s > rcond * s.max()
        inv = torch.where(keep, 1.0 / torch.where(keep, s, torch.ones_like(s)), torch.zeros_like(s))
        return dec.v(dec.ut(y) * inv)

    def normal_solve(self, rhs: Tensor, gamma: float, *, x_init: Tensor | None = None, iterations: int = 20) -> Tensor:
        r"""Solves :math:`(I + \gamma A^T A)\,x = r` by ``iterations`` conjugate-gradient steps per sample.

        The matrix is symmetric positive definite for :math:`\gamma \ge 0`. The iteration count is
        fixed (no tensor-valued stopping test), so the loop has no host synchronisation; each sample
        has its own step sizes, so samples never influence each other.

        Args:
            rhs: (B, *input_shape) right-hand sides :math:`r`.
            gamma: :math:`\gamma \ge 0`.
            x_init: the starting point (``rhs`` when ``None``); DDS starts at the Tweedie estimate.
            iterations: number of CG steps.
        """
        if gamma < 0:
            raise ArgumentError(f"gamma must be >= 0; got {gamma}")
        return conjugate_gradient(lambda v: v + gamma * self.adjoint(self.forward(v)), rhs, x_init, iterations)


def _batch_dot(a: Tensor, b: Tensor) -> Tensor:
    # An explicit width rather than -1, which is ambiguous for an empty batch.
    return (a * b).reshape(a.shape[0], math.prod(a.shape[1:])).sum(1).reshape(-1, *([1] * (a.ndim - 1)))


def conjugate_gradient(
    matvec: Callable[[Tensor], Tensor], rhs: Tensor, x_init: Tensor | None, iterations: int
) -> Tensor:
    r"""Batched conjugate gradients for a symmetric positive definite ``matvec``, fixed iteration count.

    Each sample carries its own :math:`\alpha_k, \beta_k`; a converged sample (zero residual) stays
    put because the divisions are guarded rather than branched on.
    """
    check_state(rhs, "rhs")
    if x_init is not None:
        check_state(x_init, "x_init")
        if x_init.shape != rhs.shape:
            raise ArgumentError(f"x_init must have the shape of rhs {tuple(rhs.shape)}; got {tuple(x_init.shape)}")
    if not isinstance(iterations, int) or isinstance(iterations, bool) or iterations < 0:
        raise ArgumentError(f"iterations must be a non-negative integer; got {iterations!r}")
    x = rhs.clone() if x_init is None else x_init.clone()
    r = rhs - matvec(x)
    p = r
    rr = _batch_dot(r, r)
    tiny = torch.finfo(rhs.dtype).tiny
    for _ in range(iterations):
        ap = matvec(p)
        step = rr / _batch_dot(p, ap).clamp_min(tiny)
        x = x + step * p
        r = r - step * ap
        rr_new = _batch_dot(r, r)
        p = r + (rr_new / rr.clamp_min(tiny)) * p
        rr = rr_new
    return x


class Lambda(Operator):
    """Any batched callable as a forward model, possibly nonlinear and non-differentiable.

    Args:
        fn: ``(B, *input_shape) -> (B, *output_shape)``.
        input_shape: the shape of one unknown (no batch dimension).
        output_shape: the shape of one observation; inferred by one call of ``fn`` on zeros if omitted.
        differentiable: set ``False`` for black boxes (evaluated under ``no_grad``, non-smooth, or
            external code): samplers that need gradients then refuse to run.

    Example:
        >>> op = Lambda(lambda x: (x ** 2).sum(-1, keepdim=True), input_shape=(2,), differentiable=False)
    """

    def __init__(
        self,
        fn: Callable[[Tensor], Tensor],
        input_shape: tuple[int, ...],
        output_shape: tuple[int, ...] | None = None,
        *,
        differentiable: bool = True,
    ) -> None:
        if not callable(fn):
            raise ArgumentError(f"fn must be callable; got {type(fn).__name__}")
        if output_shape is None:
            probe = fn(torch.zeros((1, *input_shape)))
            output_shape = tuple(probe.shape[1:])
        super().__init__(input_shape, output_shape)
        self.fn = fn
        self.differentiable = differentiable

    def forward(self, x: Tensor) -> Tensor:
        self.check_input(x)
        if self.differentiable:
            return self.fn(x)
        # A black box: gradients must never be asked of it, so it runs detached.
        with torch.no_grad():
            return self.fn(x.detach())


@dataclass(frozen=True)
class AdjointnessReport:
    r"""Result of :func:`adjointness_test`: :math:`|\langle Ax, y\rangle - \langle x, A^T y\rangle|` relative
    to :math:`\|Ax\|\|y\|`, largest over the draws."""

    relative_error: float
    passed: bool


def adjointness_test(
    operator: LinearOperator, *, trials: int = 8, tol: float | None = None, generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
) -> AdjointnessReport:
    r"""Checks :math:`\langle A x, y \rangle = \langle x, A^T y\rangle` on random ``x``, ``y``.

    Args:
        operator: a linear operator.
        trials: number of random pairs (one batch).
        tol: pass threshold on the relative error (``1e3 * eps`` of ``dtype`` by default).
        generator: randomness for the draws.
        dtype: precision of the test.
    """
    if not isinstance(operator, LinearOperator):
        raise ArgumentError(f"operator must be a LinearOperator; got {type(operator).__name__}")
    from flowbridge.random import randn

    x = randn((trials, *operator.input_shape), generator=generator, dtype=dtype)
    y = randn((trials, *operator.output_shape), generator=generator, dtype=dtype)
    ax = operator.forward(x)
    aty = operator.adjoint(y)
    lhs = (ax * y).reshape(trials, -1).sum(1)
    rhs = (x * aty).reshape(trials, -1).sum(1)
    scale = ax.reshape(trials, -1).norm(dim=1) * y.reshape(trials, -1).norm(dim=1) + torch.finfo(dtype).tiny
    err = float(((lhs - rhs).abs() / scale).max())  # sync-ok: a one-off test
    tol = 1e3 * torch.finfo(dtype).eps if tol is None else tol
    return AdjointnessReport(relative_error=err, passed=err <= tol)
