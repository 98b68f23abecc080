import pytest
import torch

from flowbridge.paths import SCHEDULES, GaussianPath, LinearSchedule, TrigSchedule, VESchedule, VPSchedule, get_schedule

ALL = [LinearSchedule(), TrigSchedule(), VPSchedule(), VPSchedule(kind="cosine"), VESchedule()]
IDS = ["linear", "trig", "vp", "vp_cosine", "ve"]


def interior(s, n=101):
    lo, hi = max(s.t_min, 0.02), min(s.t_max, 0.98)
    return torch.linspace(lo, hi, n, dtype=torch.float64)


@pytest.mark.parametrize("schedule", ALL, ids=IDS)
def test_derivatives_match_finite_differences(schedule):
    t = interior(schedule)
    h = 1e-6
    v, vp, vm = schedule(t), schedule(t + h), schedule(t - h)
    torch.testing.assert_close(v.d_alpha, (vp.alpha - vm.alpha) / (2 * h), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(v.d_sigma, (vp.sigma - vm.sigma) / (2 * h), rtol=1e-6, atol=1e-7)
    lam_fd = (schedule.log_snr(t + h) - schedule.log_snr(t - h)) / (2 * h)
    torch.testing.assert_close(schedule.d_log_snr(t), lam_fd, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("schedule", ALL, ids=IDS)
def test_log_snr_inverse_round_trips_and_is_increasing(schedule):
    t = interior(schedule)
    lam = schedule.log_snr(t)
    assert (lam[1:] > lam[:-1]).all(), "log-SNR must increase from source (t=0) to data (t=1)"
    torch.testing.assert_close(schedule.inverse_log_snr(lam), t, rtol=1e-9, atol=1e-9)


def test_time_convention_endpoints():
    lin, vp, ve = LinearSchedule(), VPSchedule(), VESchedule(sigma_min=0.01, sigma_max=50.0)
    t = torch.tensor([0.0, 1.0], dtype=torch.float64)
    assert lin(t).alpha.tolist() == [0.0, 1.0] and lin(t).sigma.tolist() == [1.0, 0.0]
    assert float(vp(t[:1]).alpha) < 0.01 and abs(float(vp(t[1:]).alpha) - 1) < 1e-12
    torch.testing.assert_close(ve(t).sigma, torch.tensor([50.0, 0.01], dtype=torch.float64))
    v = vp(interior(vp))
    torch.testing.assert_close(v.alpha**2 + v.sigma**2, torch.ones_like(v.alpha))


def test_registry_and_errors():
    assert {"linear", "trig", "vp", "ve"} <= set(SCHEDULES)
    assert isinstance(get_schedule("vp", kind="cosine"), VPSchedule)
    with pytest.raises(ValueError, match=r"known schedules: (.*, )?linear, trig, ve, vp"):
        get_schedule("cosine-ish")
    with pytest.raises(ValueError, match="sigma_min"):
        VESchedule(sigma_min=10.0, sigma_max=1.0)
    with pytest.raises(ValueError, match="kind"):
        VPSchedule(kind="quadratic")
    with pytest.raises(ValueError, match="t_min"):
        LinearSchedule(t_min=0.9, t_max=0.1)
    assert GaussianPath("vp") == GaussianPath(VPSchedule())
