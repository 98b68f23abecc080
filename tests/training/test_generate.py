"""``generate(num, *, x0, labels, generator, seeds, **overrides)`` on every module type: every argument
is honoured or refused with a message naming it."""

from __future__ import annotations

import pytest
import torch

import flowbridge as fb
from tests.training.test_trainer_features import MODULES


@pytest.fixture(scope="module")
def modules() -> dict[str, torch.nn.Module]:
    """Each module type, set up from its data (event shape, sources) without training."""
    out = {}
    for name, make in MODULES.items():
        torch.manual_seed(0)
        module, data = make()
        data.setup("fit")
        module.event_shape = tuple(data.event_shape)
        g = torch.Generator().manual_seed(1)
        with torch.no_grad():  # random weights everywhere (a fresh UNet's output layer is zero: labels would not matter)
            for p in module.parameters():
                p.add_(0.05 * torch.randn(p.shape, generator=g))
        module.sources = data.source_reference() if data.has_source else None
        out[name] = module.eval()
    return out


def _x0(module: torch.nn.Module, n: int) -> torch.Tensor | None:
    return module.sources[:n] if module.transports_data else None


@pytest.mark.parametrize("name", sorted(MODULES))
def test_seeds_make_each_sample_independent_of_its_batch(modules: dict, name: str) -> None:
    m = modules[name]
    with torch.no_grad():
        x0 = _x0(m, 5)
        five = m.generate(5, x0=x0, seeds=[11, 12, 13, 14, 15], steps=3)
        two = m.generate(2, x0=None if x0 is None else x0[3:], seeds=[14, 15], steps=3)
    # Rows computed in batches of different sizes: float32 kernels may round differently, by a few ulps.
    torch.testing.assert_close(two, five[3:], rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="seeds has 2 entries"):
        m.generate(3, x0=_x0(m, 3), seeds=[1, 2])
    with pytest.raises(ValueError, match="generator or seeds"):
        m.generate(2, x0=_x0(m, 2), seeds=[1, 2], generator=torch.Generator())


@pytest.mark.parametrize("name", sorted(MODULES))
def test_generator_makes_draws_reproducible(modules: dict, name: str) -> None:
    m = modules[name]
    with torch.no_grad():
        a = m.generate(4, x0=_x0(m, 4), generator=torch.Generator().manual_seed(3), steps=3)
        b = m.generate(4, x0=_x0(m, 4), generator=torch.Generator().manual_seed(3), steps=3)
    assert a.shape == (4, *m.event_shape) and torch.equal(a, b)
    with pytest.raises(ValueError, match="num must be a positive integer"):
        m.generate(0, x0=_x0(m, 1))
    with pytest.raises(ValueError, match="unknown solver 'nope'"):
        m.generate(2, x0=_x0(m, 2), solver="nope")


@pytest.mark.parametrize("name", sorted(MODULES))
def test_labels_are_honoured_by_conditional_models_and_refused_by_the_others(modules: dict, name: str) -> None:
    m = modules[name]
    if m.num_classes is None:
        with pytest.raises(ValueError, match="unconditional: labels must be None"):
            m.generate(2, x0=_x0(m, 2), labels=torch.tensor([0, 1]))
        with pytest.raises(ValueError, match="unconditional: guidance"):
            m.generate(2, x0=_x0(m, 2), guidance=2.0)
        return
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    with torch.no_grad():
        threes = m.generate(3, labels=torch.full((3,), 3), generator=g(), steps=3)
        fives = m.generate(3, labels=torch.full((3,), 5), generator=g(), steps=3)
        guided = m.generate(3, labels=torch.full((3,), 5), generator=g(), steps=3, guidance=3.0)
    assert not torch.allclose(threes, fives) and not torch.allclose(fives, guided)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 10\)"):
        m.generate(2, labels=torch.tensor([0, 10]))
    with pytest.raises(ValueError, match="integer tensor of shape"):
        m.generate(2, labels=torch.tensor([0.0, 1.0]))


@pytest.mark.parametrize("name", sorted(MODULES))
def test_x0_is_honoured_required_or_refused(modules: dict, name: str) -> None:
    m = modules[name]
    if m.transports_data:
        with pytest.raises(ValueError, match="transports source data: pass x0"):
            m.generate(2)
    elif not m.accepts_x0:
        with pytest.raises(ValueError, match="x0 is not supported"):
            m.generate(2, x0=torch.zeros(2, *m.event_shape))
    else:  # initial noise: the preset's deterministic solver maps it as flowbridge.sample does
        z = torch.randn(4, *m.event_shape, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            x = m.generate(4, x0=z, steps=3)
            expected = fb.sample(m.field(), m.sampler_config.solver, 3, x0=z, grid=m.sampler_config.grid).x
        torch.testing.assert_close(x, expected)
    if m.accepts_x0:
        with pytest.raises(ValueError, match=r"shape \(num=3, \.\.\.\)"):
            m.generate(3, x0=torch.zeros(2, *m.event_shape))


@pytest.mark.parametrize("name", sorted(MODULES))
def test_seed_t_span_and_batch_size_are_the_sampling_vocabulary(modules: dict, name: str) -> None:
    """``seed=`` gives per-sample streams (chunking changes nothing), ``t_span`` reaches the solver,
    bad values fail naming the argument."""
    m = modules[name]
    if m.sampler_config.solver in m.sampler_config.extra_solvers:  # BFN's "original", LightSB's "plan"
        with pytest.raises(ValueError, match="t_span and batch_size do not apply"):
            m.generate(2, x0=_x0(m, 2), seed=1, batch_size=1)
        return
    with torch.no_grad():
        x0 = _x0(m, 5)
        whole = m.generate(5, x0=x0, seed=7, steps=3)
        chunked = m.generate(5, x0=x0, seed=7, steps=3, batch_size=2)
        span = m.generate(5, x0=x0, seed=7, steps=3, t_span=(0.2, 0.8))
    torch.testing.assert_close(chunked, whole, rtol=1e-4, atol=1e-5)  # a few ulps: other batch shapes
    assert not torch.allclose(span, whole)
    with pytest.raises(ValueError, match="at most one of generator, seeds and seed"):
        m.generate(2, x0=_x0(m, 2), seed=1, generator=torch.Generator())
    for bad in [(0.8, 0.2), (0.0, 1.5), (0.5,), "ab"]:
        with pytest.raises(ValueError, match="t_span"):
            m.generate(2, x0=_x0(m, 2), t_span=bad)
    for bad in [0, -1, 1.5, True]:
        with pytest.raises(ValueError, match="batch_size"):
            m.generate(2, x0=_x0(m, 2), batch_size=bad)


def test_another_solver_starts_from_its_own_options() -> None:
    cfg = fb.training.SamplerConfig(solver="dpmpp_2m", grid="logsnr", options={"final_step": "denoise"})
    assert cfg.replace(steps=3).options == {"final_step": "denoise"}
    assert cfg.replace(options={"warmup": "lower_order"}).options == {"final_step": "denoise", "warmup": "lower_order"}
    assert cfg.replace(solver="euler").options == {}
    assert cfg.replace(solver="dpmpp_3m", options={"variant": "lu"}).options == {"variant": "lu"}
