"""Each solver's default grid is the winner of experiments/bench_grids.py, as recorded in
experiments/results/grids.md (re-run the benchmark to change a default)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

import flowbridge as fb
from flowbridge.samplers import SOLVERS

RESULTS = Path(__file__).resolve().parents[2] / "experiments" / "results" / "grids.md"


def recorded_winners() -> dict[str, str]:
    block = re.search(r"```\n(.*?)```", RESULTS.read_text(), re.S)
    assert block, "grids.md has no winners block"
    return dict(line.split() for line in block.group(1).strip().splitlines())


@pytest.mark.parametrize("name", sorted(recorded_winners()))
def test_default_grid_is_the_benchmark_winner(name):
    assert SOLVERS[name].default_grid == recorded_winners()[name]


def test_sample_uses_the_default_grid_unless_one_is_named():
    field = fb.GaussianMixture(torch.ones(1, dtype=torch.float64), torch.zeros(1, 2, dtype=torch.float64),
                               torch.ones(1, dtype=torch.float64)).field("vp")
    x0 = torch.randn(8, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    default = fb.sample(field, "dpmpp_3m", 10, x0=x0, return_trajectory=True)
    named = fb.sample(field, "dpmpp_3m", 10, x0=x0, grid=SOLVERS["dpmpp_3m"].default_grid, return_trajectory=True)
    torch.testing.assert_close(default.times, named.times, rtol=0, atol=0)
    uniform = fb.sample(field, "dpmpp_3m", 10, x0=x0, grid="uniform", return_trajectory=True)
    assert not torch.equal(default.times, uniform.times)
