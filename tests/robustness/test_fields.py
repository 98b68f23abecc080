"""Sweep of fields and networks: every public field (analytic, network, guided, wrapped, bridge,
BFN, interop) and backbone evaluated at corrupted ``(x, t)``.

Contract for these per-step methods (they run inside step loops, so they check metadata only, never
values: no host sync): a wrong rank, feature size, dtype, type or time shape raises a clear error;
a time at an endpoint gives a finite value or a clear error (except where the quantity itself is
infinite there, e.g. the score at sigma = 0); a time outside [0, 1], NaN/inf and 1e30 inputs may
propagate: checking values inside the loop would be a host sync, so the API boundary checks them
(``flowbridge.sample`` validates the time span and raises ``SamplingError`` on non-finite samples).
"""

from __future__ import annotations

import functools

import torch
from hypothesis import strategies as st
from torch import nn

from tests.robustness.sweep import (
    Corruption, Entry, Kind, batch, sweep_test, tensor_corruptions, time_corruptions, _set,
)
from tests.robustness.harness import Bad

D = 2


@functools.cache
def mixture():
    from flowbridge.analytic import GaussianMixture

    means = torch.tensor([[-2.0, 0.0], [2.0, 1.0]], dtype=torch.float64)
    covs = torch.tensor([[0.3, 0.2], [0.5, 0.1]], dtype=torch.float64)
    return GaussianMixture(torch.tensor([0.4, 0.6], dtype=torch.float64), means, covs)


def mlp(out: int | None = None) -> nn.Module:
    from flowbridge.nets import MLP

    torch.manual_seed(0)
    return MLP(D, hidden=16, depth=2, time_embed_dim=8, out_dim=out).double()


@functools.cache
def fields() -> dict[str, object]:
    from flowbridge import fields as F
    from flowbridge.analytic import GaussianBridge, GaussianMixtureInterpolantField
    from flowbridge.bfn import BFNField, ContinuousBFN, MixturePosteriorMean
    from flowbridge.bridges import SBCFM, DriftNetworkField, LightSB
    from flowbridge.interop import LatentField, from_velocity
    from flowbridge.paths import GaussianPath, StochasticInterpolant

    lin = GaussianPath("linear")
    net_field = F.NetworkField(mlp(), lin, "velocity")
    other = F.NetworkField(mlp(), lin, "velocity")
    exact = mixture().field(lin)
    bridge = GaussianBridge(
        torch.zeros(D, dtype=torch.float64), torch.eye(D, dtype=torch.float64),
        torch.ones(D, dtype=torch.float64), 0.5 * torch.eye(D, dtype=torch.float64), 1.0,
    )
    torch.manual_seed(0)
    light = LightSB(D, n_potentials=3, eps=0.5).double()
    sbcfm = SBCFM(D, sigma=1.0, hidden=16, depth=2).double()
    bfn = ContinuousBFN(sigma1=0.1)
    decoder = nn.Linear(D, D).double()
    return {
        "flowbridge.analytic.GaussianMixtureField": exact,
        "flowbridge.analytic.GaussianMixtureField@vp": mixture().field(GaussianPath("vp")),
        "flowbridge.NetworkField": net_field,
        "flowbridge.CFGField": F.CFGField(net_field, other, 2.0),
        "flowbridge.AutoGuidanceField": F.AutoGuidanceField(net_field, other, 1.5),
        "flowbridge.fields.GuidedField": F.GuidedField(exact, net_field, 0.5),
        "flowbridge.fields.InterpolantField": F.InterpolantField(mlp(), mlp(), StochasticInterpolant()),
        "flowbridge.fields.AutocastField": F.AutocastField(exact, torch.bfloat16),
        "flowbridge.analytic.GaussianMixtureInterpolantField": GaussianMixtureInterpolantField(mixture(), mixture()),
        "flowbridge.analytic.GaussianBridgeField": bridge.field(),
        "flowbridge.bridges.LightSBField": light.field(),
        "flowbridge.bridges.SBCFMBridgeField": sbcfm.bridge_field(),
        "flowbridge.bridges.DriftNetworkField": DriftNetworkField(mlp(), 0.5),
        "flowbridge.bfn.BFNField": BFNField(bfn, mlp()),
        "flowbridge.interop.VelocityField": from_velocity(lambda x, t: -x * t[:, None], "linear"),
        "flowbridge.interop.LatentField": LatentField(exact, None, decoder),
        "flowbridge.bfn.MixturePosteriorMean": MixturePosteriorMean(mixture(), 0.1),
    }


def inputs(draw) -> dict:
    b = draw(batch)
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    x = torch.randn(b, D, generator=g, dtype=torch.float64)
    t = torch.full((b,), draw(st.floats(0.05, 0.95)), dtype=torch.float64)
    return {"x": x, "t": t}


def method_entry(name: str, method: str, **kw) -> Entry:
    key = name.split("@")[0]
    suffix = method + ("@" + name.split("@")[1] if "@" in name else "")

    def call(i: dict):
        f = fields()[name]
        return getattr(f, method)(i["x"], i["t"]) if method != "forward" else f(i["x"], i["t"])

    return Entry(key, call, ("x", "t"), method=suffix, **kw)


def net_entry(name: str, build, **kw) -> Entry:
    net = functools.cache(build)
    return Entry(name, lambda i: net()(i["x"], i["t"]), ("x", "t"), method="forward", **kw)


def _unet():
    from flowbridge.nets import UNet

    torch.manual_seed(0)
    return UNet(in_channels=1, image_size=4, base_channels=8, channel_mults=(1,), time_embed_dim=8).double()


def _unet_call(i: dict):
    x = i["x"]
    if isinstance(x, torch.Tensor) and x.ndim == 2 and x.shape[-1] == D:
        x = x.repeat(1, 8).reshape(-1, 1, 4, 4)  # an image batch built from the same draws
    return _unet()(x, i["t"])


def _embedding(i: dict):
    from flowbridge.nets import SinusoidalTimeEmbedding

    return SinusoidalTimeEmbedding(8)(i["t"])


def _same_path(i: dict):
    from flowbridge.fields import same_path

    f = fields()
    other = {
        "same": f["flowbridge.CFGField"],
        "other path": f["flowbridge.analytic.GaussianMixtureField@vp"],
        "not a field": i["x"],
    }[i.get("mode", "same")]
    return same_path(f["flowbridge.NetworkField"], other)


def _mode(mode: str):
    def apply(draw, i: dict) -> dict:
        i["mode"] = mode
        return i

    return apply


#: Singular endpoints where a finite value cannot exist (score = -x0_hat / sigma at sigma = 0).
SINGULAR_T1 = {"t = 1": "propagate"}
BRIDGE_FLOW = {"t = 1": "propagate", "t > 1": "propagate"}

ENTRIES = (
    method_entry("flowbridge.analytic.GaussianMixtureField", "velocity"),
    method_entry("flowbridge.analytic.GaussianMixtureField", "score", expect=SINGULAR_T1),
    method_entry("flowbridge.analytic.GaussianMixtureField", "data"),
    method_entry("flowbridge.analytic.GaussianMixtureField@vp", "noise"),
    method_entry("flowbridge.NetworkField", "velocity"),
    method_entry("flowbridge.NetworkField", "data", expect={"t = 0": "propagate"}),
    method_entry("flowbridge.CFGField", "velocity"),
    method_entry("flowbridge.AutoGuidanceField", "velocity"),
    method_entry("flowbridge.fields.GuidedField", "velocity"),
    method_entry("flowbridge.fields.InterpolantField", "velocity"),
    method_entry("flowbridge.fields.InterpolantField", "score", expect={"t = 0": "propagate", "t = 1": "propagate"}),
    method_entry("flowbridge.fields.AutocastField", "velocity"),
    method_entry("flowbridge.analytic.GaussianMixtureInterpolantField", "velocity"),
    method_entry("flowbridge.analytic.GaussianBridgeField", "drift", expect=BRIDGE_FLOW),
    method_entry("flowbridge.bridges.LightSBField", "drift", expect=BRIDGE_FLOW),
    method_entry("flowbridge.bridges.SBCFMBridgeField", "drift"),
    method_entry("flowbridge.bridges.DriftNetworkField", "drift"),
    method_entry("flowbridge.bfn.BFNField", "data"),
    # A wrapped model decides which shapes it accepts; the wrapper checks type and dtype only.
    method_entry("flowbridge.interop.VelocityField", "velocity", expect={"x: wrong rank": "either", "x: wrong size": "either"}),
    method_entry("flowbridge.interop.LatentField", "velocity"),
    method_entry("flowbridge.bfn.MixturePosteriorMean", "forward", expect={"t = 0": "propagate"}),
    net_entry("flowbridge.nets.MLP", mlp),
    Entry("flowbridge.nets.UNet", _unet_call, ("x", "t"), method="forward"),
    Entry("flowbridge.nets.SinusoidalTimeEmbedding", _embedding, ("t",), method="forward"),
    Entry("flowbridge.fields.same_path", _same_path, (), extra=(
        Corruption(Bad("fields on different paths", ("path",), "raise"), "", _mode("other path")),
        Corruption(Bad("not a field", ("field",), "raise"), "", _mode("not a field")),
    )),
)

KIND = Kind(
    "fields",
    inputs,
    (*tensor_corruptions("x"), *time_corruptions("t", outside="propagate")),
    ENTRIES,
)

test_fields, test_fields_thorough = sweep_test(KIND)
