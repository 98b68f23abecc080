"""smc.sample with explicit grid times (a tuned grid) and its refusal of a tuned solver as a kernel."""

from __future__ import annotations

import pytest
import torch

from flowbridge import smc
from flowbridge.errors import ArgumentError, CapabilityError
from flowbridge.samplers import make_grid
from flowbridge.samplers.tuning import tune
from tests.conftest import ring_mixture

FIELD = ring_mixture(2).field("vp")


def test_explicit_times_equal_the_registered_grid_and_a_tuned_grid_runs():
    target = smc.anneal(FIELD, 1.5)
    span = (0.3, 0.999)
    named = smc.sample(target, "ddpm_ancestral", 6, shape=(16, 2), seed=0, dtype=torch.float64, t_span=span, grid="quadratic")
    times = make_grid("quadratic", 6, *span, FIELD.path.schedule)
    explicit = smc.sample(target, "ddpm_ancestral", 6, shape=(16, 2), seed=0, dtype=torch.float64, grid=times)
    assert torch.equal(named.x, explicit.x) and torch.equal(explicit.times, times)
    tuned = tune(FIELD, "plms", 6, shape=(16, 2), seed=0, max_iters=2)
    out = smc.sample(target, "ddpm_ancestral", tuned.steps, shape=(16, 2), seed=0, dtype=torch.float64, grid=tuned.grid)
    assert torch.equal(out.times, tuned.grid) and bool(torch.isfinite(out.x).all())
    with pytest.raises(CapabilityError, match="no Gaussian transition.*grid=tuned.grid"):
        smc.sample(target, tuned, shape=(16, 2))
    with pytest.raises(ArgumentError, match="steps must be len"):
        smc.sample(target, "ddpm_ancestral", 5, shape=(16, 2), grid=tuned.grid)
    with pytest.raises(ArgumentError, match="grid_options"):
        smc.sample(target, "ddpm_ancestral", 6, shape=(16, 2), grid=tuned.grid, grid_options={"rho": 7.0})
