"""Sweep of sequential Monte Carlo: ``smc.sample`` on every Feynman–Kac target, resamplers,
policies, particles, PCNL, exact targets and step coefficients.

Contract at the boundary: bad particle counts, shapes, step counts, spans, names, weights and
rewards raise a clear ``ValueError``/``TypeError`` (or the documented ``WeightCollapseError`` /
``SamplingError``); otherwise the result is finite.
"""

from __future__ import annotations

import functools
import math

import torch
from hypothesis import strategies as st

from tests.robustness.harness import Bad
from tests.robustness.sweep import (
    Corruption, Entry, Kind, name_corruptions, positive_corruptions, sweep_test, tensor_corruptions,
)

D = 2


def _errors():
    from flowbridge import SamplingError
    from flowbridge.smc import WeightCollapseError

    return (ValueError, TypeError, SamplingError, WeightCollapseError)


@functools.cache
def fields():
    from tests.robustness.test_fields import mixture

    return mixture().field("vp"), mixture().field("vp")


def inputs(draw) -> dict:
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    n = draw(st.integers(4, 6))
    return {
        "log_weights": torch.randn(n, generator=g, dtype=torch.float64), "x": torch.randn(n, D, generator=g, dtype=torch.float64),
        "particles": n, "steps": draw(st.integers(2, 4)), "method": "systematic", "policy": "ess", "solver": "euler_maruyama",
        "beta": 2.0, "lam": 1.0, "threshold": 0.5, "t": 0.5, "reward": "quadratic",
    }


def _reward(i: dict):
    r = i["reward"]
    if r == "quadratic":
        return lambda x: -(x**2).sum(-1)
    return r


def _targets(i: dict):
    from flowbridge import smc

    a, b = fields()
    return {
        "anneal": lambda: smc.anneal(a, i["beta"]),
        "product": lambda: smc.product(a, b),
        "guided": lambda: smc.guided(a, b, i["beta"]),
        "tilted": lambda: smc.tilted(a, _reward(i), i["lam"]),
    }


def _smc_sample(target: str):
    def call(i: dict):
        from flowbridge import smc

        out = smc.sample(_targets(i)[target](), shape=(i["particles"], D), steps=i["steps"], resample=i["policy"],
                         solver=i["solver"], generator=torch.Generator().manual_seed(0))
        return out.samples

    return call


def _kernels(i: dict):
    """Every kernel smc.kernels() names runs an SMC anneal (finite samples)."""
    from flowbridge import smc

    return [
        smc.sample(_targets(i)["anneal"](), shape=(i["particles"], D), steps=i["steps"], resample=i["policy"],
                   solver=k, generator=torch.Generator().manual_seed(0)).samples
        for k in smc.kernels()
    ]


def _resampler(name: str):
    def call(i: dict):
        from flowbridge import smc

        return getattr(smc, name)(i["log_weights"], generator=torch.Generator().manual_seed(0))

    return call


def _resample(i: dict):
    from flowbridge import smc

    return smc.resample(i["log_weights"], i["method"], generator=torch.Generator().manual_seed(0))


def _get_resampler(i: dict):
    from flowbridge import smc

    return smc.get_resampler(i["method"])


def _get_policy(i: dict):
    from flowbridge import smc

    return smc.get_policy(i["policy"])


def _policy(cls: str):
    def call(i: dict):
        from flowbridge import smc

        kw = {"threshold": i["threshold"]} if cls == "ESSBelow" else {}
        policy = getattr(smc, cls)(method=i["method"], **kw)
        p = smc.Particles(i["x"], i["log_weights"])
        return torch.as_tensor(policy.decide(0, p.ess(), p.x.shape[0]))

    return call


def _particles(i: dict):
    from flowbridge import smc

    p = smc.Particles(i["x"], i["log_weights"])
    return p.normalized_weights(), p.ess()


def _pcnl(i: dict):
    from flowbridge import smc

    a, _ = fields()
    return smc.sample(smc.tilted(a, _reward(i), i["lam"]), shape=(i["particles"], D), steps=i["steps"],
                      init=smc.PCNL(steps=i["steps"], step_size=i["beta"] / 4), generator=torch.Generator().manual_seed(0)).samples


def _grid_density(i: dict):
    from flowbridge import smc

    g = smc.GridDensity(lambda x: -(x**2).sum(-1), [-8.0] * D, [8.0] * D, points=i["particles"] * 8)
    return g.sample(4, generator=torch.Generator().manual_seed(0)), g.mean()


def _mixture_product(i: dict):
    from flowbridge import smc
    from tests.robustness.test_fields import mixture

    exact = smc.mixture_product(mixture(), mixture())
    return exact.mixture.sample(3, generator=torch.Generator().manual_seed(0)), torch.tensor(exact.log_normalizer)


def _tilted_mixture(i: dict):
    from flowbridge import smc
    from tests.robustness.test_fields import mixture

    m = mixture()
    d = m.dim
    exact = smc.tilted_mixture(m, torch.eye(d, dtype=m.means.dtype), torch.ones(d, dtype=m.means.dtype))
    return exact.mixture.sample(3, generator=torch.Generator().manual_seed(0)), torch.tensor(exact.log_normalizer)


def _noised_mixture(i: dict):
    from flowbridge import smc
    from flowbridge.paths import GaussianPath
    from tests.robustness.test_fields import mixture

    return smc.noised_mixture(mixture(), GaussianPath("vp"), i["t"]).sample(3, generator=torch.Generator().manual_seed(0))


def _step_coefficients(i: dict):
    from flowbridge import smc
    from flowbridge.paths import GaussianPath

    grid = torch.linspace(0.0, 0.999, i["steps"] + 1, dtype=torch.float64)
    c = smc.step_coefficients(GaussianPath("vp"), grid, 1.0, move=i["solver"], dtype=torch.float64, device=torch.device("cpu"))
    return c.h, c.noise_std


def _ess(i: dict):
    from flowbridge.metrics import effective_sample_size

    return effective_sample_size(i["log_weights"])


LOGW = tensor_corruptions("log_weights", ("log_weights", "weights"), values="raise", scales="either", features=False, empty="raise")
OPTIONS = (
    *positive_corruptions("particles", integer=True),
    *positive_corruptions("steps", integer=True),
    *positive_corruptions("beta"),
    *positive_corruptions("lam"),
    *name_corruptions("method", "resampl"),
    *name_corruptions("policy", "polic", none_allowed=True),  # None is documented: never resample
    *name_corruptions("solver", "move"),
    Corruption(Bad("particles: one", ("particles", "at least 2", ">= 2"), "raise"), "particles", lambda d, i: {**i, "particles": 1}),
    Corruption(Bad("threshold outside (0, 1]", ("threshold",), "raise"), "threshold", lambda d, i: {**i, "threshold": d(st.sampled_from([-0.5, 1.5, math.nan]))}),
    Corruption(Bad("t outside [0, 1]", ("t", "[0, 1]"), "raise"), "t", lambda d, i: {**i, "t": d(st.sampled_from([-0.5, 1.5, math.nan]))}),
    Corruption(Bad("reward: not callable", ("reward", "callable"), "raise"), "reward", lambda d, i: {**i, "reward": 3}),
    Corruption(Bad("reward: NaN values", ("reward", "finite"), "raise", ()), "reward",
               lambda d, i: {**i, "reward": lambda x: torch.full(x.shape[:1], math.nan, dtype=x.dtype)}),
    Corruption(Bad("reward: wrong shape", ("reward", "shape"), "raise"), "reward", lambda d, i: {**i, "reward": lambda x: x}),
)
X = tensor_corruptions("x", values="propagate", features=False)

TARGET = ("particles", "steps", "policy", "solver")
#: Resamplers, ESS and Particles are per-step primitives inside the SMC loop (no host sync): they
#: take (..., N) log-weights (any leading shape) and let NaN/inf through; smc.sample checks collapse.
PER_STEP = {"log_weights: wrong rank": "either", "log_weights: NaN entry": "propagate", "log_weights: inf entry": "propagate"}
ENTRIES = (
    Entry("flowbridge.smc.sample", _smc_sample("anneal"), (*TARGET, "beta"), method="anneal"),
    Entry("flowbridge.smc.anneal", _smc_sample("anneal"), ("beta",)),
    Entry("flowbridge.smc.kernels", _kernels, ("particles", "steps", "policy", "beta")),
    Entry("flowbridge.smc.GeometricTarget", _smc_sample("product"), ("particles",), method="product"),
    Entry("flowbridge.smc.product", _smc_sample("product"), ()),
    # A guidance weight w may be 0 (unconditional) or negative (away from the condition).
    Entry("flowbridge.smc.guided", _smc_sample("guided"), ("beta",), expect={"beta: negative": "either", "beta: zero": "either"}),
    Entry("flowbridge.smc.tilted", _smc_sample("tilted"), ("lam", "reward")),
    Entry("flowbridge.smc.TiltedTarget", _smc_sample("tilted"), ("reward",)),
    Entry("flowbridge.smc.PCNL", _pcnl, ("steps", "beta")),
    Entry("flowbridge.smc.multinomial", _resampler("multinomial"), ("log_weights",), expect=PER_STEP),
    Entry("flowbridge.smc.systematic", _resampler("systematic"), ("log_weights",), expect=PER_STEP),
    Entry("flowbridge.smc.stratified", _resampler("stratified"), ("log_weights",), expect=PER_STEP),
    Entry("flowbridge.smc.residual", _resampler("residual"), ("log_weights",), expect=PER_STEP),
    Entry("flowbridge.smc.resample", _resample, ("log_weights", "method"), expect=PER_STEP),
    Entry("flowbridge.smc.get_resampler", _get_resampler, ("method",)),
    Entry("flowbridge.smc.get_policy", _get_policy, ("policy",)),
    Entry("flowbridge.smc.ESSBelow", _policy("ESSBelow"), ("method", "threshold", "x", "log_weights"), expect=PER_STEP),
    Entry("flowbridge.smc.EveryStep", _policy("EveryStep"), ("method",)),
    Entry("flowbridge.smc.Never", _policy("Never"), ("method",)),
    Entry("flowbridge.smc.Particles", _particles, ("x", "log_weights"), expect=PER_STEP),
    # points = particles * 8: "particles: one" is points = 8, below GridDensity's MIN_GRID_POINTS.
    Entry("flowbridge.smc.GridDensity", _grid_density, ("particles",), also_names=("points",)),
    Entry("flowbridge.smc.mixture_product", _mixture_product, ()),
    Entry("flowbridge.smc.noised_mixture", _noised_mixture, ("t",)),
    Entry("flowbridge.smc.tilted_mixture", _tilted_mixture, ()),
    Entry("flowbridge.smc.step_coefficients", _step_coefficients, ("steps", "solver"), also_names=("grid",),
          expect={"steps: zero": "either"}),
    Entry("flowbridge.metrics.effective_sample_size", _ess, ("log_weights",), expect=PER_STEP),
)


def _kind() -> Kind:
    errors = _errors()
    import dataclasses

    corr = tuple(
        dataclasses.replace(c, bad=dataclasses.replace(c.bad, errors=errors))
        for c in (*LOGW, *X, *OPTIONS)
    )
    return Kind("smc", inputs, corr, ENTRIES)


KIND = _kind()
test_smc, test_smc_thorough = sweep_test(KIND)
