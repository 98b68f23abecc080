"""The ensemble Kalman updates against direct per-member formulas."""

from __future__ import annotations

import pytest
import torch

from flowbridge.inverse.samplers.kalman import ensemble_kalman_shift, localized_kalman_shift


def _members(m: int = 2, offset: float = 5.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """3 groups of 7 members in 4 dimensions and a nonlinear map to ``m`` dimensions (m >= 7: the P x P branch)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 7, 4, generator=g, dtype=torch.float64)
    mix = torch.randn(4, m, generator=g, dtype=torch.float64)
    values = torch.tanh(x @ mix) * 2 + x[..., :1] ** 2 + offset
    y = offset + torch.randn(m, generator=g, dtype=torch.float64)
    return x, values, y


def _reference(x: torch.Tensor, values: torch.Tensor, y: torch.Tensor, gamma: float, bandwidth: float) -> torch.Tensor:
    """delta_j = C_xG,j (C_GG,j + gamma I)^-1 (y - G_j) with kernel-weighted moments, member by member."""
    out = torch.empty_like(x)
    p = x.shape[1]
    for a in range(x.shape[0]):
        d2 = torch.cdist(x[a], x[a]) ** 2
        scale2 = d2[~torch.eye(p, dtype=torch.bool)].median()
        w = torch.softmax(-d2 / (2 * bandwidth**2 * scale2), -1)
        for j in range(p):
            dx, dg = x[a] - w[j] @ x[a], values[a] - w[j] @ values[a]
            c_xg, c_gg = (dx.T * w[j]) @ dg, (dg.T * w[j]) @ dg
            out[a, j] = c_xg @ torch.linalg.solve(c_gg + gamma * torch.eye(c_gg.shape[0], dtype=x.dtype), y - values[a, j])
    return out


@pytest.mark.parametrize("m", [1, 2, 9])
@pytest.mark.parametrize("bandwidth", [0.3, 1.0, 3.0])
def test_localized_shift_matches_the_weighted_moment_formula(bandwidth: float, m: int) -> None:
    x, values, y = _members(m)
    torch.testing.assert_close(localized_kalman_shift(x, values, y, 0.3, bandwidth), _reference(x, values, y, 0.3, bandwidth),
                               rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("m", [2, 9])
def test_wide_kernel_recovers_the_global_update(m: int) -> None:
    """Uniform weights normalise by P where the global update uses P - 1: gamma rescales by P / (P - 1)."""
    x, values, y = _members(m)
    p = x.shape[1]
    torch.testing.assert_close(localized_kalman_shift(x, values, y, 0.3, 1e6),
                               ensemble_kalman_shift(x, values, y, 0.3 * p / (p - 1)), rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("m", [2, 9])
def test_localized_shift_is_accurate_in_float32_for_offset_forward_values(m: int) -> None:
    """Gram sums of uncentred values would cancel catastrophically at an offset of 1e3 in float32."""
    x, values, y = _members(m, offset=1e3)
    exact = localized_kalman_shift(x, values, y, 0.3, 1.0)
    single = localized_kalman_shift(x.float(), values.float(), y.float(), 0.3, 1.0)
    assert (single.double() - exact).abs().max() < 1e-3 * exact.abs().max()
