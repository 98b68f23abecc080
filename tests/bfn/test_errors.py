"""Acceptance 5: bad input fails with a clear error naming the argument."""

from __future__ import annotations

import math

import pytest
import torch

from flowbridge.bfn import BFNModule, ContinuousBFN, ContinuousBFNObjective, DiscreteBFN, DiscretizedBFN
from flowbridge.nets import MLP
from flowbridge.paths import GaussianPath


@pytest.mark.parametrize("sigma1", [0.0, 1.0, -0.1, 1.5, float("nan")])
def test_sigma1_outside_open_unit_interval(sigma1: float) -> None:
    with pytest.raises(ValueError, match="sigma1 must lie in the open interval"):
        ContinuousBFN(sigma1=sigma1)
    with pytest.raises(ValueError, match="sigma1"):
        DiscretizedBFN(num_bins=16, sigma1=sigma1)


def test_discrete_data_outside_range_and_wrong_dtype() -> None:
    bfn = DiscreteBFN(num_classes=3)
    net = MLP(dim=6, out_dim=6, hidden=8, depth=1)
    t = torch.full((2,), 0.5)
    with pytest.raises(ValueError, match=r"values in \[0, 3\).*got values in \[0, 3\]"):
        bfn.continuous_time_loss(net, torch.tensor([[0, 3], [1, 2]]), t)
    with pytest.raises(ValueError, match=r"got values in \[-1, 2\]"):
        bfn.n_step_loss(net, torch.tensor([[0, -1], [1, 2]]), t, 10)
    with pytest.raises(TypeError, match="integer tensor of class indices"):
        bfn.continuous_time_loss(net, torch.tensor([[0.0, 1.0], [1.0, 2.0]]), t)
    with pytest.raises(ValueError, match="num_classes must be an integer >= 2"):
        DiscreteBFN(num_classes=1)
    with pytest.raises(ValueError, match="beta1"):
        DiscreteBFN(num_classes=2, beta1=0.0)


def test_bin_count_that_disagrees_with_the_data() -> None:
    # sklearn digits have 17 levels v/8 - 1; they are not on 16 bin centres
    x = (torch.arange(17, dtype=torch.float32) / 8 - 1).reshape(1, 17).expand(4, 17)
    bfn = DiscretizedBFN(num_bins=16)
    net = MLP(dim=17, out_dim=34, hidden=8, depth=1)
    with pytest.raises(ValueError, match=r"num_bins=16 bin centres.*17 distinct values"):
        bfn.continuous_time_loss(net, x, torch.full((4,), 0.5))
    with pytest.raises(ValueError, match=r"must lie in \[-1, 1\]"):
        bfn.reconstruction_loss(net, x * 2)
    # quantising first fixes it
    bfn.continuous_time_loss(net, bfn.quantise(x), torch.full((4,), 0.5))
    # a network with the wrong number of outputs
    with pytest.raises(ValueError, match="2 values per dimension"):
        bfn.continuous_time_loss(MLP(dim=17, hidden=8, depth=1), bfn.quantise(x), torch.full((4,), 0.5))


def test_other_bad_arguments() -> None:
    with pytest.raises(ValueError, match="parametrisation"):
        ContinuousBFN(parametrisation="velocity")
    bfn = ContinuousBFN()
    net = MLP(dim=2, hidden=8, depth=1)
    with pytest.raises(TypeError, match="floating-point"):
        bfn.continuous_time_loss(net, torch.zeros(3, 2, dtype=torch.long), torch.zeros(3))
    with pytest.raises(ValueError, match=r"t must have shape \(3,\)"):
        bfn.continuous_time_loss(net, torch.zeros(3, 2), torch.zeros(4))
    with pytest.raises(ValueError, match="n_steps must be an integer >= 1"):
        bfn.n_step_loss(net, torch.zeros(3, 2), torch.zeros(3), 0)
    with pytest.raises(TypeError, match="ContinuousBFNSchedule"):
        ContinuousBFNObjective(GaussianPath("linear"))
    with pytest.raises(ValueError, match="transform='binarize'"):
        BFNModule(net=net, bfn=DiscreteBFN(num_classes=3), transform="binarize")
    with pytest.raises(ValueError, match="needs a DiscretizedBFN"):
        BFNModule(net=net, bfn=ContinuousBFN(), transform="quantize")
    with pytest.raises(ValueError, match="K=2 logits per position"):
        DiscreteBFN(num_classes=2).continuous_time_loss(MLP(dim=4, out_dim=3, hidden=8, depth=1), torch.zeros(2, 2, dtype=torch.long), torch.zeros(2))
    assert math.isfinite(float(bfn.continuous_time_loss(net, torch.zeros(3, 2), torch.zeros(3)).loss))
