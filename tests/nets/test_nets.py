"""Tests for flowbridge.nets: shapes, conditioning, gradients, validation and determinism."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from flowbridge.nets import MLP, SinusoidalTimeEmbedding, UNet


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _assert_all_params_get_grads(net: nn.Module) -> None:
    for name, p in net.named_parameters():
        assert p.grad is not None, f"{name} received no gradient"
        assert torch.isfinite(p.grad).all(), f"{name} has a non-finite gradient"
        assert p.grad.abs().sum() > 0, f"{name} has an all-zero gradient"


# --- SinusoidalTimeEmbedding ---------------------------------------------------------------


def test_embedding_shapes_and_range() -> None:
    emb = SinusoidalTimeEmbedding(16)
    t = torch.rand(5, generator=_gen())
    out = emb(t)
    assert out.shape == (5, 16)
    assert out.abs().max() <= 1.0 + 1e-6
    assert emb(torch.tensor(0.3)).shape == (1, 16)


def test_embedding_odd_dim_pads_one_zero_feature() -> None:
    out = SinusoidalTimeEmbedding(7)(torch.rand(4, generator=_gen()))
    assert out.shape == (4, 7)
    assert torch.all(out[:, -1] == 0)


def test_embedding_follows_t_dtype_and_separates_times() -> None:
    emb = SinusoidalTimeEmbedding(32)
    t = torch.tensor([0.0, 0.001, 0.5, 1.0], dtype=torch.float64)
    out = emb(t)
    assert out.dtype == torch.float64
    # Nearby times must map to clearly different features, which is what the x1000 scaling buys.
    assert (out[0] - out[1]).norm() > 0.1
    assert emb(torch.tensor([1, 2])).dtype == torch.get_default_dtype()


def test_embedding_rejects_2d_t() -> None:
    with pytest.raises(ValueError, match="t must have shape"):
        SinusoidalTimeEmbedding(8)(torch.zeros(2, 3))


# --- MLP -------------------------------------------------------------------------------------


@pytest.mark.parametrize("out_dim", [None, 5])
def test_mlp_output_shape(out_dim: int | None) -> None:
    net = MLP(3, hidden=32, depth=2, out_dim=out_dim)
    x = torch.randn(8, 3, generator=_gen())
    out = net(x, torch.rand(8, generator=_gen(1)))
    assert out.shape == (8, out_dim or 3)
    assert torch.isfinite(out).all()


def test_mlp_depends_on_time() -> None:
    net = MLP(2, hidden=32)
    x = torch.randn(4, 2, generator=_gen())
    assert not torch.allclose(net(x, 0.1), net(x, 0.9))


def test_mlp_scalar_t_matches_batched_t() -> None:
    net = MLP(2, hidden=32)
    x = torch.randn(6, 2, generator=_gen())
    expected = net(x, torch.full((6,), 0.37))
    torch.testing.assert_close(net(x, torch.tensor(0.37)), expected)
    torch.testing.assert_close(net(x, 0.37), expected)
    torch.testing.assert_close(net(x, torch.tensor([0.37])), expected)


def test_mlp_class_conditioning_and_null_label() -> None:
    net = MLP(2, hidden=32, num_classes=3)
    assert net.null_label == 3
    assert net.class_embed is not None and net.class_embed.num_embeddings == 4
    x = torch.randn(4, 2, generator=_gen())
    t = torch.rand(4, generator=_gen(1))
    y0 = torch.zeros(4, dtype=torch.long)
    y1 = torch.ones(4, dtype=torch.long)
    null = torch.full((4,), 3, dtype=torch.long)
    assert net(x, t, y0).shape == (4, 2)
    assert not torch.allclose(net(x, t, y0), net(x, t, y1))
    torch.testing.assert_close(net(x, t), net(x, t, null))
    assert not torch.allclose(net(x, t), net(x, t, y0))


def test_mlp_label_validation() -> None:
    x = torch.randn(4, 2, generator=_gen())
    with pytest.raises(ValueError, match="num_classes"):
        MLP(2, hidden=16)(x, 0.5, torch.zeros(4, dtype=torch.long))
    net = MLP(2, hidden=16, num_classes=3)
    with pytest.raises(ValueError, match="y must have shape"):
        net(x, 0.5, torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="integer"):
        net(x, 0.5, torch.zeros(4))
    with pytest.raises(ValueError, match=r"y must lie in \[0, 3\]"):
        net(x, 0.5, torch.full((4,), 4, dtype=torch.long))


def test_mlp_gradients_reach_every_parameter() -> None:
    net = MLP(2, hidden=32, depth=3, num_classes=2)
    x = torch.randn(16, 2, generator=_gen(), requires_grad=True)
    y = torch.tensor([0, 1, 2, 0] * 4)
    net(x, torch.rand(16, generator=_gen(1)), y).square().mean().backward()
    _assert_all_params_get_grads(net)
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_mlp_rejects_bad_x_shape() -> None:
    net = MLP(3, hidden=16)
    with pytest.raises(ValueError, match=r"x must have shape \(B, 3\)"):
        net(torch.zeros(4, 2), 0.5)
    with pytest.raises(ValueError, match=r"x must have shape \(B, 3\)"):
        net(torch.zeros(3), 0.5)


def test_mlp_rejects_mismatched_t() -> None:
    with pytest.raises(ValueError, match="t must"):
        MLP(2, hidden=16)(torch.zeros(4, 2), torch.rand(3, generator=_gen()))


def test_mlp_rejects_bad_sizes() -> None:
    with pytest.raises(ValueError, match="depth"):
        MLP(2, depth=0)
    with pytest.raises(ValueError, match="num_classes"):
        MLP(2, num_classes=0)


def test_mlp_deterministic_under_manual_seed() -> None:
    x = torch.randn(5, 2, generator=_gen())
    outs = []
    with torch.random.fork_rng():
        for _ in range(2):
            torch.manual_seed(123)
            outs.append(MLP(2, hidden=32)(x, 0.5))
        torch.manual_seed(124)
        other = MLP(2, hidden=32)(x, 0.5)
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0)
    assert not torch.allclose(outs[0], other)


# --- UNet ------------------------------------------------------------------------------------

CONFIGS_28 = {"image_size": 28, "base_channels": 16, "channel_mults": (1, 2, 2)}


@pytest.mark.parametrize(
    ("kwargs", "shape"),
    [
        ({}, (1, 8, 8)),
        (CONFIGS_28, (1, 28, 28)),
        # 12 channels: GroupNorm falls back to 6 groups since 8 does not divide 12.
        ({"in_channels": 3, "base_channels": 12, "num_res_blocks": 2}, (3, 8, 8)),
    ],
)
def test_unet_output_shape(kwargs: dict, shape: tuple[int, int, int]) -> None:
    net = UNet(**kwargs)
    x = torch.randn(3, *shape, generator=_gen())
    out = net(x, torch.rand(3, generator=_gen(1)))
    assert out.shape == (3, *shape)
    assert out.is_contiguous()
    assert torch.isfinite(out).all()


def test_unet_out_channels() -> None:
    net = UNet(in_channels=1, out_channels=2, base_channels=8)
    assert net(torch.randn(2, 1, 8, 8, generator=_gen()), 0.5).shape == (2, 2, 8, 8)


def test_unet_28_depends_on_time_and_input() -> None:
    net = UNet(**CONFIGS_28)
    x = torch.randn(2, 1, 28, 28, generator=_gen())
    assert not torch.allclose(net(x, 0.1), net(x, 0.9))
    assert not torch.allclose(net(x, 0.5), net(x + 1.0, 0.5))


def test_unet_scalar_t_matches_batched_t() -> None:
    net = UNet(base_channels=8)
    x = torch.randn(4, 1, 8, 8, generator=_gen())
    expected = net(x, torch.full((4,), 0.25))
    torch.testing.assert_close(net(x, torch.tensor(0.25)), expected)
    torch.testing.assert_close(net(x, 0.25), expected)


def test_unet_class_conditioning_and_null_label() -> None:
    net = UNet(base_channels=8, num_classes=10)
    assert net.null_label == 10
    x = torch.randn(4, 1, 8, 8, generator=_gen())
    t = torch.rand(4, generator=_gen(1))
    y = torch.tensor([0, 3, 7, 9])
    assert net(x, t, y).shape == (4, 1, 8, 8)
    assert not torch.allclose(net(x, t, y), net(x, t, (y + 1) % 10))
    torch.testing.assert_close(net(x, t), net(x, t, torch.full((4,), 10)))
    with pytest.raises(ValueError, match="num_classes"):
        UNet(base_channels=8)(x, t, y)


@pytest.mark.parametrize(
    ("kwargs", "shape"), [({"num_classes": 3}, (1, 8, 8)), ({**CONFIGS_28, "num_classes": 3}, (1, 28, 28))]
)
def test_unet_gradients_reach_every_parameter(kwargs: dict, shape: tuple[int, int, int]) -> None:
    net = UNet(**kwargs)
    x = torch.randn(4, *shape, generator=_gen(), requires_grad=True)
    net(x, torch.rand(4, generator=_gen(1)), torch.tensor([0, 1, 2, 3])).square().mean().backward()
    _assert_all_params_get_grads(net)
    assert x.grad is not None and x.grad.abs().sum() > 0


@pytest.mark.parametrize("shape", [(2, 1, 8, 7), (2, 3, 8, 8), (2, 1, 28, 28), (1, 8, 8)])
def test_unet_rejects_bad_x_shape(shape: tuple[int, ...]) -> None:
    net = UNet(base_channels=8)
    with pytest.raises(ValueError, match=r"x must have shape \(B, 1, 8, 8\)"):
        net(torch.zeros(shape), 0.5)


def test_unet_rejects_indivisible_image_size() -> None:
    with pytest.raises(ValueError, match="divisible"):
        UNet(image_size=28, channel_mults=(1, 2, 2, 2))
    with pytest.raises(ValueError, match="channel_mults"):
        UNet(channel_mults=())


def test_unet_dropout_only_in_training() -> None:
    net = UNet(base_channels=8, dropout=0.5)
    x = torch.randn(2, 1, 8, 8, generator=_gen())
    net.eval()
    torch.testing.assert_close(net(x, 0.5), net(x, 0.5))
    net.train()
    with torch.random.fork_rng():
        torch.manual_seed(0)
        assert not torch.allclose(net(x, 0.5), net(x, 0.5))


def test_unet_deterministic_under_manual_seed() -> None:
    x = torch.randn(2, 1, 8, 8, generator=_gen())
    outs = []
    with torch.random.fork_rng():
        for _ in range(2):
            torch.manual_seed(7)
            outs.append(UNet(base_channels=8)(x, 0.5))
        torch.manual_seed(8)
        other = UNet(base_channels=8)(x, 0.5)
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0)
    assert not torch.allclose(outs[0], other)
