"""inverse.sample with explicit grid times (a tuned grid) and its refusal of a tuned solver as a method."""

from __future__ import annotations

import pytest
import torch

from flowbridge.errors import ArgumentError, CapabilityError
from flowbridge.inverse import Gaussian, MatrixOperator, Measurement
from flowbridge.inverse import sample as inverse_sample
from flowbridge.inverse.samplers import TimeGrid
from flowbridge.paths import GaussianPath, LinearSchedule
from flowbridge.samplers import make_grid
from flowbridge.samplers.tuning import tune
from tests.conftest import ring_mixture

F64 = torch.float64
FIELD = ring_mixture(2).field("vp")
A = torch.tensor([[1.0, 0.5]], dtype=F64)
MEASUREMENT = Measurement(A @ torch.tensor([3.0, 0.0], dtype=F64), MatrixOperator(A), Gaussian(0.3))


def test_explicit_times_are_the_nodes_and_the_last_is_the_clean_node():
    path = FIELD.gaussian_path
    named = TimeGrid.build(path, 5, grid="logsnr", t_start=0.1, t_end=0.9)
    nodes = make_grid("logsnr", 4, 0.1, 0.9, path.schedule)
    explicit = TimeGrid.build(path, 5, grid=[*nodes.tolist(), 0.95])
    assert explicit == named and explicit.t[-1] == 1.0
    x0 = torch.randn(4, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    a = inverse_sample(FIELD, MEASUREMENT, "dps", 5, x0=x0, num_samples=4, grid="logsnr", t_span=(0.1, 0.9), seed=0)
    b = inverse_sample(FIELD, MEASUREMENT, "dps", 5, x0=x0, num_samples=4, grid=[*nodes.tolist(), 0.95], seed=0)
    assert torch.equal(a.x, b.x)
    # On the linear path alpha(0) = 0: sigma/alpha is infinite at a node t = 0.
    with pytest.raises(ArgumentError, match="alpha > 0"):
        TimeGrid.build(GaussianPath(LinearSchedule()), 2, grid=[0.0, 0.5, 0.9])


def test_a_tuned_grid_runs_and_a_tuned_solver_is_not_a_method():
    tuned = tune(FIELD, "plms", 6, shape=(16, 2), seed=0, max_iters=2)
    out = inverse_sample(FIELD, MEASUREMENT, "mcgdiff", tuned.steps, grid=tuned.grid, num_samples=4, particles=4, seed=0)
    assert out.nfe == tuned.steps and bool(torch.isfinite(out.x).all())
    with pytest.raises(CapabilityError, match="not a posterior sampler.*grid=tuned.grid"):
        inverse_sample(FIELD, MEASUREMENT, tuned, num_samples=2)
    with pytest.raises(ArgumentError, match="steps must be len"):
        inverse_sample(FIELD, MEASUREMENT, "dps", 5, grid=tuned.grid)
    with pytest.raises(ArgumentError, match="t_span"):
        inverse_sample(FIELD, MEASUREMENT, "dps", 6, grid=tuned.grid, t_span=(0.2, 0.9))
