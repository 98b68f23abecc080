"""The sweep covers the whole public API: every name in ``flowbridge.__all__`` and in every
``__all__`` under ``flowbridge`` is either an entry point of a sweep kind or a plain-data name with a
construction / type check here. A name added to an ``__all__`` without either fails this test.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import pkgutil
import types
import typing
from collections.abc import Callable
from typing import Any

import pytest
import torch

from tests.robustness.catalog import public_names, resolve
from tests.robustness.sweep import Kind

#: Plain data: results, constants, registries, exceptions, abstract protocols, registration
#: decorators, modules and type aliases. Each has a check in :func:`check_data`.
DATA: dict[str, str] = {
    # result / record dataclasses
    **{n: "dataclass" for n in (
        "flowbridge.LikelihoodResult", "flowbridge.SampleOutput", "flowbridge.analytic.GaussianPosterior",
        "flowbridge.analytic.bridges.ConditionalGaussian", "flowbridge.analytic.bridges.MixtureConditional",
        "flowbridge.bfn.BFNSample", "flowbridge.bfn.LikelihoodBound", "flowbridge.bridges.ConditionalMixture",
        "flowbridge.bridges.DSBMHistory", "flowbridge.bridges.FitHistory", "flowbridge.couplings.CoupledBatch",
        "flowbridge.inverse.LatentPosteriorSamples", "flowbridge.inverse.AdjointnessReport", "flowbridge.inverse.Counters",
        "flowbridge.inverse.PosteriorSamples", "flowbridge.inverse.SpectralDecomposition", "flowbridge.inverse.samplers.Context",
        "flowbridge.inverse.samplers.TimeGrid", "flowbridge.metrics.NoiseFloor", "flowbridge.metrics.QualityReport",
        "flowbridge.objectives.ObjectiveOutput", "flowbridge.paths.InterpolantCoefficients", "flowbridge.paths.InterpolantSample",
        "flowbridge.paths.PathSample", "flowbridge.paths.ScheduleValues", "flowbridge.samplers.SolveResult",
        "flowbridge.samplers.multistep.GaussianGrid", "flowbridge.samplers.multistep.MultistepState",
        "flowbridge.samplers.multistep.StepPlan", "flowbridge.samplers.ode.ButcherTableau", "flowbridge.samplers.sde.AdaptiveSDEResult",
        "flowbridge.samplers.sde.euler_maruyama.SDEGridState", "flowbridge.smc.InitialParticles",
        "flowbridge.smc.SMCResult", "flowbridge.smc.StepCoefficients", "flowbridge.training.DataBatch", "flowbridge.training.PredictBatch",
        "flowbridge.samplers.SamplingResult", "flowbridge.samplers.StepInfo", "flowbridge.samplers.GaussianTransition",
        "flowbridge.samplers.tuning.TunedSolver", "flowbridge.samplers.tuning.TuningReport",
        "flowbridge.samplers.recommend.Recommendation",
    )},
    # constants
    **{n: "constant" for n in (
        "flowbridge.__version__", "flowbridge.bridges.lightsb.COVARIANCES", "flowbridge.interop.SUPPORTED_SCHEDULERS",
        "flowbridge.paths.PARAMETRISATIONS", "flowbridge.samplers.multistep.FINAL_STEPS", "flowbridge.samplers.tuning.TUNABLE",
        "flowbridge.samplers.presets.PRESET_KEYS", "flowbridge.samplers.recommend.AUTO",
    )},
    # registries (unknown names are swept through their getters: get_solver, get_schedule, ...)
    **{n: "registry" for n in (
        "flowbridge.SOLVERS", "flowbridge.inverse.POSTERIOR_SAMPLERS", "flowbridge.paths.SCHEDULES", "flowbridge.samplers.GRIDS",
        "flowbridge.smc.RESAMPLERS", "flowbridge.training.TOY2D",
    )},
    # exceptions
    **{n: "exception" for n in (
        "flowbridge.SamplingError", "flowbridge.couplings.CouplingError", "flowbridge.smc.WeightCollapseError",
        "flowbridge.training.DataError", "flowbridge.errors.ArgumentError", "flowbridge.errors.CapabilityError",
        "flowbridge.errors.ConfigError", "flowbridge.errors.DataError", "flowbridge.errors.CheckpointError",
    )},
    "flowbridge.errors.FlowbridgeError": "exception root",
    # CUDA-graph capture: on a machine without CUDA each refuses with a CapabilityError
    **{n: "cuda only" for n in (
        "flowbridge.samplers.graphs.GraphedSampler", "flowbridge.samplers.graphs.check_graphable",
        "flowbridge.samplers.graphs.graphed_solve",
    )},
    "flowbridge.samplers.diagnostics.LoopAudit": "diagnostic",
    # abstract protocols and base classes (their concrete subclasses are swept)
    **{n: "abstract" for n in (
        "flowbridge.Field", "flowbridge.bridges.BridgeField", "flowbridge.couplings.Coupling", "flowbridge.objectives.Objective",
        "flowbridge.paths.Schedule", "flowbridge.samplers.Solver", "flowbridge.samplers.multistep.GaussianMultistep",
        "flowbridge.samplers.ode.RungeKutta", "flowbridge.samplers.ode.TorchdiffeqSolver", "flowbridge.smc.ResamplePolicy",
        "flowbridge.smc.SMCTarget", "flowbridge.training.TimeSampler", "flowbridge.training.FlowbridgeModule",
        "flowbridge.inverse.Operator",
        "flowbridge.inverse.LinearOperator", "flowbridge.inverse.NoiseModel", "flowbridge.inverse.PosteriorSampler",
        "flowbridge.random.NoiseSource",
    )},
    # registration decorators
    **{n: "decorator" for n in (
        "flowbridge.samplers.register_solver", "flowbridge.samplers.register_grid", "flowbridge.paths.register_schedule",
        "flowbridge.inverse.register_posterior_sampler",
    )},
    "flowbridge.scale.ShardRange": "namedtuple",
    "flowbridge.smc": "module",
    "flowbridge.paths.Parametrisation": "type alias",
    "flowbridge.random.RandomSource": "random source",
}


def sweep_kinds() -> list[Kind]:
    """Every :class:`Kind` defined by the sweep's test modules."""
    kinds = []
    for info in pkgutil.iter_modules([str(__import__("pathlib").Path(__file__).parent)]):
        if not info.name.startswith("test_") or info.name == "test_coverage":
            continue
        module = importlib.import_module(f"tests.robustness.{info.name}")
        kinds += [v for v in vars(module).values() if isinstance(v, Kind)]
    return kinds


def covered_objects() -> dict[int, str]:
    out = {}
    for kind in sweep_kinds():
        for entry in kind.entries:
            out[id(resolve(entry.name))] = kind.name
    for name in DATA:
        out[id(resolve(name))] = "data"
    return out


def test_every_public_name_is_swept() -> None:
    covered = covered_objects()
    missing = sorted({f"{m}.{n}" for m, n, obj in public_names() if id(obj) not in covered})
    assert not missing, (
        "public names without robustness-sweep coverage (add an Entry to a kind in tests/robustness, "
        f"or a plain-data check in DATA): {missing}"
    )


def test_every_sweep_entry_is_public() -> None:
    """Entries name public objects (a typo would make the coverage check vacuous)."""
    public = {id(obj) for _, _, obj in public_names()}
    solvers_and_samplers = set()
    from flowbridge import SOLVERS
    from flowbridge.inverse import POSTERIOR_SAMPLERS

    solvers_and_samplers |= {id(c) for c in SOLVERS.values()} | {id(c) for c in POSTERIOR_SAMPLERS.values()}
    strays = sorted({
        e.name for k in sweep_kinds() for e in k.entries
        if id(resolve(e.name)) not in public | solvers_and_samplers and not e.name.startswith("flowbridge.cli.")  # the command line
    })
    assert not strays, f"sweep entries that are not public names (nor registered solvers / posterior samplers): {strays}"


def _exception_message(cls: type[BaseException]) -> BaseException:
    try:
        sig = inspect.signature(cls)
    except ValueError:  # a plain Exception subclass: message only
        return cls("the message")
    kwargs = {p.name: (torch.tensor(0.5) if p.name == "ess" else 0.5 if p.name == "time" else 0)
              for p in sig.parameters.values() if p.kind is inspect.Parameter.KEYWORD_ONLY}
    return cls("the message", **kwargs)


def check_data(name: str, category: str) -> None:
    obj = resolve(name)
    if category == "dataclass":
        assert dataclasses.is_dataclass(obj) and isinstance(obj, type), f"{name} should be a dataclass"
        assert dataclasses.fields(obj), f"{name} has no fields"
    elif category == "constant":
        assert isinstance(obj, (str, tuple)) and obj, f"{name} should be a non-empty str/tuple"
        if isinstance(obj, tuple):
            assert all(isinstance(v, str) for v in obj), f"{name} should hold names"
    elif category == "registry":
        assert isinstance(obj, dict) and obj and all(isinstance(k, str) for k in obj), f"{name} should map names to entries"
        assert all(callable(v) for v in obj.values()), f"{name} should hold classes or functions"
    elif category == "exception":
        assert issubclass(obj, Exception)
        err = _exception_message(obj)
        assert "the message" in str(err), f"{name} must keep its message"
        assert issubclass(obj, (ValueError, RuntimeError)), f"{name} should be a ValueError or RuntimeError"
    elif category == "exception root":
        from flowbridge import errors

        assert all(issubclass(getattr(errors, n), obj) for n in errors.__all__), "every flowbridge error derives from the root"
    elif category == "cuda only":
        from flowbridge import errors

        field = resolve("flowbridge.GaussianMixture")(torch.ones(1), torch.zeros(1, 2), torch.ones(1)).field("vp")
        solver = resolve("flowbridge.get_solver")("heun")
        args = (solver, field, torch.zeros(2, 2), torch.linspace(0.0, 0.9, 3, dtype=torch.float64))
        with pytest.raises(errors.CapabilityError, match="CUDA"):
            obj(*args) if name.endswith("check_graphable") is False else obj(solver, torch.zeros(2, 2), None)
    elif category == "diagnostic":
        audit = obj("meta")
        with audit:
            torch.zeros(2, device="meta") * 2.0
        assert audit.kernels["mul"] == 1 and not audit.host_reads
    elif category == "abstract":
        assert isinstance(obj, type)
        if inspect.isabstract(obj):
            with pytest.raises(TypeError):
                obj()  # abstract: cannot be built without its methods
        else:  # a base with a raising default (Operator.forward, NoiseModel.distribution, ...)
            assert any(c is not obj and issubclass(c, obj) for c in _all_public_classes()), f"{name} has no public subclass"
    elif category == "decorator":
        _check_decorator(name, obj)
    elif category == "namedtuple":
        assert issubclass(obj, tuple) and obj._fields, f"{name} should be a NamedTuple"
        assert obj(*range(len(obj._fields))) == tuple(range(len(obj._fields)))
    elif category == "module":
        assert isinstance(obj, types.ModuleType) and obj.__all__
    elif category == "random source":
        from flowbridge.random import NoiseSource

        assert set(typing.get_args(obj)) == {torch.Generator, NoiseSource, type(None)}
    elif category == "type alias":
        assert set(typing.get_args(obj)) == set(resolve("flowbridge.paths.PARAMETRISATIONS"))
    else:  # pragma: no cover
        raise AssertionError(category)


def _all_public_classes() -> list[type]:
    from flowbridge import SOLVERS
    from flowbridge.inverse import POSTERIOR_SAMPLERS

    return [obj for _, _, obj in public_names() if isinstance(obj, type)] + [*SOLVERS.values(), *POSTERIOR_SAMPLERS.values()]


def _check_decorator(name: str, register: Callable[[str], Callable[[Any], Any]]) -> None:
    """Registering a taken name must fail loudly (a silent replacement would change every caller)."""
    registry = {
        "flowbridge.samplers.register_solver": "flowbridge.SOLVERS", "flowbridge.samplers.register_grid": "flowbridge.samplers.GRIDS",
        "flowbridge.paths.register_schedule": "flowbridge.paths.SCHEDULES",
        "flowbridge.inverse.register_posterior_sampler": "flowbridge.inverse.POSTERIOR_SAMPLERS",
    }[name]
    table = resolve(registry)
    taken = sorted(table)[0]
    before = dict(table)

    class Impostor:
        pass

    def impostor_fn(*args: Any, **kwargs: Any) -> None:
        return None

    try:
        with pytest.raises(ValueError, match="already registered"):
            register(taken)(impostor_fn if "grid" in name else Impostor)
    finally:
        table.clear()
        table.update(before)


#: Known defects of the registering decorators (strict xfail with the reason); none left.
DECORATOR_DEFECTS: dict[str, str] = {}


@pytest.mark.parametrize(
    "name,category",
    [pytest.param(n, c, id=n.removeprefix("flowbridge."),
                  marks=[pytest.mark.xfail(strict=True, reason=DECORATOR_DEFECTS[n])] if n in DECORATOR_DEFECTS else [])
     for n, c in DATA.items()],
)
def test_plain_data(name: str, category: str) -> None:
    check_data(name, category)
