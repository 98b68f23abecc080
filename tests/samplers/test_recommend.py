"""``solver="auto"``: the benchmark's recommended solver per path and budget (flowbridge.samplers.recommend).

Ground truth: the exact field of a 2-D ring mixture (not the benchmark's mixtures) on the VP path and
float64 dopri5 endpoints at tolerance 1e-10. The claim checked is the one the recommendation table
makes in its docstring for the VP path: at every budget, ``auto`` is within 1.5x of the best of the other solvers at
the same number of field evaluations. Each comparison is made on the same noises and allows five
Monte-Carlo standard errors of the paired per-sample difference.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import flowbridge as fb
from flowbridge.errors import ArgumentError
from flowbridge.fields import InterpolantField
from flowbridge.paths import StochasticInterpolant
from flowbridge.samplers import GRIDS, SOLVERS
from flowbridge.samplers.api import initial_state
from flowbridge.samplers.recommend import _RECOMMENDED, recommend
from tests.conftest import ring_mixture

D = 2
N = 400
RIVALS = (("ddim", {}), ("dpmpp_2m", {}), ("dpmpp_3m", {"variant": "lu"}), ("unipc", {"order": 2}),
          ("plms", {"order": 4}), ("heun", {}), ("rk4", {}))


def endpoint_errors(field, nfe: int):
    """Per-sample endpoint errors of ``auto`` and of each rival at ``nfe`` evaluations, each solver
    from its own default span (the reference is integrated over the same span)."""
    out, refs = {}, {}
    for name, options in (("auto", {}), *RIVALS):
        chosen = recommend(field, nfe) if name == "auto" else None
        solver = chosen.solver if chosen else name
        span = SOLVERS[solver](**(chosen.options if chosen else options)).default_span(field)
        x0 = initial_state(field, shape=(N, D), x0=None, t_start=span[0], generator=torch.Generator().manual_seed(5),
                           dtype=torch.float64, device=None)
        if span not in refs:
            refs[span] = fb.sample(field, "dopri5", 1, x0=x0, grid=list(span), rtol=1e-10, atol=1e-10).x
        ref = refs[span]
        steps = nfe if name == "auto" else max(nfe // SOLVERS[name].nfe_per_step, 1)
        x = fb.sample(field, x0=x0, steps=steps).x if name == "auto" else fb.sample(field, name, steps, x0=x0, **options).x
        out[name] = (x - ref).norm(dim=1)
    return out


@pytest.mark.parametrize("nfe", [5, 10, 20, 40])
def test_auto_is_within_one_and_a_half_of_the_best_solver_at_each_budget(nfe):
    errors = endpoint_errors(ring_mixture(D).field("vp"), nfe)
    auto = errors.pop("auto")
    best_name, best = min(errors.items(), key=lambda kv: float(kv[1].mean()))
    diff = auto - 1.5 * best
    margin = 5 * float(diff.std()) / math.sqrt(N)
    assert float(diff.mean()) <= margin, (
        f"NFE {nfe}: auto ({recommend(ring_mixture(D).field('vp'), nfe).solver}) mean error {float(auto.mean()):.3g} "
        f"> 1.5 x {best_name}'s {float(best.mean()):.3g} (+ {margin:.2g})"
    )


def test_auto_is_exactly_the_recommended_solver():
    field = ring_mixture(D).field("vp")
    for nfe in (4, 19, 20, 40):
        chosen = recommend(field, nfe)
        auto = fb.sample(field, steps=nfe, shape=(8, D), seed=3, dtype=torch.float64)
        named = fb.sample(field, chosen.solver, chosen.steps, shape=(8, D), seed=3, dtype=torch.float64, grid=chosen.grid,
                          **chosen.options)
        assert torch.equal(auto.x, named.x) and auto.nfe == named.nfe == nfe


def test_the_table_covers_every_budget_and_names_registered_solvers():
    for rows in _RECOMMENDED.values():
        assert rows[-1][0] == math.inf
        bounds = [r[0] for r in rows]
        assert bounds == sorted(bounds)
        for _, name, options, grid in rows:
            SOLVERS[name](**options)
            assert grid is None or grid in GRIDS


def test_a_multi_evaluation_solver_gets_its_share_of_the_budget_and_off_gaussian_paths_auto_is_heun():
    linear = ring_mixture(D).field("linear")
    chosen = recommend(linear, 40)
    assert SOLVERS[chosen.solver].nfe_per_step > 1 and chosen.steps == 40 // SOLVERS[chosen.solver].nfe_per_step
    assert fb.sample(linear, steps=40, shape=(4, D), seed=0, dtype=torch.float64).nfe == 40
    interpolant = InterpolantField(nn.Linear(2, 2), None, StochasticInterpolant())
    chosen = recommend(interpolant, 8)
    assert chosen.solver == "heun" and chosen.steps == 4
    assert recommend(interpolant, 1).steps == 1  # at least one step of the solver


def test_auto_with_explicit_times_keeps_their_steps():
    field = ring_mixture(D).field("vp")
    times = [1e-3, 0.3, 0.6, 0.9, 1 - 1e-3]
    out = fb.sample(field, steps=4, grid=times, shape=(4, D), seed=0, dtype=torch.float64)
    assert out.nfe == 4


@pytest.mark.parametrize("kwargs, match", [
    ({"steps": True}, "steps must be a positive integer"),
    ({"steps": 0}, "steps must be a positive integer"),
    ({"steps": 10, "order": 3}, "belong to a named solver"),
])
def test_bad_auto_arguments_are_refused(kwargs, match):
    with pytest.raises(ArgumentError, match=match):
        fb.sample(ring_mixture(D).field("vp"), shape=(4, D), **kwargs)
