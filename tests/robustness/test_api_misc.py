"""Sweep of the remaining public entry points through their arguments: analytic ground truth,
likelihoods, random streams, constructors of fields / nets / solvers, training data and modules,
scale, interop and plotting.

Shared strategy: every entry point is one call with valid keyword arguments; each corruption
replaces one argument by a value drawn from a list of bad values for it (wrong type, out of range,
non-finite, unknown name, wrong shape). The call must raise a clear error naming that argument,
or return a documented finite result.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import pytest
import torch
from hypothesis import strategies as st

from tests.robustness.harness import Bad
from tests.robustness.sweep import Corruption, Entry, Kind, sweep_test

D = 2
NAN, INF = math.nan, math.inf


def _override(arg: str, values: list[Any]) -> Callable[[Any, dict], dict]:
    def apply(draw, i: dict) -> dict:
        v = draw(st.sampled_from(values))
        return {**i, "kw": {**i.get("kw", {}), arg: v() if callable(v) and getattr(v, "lazy", False) else v}}

    return apply


def lazy(fn: Callable[[], Any]) -> Callable[[], Any]:
    """A bad value built when drawn (tensors are not built at import time)."""
    fn.lazy = True  # type: ignore[attr-defined]
    return fn


def case(
    name: str, fn: Callable[..., Any], defaults: Callable[[], dict], bads: dict[str, list[Any]], *,
    method: str = "", expect: dict[str, str] | None = None, xfail: dict[str, str] | None = None,
    names: dict[str, tuple[str, ...]] | None = None, errors: tuple[type[BaseException], ...] = (ValueError, TypeError),
) -> Entry:
    """An entry point called as ``fn(**{**defaults(), **override})``, with one corruption per argument."""
    # A key "arg#what" is a second list of bad values for ``arg`` (e.g. the ones a known defect accepts).
    extra = tuple(
        Corruption(Bad(f"{key.replace('#', ': ')}: bad value" if "#" in key else f"{key}: bad value",
                       (key.split("#")[0], *(names or {}).get(key.split("#")[0], ())), "raise", errors), "",
                   _override(key.split("#")[0], values))
        for key, values in bads.items()
    )
    return Entry(name, lambda i: fn(**{**defaults(), **i.get("kw", {})}), (), method=method, extra=extra,
                 expect=dict(expect or {}), xfail=dict(xfail or {}))


def inputs(draw) -> dict:
    return {"seed": draw(st.integers(0, 2**10))}


def _g() -> torch.Generator:
    return torch.Generator().manual_seed(0)


def _t(*rows) -> Callable[[], torch.Tensor]:
    return lazy(lambda: torch.tensor(rows, dtype=torch.float64))


# --- analytic -------------------------------------------------------------------------------

def _mix_defaults() -> dict:
    return {"weights": torch.tensor([0.5, 0.5], dtype=torch.float64), "means": torch.tensor([[0.0, 0.0], [2.0, 1.0]], dtype=torch.float64),
            "covs": torch.tensor([0.5, 0.2], dtype=torch.float64)}


def _mixture(weights, means, covs):
    from flowbridge import GaussianMixture

    m = GaussianMixture(weights, means, covs)
    return m.sample(3, generator=_g()), m.log_prob(torch.zeros(2, m.dim, dtype=m.means.dtype))


def _gauss_post_defaults() -> dict:
    return {"mean": torch.zeros(D, dtype=torch.float64), "cov": torch.eye(D, dtype=torch.float64),
            "matrix": torch.tensor([[1.0, 0.5]], dtype=torch.float64), "sigma_y": 0.3, "y": torch.tensor([0.4], dtype=torch.float64)}


def _gauss_post(**kw):
    from flowbridge.analytic import gaussian_posterior

    p = gaussian_posterior(**kw)
    return p.mean, p.cov


def _mix_post(**kw):
    from flowbridge import GaussianMixture
    from flowbridge.analytic import mixture_posterior

    prior = GaussianMixture(**_mix_defaults())
    post = mixture_posterior(prior, kw["matrix"], kw["sigma_y"], kw["y"])
    return post.means, post.weights


def _gmm_problem(**kw):
    from flowbridge.analytic import GMMInverseProblem

    p = GMMInverseProblem(kw["d"], kw["d_y"], kw["seed"])
    return p.prior.means if hasattr(p, "prior") else torch.zeros(1)


def _flow_map(**kw):
    from flowbridge.analytic import gaussian_flow_map
    from flowbridge.paths import GaussianPath

    return gaussian_flow_map(torch.zeros(D, dtype=torch.float64), torch.eye(D, dtype=torch.float64), GaussianPath("linear"),
                             kw["x"], kw["t_start"], kw["t_end"])


BAD_TENSOR = [None, "x", lazy(lambda: torch.tensor([[NAN, 0.0]], dtype=torch.float64))]

# --- likelihood, random ---------------------------------------------------------------------

def _loglik(**kw):
    from flowbridge import log_likelihood
    from tests.robustness.test_fields import mixture

    r = log_likelihood(mixture().field("linear"), kw["x"], rtol=1e-3, atol=1e-3, t_span=kw["t_span"])
    return r.log_prob, r.bits_per_dim


def _generator_noise(generator):
    from flowbridge.random import GeneratorNoise

    return GeneratorNoise(generator).normal((2, 3), dtype=torch.float64, device="cpu")


def _noise_source(**kw):
    from flowbridge.random import noise_source

    return noise_source(**kw).normal((3, 2), dtype=torch.float64, device="cpu")


def _draw(fn_name: str):
    def call(**kw):
        from flowbridge import random

        return getattr(random, fn_name)(**kw)

    return call


def _randn_like(x, generator):
    from flowbridge.random import randn_like

    return randn_like(x, generator=generator)


def _torch_generator(generator):
    from flowbridge.random import torch_generator

    return torch_generator(generator, "the test")


def _grouped_noise(seeds, particles):
    from flowbridge.random import GroupedNoise

    source = GroupedNoise(seeds, particles)
    members = source.normal((len(seeds) * particles, 2), dtype=torch.float64, device="cpu")
    groups = source.uniform((len(seeds), 1), dtype=torch.float64, device="cpu")
    # group g's draws depend on its seed alone
    again = source.split(1, len(seeds)).fork(0)
    assert again.normal(((len(seeds) - 1) * particles, 2), dtype=torch.float64, device="cpu").shape[0] == (len(seeds) - 1) * particles
    return members, groups


def _grouped_noise_source(**kw):
    from flowbridge.random import grouped_noise_source

    return grouped_noise_source(**kw).normal((kw["groups"] * kw["particles"], 2), dtype=torch.float64, device="cpu")


def _as_noise_source(generator):
    from flowbridge.random import as_noise_source

    return as_noise_source(generator).normal((2,), dtype=torch.float64, device="cpu")


def _index_seeds(seed, start, stop):
    from flowbridge.random import index_seeds

    seeds = index_seeds(seed, start, stop)
    # each index keeps its seed whichever range it is drawn in
    assert seeds[1:] == index_seeds(seed, start + 1, stop)
    return seeds


def _clipped_defaults() -> dict:
    from flowbridge import GaussianMixture

    m = GaussianMixture(torch.ones(1, dtype=torch.float64), torch.zeros(1, D, dtype=torch.float64), torch.ones(1, dtype=torch.float64))
    return {"inner": m.field("vp"), "clip": (-1.0, 1.0), "percentile": None}


def _clipped_field(**kw):
    from flowbridge.fields import ClippedField

    field = ClippedField(**kw)
    x = torch.full((2, D), 3.0, dtype=torch.float64)
    return field.data(x, torch.full((2,), 0.5, dtype=torch.float64))


def _clipped(**kw):
    from flowbridge.fields.clipping import clipped

    return clipped(kw["inner"], kw["clip"], kw["percentile"])


def _stacked(**kw):
    from flowbridge import StackedGenerators

    return StackedGenerators(kw["seeds"]).normal((len(kw["seeds"]), 2), dtype=torch.float64, device=torch.device("cpu"))


# --- constructors ---------------------------------------------------------------------------

def _field_ctor(name: str):
    def call(**kw):
        from flowbridge import fields
        from tests.robustness.test_fields import fields as built

        f = built()
        net = f["flowbridge.NetworkField"]
        if name == "CFGField":
            g = fields.CFGField(kw.get("inner", net), net, kw["w"])
        elif name == "AutoGuidanceField":
            g = fields.AutoGuidanceField(kw.get("inner", net), net, kw["w"])
        elif name == "AutocastField":
            g = fields.AutocastField(kw.get("inner", net), kw["dtype"])
        elif name == "CompiledField":
            g = fields.CompiledField(kw.get("inner", net))
            return torch.tensor(float(isinstance(g, fields.Field)))
        elif name == "NetworkField":
            g = fields.NetworkField(kw.get("inner", net.net), net.path, kw["parametrisation"])
        else:
            g = fields.InterpolantField(kw.get("inner", net.net), None, kw.get("path", f["flowbridge.fields.InterpolantField"].interpolant))
        x = torch.zeros(2, D, dtype=torch.float64)
        return g.velocity(x, torch.full((2,), 0.5, dtype=torch.float64))

    return call


def _field_defaults() -> dict:
    return {"w": 1.5, "dtype": torch.bfloat16, "parametrisation": "velocity"}


def _mlp(**kw):
    from flowbridge.nets import MLP

    return MLP(**kw)(torch.zeros(2, kw.get("dim", D)), torch.zeros(2)) if isinstance(kw.get("dim"), int) else MLP(**kw)


def _unet(**kw):
    from flowbridge.nets import UNet

    net = UNet(**kw)
    return net(torch.zeros(1, kw["in_channels"], kw["image_size"], kw["image_size"]), torch.zeros(1))


def _solver_opts(name: str, opt: str):
    def call(**kw):
        from flowbridge import sample
        from tests.robustness.test_fields import mixture

        x0 = torch.randn(2, D, dtype=torch.float64, generator=_g())
        return sample(mixture().field("vp"), name, 3, x0=x0, generator=_g(), **{opt: kw[opt]}).x

    return call


# --- training -------------------------------------------------------------------------------

def _datamodule(cls: str):
    def call(**kw):
        from flowbridge import training

        dm = getattr(training, cls)(**kw)
        dm.setup("fit")
        batch = next(iter(dm.train_dataloader()))
        return batch.target if hasattr(batch, "target") else batch

    return call


def _tensor_file(**kw):
    from flowbridge.training import TensorFile

    dm = TensorFile(**kw)
    dm.setup("fit")
    return next(iter(dm.train_dataloader())).target


@functools.cache
def _tensor_file_path() -> str:
    import tempfile

    d = tempfile.mkdtemp(prefix="fb_sweep_")
    path = f"{d}/data.pt"
    torch.save(torch.randn(64, 2), path)
    return path


def _time_sampler(cls: str):
    def call(**kw):
        from flowbridge import training
        from flowbridge.paths import GaussianPath

        s = getattr(training, cls)(**kw)
        return s(8, GaussianPath("vp"), generator=_g(), device=torch.device("cpu"), dtype=torch.float64)

    return call


def _batch_stream(**kw):
    from flowbridge.training import BatchStream

    s = BatchStream(torch.randn(16, D), **kw)
    return next(iter(s)).target if hasattr(next(iter(s)), "target") else next(iter(s))


def _toy(**kw):
    from flowbridge.training import sample_toy2d

    return sample_toy2d(kw["name"], kw["n"], generator=_g())


def _callback(cls: str):
    def call(**kw):
        from flowbridge import training

        return torch.tensor(float(getattr(training, cls)(**kw).every_n_epochs))

    return call


def _sampler_config(**kw):
    from flowbridge.training import SamplerConfig

    c = SamplerConfig(**kw)
    return torch.tensor(float(c.steps))


def _generative_module(**kw):
    from flowbridge.objectives import FlowMatching
    from flowbridge.paths import GaussianPath
    from flowbridge.training import GenerativeModule
    from tests.robustness.test_fields import mlp

    m = GenerativeModule(mlp(), kw.get("path", GaussianPath("linear")), FlowMatching, parametrisation=kw["parametrisation"],
                         label_dropout=kw["label_dropout"])
    return torch.tensor(float(sum(p.numel() for p in m.parameters())))


# --- scale ----------------------------------------------------------------------------------

def _shards(**kw):
    from flowbridge.scale import ShardDataset

    ds = ShardDataset(kw["num_samples"], kw["shard_size"])
    r = ds[0]
    return torch.tensor([len(ds), r.start, r.stop], dtype=torch.float64)


def _sample_to_disk(**kw):
    import tempfile

    from flowbridge.scale import sample_to_disk
    from tests.robustness.test_fields import mixture

    with tempfile.TemporaryDirectory() as d:
        x = sample_to_disk(mixture().field("linear"), num_samples=kw["num_samples"], sample_shape=kw["sample_shape"], out_dir=d,
                           steps=kw["steps"], shard_size=4, output=f"{d}/all.pt", accelerator="cpu", devices=1,
                           enable_progress_bar=False, logger=False, enable_model_summary=False)
        return x


def _sampler_job(**kw):
    import tempfile

    from flowbridge.scale import SamplingJob, ShardSampler
    from tests.robustness.test_fields import mixture

    job = SamplingJob(solver=kw["solver"], steps=kw["steps"], sample_shape=(D,), seed=0, out_dir=tempfile.gettempdir())
    return torch.tensor(float(isinstance(ShardSampler(mixture().field("linear"), job), object)))


# --- interop --------------------------------------------------------------------------------

def _from_velocity(**kw):
    from flowbridge.interop import from_velocity

    f = from_velocity(kw["model"], kw["path"], convention=kw["convention"], call=kw["call"])
    return f.velocity(torch.zeros(2, D), torch.full((2,), 0.5))


def _velocity_defaults() -> dict:
    return {"model": lambda x, t: -x * t[:, None], "path": "linear", "convention": "noise_to_data", "call": "x_first"}


def _from_diffusers(**kw):
    pytest.importorskip("diffusers")  # the optional extra (bench/diffusers); CI installs only the test extra
    from flowbridge.interop import from_diffusers

    class Unet(torch.nn.Module):
        def forward(self, x, t, **kw):
            return type("Out", (), {"sample": -x})()

    f = from_diffusers(Unet(), kw["config"], prediction_type=kw["prediction_type"])
    return f.velocity(torch.zeros(2, 1, 2, 2), torch.full((2,), 0.5))


def _diffusers_defaults() -> dict:
    return {"config": {"_class_name": "DDPMScheduler", "num_train_timesteps": 50, "beta_schedule": "linear",
                       "beta_start": 1e-4, "beta_end": 0.02, "prediction_type": "epsilon"}, "prediction_type": None}


def _flow_prior(**kw):
    from flowbridge.interop import FlowPrior
    from tests.robustness.test_fields import mixture

    prior = FlowPrior(kw.get("field", mixture().field("linear")), kw["event_shape"], solver=kw["solver"], steps=kw["steps"],
                      generator=_g(), dtype=torch.float64)
    x = prior.sample((3,))
    return x, prior.log_prob(kw.get("value", x))


def _flow_prior_defaults() -> dict:
    return {"event_shape": (D,), "solver": "rk4", "steps": 4}


# --- viz ------------------------------------------------------------------------------------

def _viz(fn: str):
    def call(**kw):
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import pyplot as plt

        from flowbridge import viz

        fig = getattr(viz, fn)(kw["x"])
        plt.close(fig)
        return torch.zeros(1)

    return call


def _save_figure(**kw):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    from flowbridge import viz

    fig = plt.figure()
    try:
        return torch.tensor(float(viz.save_figure(kw["fig"] if "fig" in kw else fig, kw["path"]).exists()))
    finally:
        plt.close(fig)


def _tmp_png() -> str:
    import tempfile

    return f"{tempfile.mkdtemp(prefix='fb_sweep_')}/fig.png"


# --- training: schedules, EMA, image folders, checkpoints; digits metrics -----------------------

def _cosine_lr(**kw):
    from flowbridge.training import CosineLR

    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = CosineLR(opt, **kw)
    for _ in range(3):
        opt.step()
        sched.step()
    return torch.tensor(sched.get_last_lr())


def _ema(**kw):
    from flowbridge.training import EMA

    return torch.tensor([EMA(**kw).decay(k) for k in (1, 2, 10)])


def _image_folder_path() -> str:
    import tempfile

    import numpy as np
    from PIL import Image

    d = tempfile.mkdtemp(prefix="fb_sweep_")
    for i in range(6):
        Image.fromarray(np.full((4, 4), 40 * i, dtype=np.uint8), mode="L").save(f"{d}/{i}.png")
    return d


def _image_folder(**kw):
    from flowbridge.training import ImageFolder

    dm = ImageFolder(**kw)
    dm.setup("fit")
    return dm.splits.train


_CHECKPOINT: list[str] = []


def _checkpoint_path() -> str:
    """A checkpoint of a 2-step flowbridge fit (made once per process)."""
    if not _CHECKPOINT:
        import tempfile

        from flowbridge.cli import main
        from tests.training.recipes import tiny_recipe

        d = __import__("pathlib").Path(tempfile.mkdtemp(prefix="fb_sweep_"))
        assert main(["fit", "--config", str(tiny_recipe(d, max_steps=2)), "--threads=1"]) == 0
        _CHECKPOINT.append(str(d / "run" / "checkpoints" / "last.ckpt"))
    return _CHECKPOINT[0]


def _load(**kw):
    import flowbridge

    return flowbridge.load(kw["ckpt"], weights=kw["weights"]).generate(3, generator=_g(), steps=2)


def _digits_images(**kw):
    from flowbridge.metrics import digits_features

    return digits_features(kw["x"])


def _digits_fd(**kw):
    from flowbridge.metrics import digits_frechet_distance

    return digits_frechet_distance(kw["x"], kw.get("reference"))


def _digits_floor(**kw):
    from flowbridge.metrics.digits import digits_frechet_floor

    return torch.tensor(digits_frechet_floor(kw["n"], repeats=2))


def _frechet(**kw):
    from flowbridge.metrics import frechet_distance

    return frechet_distance(kw["a"], kw["b"])


def _digit_batch() -> torch.Tensor:
    return torch.rand(6, 1, 8, 8, generator=_g()) * 2 - 1


ENTRIES = (
    # analytic
    case("flowbridge.GaussianMixture", _mixture, _mix_defaults, {
        "weights": [None, _t(0.7, 0.7), _t(NAN, 1.0), _t(-0.5, 1.5)], "means": [None, _t(0.0, 1.0), _t([NAN, 0.0], [1.0, 1.0])],
        "covs": [None, _t(-0.5, 0.2), _t(NAN, 0.2), _t(0.5, 0.2, 0.1)]},
        names={"weights": ("finite", "sum"), "means": ("finite", "shape"), "covs": ("positive", "finite", "shape")}),
    case("flowbridge.analytic.gaussian_posterior", _gauss_post, _gauss_post_defaults, {
        "sigma_y": [0.0, -1.0, NAN], "y": [None, _t(0.1, 0.2), _t(NAN)], "matrix": [None, _t(1.0, 0.5)], "cov": [_t([1.0, 0.0], [0.0, -1.0])]},
        names={"cov": ("positive", "definite")}),
    case("flowbridge.analytic.mixture_posterior", _mix_post, _gauss_post_defaults, {
        "sigma_y": [0.0, -1.0, NAN], "y": [None, _t(0.1, 0.2), _t(NAN)], "matrix": [None, _t(1.0, 0.5)]}),
    case("flowbridge.analytic.GMMInverseProblem", _gmm_problem, lambda: {"d": 2, "d_y": 1, "seed": 0},
         {"d": [0, -1, 2.5], "d_y": [0, 3]}),
    case("flowbridge.analytic.gaussian_flow_map", _flow_map,
         lambda: {"x": torch.zeros(2, D, dtype=torch.float64), "t_start": 0.1, "t_end": 0.9},
         {"t_start": [-0.5, NAN], "t_end": [1.5], "x": [None, _t(0.0, 1.0, 2.0)]}, names={"t_start": ("[0, 1]",), "t_end": ("[0, 1]",), "x": ("shape",)}),
    # likelihood, random
    case("flowbridge.log_likelihood", _loglik, lambda: {"x": torch.zeros(2, D, dtype=torch.float64), "t_span": None},
         {"x": [None, _t(0.0, 1.0, 2.0), _t([NAN, 0.0])], "t_span": [(0.5, 0.5), (-0.5, 1.0), (0.5,)]},
         names={"t_span": ("t_", "[0, 1]", "span", "pair"), "x": ("finite", "features")}),
    case("flowbridge.random.GeneratorNoise", _generator_noise, lambda: {"generator": _g()}, {"generator": [3, "seed", [1]]}),
    case("flowbridge.random.noise_source", _noise_source, lambda: {"seed": 3, "batch": 3},
         {"seed": ["3", 1.5, True], "batch": [None], "seeds": [[1, 2], ["a", "b", "c"]], "generator": [3, "g"]}),
    case("flowbridge.random.GroupedNoise", _grouped_noise, lambda: {"seeds": [1, 2, 3], "particles": 2},
         {"seeds": [[], None, ["a"], [1.5]], "particles": [0, -1, 2.5, True, "2"]}),
    case("flowbridge.random.grouped_noise_source", _grouped_noise_source,
         lambda: {"generator": None, "seeds": None, "seed": 3, "groups": 3, "particles": 2},
         {"seed": ["3", 1.5, True], "groups": [0, 2.5, None], "particles": [0, -1, "2"], "seeds#with seed": [[1, 2, 3]],
          "generator": [3, "g"]}),
    case("flowbridge.random.randn", _draw("randn"), lambda: {"shape": (2, 3), "generator": _g()},
         {"shape": [(-1, 2), "ab", None], "generator": [3]}),
    case("flowbridge.random.rand", _draw("rand"), lambda: {"shape": (2, 3), "generator": _g()},
         {"shape": [(-1, 2), "ab", None], "generator": [3]}),
    case("flowbridge.random.randn_like", _randn_like, lambda: {"x": torch.zeros(2, 3), "generator": _g()},
         {"x": [None, [1.0]], "generator": [3]}),
    case("flowbridge.random.torch_generator", _torch_generator, lambda: {"generator": _g()}, {"generator": [3, "g"]}),
    case("flowbridge.random.as_noise_source", _as_noise_source, lambda: {"generator": _g()}, {"generator": [3, "g"]}),
    case("flowbridge.random.index_seeds", _index_seeds, lambda: {"seed": 3, "start": 0, "stop": 4},
         {"seed": ["3", None], "start": ["0", None, -1, 9]}),
    case("flowbridge.fields.ClippedField", _clipped_field, _clipped_defaults,
         {"clip": [(1.0, -1.0), (NAN, 1.0), "ab", None], "percentile": [0.0, 1.5, NAN, "0.9"], "inner": [None, 3]},
         names={"inner": ("field",)}),
    case("flowbridge.fields.clipping.clipped", _clipped, _clipped_defaults,
         {"clip": [(1.0, -1.0), (NAN, 1.0), "ab"], "percentile": [0.0, 1.5, NAN], "inner": [None, 3]},
         names={"inner": ("field",)}),
    case("flowbridge.StackedGenerators", _stacked, lambda: {"seeds": [1, 2, 3]}, {"seeds": [[], None, ["a"], [1.5]]}),
    # fields, nets, solver options
    case("flowbridge.CFGField", _field_ctor("CFGField"), _field_defaults, {"w": [NAN, INF, "2"], "inner": [None, 3]},
         names={"inner": ("field", "cond")}),
    case("flowbridge.AutoGuidanceField", _field_ctor("AutoGuidanceField"), _field_defaults, {"w": [NAN, INF, "2"], "inner": [None, 3]},
         names={"inner": ("field", "good")}),
    case("flowbridge.fields.AutocastField", _field_ctor("AutocastField"), _field_defaults, {"dtype": [torch.float64, "bf16", None], "inner": [None]},
         names={"inner": ("field",)}),
    case("flowbridge.fields.CompiledField", _field_ctor("CompiledField"), _field_defaults, {"inner": [None, 3]}, names={"inner": ("field",)}),
    case("flowbridge.NetworkField", _field_ctor("NetworkField"), _field_defaults, {"parametrisation": ["eps", None], "inner": [None, 3]},
         names={"inner": ("net", "module")}),
    case("flowbridge.nets.MLP", _mlp, lambda: {"dim": D, "hidden": 8, "depth": 1}, {"dim": [0, -1, 2.5], "hidden": [0], "depth": [-1]}),
    case("flowbridge.nets.UNet", _unet, lambda: {"in_channels": 1, "image_size": 4, "base_channels": 8, "channel_mults": (1,)},
         {"in_channels": [0], "image_size": [0, -1], "channel_mults": [(), (0,)]}, names={"image_size": ("divisible", "multiple")}),
    case("flowbridge.samplers.sde.EulerMaruyama", _solver_opts("euler_maruyama", "noise_scale"), lambda: {"noise_scale": 1.0},
         {"noise_scale": [-1.0, NAN, INF]}),
    case("flowbridge.samplers.sde.EDMStochastic", _solver_opts("edm_stochastic", "S_churn"), lambda: {"S_churn": 10.0}, {"S_churn": [-1.0, NAN]}),
    case("flowbridge.samplers.ode.Dopri5", _solver_opts("dopri5", "rtol"), lambda: {"rtol": 1e-3}, {"rtol": [0.0, -1.0, NAN]}),
    case("flowbridge.samplers.sde.AdaptiveSDE", _solver_opts("adaptive_sde", "atol"), lambda: {"atol": 1e-2}, {"atol": [0.0, -1.0, NAN]}),
    case("flowbridge.samplers.sde.LangevinCorrector", _solver_opts("pc", "snr"), lambda: {"snr": 0.1}, {"snr": [0.0, -1.0, NAN]}),
    case("flowbridge.samplers.sde.DDPMAncestral", _solver_opts("ddpm_ancestral", "eta"), lambda: {"eta": 1.0}, {"eta": [-1.0, NAN]}),
    # training (data modules validate at setup)
    case("flowbridge.training.Toy2D", _datamodule("Toy2D"), lambda: {"name": "moons", "n": 64, "val_size": 16, "batch_size": 8},
         {"name": ["nope", None], "n": [0, -5], "batch_size": [0]}, names={"name": ("unknown", "data set")}),
    case("flowbridge.training.Mixture", _datamodule("Mixture"), lambda: {"n": 64, "val_size": 16, "batch_size": 8},
         {"std": [0.0, -1.0, NAN], "components": [0], "weights": [[0.5, 0.5]]}),
    case("flowbridge.training.PairedToy", _datamodule("PairedToy"), lambda: {"n": 64, "val_size": 16, "batch_size": 8},
         {"source": ["nope"], "target": [None]}),
    case("flowbridge.training.GenerativeDataModule", _datamodule("Toy2D"), lambda: {"n": 64, "val_size": 16, "batch_size": 8},
         {"val_size": [-1]}, method="val_size"),
    case("flowbridge.training.TensorFile", _tensor_file, lambda: {"path": _tensor_file_path(), "batch_size": 8},
         {"path": ["/nonexistent/data.pt", None], "val_fraction": [1.5, -0.1, NAN], "event_shape": [[3]]},
         names={"path": ("no such", "file"), "event_shape": ("shape",)}),
    case("flowbridge.training.UniformTime", _time_sampler("UniformTime"), lambda: {"margin": 0.0}, {"margin": [-0.1, 0.6, NAN]}),
    case("flowbridge.training.LogitNormalTime", _time_sampler("LogitNormalTime"), lambda: {}, {"std": [0.0, -1.0, NAN], "mean": [NAN, INF]}),
    case("flowbridge.training.LogNormalNoiseTime", _time_sampler("LogNormalNoiseTime"), lambda: {}, {"p_std": [0.0, -1.0, NAN], "p_mean": [NAN]}),
    case("flowbridge.training.BatchStream", _batch_stream, lambda: {"batch_size": 4},
         {"batch_size": [0, -1], "batch_size#float": [2.5], "rank": [-1, 5], "world_size": [0]}, names={"rank": ("world_size",)}),
    case("flowbridge.training.sample_toy2d", _toy, lambda: {"name": "moons", "n": 8}, {"name": ["nope", None], "n": [0, 2.5]},
         names={"name": ("unknown", "data set")}),
    case("flowbridge.training.SamplePlot", _callback("SamplePlot"), lambda: {}, {"every_n_epochs": [0, -1], "num_samples": [0]}),
    case("flowbridge.training.SampleMetrics", _callback("SampleMetrics"), lambda: {}, {"every_n_epochs": [0, -1], "num_samples": [0, 1]}),
    case("flowbridge.training.SamplerConfig", _sampler_config, lambda: {}, {"solver": ["nope"], "steps": [0, -1], "grid": ["nope"], "guidance": [NAN]}),
    case("flowbridge.training.GenerativeModule", _generative_module, lambda: {"parametrisation": "velocity", "label_dropout": 0.0},
         {"parametrisation": ["eps"], "label_dropout": [-0.1, 1.5, NAN], "path": [None, "linear"]}),
    # scale
    case("flowbridge.scale.ShardDataset", _shards, lambda: {"num_samples": 10, "shard_size": 4}, {"num_samples": [0, -1, 2.5], "shard_size": [0]}),
    case("flowbridge.scale.sample_to_disk", _sample_to_disk, lambda: {"num_samples": 6, "sample_shape": (D,), "steps": 2},
         {"num_samples": [0, -1], "sample_shape": [(), (0,), None], "steps": [0]}, names={"sample_shape": ("shape",)}),
    case("flowbridge.scale.SamplingJob", _sampler_job, lambda: {"solver": "heun", "steps": 2}, {"solver": ["nope"], "steps": [0, -1]}),
    case("flowbridge.scale.ShardSampler", _sampler_job, lambda: {"solver": "heun", "steps": 2}, {"solver": [None]}),
    # interop
    case("flowbridge.interop.from_velocity", _from_velocity, _velocity_defaults,
         {"model": [None, 3], "path": ["nope", 3], "convention": ["nope"], "call": ["nope"]}, names={"path": ("schedule",)}),
    case("flowbridge.interop.from_diffusers", _from_diffusers, _diffusers_defaults,
         {"config": [None, {"_class_name": "NopeScheduler"}, {}], "prediction_type": ["nope"]},
         names={"config": ("scheduler",)}),
    case("flowbridge.interop.DiffusersField", _from_diffusers, _diffusers_defaults, {"prediction_type": ["nope", 3]}, method="prediction_type"),
    case("flowbridge.interop.FlowPrior", _flow_prior, _flow_prior_defaults,
         {"field": [None, 3], "event_shape": [(3,), (0,), "2"], "solver": ["nope", None], "steps": [0, -1, 2.5],
          "value": [lazy(lambda: torch.zeros(3, 3, dtype=torch.float64)), lazy(lambda: torch.full((3, D), NAN, dtype=torch.float64))]},
         names={"event_shape": ("shape", "features"), "value": ("shape", "finite", "x")}),
    case("flowbridge.training.Digits", _datamodule("Digits"), lambda: {"batch_size": 16, "val_size": 50},
         {"batch_size": [0, -1], "val_size": [10**6]}),
    # training schedules, EMA, image folders, checkpoints
    case("flowbridge.training.CosineLR", _cosine_lr, lambda: {"eta_min": 0.0, "warmup_steps": 1, "total_steps": 10},
         {"eta_min": [-1.0, NAN, "a"], "warmup_steps": [-1, 2.5], "total_steps": [-3, 1]}, names={"total_steps": ("room",)}),
    case("flowbridge.training.EMA", _ema, lambda: {"sigma_rel": 0.1}, {"sigma_rel": [0.0, -0.1, 0.5, NAN, "a"],
         "update_every_n_steps": [0, -1, 1.5]}),
    case("flowbridge.training.ImageFolder", _image_folder, lambda: {"root": _image_folder_path(), "channels": 1},
         {"root": ["/nonexistent/images"], "channels": [2, 0], "image_size": [0, -4], "val_fraction": [1.5, NAN]},
         names={"root": ("no such folder",)}),
    case("flowbridge.load", _load, lambda: {"ckpt": _checkpoint_path(), "weights": "ema"},
         {"ckpt": ["/nonexistent/last.ckpt", lazy(_tensor_file_path)], "weights": ["best", None]},
         names={"ckpt": ("no such checkpoint", "not a Lightning checkpoint")}),
    # digits metrics
    case("flowbridge.metrics.digits_features", _digits_images, lambda: {"x": _digit_batch()},
         {"x": [None, lazy(lambda: torch.zeros(4, 3, 8, 8)), lazy(lambda: torch.zeros(4, 64, dtype=torch.long))]},
         names={"x": ("8x8", "floating")}),
    case("flowbridge.metrics.digits_frechet_distance", _digits_fd, lambda: {"x": _digit_batch()},
         {"x": [lazy(lambda: torch.zeros(1, 1, 8, 8)), lazy(lambda: torch.zeros(4, 5))]}, names={"x": ("8x8",)}),
    case("flowbridge.metrics.digits.digits_frechet_floor", _digits_floor, lambda: {"n": 50}, {"n": [1, 10**5, 2.5]}),
    case("flowbridge.metrics.frechet_distance", _frechet,
         lambda: {"a": torch.randn(20, 3, generator=_g()), "b": torch.randn(30, 3, generator=_g())},
         {"a": [None, lazy(lambda: torch.zeros(1, 3)), lazy(lambda: torch.zeros(5, 2))]}, names={"a": ("features_a", "dimensions")}),
    case("flowbridge.viz.plot_curves", _viz("plot_curves"), lambda: {"x": {"loss": ([1, 2], [1.0, 0.5])}},
         {"x": [{}, {"loss": ([1, 2], [1.0])}]}, names={"x": ("curves", "series", "equal length")}),
    # viz
    case("flowbridge.viz.plot_samples", _viz("plot_samples"), lambda: {"x": torch.randn(8, 2)}, {"x": [None, lazy(lambda: torch.randn(8, 3))]},
         names={"x": ("shape", "2")}),
    case("flowbridge.viz.plot_trajectories", _viz("plot_trajectories"), lambda: {"x": torch.randn(3, 8, 2)},
         {"x": [None, lazy(lambda: torch.randn(8, 2))]}, names={"x": ("trajectory", "shape")}),
    case("flowbridge.viz.image_grid", _viz("image_grid"), lambda: {"x": torch.rand(4, 1, 4, 4)}, {"x": [None, lazy(lambda: torch.rand(4))]},
         names={"x": ("images", "shape")}),
    case("flowbridge.viz.save_figure", _save_figure, lambda: {"path": _tmp_png()}, {"path": [None], "fig": [None, 3]}),
)

KIND = Kind("api", inputs, (), ENTRIES)
test_api, test_api_thorough = sweep_test(KIND)
