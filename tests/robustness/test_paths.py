"""Sweep of paths and schedules: Gaussian paths, stochastic interpolants, every schedule (core, BFN,
diffusers' discrete VP) and the schedule registry.

Contract: ``GaussianPath.sample`` / ``StochasticInterpolant.sample`` are where training draws times,
so they refuse times outside [0, 1]; schedules, coefficients and conversions are per-step
primitives (metadata checks only: values outside [0, 1] and NaN may propagate). Conversions are
singular where the path is (``alpha = 0`` or ``sigma = 0``), so endpoints may propagate there.
Constructors refuse unknown names and out-of-range parameters with a clear error.
"""

from __future__ import annotations

import functools

import torch
from hypothesis import strategies as st

from tests.robustness.harness import Bad
from tests.robustness.sweep import (
    Corruption, Entry, Kind, _set, batch, name_corruptions, positive_corruptions, sweep_test,
    tensor_corruptions, time_corruptions,
)

D = 2


def inputs(draw) -> dict:
    b = draw(batch)
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    x0, x1, value = (torch.randn(b, D, generator=g, dtype=torch.float64) for _ in range(3))
    t = torch.full((b,), draw(st.floats(0.05, 0.95)), dtype=torch.float64)
    return {
        "x0": x0, "x1": x1, "x": x1 * 0.5 + x0 * 0.5, "value": value, "t": t, "lam": torch.linspace(-3, 3, b, dtype=torch.float64),
        "schedule": "linear", "gamma": "sqrt", "parametrisation": "velocity", "sigma": 1.0, "t_min": 0.01, "t_max": 0.99,
        "sigma1": 0.1, "beta1": 3.0,
    }


@functools.cache
def path(name: str = "linear"):
    from flowbridge.paths import GaussianPath

    return GaussianPath(name)


@functools.cache
def interpolant():
    from flowbridge.paths import StochasticInterpolant

    return StochasticInterpolant()


def _schedule(name: str):
    from flowbridge import bfn, interop, paths

    return {
        "LinearSchedule": paths.LinearSchedule, "TrigSchedule": paths.TrigSchedule, "VPSchedule": paths.VPSchedule,
        "VESchedule": paths.VESchedule, "ContinuousBFNSchedule": bfn.ContinuousBFNSchedule,
        "DiscreteBFNSchedule": bfn.DiscreteBFNSchedule,
        "DiscreteVPSchedule": lambda **kw: interop.DiscreteVPSchedule(alphas_cumprod=tuple(torch.linspace(0.999, 0.01, 50).tolist()), **kw),
    }[name]


SCHEDULE_MODULE = {
    "LinearSchedule": "flowbridge.paths", "TrigSchedule": "flowbridge.paths", "VPSchedule": "flowbridge.paths",
    "VESchedule": "flowbridge.paths", "ContinuousBFNSchedule": "flowbridge.bfn", "DiscreteBFNSchedule": "flowbridge.bfn",
    "DiscreteVPSchedule": "flowbridge.interop",
}


def schedule_entries(name: str) -> tuple[Entry, ...]:
    full = f"{SCHEDULE_MODULE[name]}.{name}"
    sched = functools.cache(lambda: _schedule(name)())
    interval = (
        Corruption(Bad("t_min > t_max", ("t_min", "t_max"), "raise"), "t_min", lambda d, i: {**i, "t_min": 0.9, "t_max": 0.1}),
        Corruption(Bad("t_max > 1", ("t_max", "t_min"), "raise"), "t_min", lambda d, i: {**i, "t_max": 1.5}),
        Corruption(Bad("t_min < 0", ("t_min", "t_max"), "raise"), "t_min", lambda d, i: {**i, "t_min": -0.5}),
    )
    # Singular ends of a schedule (documented cut-offs t_min / t_max) may propagate.
    ends = {"t = 0": "propagate", "t = 1": "propagate"}
    return (
        Entry(full, lambda i: sched()(i["t"]), ("t",), method="__call__", expect=ends),
        Entry(full, lambda i: sched().inverse_log_snr(i["lam"]), ("lam",), method="inverse_log_snr"),
        Entry(full, lambda i: _schedule(name)(t_min=i["t_min"], t_max=i["t_max"]), ("t_min",), method="__init__", extra=interval),
    )


def _get_schedule(i: dict):
    from flowbridge.paths import get_schedule

    return get_schedule(i["schedule"])


def _gaussian_path(i: dict):
    from flowbridge import GaussianPath

    return GaussianPath(i["schedule"])


def _interp_init(i: dict):
    from flowbridge import StochasticInterpolant

    return StochasticInterpolant(gamma=i["gamma"])


def _brownian(i: dict):
    from flowbridge import BrownianBridge

    return BrownianBridge(i["sigma"])


def _target(i: dict):
    s = path().sample(i["x0"], i["x1"], i["t"])
    return path().target(s, i["parametrisation"])


def _time_range(i: dict):
    from flowbridge.training.time_samplers import time_range

    return time_range(path("vp"), i["sigma"] - 1.0)  # margin 0 for the valid draw


margin = (
    Corruption(Bad("margin too large", ("margin",), "raise"), "sigma", lambda d, i: {**i, "sigma": 1.6}),
    Corruption(Bad("margin NaN", ("margin",), "raise"), "sigma", lambda d, i: {**i, "sigma": float("nan")}),
    Corruption(Bad("margin negative", ("margin",), "raise"), "sigma", lambda d, i: {**i, "sigma": 0.5}),
)
ENDPOINTS_SINGULAR = {"t = 0": "propagate", "t = 1": "propagate"}
SCHEDULE_VALUES = {"NaN entry", "inf entry", "empty batch", "scale 1e30", "scale 1e-30", "meta device"}

ENTRIES = (
    Entry("flowbridge.GaussianPath", lambda i: path().sample(i["x0"], i["x1"], i["t"]), ("x0", "x1", "t"), method="sample",
          expect={"t < 0": "raise", "t > 1": "raise", "t: NaN": "raise"}),
    # x only gives the shape to broadcast against: any rank is fine; VP's sigma' is infinite at t = 1.
    Entry("flowbridge.GaussianPath", lambda i: path("vp").coefficients(i["t"], i["x"]), ("t", "x"), method="coefficients@vp",
          expect={"x: wrong rank": "either", "x: wrong size": "either", "t = 1": "propagate"}),
    Entry("flowbridge.GaussianPath", lambda i: path().convert(i["value"], "noise", "velocity", i["x"], i["t"]),
          ("value", "x", "t"), method="convert", expect=ENDPOINTS_SINGULAR),
    Entry("flowbridge.GaussianPath", _target, ("parametrisation",), method="target"),
    Entry("flowbridge.GaussianPath", _gaussian_path, ("schedule",), method="__init__"),
    Entry("flowbridge.StochasticInterpolant", lambda i: interpolant().sample(i["x0"], i["x1"], i["t"], z=i["value"]),
          ("x0", "x1", "t", "value"), method="sample",
          expect={"t < 0": "raise", "t > 1": "raise", "t: NaN": "raise", **ENDPOINTS_SINGULAR}),  # gamma' of sqrt(t(1-t))
    Entry("flowbridge.StochasticInterpolant", lambda i: interpolant().coefficients(i["t"], i["x"]), ("t", "x"), method="coefficients",
          expect={"x: wrong rank": "either", "x: wrong size": "either", **ENDPOINTS_SINGULAR}),
    Entry("flowbridge.StochasticInterpolant", _interp_init, ("gamma",), method="__init__"),
    Entry("flowbridge.BrownianBridge", _brownian, ("sigma",)),
    Entry("flowbridge.get_schedule", _get_schedule, ("schedule",)),
    Entry("flowbridge.training.time_samplers.time_range", _time_range, (), extra=margin),
    *(e for n in SCHEDULE_MODULE for e in schedule_entries(n)),
)

KIND = Kind(
    "paths",
    inputs,
    (
        *(c for k in ("x0", "x1", "x") for c in tensor_corruptions(k)),
        *tensor_corruptions("value", ("value", "z")),
        *time_corruptions("t", outside="propagate", endpoints="either", batched=False),
        # Schedules are tensor -> tensor math on any shape (typed API, not re-validated per step):
        # their inputs are swept for values, emptiness and device only.
        *(c for c in tensor_corruptions("lam", features=False) if c.bad.label.split(": ")[1] in SCHEDULE_VALUES),
        *name_corruptions("schedule", "schedule"),
        *name_corruptions("gamma", "gamma"),
        *name_corruptions("parametrisation", "parametrisation"),
        *positive_corruptions("sigma"),
    ),
    ENTRIES,
)

test_paths, test_paths_thorough = sweep_test(KIND)
