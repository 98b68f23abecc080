"""Sweep of metrics, couplings and objectives: sample-set inputs ``(x, y)`` or training pairs
``(x0, x1, t)``.

Contract: metrics are evaluated once per comparison (an API boundary): wrong shapes, dtypes, types,
empty sets and non-finite samples raise a clear error; a finite result otherwise. Couplings and
objectives run once per training step: shapes, dtypes, types and times outside [0, 1] are refused;
NaN/inf samples may propagate into the loss (Lightning's own anomaly checks see a NaN loss).
"""

from __future__ import annotations

import functools
import math

import torch
from hypothesis import strategies as st

from tests.robustness.harness import Bad
from tests.robustness.sweep import (
    Corruption, Entry, Kind, batch, name_corruptions, positive_corruptions, sweep_test, tensor_corruptions,
    time_corruptions,
)

D = 2


def inputs(draw) -> dict:
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    n = draw(st.integers(6, 8))
    b = draw(batch) + 1
    return {
        "x": torch.randn(n, D, generator=g, dtype=torch.float64), "y": torch.randn(n + 1, D, generator=g, dtype=torch.float64) + 0.5,
        "mean": torch.zeros(D, dtype=torch.float64), "cov": torch.eye(D, dtype=torch.float64) * 1.5,
        "x0": torch.randn(b, D, generator=g, dtype=torch.float64), "x1": torch.randn(b, D, generator=g, dtype=torch.float64),
        "t": torch.rand(b, generator=g, dtype=torch.float64) * 0.8 + 0.1, "method": "exact", "reg": 0.5,
        "n_projections": 8, "repeats": 2, "weighting": "uniform",
    }


def _metric(name: str, **kw):
    def call(i: dict):
        from flowbridge import metrics

        fn = getattr(metrics, name)
        g = {"generator": torch.Generator().manual_seed(0)} if name == "sliced_wasserstein" else {}
        return fn(i["x"], i["y"], **g, **kw)

    return call


def _sw(i: dict):
    from flowbridge.metrics import sliced_wasserstein

    return sliced_wasserstein(i["x"], i["y"], n_projections=i["n_projections"], generator=torch.Generator().manual_seed(0))


def _gauss(name: str):
    def call(i: dict):
        from flowbridge import metrics

        fn = getattr(metrics, name)
        other = torch.full((D,), 0.1, dtype=torch.float64)
        if name == "cbw2_uvp":  # conditional: (N, d) means and (N, d, d) covariances
            mean, cov = i["mean"], i["cov"]
            mean = mean[None] if isinstance(mean, torch.Tensor) and mean.ndim == 1 else mean
            cov = cov[None] if isinstance(cov, torch.Tensor) and cov.ndim == 2 else cov
            return fn(mean, cov, other[None], torch.eye(D, dtype=torch.float64)[None], 1.0)
        return fn(i["mean"], i["cov"], other, torch.eye(D, dtype=torch.float64))

    return call


def _moments(i: dict):
    from flowbridge.metrics import sample_moments

    return sample_moments(i["x"])


def _mixture_moments(i: dict):
    from flowbridge.metrics import mixture_moments

    cov = i["cov"]
    covs = cov[None] if isinstance(cov, torch.Tensor) and cov.ndim == 2 else cov  # one component: (1, d, d)
    return mixture_moments(torch.zeros(1, 1, dtype=torch.float64), i["x"][:1][None], covs)


def _floor(i: dict):
    from flowbridge.metrics import noise_floor, sliced_wasserstein
    from tests.robustness.test_fields import mixture

    f = noise_floor(sliced_wasserstein, lambda n, generator=None: mixture().sample(n, generator=generator), i["x"].shape[0],
                    repeats=i["repeats"], generator=torch.Generator().manual_seed(0), n_projections=8)
    return torch.tensor([f.mean, f.std])


def _compare(i: dict):
    from flowbridge.metrics import compare_to_truth, sliced_wasserstein
    from tests.robustness.test_fields import mixture

    r = compare_to_truth(i["x"], lambda n, generator=None: mixture().sample(n, generator=generator), sliced_wasserstein,
                         sets=i["repeats"], generator=torch.Generator().manual_seed(0), n_projections=8)
    return torch.tensor([r.value, r.ratio])


SETS = (
    *tensor_corruptions("x", values="raise", scales="either", empty="raise"),
    *tensor_corruptions("y", values="raise", scales="either", empty="raise"),
)
GAUSS = (
    *tensor_corruptions("mean", ("mean",), values="raise", scales="either", empty="raise"),
    *tensor_corruptions("cov", ("cov",), values="raise", scales="either", empty="raise"),
    Corruption(Bad("cov: not PSD", ("cov", "positive", "definite", "semi"), "raise"), "cov", lambda d, i: {**i, "cov": -i["cov"]}),
)
#: x may be (N, d) or (N, *shape): the metrics flatten sample sets, so a different rank is another
#: valid set; a 1-D set of scalars is a valid set of d = 1 samples.
FLATTEN = {"x: wrong rank": "either", "y: wrong rank": "either"}
METRIC_ENTRIES = (
    Entry("flowbridge.metrics.sliced_wasserstein", _sw, ("x", "y", "n_projections"), expect=FLATTEN),
    Entry("flowbridge.metrics.wasserstein2", _metric("wasserstein2"), ("x", "y"), expect=FLATTEN),
    Entry("flowbridge.metrics.mmd", _metric("mmd"), ("x", "y"), expect=FLATTEN),
    Entry("flowbridge.metrics.energy_distance", _metric("energy_distance"), ("x", "y"), expect=FLATTEN),
    Entry("flowbridge.metrics.bures_wasserstein2", _gauss("bures_wasserstein2"), ("mean", "cov")),
    Entry("flowbridge.metrics.bw2_uvp", _gauss("bw2_uvp"), ("mean", "cov")),
    Entry("flowbridge.metrics.cbw2_uvp", _gauss("cbw2_uvp"), ("mean", "cov")),
    Entry("flowbridge.metrics.sample_moments", _moments, ("x",), also_names=("samples",),
          expect={"x: wrong size": "either", "x: NaN entry": "propagate", "x: inf entry": "propagate"}),
    Entry("flowbridge.metrics.mixture_moments", _mixture_moments, ("cov",), also_names=("covs",),
          expect={"cov: NaN entry": "propagate", "cov: inf entry": "propagate", "cov: not PSD": "either"}),
    Entry("flowbridge.metrics.noise_floor", _floor, ("repeats",)),
    Entry("flowbridge.metrics.compare_to_truth", _compare, ("x", "repeats"), also_names=("samples", "sets"),
          expect={"x: wrong size": "either"}),
)
METRICS = Kind("metrics", inputs, (*SETS, *GAUSS, *positive_corruptions("n_projections", integer=True),
                                   *positive_corruptions("repeats", integer=True)), METRIC_ENTRIES)
test_metrics, test_metrics_thorough = sweep_test(METRICS)


# ----------------------------------------------------------------------------------------------
# couplings

def _coupling(name: str):
    def call(i: dict):
        from flowbridge import couplings

        c = couplings.MinibatchOTCoupling(method=i["method"], reg=i["reg"]) if name == "MinibatchOTCoupling" else getattr(couplings, name)()
        out = c(i["x0"], i["x1"], generator=torch.Generator().manual_seed(0))
        return out.x0, out.x1

    return call


def _log_sinkhorn(i: dict):
    from flowbridge.bridges import LogSinkhornCoupling

    return torch.as_tensor(LogSinkhornCoupling(i["reg"], max_iter=5000).plan(i["x0"], i["x1"]))


PAIRS = (
    *tensor_corruptions("x0", values="propagate"),
    *tensor_corruptions("x1", values="propagate"),
)
#: The OT plan is computed on the CPU once per batch (POT): non-finite costs are refused there.
OT_VALUES = {"x0: NaN entry": "raise", "x0: inf entry": "raise", "x1: NaN entry": "raise", "x1: inf entry": "raise"}
#: A plan that cannot converge (1e30 costs, float16) is the documented CouplingError, whose message
#: names the knobs to turn (reg, max_iter).
OT_NAMES = ("reg", "max_iter")
COUPLING_ENTRIES = (
    Entry("flowbridge.couplings.IndependentCoupling", _coupling("IndependentCoupling"), ("x0", "x1")),
    Entry("flowbridge.couplings.PairedCoupling", _coupling("PairedCoupling"), ("x0", "x1")),
    Entry("flowbridge.couplings.MinibatchOTCoupling", _coupling("MinibatchOTCoupling"), ("x0", "x1", "method", "reg"),
          expect=OT_VALUES, also_names=OT_NAMES),
    Entry("flowbridge.bridges.LogSinkhornCoupling", _log_sinkhorn, ("x0", "x1", "reg"), expect=OT_VALUES, also_names=OT_NAMES),
)


def _coupling_errors():
    from flowbridge.couplings import CouplingError

    return (ValueError, TypeError, CouplingError)


def _coupling_kind() -> Kind:
    import dataclasses

    errs = _coupling_errors()
    corr = tuple(dataclasses.replace(c, bad=dataclasses.replace(c.bad, errors=(*c.bad.errors, *errs)))
                 for c in (*PAIRS, *name_corruptions("method", "method"), *positive_corruptions("reg")))
    return Kind("couplings", inputs, corr, COUPLING_ENTRIES)


COUPLINGS = _coupling_kind()
test_couplings, test_couplings_thorough = sweep_test(COUPLINGS)


# ----------------------------------------------------------------------------------------------
# objectives

@functools.cache
def _objective_fields():
    from flowbridge.fields import InterpolantField, NetworkField
    from flowbridge.paths import GaussianPath, StochasticInterpolant
    from tests.robustness.test_fields import mlp

    return {
        "fm": NetworkField(mlp(), GaussianPath("linear"), "velocity"),
        "dsm": NetworkField(mlp(), GaussianPath("vp"), "noise"),
        "si": InterpolantField(mlp(), mlp(), StochasticInterpolant()),
    }


def _objective(name: str):
    def call(i: dict):
        from flowbridge import objectives
        from flowbridge.paths import StochasticInterpolant

        f = _objective_fields()
        if name == "FlowMatching":
            obj, field = objectives.FlowMatching("linear"), f["fm"]
        elif name == "DenoisingScoreMatching":
            obj, field = objectives.DenoisingScoreMatching("vp", weighting=i["weighting"]), f["dsm"]
        else:
            obj, field = objectives.InterpolantObjective(StochasticInterpolant()), f["si"]
        out = obj(field, i["x0"], i["x1"], i["t"], generator=torch.Generator().manual_seed(0))
        return out.loss, out.per_sample

    return call


#: Training losses at the ends of the time interval: the interpolant's gamma' and VP's sigma' are
#: singular there (the time samplers keep a margin), so the loss may be non-finite.
SINGULAR = {"t = 0": "propagate", "t = 1": "propagate"}
OBJECTIVE_ENTRIES = (
    Entry("flowbridge.objectives.FlowMatching", _objective("FlowMatching"), ("x0", "x1", "t")),
    Entry("flowbridge.objectives.DenoisingScoreMatching", _objective("DenoisingScoreMatching"), ("x0", "x1", "t", "weighting"), expect=SINGULAR),
    Entry("flowbridge.objectives.InterpolantObjective", _objective("InterpolantObjective"), ("x0", "x1", "t"), expect=SINGULAR),
)
OBJECTIVES = Kind(
    "objectives", inputs,
    (*PAIRS, *time_corruptions("t", outside="raise", values="raise"), *name_corruptions("weighting", "weighting")),
    OBJECTIVE_ENTRIES,
)
test_objectives, test_objectives_thorough = sweep_test(OBJECTIVES)
