"""An MLP trained with FlowMatching learns the exact velocity of a 2-D mixture."""

import torch

from flowbridge.fields import NetworkField
from flowbridge.nets import MLP
from flowbridge.objectives import FlowMatching
from flowbridge.paths import GaussianPath
from tests.conftest import ring_mixture


def test_flow_matching_mlp_learns_the_exact_velocity():
    """Bound: E|v_theta - v*|^2 < 0.02 Var(v*) at (x_t, t) drawn from the path.

    Why this bound: Var(v*) is the error of the best x-independent guess (mean velocity), so the
    bound says the net explains > 98% of the exact field's variance. The FM loss can only reach
    E|v_theta - v*|^2 + E|dx_t - v*|^2, and the second (irreducible) term, ~3.9 here, is 1000x the
    error we ask for, so passing requires genuinely learning the conditional expectation rather
    than fitting the noisy targets. Measured on this machine: 0.0037 vs bound 0.046 (3000 steps).
    """
    torch.manual_seed(0)
    gm = ring_mixture(2, radius=2.0, var=0.15).to(torch.float32)
    path = GaussianPath("linear")
    exact = gm.field(path)
    field = NetworkField(MLP(2, hidden=128, depth=3), path, "velocity")
    opt = torch.optim.Adam(field.parameters(), lr=2e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, 3000)
    objective = FlowMatching(path)
    g = torch.Generator().manual_seed(0)
    for _ in range(3000):
        x1, x0, t = gm.sample(512, generator=g), torch.randn(512, 2, generator=g), torch.rand(512, generator=g)
        loss = objective(field, x0, x1, t).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()

    g = torch.Generator().manual_seed(1)
    s = path.sample(torch.randn(20000, 2, generator=g), gm.sample(20000, generator=g), torch.rand(20000, generator=g))
    with torch.no_grad():
        v_star, v = exact.velocity(s.x_t, s.t), field.velocity(s.x_t, s.t)
    err = float(((v - v_star) ** 2).sum(1).mean())
    var = float(((v_star - v_star.mean(0)) ** 2).sum(1).mean())
    irreducible = float(((s.dx_t - v_star) ** 2).sum(1).mean())
    assert err < 0.02 * var, (err, var)
    assert irreducible > 100 * err  # the model did not just fit the noisy regression targets
