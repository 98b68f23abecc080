"""Resamplers, policies, particles and bad input of flowbridge.smc (fast)."""

from __future__ import annotations

import math

import pytest
import torch

import flowbridge.smc as smc
from flowbridge.paths import GaussianPath, VPSchedule
from tests.conftest import ring_mixture

F64 = torch.float64


@pytest.mark.parametrize("method", ["multinomial", "stratified", "systematic", "residual"])
def test_resamplers_are_unbiased_and_batched(method):
    g = torch.Generator().manual_seed(0)
    log_w = torch.log(torch.tensor([[0.05, 0.45, 0.3, 0.2, 0.0], [0.2, 0.2, 0.2, 0.2, 0.2]], dtype=F64))
    reps = 4000
    idx = smc.resample(log_w.expand(reps, 2, 5), method, generator=g)  # batched over (reps, 2)
    assert idx.shape == (reps, 2, 5) and int(idx.min()) >= 0 and int(idx.max()) <= 4
    counts = torch.nn.functional.one_hot(idx, 5).sum(-2).to(F64)  # (reps, 2, 5)
    expected = 5 * torch.softmax(log_w, -1)
    # Unbiased: mean counts N W within 5 standard errors; zero weights never chosen.
    se = counts.std(0) / math.sqrt(reps) + 1e-3
    assert ((counts.mean(0) - expected).abs() <= 5 * se).all(), (counts.mean(0), expected)
    assert int(counts[:, 0, 4].sum()) == 0
    if method != "multinomial":
        # Low-variance schemes copy equally weighted particles exactly once each.
        assert (counts[:, 1] == 1).all()
    if method == "systematic":
        assert ((counts[:, 0] >= torch.floor(expected[0])) & (counts[:, 0] <= torch.ceil(expected[0]))).all()
    if method == "residual":
        assert (counts[:, 0] >= torch.floor(expected[0])).all()


def test_resampling_is_reproducible_and_unknown_names_fail():
    log_w = torch.randn(100, dtype=F64, generator=torch.Generator().manual_seed(1))
    a = smc.systematic(log_w, generator=torch.Generator().manual_seed(3))
    b = smc.systematic(log_w, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="known resamplers"):
        smc.resample(log_w, "nope")
    with pytest.raises(ValueError, match="names a resampler"):
        smc.get_policy("systematic")


def test_particles_ess_and_take():
    p = smc.Particles(torch.zeros(4, 2), torch.log(torch.tensor([1.0, 1.0, 0.0, 0.0])))
    assert float(p.ess()) == pytest.approx(2.0)
    assert float(p.log_mean_weight()) == pytest.approx(math.log(0.5))
    q = p.take(torch.tensor([0, 0, 1, 1]))
    assert float(q.ess()) == pytest.approx(4.0)
    with pytest.raises(ValueError, match="at least 2"):
        smc.Particles(torch.zeros(1, 2), torch.zeros(1))


def _field(d: int = 2, schedule=None):
    return ring_mixture(d).field(GaussianPath(schedule or VPSchedule()))


@pytest.mark.parametrize("policy,expected", [(smc.EveryStep(warmup=3), 10 - 1 - 3), (smc.Never(), 0)])
def test_policies_count_resamplings(policy, expected):
    out = smc.sample(smc.anneal(_field(), 2.0), shape=(64, 2), steps=10, resample=policy, generator=torch.Generator().manual_seed(0), dtype=F64)
    assert out.num_resamplings == expected
    assert out.ess.shape == (10,) and out.resampled.shape == (10,)
    assert out.nfe == 11  # one field, trapezoid rule: steps + 1 evaluations


def test_ess_policy_triggers_only_below_threshold():
    out = smc.sample(smc.anneal(_field(), 3.0), shape=(256, 2), steps=40, resample=smc.ESSBelow(threshold=0.5), generator=torch.Generator().manual_seed(0), dtype=F64)
    # Resampled exactly at the steps whose ESS fell below N/2 (last step excluded: final draw).
    below = out.ess[:-1] < 128
    assert torch.equal(out.resampled[:-1], below)
    assert 0 < out.num_resamplings < 39


def test_bad_input_is_rejected_clearly():
    f = _field()
    for beta in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="beta"):
            smc.anneal(f, beta)
    with pytest.raises(ValueError, match="particles"):
        smc.sample(smc.anneal(f, 2.0), shape=(1, 2), steps=5)
    with pytest.raises(ValueError, match="share one path"):
        smc.product(f, ring_mixture(2).field("trig"))
    with pytest.raises(ValueError, match="at least two"):
        smc.product(f)
    with pytest.raises(ValueError, match="threshold"):
        smc.ESSBelow(threshold=0.0)
    with pytest.raises(ValueError, match="shape"):
        smc.sample(smc.anneal(f, 2.0), particles=16, steps=5)
    with pytest.raises(ValueError, match="lam"):
        smc.tilted(f, lambda x: x.sum(-1), 0.0)
    with pytest.raises(ValueError, match="one value per particle"):
        smc.sample(smc.tilted(f, lambda x: x, 1.0), shape=(16, 2), steps=5, dtype=F64)
    with pytest.raises(ValueError, match="NaN or \\+inf"):
        smc.sample(smc.tilted(f, lambda x: x.sum(-1) * float("nan"), 1.0), shape=(16, 2), steps=5, dtype=F64)
    with pytest.raises(ValueError, match="NaN or \\+inf"):
        smc.sample(smc.tilted(f, lambda x: torch.full_like(x[:, 0], float("inf")), 1.0), shape=(16, 2), steps=5, dtype=F64)
    with pytest.raises(ValueError, match="noise_scale"):
        smc.sample(smc.tilted(f, lambda x: x.sum(-1), 1.0), shape=(16, 2), steps=5, noise_scale=0.0, dtype=F64)
    with pytest.raises(ValueError, match="not finite"):
        # The linear path has alpha(0) = 0: the coefficients are infinite at t = 0.
        smc.sample(smc.anneal(ring_mixture(2).field("linear"), 2.0), shape=(16, 2), steps=5)


def test_total_weight_collapse_is_reported_not_nan():
    f = _field()

    def reward(x):
        # Zero mass wherever any particle ends up late in the run: a hard constraint that kills all.
        return torch.where(x.norm(dim=-1) >= 0, torch.full_like(x[:, 0], -math.inf), x[:, 0])

    calls = {"n": 0}

    def late_reward(x):
        calls["n"] += 1
        return torch.zeros_like(x[:, 0]) if calls["n"] <= 3 else reward(x)

    with pytest.raises(smc.WeightCollapseError, match="weight collapse") as info:
        smc.sample(smc.tilted(f, late_reward, 1.0, gradient=False), shape=(32, 2), steps=10, generator=torch.Generator().manual_seed(0), dtype=F64)
    assert info.value.step >= 0


def test_nan_rewards_inside_the_loop_are_reported():
    calls = {"n": 0}

    def flaky(x):
        calls["n"] += 1
        return x.sum(-1) * (float("nan") if calls["n"] > 4 else 1.0)

    with pytest.raises(smc.sampler.SamplingError, match="NaN or \\+inf log-weight"):
        smc.sample(smc.tilted(_field(), flaky, 1.0, gradient=False), shape=(32, 2), steps=10, dtype=F64)


def test_same_seed_same_result():
    kw = dict(shape=(2,), steps=20, resample="ess", dtype=F64)
    a = smc.sample(smc.guided(_field(), _field(), 2.0), particles=64, generator=torch.Generator().manual_seed(5), **kw)
    b = smc.sample(smc.guided(_field(), _field(), 2.0), particles=64, generator=torch.Generator().manual_seed(5), **kw)
    assert torch.equal(a.samples, b.samples)


def test_policy_options_read_positionally_and_method_is_keyword_only() -> None:
    assert smc.ESSBelow(0.3).threshold == 0.3 and smc.EveryStep(5).warmup == 5
    assert smc.ESSBelow(0.3, method="residual").method == "residual"
    with pytest.raises(TypeError):
        smc.ESSBelow(0.3, "residual")  # type: ignore[misc]


def test_resample_groups_is_the_shared_bookkeeping_step():
    """One step for smc.sample (one group) and the particle posterior samplers (G groups): the chosen
    groups get the resampler's ancestors, equal weights and their log mean weight in ``log_mass``;
    the others are left exactly as they were."""
    from flowbridge.smc.resampling import resample_groups, take_particles

    g = torch.Generator().manual_seed(2)
    log_w = torch.randn(3, 6, generator=g, dtype=F64)
    x = torch.randn(3, 6, 2, generator=g, dtype=F64)
    decision = torch.tensor([True, False, True])
    step = resample_groups(log_w, decision, generator=torch.Generator().manual_seed(9))
    drawn = smc.systematic(log_w, generator=torch.Generator().manual_seed(9))
    assert torch.equal(step.ancestors[0], drawn[0]) and torch.equal(step.ancestors[2], drawn[2])
    assert torch.equal(step.ancestors[1], torch.arange(6))
    assert torch.equal(step.log_weights[1], log_w[1]) and (step.log_weights[[0, 2]] == 0).all()
    torch.testing.assert_close(step.log_mass, torch.where(decision, torch.logsumexp(log_w, 1) - math.log(6), torch.zeros(3, dtype=F64)))
    # The mass each group represents is unchanged: log_mass + log mean of the new weights.
    torch.testing.assert_close(step.log_mass + torch.logsumexp(step.log_weights, 1) - math.log(6),
                               torch.where(decision, torch.logsumexp(log_w, 1) - math.log(6), torch.logsumexp(log_w, 1) - math.log(6)))
    moved = take_particles(x, step.ancestors)
    for k in range(3):
        assert torch.equal(moved[k], take_particles(x[k], step.ancestors[k]))
    every = resample_groups(log_w[0], True, generator=torch.Generator().manual_seed(9))
    assert every.resampled is True and torch.equal(every.ancestors, drawn[0])
    with pytest.raises(ValueError, match="decision"):
        resample_groups(log_w, 1, generator=g)
