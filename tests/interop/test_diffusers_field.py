"""from_diffusers against exact analytic fields: a 'UNet' whose output is the exact prediction of a
Gaussian mixture under the scheduler's own noise table."""

import pytest
import torch

import flowbridge as fb
from flowbridge.interop import DiscreteVPSchedule, from_diffusers, from_velocity
from flowbridge.metrics import compare_to_truth, sliced_wasserstein
from flowbridge.paths import GaussianPath
from tests.conftest import ring_mixture

diffusers = pytest.importorskip("diffusers")
from diffusers.models.unets.unet_2d import UNet2DOutput  # noqa: E402


class ExactUNet(torch.nn.Module):
    """Returns the exact epsilon / sample / v / flow prediction of ``mixture`` at a diffusers timestep
    (images (B, 1, 2, 2) hold the mixture's 4 coordinates)."""

    def __init__(self, mixture, prediction_type, alphas_cumprod=None, n=1000):
        super().__init__()
        self.mixture, self.prediction_type, self.n = mixture, prediction_type, n
        self.schedule = DiscreteVPSchedule(alphas_cumprod=tuple(float(a) for a in alphas_cumprod)) if alphas_cumprod is not None else None

    def forward(self, x, timestep):
        flat = x.reshape(x.shape[0], -1)
        if self.prediction_type == "flow":
            sigma = (timestep / self.n).to(flat)[:, None]
            alpha = 1 - sigma
        else:  # timestep k -> t = 1 - k/(N-1) on the scheduler's own table
            c = self.schedule(1 - timestep.to(flat) / (self.schedule.num_timesteps - 1))
            alpha, sigma = c.alpha[:, None], c.sigma[:, None]
        x1, eps = self.mixture.posterior_means(flat, alpha, sigma)
        out = {"epsilon": eps, "sample": x1, "v_prediction": alpha * eps - sigma * x1, "flow": eps - x1}[self.prediction_type]
        return UNet2DOutput(sample=out.reshape(x.shape))


@pytest.mark.parametrize("prediction_type", ["epsilon", "sample", "v_prediction"])
def test_vp_field_equals_the_analytic_field_at_the_discrete_times(prediction_type):
    gm = ring_mixture(4)
    scheduler = diffusers.DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", prediction_type=prediction_type)
    field = from_diffusers(ExactUNet(gm, prediction_type, scheduler.alphas_cumprod), scheduler)
    exact = gm.field(field.gaussian_path)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(16, 1, 2, 2, generator=g, dtype=torch.float64)
    for k in (0, 1, 250, 999):
        t = torch.tensor(1 - k / 999, dtype=torch.float64)
        c = field.gaussian_path.schedule(t)
        torch.testing.assert_close(c.alpha**2, scheduler.alphas_cumprod[k].double(), rtol=1e-10, atol=1e-12)
        assert float(field.model_timestep(t)) == pytest.approx(k)
        for name in ("velocity", "data", "noise", "score"):
            torch.testing.assert_close(getattr(field, name)(x, t), getattr(exact, name)(x, t), rtol=1e-7, atol=1e-7)


def test_flow_match_field_equals_the_linear_path_field():
    gm = ring_mixture(4)
    scheduler = diffusers.FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000)
    field = from_diffusers(ExactUNet(gm, "flow"), scheduler)
    assert field.gaussian_path == GaussianPath("linear")
    exact = gm.field("linear")
    x = torch.randn(8, 1, 2, 2, dtype=torch.float64)
    for t in (0.0, 0.3, 0.9):
        tt = torch.tensor(t, dtype=torch.float64)
        torch.testing.assert_close(field.velocity(x, tt), exact.velocity(x, tt), rtol=1e-9, atol=1e-9)


def test_samples_from_a_diffusers_field_match_the_mixture():
    gm = ring_mixture(4)
    scheduler = diffusers.DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2")
    field = from_diffusers(ExactUNet(gm, "epsilon", scheduler.alphas_cumprod), scheduler)
    out = fb.sample(field, "heun", 100, shape=(5000, 1, 2, 2), generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    report = compare_to_truth(out.x.reshape(5000, 4), gm.sample, sliced_wasserstein, sets=5, generator=torch.Generator().manual_seed(2))
    assert report.ratio <= 1.5, str(report)


def test_discrete_schedule_is_consistent():
    table = diffusers.DDPMScheduler(num_train_timesteps=50).alphas_cumprod
    s = DiscreteVPSchedule(alphas_cumprod=tuple(float(a) for a in table))
    t = torch.linspace(0.013, 0.987, 37, dtype=torch.float64)  # between knots
    h = 1e-7
    v = s(t)
    torch.testing.assert_close(v.d_alpha, (s(t + h).alpha - s(t - h).alpha) / (2 * h), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(v.d_sigma, (s(t + h).sigma - s(t - h).sigma) / (2 * h), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(s.inverse_log_snr(s.log_snr(t)), t, rtol=1e-9, atol=1e-9)
    with pytest.raises(ValueError, match="decrease strictly"):
        DiscreteVPSchedule(alphas_cumprod=(0.5, 0.9))


def test_unsupported_scheduler_and_prediction_type_are_refused():
    with pytest.raises(ValueError, match=r"unsupported scheduler 'ScoreSdeVeScheduler'; supported schedulers: DDPMScheduler"):
        from_diffusers(torch.nn.Identity(), {"_class_name": "ScoreSdeVeScheduler"})
    with pytest.raises(ValueError, match=r"unsupported scheduler 'object'"):
        from_diffusers(torch.nn.Identity(), object())
    with pytest.raises(ValueError, match="supported: epsilon, sample, v_prediction"):
        from_diffusers(torch.nn.Identity(), diffusers.DDPMScheduler(), prediction_type="score")
    with pytest.raises(FileNotFoundError, match="never downloads"):
        from_diffusers(torch.nn.Identity(), "/nonexistent/scheduler")


def test_scheduler_loaded_from_a_local_directory(tmp_path):
    diffusers.DDIMScheduler(num_train_timesteps=100, prediction_type="v_prediction").save_config(tmp_path)
    field = from_diffusers(torch.nn.Identity(), tmp_path)
    assert field.prediction_type == "v_prediction"
    assert field.gaussian_path.schedule.num_timesteps == 100


def test_from_velocity_maps_time_conventions():
    exact = ring_mixture(2).field("linear")
    x = torch.randn(8, 2, dtype=torch.float64)
    t = torch.tensor(0.35, dtype=torch.float64)
    forward = from_velocity(lambda xx, tt: exact.velocity(xx, tt))
    reversed_ = from_velocity(lambda xx, s: -exact.velocity(xx, 1 - s), convention="data_to_noise")
    scaled = from_velocity(lambda tt, xx: exact.velocity(xx, tt / 1000), t_scale=1000, call="t_first")
    for f in (forward, reversed_, scaled):
        torch.testing.assert_close(f.velocity(x, t), exact.velocity(x, t))
    torch.testing.assert_close(forward.score(x, t), exact.score(x, t), rtol=1e-9, atol=1e-9)
    with pytest.raises(ValueError, match="known conventions"):
        from_velocity(lambda x, t: x, convention="backwards")


@pytest.mark.parametrize("steps", [8, 10, 15, 20, 25])
def test_dpmpp_2m_on_a_diffusers_field_matches_the_diffusers_loop(steps):
    """Same model, same discrete grid (diffusers' own integer timesteps, t_k = 1 - k/(N-1)), same
    noise: flowbridge's dpmpp_2m on from_diffusers(...) against DPMSolverMultistepScheduler.step."""
    gm = ring_mixture(4)
    train = diffusers.DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear")
    unet = ExactUNet(gm, "epsilon", train.alphas_cumprod)
    field = from_diffusers(unet, train)
    scheduler = diffusers.DPMSolverMultistepScheduler.from_config(
        train.config, algorithm_type="dpmsolver++", solver_order=2, final_sigmas_type="sigma_min"
    )
    scheduler.set_timesteps(steps)
    noise = torch.randn(512, 1, 2, 2, generator=torch.Generator().manual_seed(0))
    x = noise.clone()
    for k in scheduler.timesteps:
        x = scheduler.step(unet(x, k.expand(x.shape[0])).sample, k, x).prev_sample
    grid = torch.cat([1 - scheduler.timesteps.double() / 999, torch.ones(1, dtype=torch.float64)])
    # diffusers lowers the last step to first order below 15 steps (lower_order_final).
    solver = fb.get_solver("dpmpp_2m", final_step="first_order" if steps < 15 else "solver")
    ours = solver.solve(field, noise.double(), grid).x
    rel = float((ours - x.double()).flatten(1).norm(dim=1).mean() / x.double().flatten(1).norm(dim=1).mean())
    assert rel < 0.02, rel
