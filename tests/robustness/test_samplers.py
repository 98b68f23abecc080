"""Sweep of solvers through their API boundary: ``flowbridge.sample`` (every registered solver),
``get_solver``, ``make_grid``, and the public solver helpers.

Contract at the boundary: bad shapes, dtypes, types, step counts, spans, names and options raise a
clear ``ValueError``/``TypeError``; non-finite samples raise ``SamplingError`` (a NaN in ``x0`` or a
1e30 start that overflows); otherwise the samples are finite with ``x0``'s shape. Every registered
solver class is swept under the name it is registered with.
"""

from __future__ import annotations

import functools

import torch
from hypothesis import strategies as st

from tests.robustness.harness import Bad
from tests.robustness.sweep import (
    Corruption, Entry, Kind, _set, batch, name_corruptions, positive_corruptions, sweep_test, tensor_corruptions,
)

D = 2


def _errors():
    from flowbridge import SamplingError

    return (ValueError, TypeError, SamplingError)


@functools.cache
def field(kind: str = "vp"):
    from flowbridge.analytic import GaussianBridge
    from tests.robustness.test_fields import mixture

    if kind == "bridge":
        eye = torch.eye(D, dtype=torch.float64)
        return GaussianBridge(torch.zeros(D, dtype=torch.float64), eye, torch.ones(D, dtype=torch.float64), 0.5 * eye, 1.0).field()
    return mixture().field(kind)


def inputs(draw) -> dict:
    b = draw(batch)
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    return {
        "x0": torch.randn(b, D, generator=g, dtype=torch.float64), "steps": draw(st.integers(3, 5)), "solver": "heun",
        "grid": "uniform", "t_span": None, "seeds": None, "batch_size": None, "field": "vp", "options": {},
        "generator": torch.Generator().manual_seed(0), "name": "uniform",
    }


def _field(i: dict):
    return field(i["field"]) if isinstance(i["field"], str) else i["field"]


def _sample(solver: str | None = None, kind: str = "vp"):
    def call(i: dict):
        from flowbridge import sample

        extra = {k: i[k] for k in ("t_span", "seeds", "batch_size") if i[k] is not None}
        fld = field(kind) if i["field"] == "vp" else _field(i)
        out = sample(fld, solver or i["solver"], i["steps"], x0=i["x0"], grid=i["grid"], generator=i["generator"] if not i["seeds"] else None, **extra, **i["options"])
        assert out.x.shape == i["x0"].shape, "sample() must keep x0's shape"
        return out

    return call


def _get_solver(i: dict):
    from flowbridge import get_solver

    return get_solver(i["solver"], **i["options"])


def _make_grid(i: dict):
    from flowbridge.paths import VPSchedule
    from flowbridge.samplers import make_grid

    span = i["t_span"] or (0.0, 0.999)
    return make_grid(i["grid"], i["steps"], span[0], span[1], VPSchedule())


def _brownian_path(i: dict):
    from flowbridge.samplers.sde import BrownianPath

    span = i["t_span"] or (0.0, 1.0)
    shape = tuple(i["x0"].shape) if isinstance(i["x0"], torch.Tensor) else i["x0"]
    bp = BrownianPath(shape, span[0], span[1], seed=0)
    return bp.increment(span[0], span[1])


def _natural_eps(i: dict):
    from flowbridge.samplers.sde import natural_eps

    return natural_eps(_field(i), torch.linspace(0.1, 0.9, i["steps"], dtype=torch.float64))


def _field_gives_score(i: dict):
    from flowbridge.samplers.sde import check_score_field, field_gives_score

    f = _field(i)
    check_score_field(f, "euler_maruyama")
    return torch.tensor(float(field_gives_score(f)))


def _diffusion_levels(i: dict):
    from flowbridge.samplers.sde.euler_maruyama import diffusion_levels

    return diffusion_levels(_field(i), torch.linspace(0.0, 0.999, i["steps"] + 1, dtype=torch.float64), 1.0, None, "euler_maruyama")


def _tune(i: dict):
    from flowbridge.samplers.tuning import tune

    return tune(_field(i), "dpmpp_2m", i["steps"], shape=(4, D), num_val=4, t_span=i["t_span"], seed=0, max_iters=2).grid


def _recommend(i: dict):
    from flowbridge.samplers.recommend import recommend

    return torch.tensor(float(recommend(_field(i), i["steps"]).steps))


def _gaussian_grid(i: dict):
    from flowbridge.samplers.multistep.common import gaussian_grid

    span = i["t_span"] or (0.0, 0.999)
    return gaussian_grid("ddim", _field(i), torch.linspace(span[0], span[1], i["steps"] + 1, dtype=torch.float64), "solver")


def _combine(i: dict):
    from flowbridge.samplers.multistep.common import combine, push

    x = i["x0"]
    history = push((), x, 2)
    return combine(x, 0.5, (0.25,), history[-1:])


def _span(value):
    return lambda d, i: {**i, "t_span": value}


SPANS = (
    Corruption(Bad("t_span outside [0, 1]", ("t_", "t0", "[0, 1]", "span"), "raise"), "t_span", _span((-0.5, 1.0))),
    Corruption(Bad("t_span end > 1", ("t_", "t0", "[0, 1]", "span"), "raise"), "t_span", _span((0.0, 1.5))),
    Corruption(Bad("t_span NaN", ("t_", "t0", "[0, 1]", "span", "finite"), "raise"), "t_span", _span((float("nan"), 1.0))),
    Corruption(Bad("t_span empty", ("t_", "t0", "span", "equal", "differ", "empty"), "raise"), "t_span", _span((0.5, 0.5))),
)
API_ONLY = (
    Corruption(Bad("t_span not a pair", ("t_span", "pair", "tuple", "two"), "raise"), "t_span pair", _span((0.5,))),
    Corruption(Bad("field: not a Field", ("field",), "raise"), "field", lambda d, i: {**i, "field": torch.zeros(2)}),
    Corruption(Bad("seeds: wrong length", ("seeds",), "raise"), "seeds", lambda d, i: {**i, "seeds": [1] * (i["x0"].shape[0] + 1)}),
    Corruption(Bad("batch_size: zero", ("batch_size",), "raise"), "batch_size", lambda d, i: {**i, "batch_size": 0}),
    Corruption(Bad("options: unknown", ("option",), "raise"), "options", lambda d, i: {**i, "options": {"no_such_option": 1}}),
    Corruption(Bad("generator: wrong type", ("generator",), "raise"), "generator", lambda d, i: {**i, "generator": 3}),
)


def _solver_entries() -> tuple[Entry, ...]:
    from flowbridge import SOLVERS
    from tests.robustness.catalog import public_names

    public = {}
    for module, name, obj in public_names():
        if isinstance(obj, type):
            public.setdefault(obj, f"{module}.{name}")
    out = []
    for solver, cls in sorted(SOLVERS.items()):
        kind = "bridge" if solver == "bridge_euler_maruyama" else "vp"
        out.append(Entry(public.get(cls, f"{cls.__module__}.{cls.__qualname__}"), _sample(solver, kind), ("x0", "steps", "t_span"), method=solver))
    return tuple(out)


#: combine / push are the multistep solvers' per-step arithmetic on states the solver built: values
#: and shapes propagate (the boundary checked x0); they are swept for internal errors only.
STEP_ARITHMETIC = {f"x0: {k}": "propagate" for k in (
    "wrong rank", "int dtype", "complex dtype", "float16", "NaN entry", "inf entry", "scale 1e30", "wrong size", "empty batch")}
TYPED = {"x0: not a tensor": "typed per-step helper: takes the solver's own tensors"}

SOLVER_SUBSET = {"x0: NaN entry", "x0: scale 1e30", "x0: empty batch", "steps: zero", "t_span outside [0, 1]", "x0: wrong size"}

ENTRIES = (
    Entry("flowbridge.sample", _sample(), ("x0", "steps", "solver", "grid", "t_span", "t_span pair", "seeds", "batch_size", "field", "options", "generator")),
    Entry("flowbridge.get_solver", _get_solver, ("solver", "options")),
    Entry("flowbridge.samplers.make_grid", _make_grid, ("grid", "steps", "t_span")),
    Entry("flowbridge.samplers.sde.BrownianPath", _brownian_path, ("x0", "t_span"),
          expect={"x0: NaN entry": "either", "x0: inf entry": "either", "x0: scale 1e30": "either", "x0: scale 1e-30": "either",
                  "x0: int dtype": "either", "x0: complex dtype": "either", "x0: float16": "either", "x0: meta device": "either",
                  "x0: wrong rank": "either", "x0: wrong size": "either", "x0: empty batch": "either",
                  # a Brownian motion lives on any interval t0 < t1, not only inside [0, 1]
                  "t_span outside [0, 1]": "either", "t_span end > 1": "either",
                  "x0: not a tensor": "either"}, also_names=("shape",)),  # x0 stands for its shape: a list is one
    Entry("flowbridge.samplers.sde.natural_eps", _natural_eps, ("field",)),
    Entry("flowbridge.samplers.sde.field_gives_score", _field_gives_score, ("field",)),
    Entry("flowbridge.samplers.sde.check_score_field", _field_gives_score, ("field",)),
    # Given a grid with fewer than two times, the level table is empty: a valid (empty) result.
    Entry("flowbridge.samplers.sde.euler_maruyama.diffusion_levels", _diffusion_levels, ("field", "steps"),
          expect={"steps: negative": "either", "steps: zero": "either"}),
    # It takes the grid (built here from steps and t_span), so its messages name the grid.
    Entry("flowbridge.samplers.multistep.common.gaussian_grid", _gaussian_grid, ("field", "steps", "t_span"),
          also_names=("grid",)),
    # Tuning at a budget of `steps` evaluations: its messages name the budget nfe.
    # The solver "auto" stands for at a budget of `steps` evaluations: its messages name the budget nfe.
    Entry("flowbridge.samplers.recommend.recommend", _recommend, ("steps", "field"), also_names=("nfe",)),
    Entry("flowbridge.samplers.tuning.tune", _tune, ("steps", "t_span", "field"), also_names=("nfe",)),
    Entry("flowbridge.samplers.multistep.common.combine", _combine, ("x0",), expect=STEP_ARITHMETIC, skip=TYPED),
    Entry("flowbridge.samplers.multistep.common.push", _combine, ("x0",), method="push", expect=STEP_ARITHMETIC, skip=TYPED),
)

_x0 = tensor_corruptions("x0", values="raise", scales="either", errors=_errors())


def _kind() -> Kind:
    return Kind(
        "samplers",
        inputs,
        (
            *_x0,
            *positive_corruptions("steps", integer=True, names=("grid",)),  # helpers take the grid steps makes
            *name_corruptions("solver", "solver"),
            *name_corruptions("grid", "grid", none_allowed=True),  # None: the solver's default grid
            *SPANS,
            *API_ONLY,
        ),
        ENTRIES,
    )


KIND = _kind()
test_samplers, test_samplers_thorough = sweep_test(KIND)

# Every registered solver, with the corruptions that reach its own code (the rest are the API's).
SOLVER_KIND = Kind("solvers", inputs, tuple(c for c in KIND.corruptions if c.bad.label in SOLVER_SUBSET), _solver_entries())
test_solvers, test_solvers_thorough = sweep_test(SOLVER_KIND)
