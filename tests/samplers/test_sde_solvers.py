import pytest
import torch

import flowbridge as fb
from flowbridge.metrics import sliced_wasserstein
from flowbridge.metrics.quality import compare_to_truth
from flowbridge.paths import GaussianPath, VPSchedule
from tests.conftest import ring_mixture


@pytest.mark.parametrize("d", [2, 16])
def test_euler_maruyama_samples_the_mixture(d):
    gm = ring_mixture(d)
    n, sets = 2000, 5
    g = torch.Generator().manual_seed(3)
    out = fb.sample(gm.field(GaussianPath(VPSchedule())), "euler_maruyama", 500, shape=(n * sets, d), generator=g, dtype=torch.float64)
    report = compare_to_truth(out.x, gm.sample, sliced_wasserstein, sets=sets, generator=torch.Generator().manual_seed(5))
    assert report.ratio <= 1.5, str(report)


def test_zero_noise_scale_is_euler_on_the_ode():
    field = ring_mixture(2).field("vp")
    x0 = torch.randn(32, 2, dtype=torch.float64)
    em = fb.sample(field, "euler_maruyama", 25, x0=x0, noise_scale=0.0, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(em.x, fb.sample(field, "euler", 25, x0=x0).x, rtol=1e-12, atol=1e-12)
