"""Tests for flowbridge.metrics: distances, noise floor and effective sample size."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
import torch
from torch import Tensor

import flowbridge.metrics.distances as distances_module
from flowbridge.metrics import (
    NoiseFloor,
    effective_sample_size,
    energy_distance,
    mmd,
    noise_floor,
    sliced_wasserstein,
    wasserstein2,
)


def gaussian(
    n: int, d: int = 2, *, shift: float = 0.0, seed: int = 0, dtype: torch.dtype = torch.float64
) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=dtype) + shift


def sample_standard_normal(n: int, *, generator: torch.Generator | None = None) -> Tensor:
    return torch.randn(n, 2, generator=generator, dtype=torch.float64)


# ---------------------------------------------------------------------------------------------
# sliced Wasserstein
# ---------------------------------------------------------------------------------------------


def test_sliced_wasserstein_small_for_same_distribution_and_closed_form_for_shift() -> None:
    d = 2
    x = gaussian(4000, d, seed=0)
    same = gaussian(4000, d, seed=1)
    shifted = gaussian(4000, d, shift=3.0, seed=2)
    g = torch.Generator().manual_seed(0)
    sw_same = sliced_wasserstein(x, same, n_projections=1000, generator=g)
    sw_shift = sliced_wasserstein(x, shifted, n_projections=1000, generator=g)
    # Equal covariances: SW_2^2 = |dmu|^2 E[(theta.u)^2] = |dmu|^2 / d, here 18 / 2 = 9.
    expected = math.sqrt(18.0 / d)
    assert sw_shift.ndim == 0
    assert abs(sw_shift.item() - expected) < 0.1 * expected
    assert sw_same.item() < 0.05 * expected


def test_sliced_wasserstein_reproducible_with_generator() -> None:
    x, y = gaussian(300, 5, seed=0), gaussian(300, 5, shift=0.5, seed=1)
    a = sliced_wasserstein(x, y, n_projections=16, generator=torch.Generator().manual_seed(7))
    b = sliced_wasserstein(x, y, n_projections=16, generator=torch.Generator().manual_seed(7))
    c = sliced_wasserstein(x, y, n_projections=16, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_sliced_wasserstein_given_projections_are_deterministic_and_normalised() -> None:
    x, y = gaussian(100, 3, seed=0), gaussian(100, 3, shift=1.0, seed=1)
    theta = torch.randn(8, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    a = sliced_wasserstein(x, y, projections=theta)
    b = sliced_wasserstein(x, y, projections=5.0 * theta, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(a, b)


def test_sliced_wasserstein_unequal_sizes_match_hazen_quantiles_and_closed_form() -> None:
    x = gaussian(37, 1, seed=0)
    y = gaussian(23, 1, shift=0.3, seed=1)
    # The quantile grid is t_k = (k + 1/2)/K with the "hazen" interpolation rule (position n t - 1/2).
    k = 37
    levels = (np.arange(k) + 0.5) / k
    qx = np.quantile(x.numpy()[:, 0], levels, method="hazen")
    qy = np.quantile(y.numpy()[:, 0], levels, method="hazen")
    expected = math.sqrt(np.mean((qx - qy) ** 2))
    got = sliced_wasserstein(x, y, projections=torch.ones(1, 1, dtype=torch.float64))
    assert got.item() == pytest.approx(expected, rel=1e-10)
    # Swapping the arguments interpolates the other sample instead; the value must not change.
    got_swapped = sliced_wasserstein(y, x, projections=torch.ones(1, 1, dtype=torch.float64))
    assert got_swapped.item() == pytest.approx(expected, rel=1e-10)

    big = gaussian(3000, 2, seed=3)
    small = gaussian(1700, 2, shift=3.0, seed=4)
    sw = sliced_wasserstein(big, small, n_projections=1000, generator=torch.Generator().manual_seed(0))
    assert abs(sw.item() - 3.0) < 0.3


def test_sliced_wasserstein_p1_and_dtype_follow_inputs() -> None:
    x = gaussian(50, 1, seed=0, dtype=torch.float32)
    y = gaussian(50, 1, seed=1, dtype=torch.float32)
    got = sliced_wasserstein(x, y, p=1, projections=torch.ones(1, 1))
    expected = (x.sort(0).values - y.sort(0).values).abs().mean()
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, expected)


def test_sliced_wasserstein_is_differentiable() -> None:
    x = gaussian(64, 3, seed=0).requires_grad_()
    y = gaussian(64, 3, shift=1.0, seed=1)
    sliced_wasserstein(x, y, n_projections=8, generator=torch.Generator().manual_seed(0)).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_sliced_wasserstein_same_directions_on_cuda() -> None:
    x, y = gaussian(200, 4, seed=0), gaussian(200, 4, shift=1.0, seed=1)
    cpu = sliced_wasserstein(x, y, n_projections=32, generator=torch.Generator().manual_seed(3))
    gpu = sliced_wasserstein(x.cuda(), y.cuda(), n_projections=32, generator=torch.Generator().manual_seed(3))
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu)


# ---------------------------------------------------------------------------------------------
# exact W2
# ---------------------------------------------------------------------------------------------


def test_wasserstein2_of_shifted_gaussians_is_shift_norm() -> None:
    m = torch.tensor([3.0, -1.5], dtype=torch.float64)
    x = gaussian(1500, 2, seed=0)
    y = gaussian(1500, 2, seed=1) + m
    w = wasserstein2(x, y)
    assert w.ndim == 0 and w.dtype == torch.float64
    assert w.item() == pytest.approx(m.norm().item(), rel=0.03)


def test_wasserstein2_in_one_dimension_matches_sorted_samples() -> None:
    x = gaussian(200, 1, seed=0)
    y = 2.0 * gaussian(200, 1, seed=1) + 0.7
    exact = torch.sqrt(((x.sort(0).values - y.sort(0).values) ** 2).mean())
    assert wasserstein2(x, y).item() == pytest.approx(exact.item(), rel=1e-8)
    # SW along the only direction is the same 1-D W2.
    sw = sliced_wasserstein(x, y, projections=torch.ones(1, 1, dtype=torch.float64))
    assert sw.item() == pytest.approx(exact.item(), rel=1e-10)


def test_wasserstein2_limits_and_non_convergence() -> None:
    x, y = gaussian(30, 2, seed=0), gaussian(40, 2, seed=1)
    with pytest.raises(ValueError, match="y has 40 points, more than max_points=35"):
        wasserstein2(x, y, max_points=35)
    with pytest.raises(RuntimeError, match="optimality"):
        wasserstein2(gaussian(100, 2, seed=0), gaussian(100, 2, seed=1), num_itermax=2)


# ---------------------------------------------------------------------------------------------
# MMD and energy distance
# ---------------------------------------------------------------------------------------------


def brute_force_mmd(x: Tensor, y: Tensor, bandwidths: list[float]) -> float:
    def k(a: Tensor, b: Tensor) -> float:
        sq = float(((a - b) ** 2).sum())
        return sum(math.exp(-sq / (2 * h * h)) for h in bandwidths)

    n, m = len(x), len(y)
    kxx = sum(k(x[i], x[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    kyy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    kxy = sum(k(x[i], y[j]) for i in range(n) for j in range(m)) / (n * m)
    return kxx + kyy - 2 * kxy


def brute_force_energy(x: Tensor, y: Tensor) -> float:
    def dist(a: Tensor, b: Tensor) -> float:
        return float(((a - b) ** 2).sum().sqrt())

    n, m = len(x), len(y)
    dxy = sum(dist(x[i], y[j]) for i in range(n) for j in range(m)) / (n * m)
    dxx = sum(dist(x[i], x[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    dyy = sum(dist(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    return 2 * dxy - dxx - dyy


@pytest.mark.parametrize("chunk", [None, 7])
def test_mmd_and_energy_match_brute_force_on_tiny_inputs(
    chunk: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    if chunk is not None:
        # Forces blocks of one row, so the block-wise diagonal exclusion is exercised.
        monkeypatch.setattr(distances_module, "_MAX_CHUNK_ELEMENTS", chunk)
    x = gaussian(5, 3, seed=0)
    y = gaussian(7, 3, shift=0.4, seed=1)
    bw = [0.5, 1.0, 3.0]
    assert mmd(x, y, bandwidths=bw).item() == pytest.approx(brute_force_mmd(x, y, bw), rel=1e-9, abs=1e-12)
    assert energy_distance(x, y).item() == pytest.approx(brute_force_energy(x, y), rel=1e-9, abs=1e-12)


def test_mmd_default_bandwidths_use_median_heuristic() -> None:
    x, y = gaussian(40, 2, seed=0), gaussian(30, 2, shift=0.5, seed=1)
    pooled = torch.cat([x, y])
    med = torch.pdist(pooled).median().item()
    expected = brute_force_mmd(x, y, [med * s for s in (0.25, 0.5, 1.0, 2.0, 4.0)])
    assert mmd(x, y).item() == pytest.approx(expected, rel=1e-9)


def test_mmd_near_zero_for_same_distribution_and_positive_for_shift() -> None:
    x = gaussian(1500, 2, seed=0)
    same = gaussian(1500, 2, seed=1)
    shifted = gaussian(1500, 2, shift=1.0, seed=2)
    m_same, m_shift = mmd(x, same), mmd(x, shifted)
    assert m_shift.item() > 0
    assert abs(m_same.item()) < 0.02 * m_shift.item()


def test_energy_distance_nonnegative_for_distinct_and_small_for_same() -> None:
    x = gaussian(1500, 2, seed=0)
    e_same = energy_distance(x, gaussian(1500, 2, seed=1))
    e_shift = energy_distance(x, gaussian(1200, 2, shift=1.0, seed=2))
    assert e_shift.item() >= 0
    assert abs(e_same.item()) < 0.02 * e_shift.item()
    torch.testing.assert_close(energy_distance(x[:50], x[50:90]), energy_distance(x[50:90], x[:50]))


def test_kernel_metrics_have_finite_gradients_with_duplicate_points() -> None:
    x = gaussian(30, 3, seed=0).requires_grad_()
    y = torch.cat([x[:5].detach(), gaussian(25, 3, seed=1)]).requires_grad_()
    for metric in (mmd, energy_distance):
        gx, gy = torch.autograd.grad(metric(x, y), (x, y))
        assert torch.isfinite(gx).all() and torch.isfinite(gy).all()


def test_pairwise_blocks_stay_within_memory_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[int] = []
    real_cdist = torch.cdist

    def recording_cdist(a: Tensor, b: Tensor, *args: object, **kwargs: object) -> Tensor:
        out = real_cdist(a, b, *args, **kwargs)
        seen.append(out.numel() * out.element_size())
        return out

    monkeypatch.setattr(distances_module.torch, "cdist", recording_cdist)
    x, y = gaussian(10000, 2, seed=0), gaussian(10000, 2, seed=1)
    total = distances_module._pairwise_sum(x, y, lambda dist: dist, exclude_diagonal=False)
    assert total.item() > 0
    # Kernels create a few block-sized temporaries; each block must leave room for them in ~200 MB.
    assert len(seen) > 1 and max(seen) <= 20 * 2**20


# ---------------------------------------------------------------------------------------------
# input validation
# ---------------------------------------------------------------------------------------------

METRICS: list[Callable[..., Tensor]] = [sliced_wasserstein, wasserstein2, mmd, energy_distance]


def _with_nan(t: Tensor) -> Tensor:
    t = t.clone()
    t[3, 1] = float("nan")
    return t


@pytest.mark.parametrize("metric", METRICS, ids=lambda f: f.__name__)
@pytest.mark.parametrize(
    ("make_x", "make_y", "name", "fragment"),
    [
        (lambda: _with_nan(gaussian(10)), lambda: gaussian(10), "x", "finite"),
        (lambda: gaussian(10), lambda: _with_nan(gaussian(10)), "y", "finite"),
        (lambda: gaussian(10, 2), lambda: gaussian(10, 3), "y", "trailing dimensions"),
        (lambda: gaussian(1), lambda: gaussian(10), "x", "at least 2 points"),
        (lambda: gaussian(10), lambda: gaussian(1), "y", "at least 2 points"),
        (lambda: torch.ones(10, 2, dtype=torch.int64), lambda: gaussian(10), "x", "floating dtype"),
        (lambda: gaussian(10), lambda: torch.ones(10, 2, dtype=torch.int32), "y", "floating dtype"),
    ],
)
def test_bad_inputs_raise_value_error_naming_the_argument(
    metric: Callable[..., Tensor],
    make_x: Callable[[], Tensor],
    make_y: Callable[[], Tensor],
    name: str,
    fragment: str,
) -> None:
    with pytest.raises(ValueError, match=rf"^{name} .*{fragment}"):
        metric(make_x(), make_y())


def test_bad_metric_options_raise() -> None:
    x, y = gaussian(10), gaussian(10)
    with pytest.raises(ValueError, match="p must"):
        sliced_wasserstein(x, y, p=0.5)
    with pytest.raises(ValueError, match="projections must have shape"):
        sliced_wasserstein(x, y, projections=torch.ones(4, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="bandwidths"):
        mmd(x, y, bandwidths=[1.0, -1.0])


# ---------------------------------------------------------------------------------------------
# effective sample size
# ---------------------------------------------------------------------------------------------


def test_ess_uniform_one_hot_and_batched() -> None:
    n = 17
    uniform = torch.full((3, n), -4.2, dtype=torch.float64)
    expected_uniform = torch.full((3,), float(n), dtype=torch.float64)
    torch.testing.assert_close(effective_sample_size(uniform), expected_uniform)
    one_hot = torch.full((n,), -math.inf)
    one_hot[5] = 0.0
    assert effective_sample_size(one_hot).item() == pytest.approx(1.0)
    lw = torch.randn(4, n, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    w = lw.exp()
    expected = w.sum(1) ** 2 / (w**2).sum(1)
    torch.testing.assert_close(effective_sample_size(lw, dim=1), expected)
    # Log-weights far outside the exponent range: naive exp overflows, logsumexp does not.
    torch.testing.assert_close(effective_sample_size(lw + 1e4, dim=1), expected)
    with pytest.raises(ValueError, match="log_weights"):
        effective_sample_size(torch.ones(3, dtype=torch.int64))


# ---------------------------------------------------------------------------------------------
# noise floor
# ---------------------------------------------------------------------------------------------


def test_noise_floor_positive_and_true_model_within_one_and_a_half() -> None:
    n = 1000
    floor = noise_floor(
        sliced_wasserstein, sample_standard_normal, n, repeats=5,
        generator=torch.Generator().manual_seed(0), n_projections=128,
    )
    assert isinstance(floor, NoiseFloor)
    assert floor.mean > 0 and floor.std >= 0 and len(floor.values) == 5
    assert floor.mean == pytest.approx(float(np.mean(floor.values)))

    g = torch.Generator().manual_seed(123)
    truth = sample_standard_normal(n, generator=g)
    good_model = sample_standard_normal(n, generator=g)
    bad_model = sample_standard_normal(n, generator=g) + 0.3
    assert floor.ratio(sliced_wasserstein(good_model, truth, n_projections=128, generator=g)) <= 1.5
    assert floor.ratio(sliced_wasserstein(bad_model, truth, n_projections=128, generator=g)) > 1.5


def test_noise_floor_reproducible_and_forwards_generator_only_when_accepted() -> None:
    def make() -> NoiseFloor:
        return noise_floor(
            sliced_wasserstein, sample_standard_normal, 200, repeats=3,
            generator=torch.Generator().manual_seed(5), n_projections=16,
        )

    assert make() == make()
    # energy_distance takes no generator; passing one would be a TypeError.
    floor = noise_floor(
        energy_distance, sample_standard_normal, 200, repeats=2, generator=torch.Generator().manual_seed(0)
    )
    assert len(floor.values) == 2
    with pytest.raises(ValueError, match="mean is 0"):
        NoiseFloor(mean=0.0, std=0.0, values=(0.0,)).ratio(1.0)
    with pytest.raises(ValueError, match="n must"):
        noise_floor(energy_distance, sample_standard_normal, 1)
