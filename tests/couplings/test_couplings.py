"""Couplings against exact answers: brute-force optimal permutations, plan marginals, seeded draws."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from flowbridge.couplings import CouplingError, IndependentCoupling, MinibatchOTCoupling, PairedCoupling


def _cost(x0: torch.Tensor, x1: torch.Tensor) -> float:
    return float(((x0 - x1) ** 2).sum())


def test_exact_ot_finds_the_optimal_permutation_by_brute_force() -> None:
    g = torch.Generator().manual_seed(0)
    x0, x1 = torch.randn(7, 3, generator=g), torch.randn(7, 3, generator=g)
    best = min(_cost(x0[list(p)], x1) for p in itertools.permutations(range(7)))
    pair = MinibatchOTCoupling("exact")(x0, x1, generator=torch.Generator().manual_seed(1))
    assert sorted(pair.source_index.tolist()) == list(range(7))  # a permutation: each source once
    assert _cost(pair.x0, pair.x1) == pytest.approx(best, rel=1e-6)
    assert torch.equal(pair.x1, x1)  # targets (and their labels) keep their order


def test_exact_ot_in_one_dimension_is_the_monotone_matching() -> None:
    g = torch.Generator().manual_seed(2)
    x0, x1 = torch.randn(64, 1, generator=g), torch.randn(64, 1, generator=g) * 2 + 1
    pair = MinibatchOTCoupling("exact")(x0, x1, generator=torch.Generator().manual_seed(0))
    # The quantile coupling: the k-th smallest source goes with the k-th smallest target.
    assert torch.equal(torch.sort(pair.x0[:, 0]).indices, torch.sort(x1[:, 0]).indices)


def test_sinkhorn_interpolates_between_exact_and_independent() -> None:
    g = torch.Generator().manual_seed(3)
    x0, x1 = torch.randn(32, 2, generator=g), torch.randn(32, 2, generator=g) + 3
    exact_plan = MinibatchOTCoupling("exact").plan(x0, x1)
    cost = ((x0[:, None] - x1[None]) ** 2).sum(-1).double().numpy()
    sharp = MinibatchOTCoupling("sinkhorn", reg=1e-3).plan(x0, x1)
    blurred = MinibatchOTCoupling("sinkhorn", reg=100.0).plan(x0, x1)
    exact_cost, sharp_cost, blurred_cost = (float((p * cost).sum()) for p in (exact_plan, sharp, blurred))
    independent_cost = float(cost.mean())
    assert exact_cost <= sharp_cost <= exact_cost * 1.02
    assert blurred_cost == pytest.approx(independent_cost, rel=1e-3)
    np.testing.assert_allclose(sharp.sum(0), np.full(32, 1 / 32), atol=1e-6)  # target marginal uniform


def test_sinkhorn_draws_follow_the_plan_and_ignore_numpy_global_rng() -> None:
    g = torch.Generator().manual_seed(4)
    x0, x1 = torch.randn(4, 2, generator=g), torch.randn(4, 2, generator=g)
    coupling = MinibatchOTCoupling("sinkhorn", reg=0.5)
    plan = coupling.plan(x0, x1)
    counts = np.zeros((4, 4))
    draws = torch.Generator().manual_seed(5)
    for _ in range(1500):
        idx = coupling(x0, x1, generator=draws).source_index
        counts[idx.numpy(), np.arange(4)] += 1
    empirical = counts / counts.sum()
    assert np.abs(empirical - plan).max() < 0.025  # ~4 sigma for 1500 draws of cells ~1/16
    np.random.seed(0)
    a = coupling(x0, x1, generator=torch.Generator().manual_seed(9)).source_index
    np.random.seed(123)
    b = coupling(x0, x1, generator=torch.Generator().manual_seed(9)).source_index
    assert torch.equal(a, b)


def test_plan_failures_raise_with_advice() -> None:
    g = torch.Generator().manual_seed(6)
    x0, x1 = torch.randn(50, 2, generator=g) * 30, torch.randn(50, 2, generator=g) * 30
    with pytest.raises(CouplingError, match="raise reg"):
        MinibatchOTCoupling("sinkhorn", reg=1e-4, normalize_cost=False)(x0, x1)
    with pytest.raises(CouplingError, match="max_iter"):
        MinibatchOTCoupling("sinkhorn", reg=1e-3, max_iter=2)(x0, x1)
    with pytest.raises(CouplingError, match="max_iter"):
        MinibatchOTCoupling("exact", max_iter=1)(x0, x1)


def test_bad_arguments_are_named() -> None:
    with pytest.raises(ValueError, match="known methods"):
        MinibatchOTCoupling("greedy")
    with pytest.raises(ValueError, match="reg"):
        MinibatchOTCoupling("sinkhorn", reg=0.0)
    with pytest.raises(ValueError, match="same shape|one shape"):
        MinibatchOTCoupling()(torch.zeros(3, 2), torch.zeros(3, 3))
    with pytest.raises(ValueError, match="same batch size"):
        PairedCoupling()(torch.zeros(3, 2), torch.zeros(4, 2))


def test_independent_and_paired_keep_the_given_pairs() -> None:
    x0, x1 = torch.randn(5, 2), torch.randn(5, 2)
    for coupling in (IndependentCoupling(), PairedCoupling()):
        pair = coupling(x0, x1)
        assert torch.equal(pair.x0, x0) and torch.equal(pair.x1, x1) and pair.source_index is None


def test_ot_pairs_straighten_flow_matching_targets() -> None:
    """OT pairs have a lower conditional-velocity variance than independent pairs (the point of OT-CFM)."""
    g = torch.Generator().manual_seed(7)
    x0 = torch.randn(256, 2, generator=g)
    x1 = torch.randn(256, 2, generator=g) * 0.2 + torch.tensor([4.0, 0.0])
    ot_pair = MinibatchOTCoupling("exact")(x0, x1, generator=g)
    ind = float(((x1 - x0) ** 2).sum(1).mean())
    ot = float(((ot_pair.x1 - ot_pair.x0) ** 2).sum(1).mean())
    # Closed forms: E|x1 - x0|^2 = |m|^2 + 2 (1 + 0.2^2) independent; W2^2 = |m|^2 + 2 (1 - 0.2)^2 under OT.
    w2_squared, independent = 16 + 2 * 0.8**2, 16 + 2 * 1.04
    assert abs(ind - independent) / independent < 0.05
    assert ot < ind and abs(ot - w2_squared) / w2_squared < 0.05
