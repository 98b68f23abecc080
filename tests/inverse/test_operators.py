"""Operators: adjointness, SVDs against the forward map, CG, pseudo-inverse, Lambda."""

from __future__ import annotations

import pytest
import torch

from flowbridge.inverse import Blur, Downsample, Inpainting, Lambda, MatrixOperator, adjointness_test
from flowbridge.inverse.operators import LinearOperator


def _operators() -> list[LinearOperator]:
    g = torch.Generator().manual_seed(0)
    wide = torch.randn(3, 7, generator=g, dtype=torch.float64)
    low_rank = torch.randn(6, 2, generator=g, dtype=torch.float64) @ torch.randn(2, 5, generator=g, dtype=torch.float64)
    mask = torch.rand(2, 6, 6, generator=g) > 0.5
    kernel = torch.rand(3, 3, generator=g, dtype=torch.float64)  # not symmetric: U differs from V
    return [
        MatrixOperator(wide),
        MatrixOperator(low_rank),
        MatrixOperator(torch.randn(9, 4, generator=g, dtype=torch.float64)),
        Inpainting(mask),
        Blur(kernel, (2, 6, 5)),
        Blur.gaussian(1.0, 3, (8, 8)),
        Downsample(2, (2, 6, 4)),
    ]


@pytest.mark.parametrize("op", _operators(), ids=lambda o: repr(o))
def test_adjoint_and_svd_reproduce_the_operator(op: LinearOperator) -> None:
    g = torch.Generator().manual_seed(1)
    report = adjointness_test(op, generator=g)
    assert report.passed, report
    dec = op.svd()
    x = torch.randn(5, *op.input_shape, generator=g, dtype=torch.float64)
    z = dec.vt(x)
    assert z.shape == (5, op.input_dim)
    # V is orthogonal: an isometry with v its inverse.
    torch.testing.assert_close(z.norm(dim=1), x.reshape(5, -1).norm(dim=1))
    torch.testing.assert_close(dec.v(z), x)
    # A x = U diag(s) V^T x and U^T A x = s * V^T x (aligned spectral coordinates).
    s = dec.s.to(x)
    torch.testing.assert_close(dec.u(s * z), op.forward(x))
    torch.testing.assert_close(dec.ut(op.forward(x)) * dec.mask, s * z)
    # Rank: the number of non-zero singular values equals the matrix rank of the operator.
    dense = op.forward(torch.eye(op.input_dim, dtype=torch.float64).reshape(-1, *op.input_shape)).reshape(op.input_dim, -1)
    assert dec.rank == int(torch.linalg.matrix_rank(dense))


def test_blur_matches_direct_circular_convolution() -> None:
    g = torch.Generator().manual_seed(2)
    kernel = torch.rand(3, 3, generator=g, dtype=torch.float64)
    op = Blur(kernel, (5, 6))
    x = torch.randn(2, 5, 6, generator=g, dtype=torch.float64)
    direct = torch.zeros_like(x)
    for a in range(3):
        for b in range(3):
            direct += kernel[a, b] * torch.roll(x, shifts=(a - 1, b - 1), dims=(1, 2))
    torch.testing.assert_close(op.forward(x), direct)


def test_normal_solve_and_pinv_match_dense_linear_algebra() -> None:
    g = torch.Generator().manual_seed(3)
    a = torch.randn(4, 6, generator=g, dtype=torch.float64)
    op = MatrixOperator(a)
    rhs = torch.randn(3, 6, generator=g, dtype=torch.float64)
    exact = torch.linalg.solve(torch.eye(6, dtype=torch.float64) + 0.7 * a.T @ a, rhs.T).T
    torch.testing.assert_close(op.normal_solve(rhs, 0.7, iterations=6), exact)  # CG is exact in rank+1 steps
    assert (op.normal_solve(rhs, 0.7, iterations=2) - exact).abs().max() > 1e-6  # and not before
    y = torch.randn(3, 4, generator=g, dtype=torch.float64)
    torch.testing.assert_close(op.pinv(y), y @ torch.linalg.pinv(a).T)


def test_lambda_operator_and_vjp() -> None:
    op = Lambda(lambda x: (x**2).sum(-1, keepdim=True), input_shape=(3,))
    assert op.output_shape == (1,)
    x = torch.tensor([[1.0, 2.0, 3.0]])
    torch.testing.assert_close(op.vjp(x, torch.ones(1, 1)), 2 * x)
    black_box = Lambda(lambda x: (x**2).sum(-1, keepdim=True), input_shape=(3,), differentiable=False)
    assert not black_box.forward(x.requires_grad_(True)).requires_grad
    with pytest.raises(TypeError, match="not differentiable"):
        black_box.vjp(x, torch.ones(1, 1))


def test_operator_input_validation() -> None:
    with pytest.raises(ValueError, match="shape"):
        MatrixOperator(torch.randn(2, 3)).forward(torch.randn(4, 5))
    with pytest.raises(TypeError, match="boolean"):
        Inpainting(torch.ones(3))
    with pytest.raises(ValueError, match="multiples"):
        Downsample(3, (4, 4))
