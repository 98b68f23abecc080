"""Sweep of inverse problems: ``flowbridge.inverse.sample`` with every posterior sampler, the
measurement, operators, noise models and the linear-algebra helpers.

Contract: the API boundary (``inverse.sample``, ``Measurement``, operator and noise constructors)
refuses bad shapes, dtypes, types, names, step counts and non-finite observations with a clear
error; non-finite posterior samples raise ``FloatingPointError`` (the documented error of
``inverse.sample``); otherwise the samples are finite with the operator's input shape.
"""

from __future__ import annotations

import functools

import torch
from hypothesis import strategies as st

from tests.robustness.harness import Bad
from tests.robustness.sweep import (
    Corruption, Entry, Kind, batch, name_corruptions, positive_corruptions, sweep_test, tensor_corruptions,
)

D, M = 2, 1
ERRORS = (ValueError, TypeError, FloatingPointError)


@functools.cache
def prior():
    from tests.robustness.test_fields import mixture

    return mixture().field("vp")


def inputs(draw) -> dict:
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    return {
        "y": torch.randn(1, M, generator=g, dtype=torch.float64) * 0.5, "matrix": torch.tensor([[1.0, 0.5]], dtype=torch.float64),
        "sigma": draw(st.sampled_from([0.1, 0.5])), "method": "dps", "steps": draw(st.integers(3, 5)), "num_samples": draw(batch),
        "x": torch.randn(draw(batch), D, generator=g, dtype=torch.float64), "mask": torch.tensor([[True, False], [True, True]]),
        "factor": 2, "iterations": 3,
    }


def measurement(i: dict):
    from flowbridge.inverse import Gaussian, MatrixOperator, Measurement

    return Measurement(i["y"], MatrixOperator(i["matrix"]), Gaussian(i["sigma"]))


def _inverse_sample(method: str | None = None):
    def call(i: dict):
        from flowbridge import inverse

        m = method or i["method"]
        kw = {"particles": 4} if m in ("mcgdiff", "tds", "enkg", "ensemble") else {}
        out = inverse.sample(prior(), measurement(i), m, num_samples=i["num_samples"], steps=i["steps"],
                             generator=torch.Generator().manual_seed(0), **kw)
        assert out.samples.shape[1:] == (D,), "posterior samples must have the operator's input shape"
        return out.samples

    return call


def _noise(cls: str):
    def call(i: dict):
        from flowbridge import inverse

        model = getattr(inverse, cls)(i["sigma"])
        mean = torch.zeros(3, M, dtype=torch.float64) + 0.5
        return model.log_prob(torch.ones(3, M, dtype=torch.float64), mean) if cls != "Poisson" else model.sample(mean, generator=torch.Generator().manual_seed(0))

    return call


def _matrix_forward(i: dict):
    from flowbridge.inverse import MatrixOperator

    return MatrixOperator(i["matrix"])(i["x"])


def _inpainting(i: dict):
    from flowbridge.inverse import Inpainting

    return Inpainting(i["mask"])(torch.ones(2, 2, 2, dtype=torch.float64))


def _blur(i: dict):
    from flowbridge.inverse import Blur

    return Blur(i["matrix"], (4, 4))(torch.ones(1, 4, 4, dtype=torch.float64))


def _downsample(i: dict):
    from flowbridge.inverse import Downsample

    return Downsample(i["factor"], (4, 4))(torch.ones(1, 4, 4, dtype=torch.float64))


def _lambda(i: dict):
    from flowbridge.inverse import Lambda

    op = Lambda(lambda v: v[:, :1] ** 2, (D,), (M,))
    return op(i["x"])


def _adjointness(i: dict):
    from flowbridge.inverse import MatrixOperator, adjointness_test

    report = adjointness_test(MatrixOperator(i["matrix"]), trials=2, generator=torch.Generator().manual_seed(0))
    return torch.tensor(report.relative_error)


def _cg(i: dict):
    from flowbridge.inverse import conjugate_gradient

    a = torch.tensor([[2.0, 0.5], [0.5, 1.0]], dtype=torch.float64)
    return conjugate_gradient(lambda v: v @ a, i["x"], None, i["iterations"])


def _get_sampler(i: dict):
    from flowbridge.inverse import get_posterior_sampler

    return get_posterior_sampler(i["method"])


def _measurement(i: dict):
    m = measurement(i)
    return m.log_likelihood(torch.zeros(2, D, dtype=torch.float64))


def _latent(i: dict):
    from flowbridge.interop import LatentField
    from flowbridge.inverse import MatrixOperator, compose_with_decoder, sample_latent

    decoder = MatrixOperator(torch.eye(D, dtype=torch.float64))
    field = LatentField(prior(), None, decoder)
    op = compose_with_decoder(MatrixOperator(i["matrix"]), decoder, (D,))
    assert tuple(op.output_shape) == (M,)
    out = sample_latent(field, measurement(i), "dps", latent_shape=(D,), num_samples=i["num_samples"], steps=i["steps"],
                        generator=torch.Generator().manual_seed(0))
    return out.samples


Y = tensor_corruptions("y", values="raise", scales="either", errors=ERRORS)
X = tensor_corruptions("x", values="propagate", errors=ERRORS)
OPTIONS = (
    *name_corruptions("method", "sampler", ERRORS),
    *positive_corruptions("steps", integer=True, errors=ERRORS),
    *positive_corruptions("num_samples", integer=True, errors=ERRORS),
    *positive_corruptions("sigma", errors=ERRORS),
    *positive_corruptions("iterations", integer=True, errors=ERRORS),
    *positive_corruptions("factor", integer=True, errors=ERRORS),
    *tensor_corruptions("matrix", values="raise", scales="either", errors=ERRORS, empty="raise"),
    Corruption(Bad("mask: not boolean", ("mask",), "raise"), "mask", lambda d, i: {**i, "mask": i["mask"].double()}),
    Corruption(Bad("mask: keeps nothing", ("mask",), "raise"), "mask", lambda d, i: {**i, "mask": torch.zeros(2, 2, dtype=torch.bool)}),
)


def _sampler_entries() -> tuple[Entry, ...]:
    from flowbridge.inverse import POSTERIOR_SAMPLERS

    out = []
    for name, cls in sorted(POSTERIOR_SAMPLERS.items()):
        out.append(Entry(f"{cls.__module__}.{cls.__qualname__}", _inverse_sample(name), ("y", "steps"), method=name, expect=Y_DOC))
    return tuple(out)


SAMPLER_SUBSET = {"y: NaN entry", "y: scale 1e30", "y: wrong size", "steps: zero", "y: int dtype"}

#: Documented conversions: Measurement and MatrixOperator cast an integer y / matrix to the default
#: float dtype; y of shape (1, *output_shape) drops its leading 1 (the "wrong rank" draw here).
Y_DOC = {"y: int dtype": "either", "y: wrong rank": "either"}
#: Another valid matrix (a different operator): the shape checks happen where it meets x or y.
MATRIX_DOC = {"matrix: int dtype": "either", "matrix: wrong size": "either"}
CG_USER = {
    "x: wrong rank": "the matvec is the caller's: its own shape errors propagate unchanged",
    "x: wrong size": "the matvec is the caller's: its own shape errors propagate unchanged",
    "x: float16": "the matvec is the caller's: its own dtype errors propagate unchanged",
}

ENTRIES = (
    # (an inf matrix reaches sampling, which refuses the non-finite result: FloatingPointError)
    Entry("flowbridge.inverse.sample", _inverse_sample(), ("y", "matrix", "sigma", "method", "steps", "num_samples"),
          expect={**Y_DOC, **MATRIX_DOC}),
    Entry("flowbridge.inverse.Measurement", _measurement, ("y", "matrix", "sigma"), expect={**Y_DOC, **MATRIX_DOC}),
    Entry("flowbridge.inverse.MatrixOperator", _matrix_forward, ("matrix", "x"), expect=MATRIX_DOC),
    Entry("flowbridge.inverse.Inpainting", _inpainting, ("mask",)),
    # Blur's kernel must be floating point (an integer kernel is refused, unlike MatrixOperator's matrix).
    Entry("flowbridge.inverse.Blur", _blur, ("matrix",), expect={"matrix: wrong size": "either", "matrix: scale 1e-30": "either"}),
    Entry("flowbridge.inverse.Downsample", _downsample, ("factor",)),
    Entry("flowbridge.inverse.Lambda", _lambda, ("x",)),
    Entry("flowbridge.inverse.Gaussian", _noise("Gaussian"), ("sigma",)),
    Entry("flowbridge.inverse.Laplace", _noise("Laplace"), ("sigma",)),
    Entry("flowbridge.inverse.Poisson", _noise("Poisson"), ("sigma",)),
    Entry("flowbridge.inverse.adjointness_test", _adjointness, ("matrix",), expect=MATRIX_DOC),
    Entry("flowbridge.inverse.conjugate_gradient", _cg, ("x", "iterations"), skip=CG_USER,
          expect={"iterations: zero": "either"}, also_names=("rhs",)),
    Entry("flowbridge.inverse.get_posterior_sampler", _get_sampler, ("method",)),
    Entry("flowbridge.inverse.sample_latent", _latent, ("y", "steps", "num_samples"), expect=Y_DOC),
    Entry("flowbridge.inverse.compose_with_decoder", _latent, ("matrix",), method="compose", expect={"matrix: int dtype": "either"},
          also_names=("operator", "decoder")),
)

KIND = Kind("inverse", inputs, (*Y, *X, *OPTIONS), ENTRIES)
test_inverse, test_inverse_thorough = sweep_test(KIND)

SAMPLER_KIND = Kind("inverse samplers", inputs, tuple(c for c in KIND.corruptions if c.bad.label in SAMPLER_SUBSET), _sampler_entries())
test_posterior_samplers, test_posterior_samplers_thorough = sweep_test(SAMPLER_KIND)
