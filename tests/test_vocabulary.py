"""The sampling vocabulary (docs/architecture.md, "One vocabulary") on every entry point.

``flowbridge.sample``, ``smc.sample``, ``inverse.sample`` (a per-sample and a particle method) and
``bfn.ContinuousBFN.sample`` are each adapted by a small factory over a tiny exact problem (a
Gaussian-mixture field, its annealed target, a linear-Gaussian measurement of it, its BFN posterior
mean) and checked rule by rule: argument names, algorithms by name and instance, unknown options,
seeding by generator / seeds / seed, chunking, progress, per-step callback, NaN -> SamplingError,
capability mismatch -> CapabilityError, the result base. Where a rule does not apply to an entry
point (SMC particles interact; every solver applies to a BFN's Gaussian flow), the documented
behaviour is asserted instead.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from typing import Any

import pytest
import torch

import flowbridge as fb
from flowbridge import smc
from flowbridge.analytic.interpolant import GaussianMixtureInterpolantField
from flowbridge.bfn import ContinuousBFN, MixturePosteriorMean
from flowbridge.errors import ArgumentError, CapabilityError, SamplingError
from flowbridge.fields import Field
from flowbridge.inverse import Gaussian, Lambda, MatrixOperator, Measurement
from flowbridge.inverse import sample as inverse_sample
from flowbridge.inverse.samplers.dps import DPS
from flowbridge.inverse.samplers.tds import TDS
from flowbridge.samplers import SamplingResult, StepInfo
from flowbridge.samplers.sde.euler_maruyama import EulerMaruyama
from tests.conftest import ring_mixture

F64 = torch.float64
D = 2
STEPS = 6
MIX = ring_mixture(D)
FIELD = MIX.field("vp")
#: the names every entry point takes (docs/architecture.md's table)
VOCABULARY = {"shape", "steps", "t_span", "grid", "grid_options", "generator", "seeds", "seed", "batch_size",
              "progress", "callback", "dtype", "device"}


class _NaN(Field):
    """``inner`` whose prediction is NaN everywhere."""

    def __init__(self, inner: Field) -> None:
        super().__init__(inner.path, inner.parametrisation)
        self.inner = inner

    def predict(self, x, t):
        return self.inner.predict(x, t) * float("nan")


@dataclasses.dataclass
class Entry:
    """One entry point on a tiny exact problem.

    Attributes:
        fn: the entry point (its signature is checked).
        run: ``run(n, steps=STEPS, **vocabulary)`` -> result with ``n`` samples.
        name, instance: the algorithm by registered name and as an equivalent instance.
        nan: a run whose field (or network) returns NaN.
        mismatch: a run whose algorithm cannot work on its input (``None``: every algorithm applies).
        span: a ``t_span`` the entry point runs on, and ``end``: the last time a callback sees for it.
        per_sample: sample ``i`` under ``seeds``/``seed`` is independent of the number of samples and
            of ``batch_size`` (``False``: one interacting population).
        rows: rows of the callback's state per sample (particles per group).
    """

    fn: Callable[..., Any]
    run: Callable[..., Any]
    name: str
    instance: Any
    nan: Callable[[], Any]
    mismatch: Callable[[], Any] | None
    span: tuple[float, float]
    end: float
    per_sample: bool = True
    rows: int = 1


def _plain() -> Entry:
    def run(n, steps=STEPS, algo="euler_maruyama", field=FIELD, **kw):
        kw.setdefault("dtype", F64)
        return fb.sample(field, algo, steps, shape=(n, D), **kw)

    interpolant = GaussianMixtureInterpolantField(ring_mixture(D, k=2), MIX)
    return Entry(
        fn=fb.sample, run=run, name="euler_maruyama", instance=EulerMaruyama(),
        nan=lambda: run(4, field=_NaN(FIELD), seed=0),
        mismatch=lambda: fb.sample(interpolant, "ddpm_ancestral", STEPS, x0=torch.zeros(4, D, dtype=F64)),
        span=(0.05, 0.95), end=0.95,
    )


def _smc() -> Entry:
    target = smc.anneal(FIELD, 1.5)

    def run(n, steps=STEPS, algo="ddpm_ancestral", target=target, **kw):
        kw.setdefault("dtype", F64)
        kw.setdefault("t_span", (0.3, 0.999))  # six steps from t = 0 are too coarse for the weights
        return smc.sample(target, algo, steps, shape=(n, D), **kw)

    from flowbridge.samplers.sde.ddpm import DDPMAncestral

    return Entry(
        fn=smc.sample, run=run, name="ddpm_ancestral", instance=DDPMAncestral(),
        nan=lambda: run(8, target=smc.anneal(_NaN(FIELD), 1.5), seed=0),
        mismatch=lambda: run(8, algo="heun", seed=0),
        span=(0.3, 0.95), end=0.95, per_sample=False,
    )


def _measurement() -> Measurement:
    a = torch.tensor([[1.0, 0.5]], dtype=F64)
    return Measurement(a @ torch.tensor([3.0, 0.0], dtype=F64), MatrixOperator(a), Gaussian(0.3))


def _inverse(method: str, instance: Any, particles: int | None) -> Entry:
    meas = _measurement()
    black_box = Measurement(torch.zeros(1, dtype=F64), Lambda(lambda x: x[:, :1] ** 2, input_shape=(D,), differentiable=False), Gaussian(0.3))

    def run(n, steps=STEPS, algo=method, field=FIELD, measurement=meas, **kw):
        if "shape" not in kw:
            kw["num_samples"] = n
        return inverse_sample(field, measurement, algo, steps, particles=particles, **kw)

    return Entry(
        fn=inverse_sample, run=run, name=method, instance=instance,
        nan=lambda: run(4, field=_NaN(FIELD), seed=0),
        mismatch=lambda: run(4, measurement=black_box, seed=0),
        span=(0.05, 0.95), end=1.0,  # the last step reaches the clean node t = 1
        rows=particles or 1,
    )


def _bfn() -> Entry:
    bfn = ContinuousBFN(sigma1=0.02, parametrisation="data")
    net = MixturePosteriorMean(MIX, bfn.sigma1)

    class NaNNet(torch.nn.Module):
        def forward(self, mu, t, y=None):
            return net(mu, t) * float("nan")

    def run(n, steps=STEPS, algo="euler_maruyama", net=net, **kw):
        kw.setdefault("dtype", F64)
        return bfn.sample(net, algo, steps, shape=(n, D), **kw)

    return Entry(
        fn=bfn.sample, run=run, name="euler_maruyama", instance=EulerMaruyama(),
        nan=lambda: run(4, net=NaNNet(), seed=0),
        mismatch=None,  # the Bayesian flow is a Gaussian path: every registered solver applies
        span=(0.05, 0.95), end=0.95,
    )


ENTRIES: dict[str, Callable[[], Entry]] = {
    "flowbridge.sample": _plain,
    "smc.sample": _smc,
    "inverse.sample[dps]": lambda: _inverse("dps", DPS(), None),
    "inverse.sample[tds]": lambda: _inverse("tds", TDS(), 4),
    "bfn.sample": _bfn,
}


@pytest.fixture(params=sorted(ENTRIES))
def entry(request) -> Entry:
    return ENTRIES[request.param]()


def _tol(x: torch.Tensor, steps: int = STEPS) -> float:
    """Batched kernels may sum in another order for another batch size: a few ulps per operation,
    a few dozen operations per step, on values of size max|x| (set before measuring)."""
    return 64 * steps * torch.finfo(x.dtype).eps * (1.0 + float(x.abs().max()))


def assert_matches(a: torch.Tensor, b: torch.Tensor) -> None:
    torch.testing.assert_close(a, b, rtol=0, atol=_tol(b))


# 1. names -----------------------------------------------------------------------------------------

def test_names(entry: Entry) -> None:
    params = inspect.signature(entry.fn).parameters
    assert VOCABULARY - {"shape"} <= set(params), VOCABULARY - set(params)
    assert "shape" in params
    positional = [p for p in params if params[p].kind is inspect.Parameter.POSITIONAL_OR_KEYWORD]
    assert positional[-1] == "steps" and positional[-2] in ("solver", "method")
    out = entry.run(4, seed=1, t_span=entry.span, grid="uniform", grid_options={}, batch_size=None,
                    progress=False, callback=None, dtype=F64, device="cpu")
    assert out.x.shape == (4, D) and out.x.dtype == F64 and out.x.device.type == "cpu"
    # t_span and grid are honoured: another span or grid gives other samples from the same seed
    assert not torch.allclose(entry.run(4, seed=1, t_span=(0.1, 0.9)).x, entry.run(4, seed=1, t_span=entry.span).x)
    assert not torch.allclose(entry.run(4, seed=1, grid="quadratic").x, entry.run(4, seed=1, grid="uniform").x)
    # the algorithm by name and by an equivalent instance
    assert_matches(entry.run(4, seed=2, algo=entry.instance).x, entry.run(4, seed=2, algo=entry.name).x)
    with pytest.raises(ArgumentError, match="no option.*bogus_option.*options"):
        entry.run(4, seed=0, bogus_option=1.0)
    with pytest.raises(ArgumentError, match="known"):
        entry.run(4, seed=0, algo="no_such_algorithm")


def test_float32_and_shape(entry: Entry) -> None:
    out = entry.run(3, seed=0, dtype=torch.float32)
    assert out.x.dtype == torch.float32 and out.x.shape == (3, D)


# 2./3. seeding and chunking -----------------------------------------------------------------------

def test_generator_reproduces(entry: Entry) -> None:
    a = entry.run(4, generator=torch.Generator().manual_seed(7)).x
    b = entry.run(4, generator=torch.Generator().manual_seed(7)).x
    c = entry.run(4, generator=torch.Generator().manual_seed(8)).x
    assert torch.equal(a, b) and not torch.allclose(a, c)


def test_at_most_one_noise_source(entry: Entry) -> None:
    with pytest.raises(ArgumentError, match="at most one of generator, seeds and seed"):
        entry.run(4, seed=3, generator=torch.Generator())
    with pytest.raises(ArgumentError, match="at most one of generator, seeds and seed"):
        entry.run(4, seed=3, seeds=[1, 2, 3, 4])
    with pytest.raises(ArgumentError, match="seeds"):
        entry.run(4, seeds=[1, 2, 3])


@pytest.mark.parametrize("how", ["seeds", "seed"])
def test_per_sample_streams_and_chunking(entry: Entry, how: str) -> None:
    seeds = list(range(100, 106))
    kw = (lambda n: {"seeds": seeds[:n]}) if how == "seeds" else (lambda n: {"seed": 5})
    six = entry.run(6, **kw(6)).x
    assert_matches(entry.run(6, **kw(6)).x, six)  # reproducible
    assert six.unique(dim=0).shape[0] > 1  # not one stream for all (SMC may duplicate by resampling)
    if entry.per_sample:
        assert_matches(entry.run(4, **kw(4)).x, six[:4])  # sample i whatever the number of samples
        assert_matches(entry.run(6, batch_size=4, **kw(6)).x, six)  # and whatever the chunking
        assert_matches(entry.run(6, batch_size=1, **kw(6)).x, six)
    else:  # one population: reproducible for the same N only; a chunk would split it
        with pytest.raises(ArgumentError, match="interact"):
            entry.run(6, batch_size=4, **kw(6))
        assert_matches(entry.run(6, batch_size=6, **kw(6)).x, six)


# 4. progress --------------------------------------------------------------------------------------

def test_progress_prints_a_line_per_tenth(entry: Entry, capsys: pytest.CaptureFixture) -> None:
    steps = 15
    entry.run(4, steps=steps, seed=0, progress=True, **({"batch_size": 2} if entry.per_sample else {}))
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(lines) == 10, lines  # 15 steps (x 2 chunks): a line per tenth, not one per step
    assert "100%" in lines[-1] and all("%" in ln for ln in lines)
    entry.run(4, steps=steps, seed=0)
    assert capsys.readouterr().err == ""


# 5. callback --------------------------------------------------------------------------------------

def test_callback_once_per_step(entry: Entry) -> None:
    seen: list[StepInfo] = []
    chunk = {"batch_size": 2} if entry.per_sample else {}
    out = entry.run(4, seed=0, t_span=entry.span, callback=seen.append, **chunk)
    assert all(isinstance(i, StepInfo) for i in seen)
    offsets = sorted({i.offset for i in seen})
    assert offsets == ([0, 2] if entry.per_sample else [0])
    for off in offsets:
        infos = [i for i in seen if i.offset == off]
        assert [i.step for i in infos] == list(range(STEPS)) and {i.steps for i in infos} == {STEPS}
        ts = [i.t for i in infos]
        assert all(b > a for a, b in zip(ts, ts[1:])) and ts[-1] == pytest.approx(entry.end)
        assert infos[-1].x.shape[0] == (2 if entry.per_sample else 4) * entry.rows
    assert out.x.shape[0] == 4
    with pytest.raises(ArgumentError, match="callback"):
        entry.run(4, seed=0, callback="print")


# 6./7. errors -------------------------------------------------------------------------------------

def test_nan_raises_sampling_error(entry: Entry) -> None:
    with pytest.raises(SamplingError):
        entry.nan()


def test_capability_mismatch(entry: Entry) -> None:
    if entry.mismatch is None:  # documented: every registered solver applies (BFN's flow is a Gaussian path)
        assert torch.isfinite(entry.run(4, seed=0, algo="ddpm_ancestral").x).all()
        return
    with pytest.raises(CapabilityError, match="apply|known"):
        entry.mismatch()


# 8. result ----------------------------------------------------------------------------------------

def test_result_base(entry: Entry) -> None:
    out = entry.run(3, seed=0)
    assert isinstance(out, SamplingResult) and isinstance(out, fb.SamplingResult)
    assert isinstance(out.x, torch.Tensor) and out.x.shape == (3, D) and torch.isfinite(out.x).all()
    assert isinstance(out.nfe, int) and out.nfe >= STEPS


# every posterior sampler on the per-sample streams ------------------------------------------------

@pytest.mark.parametrize("method", sorted(fb.inverse.POSTERIOR_SAMPLERS))
def test_every_posterior_sampler_keys_samples_by_their_seeds(method: str) -> None:
    """Sample (group) ``i`` under ``seed=`` is the same whatever the number of samples and the chunk;
    ``enkg``'s ensemble members interact: reproducible for the same ``num_samples`` only."""
    cls = fb.inverse.POSTERIOR_SAMPLERS[method]
    particles = 3 if cls.uses_particles else None

    def run(n, **kw):
        return inverse_sample(FIELD, _measurement(), method, 4, num_samples=n, particles=particles, seed=11, **kw).x

    five = run(5)
    if cls.returns_all_particles:
        assert_matches(run(5), five)
        assert_matches(run(5, batch_size=3), five)  # chunks of whole ensembles: the same ensembles
        return
    assert_matches(run(3), five[:3])
    assert_matches(run(5, batch_size=2), five)
