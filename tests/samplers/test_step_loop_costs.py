"""What a step loop costs outside the network, audited on the ``meta`` device (no GPU needed).

On CUDA a host read (``.item()``, ``bool(tensor)``) or a copy of host data to the device
synchronises the stream, and every kernel costs a launch (~5-10 us of CPU at batch 1). The loops
must have neither syncs nor copies, and no more kernels per field evaluation than diffusers'
scheduler loop for the same method. Counting on ``meta`` sees exactly the operations CUDA would
launch: a failure here is a GPU slowdown caught on the CPU.
"""

from __future__ import annotations

import pytest
import torch

import flowbridge as fb
from flowbridge.nets import MLP
from flowbridge.samplers import SOLVERS, get_solver, make_grid
from flowbridge.samplers.api import default_span
from flowbridge.samplers.diagnostics import LoopAudit

STEPS = 10
FIXED_STEP = sorted(
    name for name, cls in SOLVERS.items()
    if cls.nfe_per_step > 0 and not name.startswith("bridge_") and not name.startswith("torchsde")
)


def _meta_field(parametrisation: str = "noise", schedule: str = "vp") -> tuple[fb.NetworkField, torch.nn.Module]:
    net = MLP(2, 16, 2).to("meta")
    return fb.NetworkField(net, fb.GaussianPath(schedule), parametrisation), net


def _audit_steps(name: str, field: fb.Field, net: torch.nn.Module, steps: int = STEPS) -> LoopAudit:
    solver = get_solver(name)
    grid = make_grid("uniform", steps, *default_span(field), field.path.schedule)
    x = torch.zeros(4, 2, device="meta")
    state = solver.init(field, x, grid)
    audit = LoopAudit("meta", exclude=[net])
    with audit:
        for i in range(steps):
            x, state = solver.step(field, x, state, i)
    audit.remove()
    return audit


@pytest.mark.parametrize("name", FIXED_STEP)
@pytest.mark.parametrize("parametrisation", ["noise", "velocity"])
def test_step_loop_reads_nothing_back_and_copies_nothing(name, parametrisation):
    field, net = _meta_field(parametrisation)
    audit = _audit_steps(name, field, net)
    assert audit.host_reads == [], f"{name}: host reads in the loop: {audit.host_reads}"
    assert audit.host_copies == [], f"{name}: host-to-device copies in the loop: {audit.host_copies}"
    assert audit.kernel_count > 0  # the audit saw the loop's arithmetic


@pytest.mark.parametrize("name", ["ddim", "dpmpp_2m", "unipc", "ghvb", "heun", "euler_maruyama"])
def test_sample_syncs_do_not_grow_with_steps(name):
    """End to end, ``sample`` may read back once (its final finiteness check) and copy the grid once."""
    field, net = _meta_field()
    counts = []
    for steps in (4, 12):
        audit = LoopAudit("meta", exclude=[net])
        with audit:
            fb.sample(field, name, steps, shape=(4, 2), device="meta")
        audit.remove()
        counts.append((len(audit.host_reads), len(audit.host_copies)))
    assert counts[0] == counts[1], f"{name}: syncs grow with the number of steps: {counts}"
    reads, copies = counts[0]
    assert reads <= 1 and copies <= 2


def test_audit_catches_a_sync_and_a_copy():
    """The audit itself: a loop that reads back and builds a device tensor from a number is caught."""
    x = torch.zeros(3, device="meta")
    audit = LoopAudit("meta")
    with audit:
        y = x * 2.0
        _ = float(y.sum())
        _ = torch.tensor(0.5).to("meta")
    assert audit.host_reads and audit.host_copies and audit.kernels["mul"] == 1


# Each flowbridge method and the diffusers scheduler implementing it (PNDM is diffusers' PLMS, the
# base method of GHVB; GHVB adds one momentum average per step).
PEERS = {
    "ddim": ("DDIMScheduler", {"clip_sample": False, "timestep_spacing": "trailing"}),
    "dpmpp_2m": ("DPMSolverMultistepScheduler", {}),
    "unipc": ("UniPCMultistepScheduler", {}),
    "ghvb": ("PNDMScheduler", {"skip_prk_steps": True}),
    "plms": ("PNDMScheduler", {"skip_prk_steps": True}),
    "heun": ("HeunDiscreteScheduler", {}),
    "euler": ("EulerDiscreteScheduler", {}),
    "ddpm_ancestral": ("DDPMScheduler", {"clip_sample": False}),
    "dpmpp_2m_sde": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++"}),
}


def _diffusers_kernels_per_evaluation(scheduler_name: str, options: dict) -> float:
    diffusers = pytest.importorskip("diffusers")
    scheduler = getattr(diffusers, scheduler_name)(num_train_timesteps=1000, **options)
    scheduler.set_timesteps(STEPS)
    net = MLP(2, 16, 2).to("meta")
    x = torch.zeros(4, 2, device="meta")
    t_net = torch.zeros(4, device="meta")  # built outside the audit: not the scheduler's cost
    audit = LoopAudit("meta", exclude=[net])
    evaluations = 0
    with audit:
        for t in scheduler.timesteps:
            out = net(scheduler.scale_model_input(x, t), t_net)
            x = scheduler.step(out, t, x).prev_sample
            evaluations += 1
    audit.remove()
    assert audit.host_reads == []
    return audit.kernel_count / evaluations


@pytest.mark.parametrize("name", sorted(PEERS))
def test_kernels_per_evaluation_at_most_diffusers(name):
    peer = _diffusers_kernels_per_evaluation(*PEERS[name])
    field, net = _meta_field("noise")  # diffusers' models predict noise
    ours = _audit_steps(name, field, net).kernel_count / (STEPS * get_solver(name).nfe_per_step)
    assert ours <= peer, f"{name}: {ours:.1f} kernels per evaluation against diffusers' {peer:.1f}"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", ["dpmpp_2m", "heun", "euler_maruyama"])
def test_cuda_graph_replay_matches_eager(name):
    torch.manual_seed(0)
    net = MLP(2, 32, 2).cuda()
    field = fb.NetworkField(net, fb.GaussianPath("vp"), "noise")
    x = torch.randn(64, 2, device="cuda")
    if SOLVERS[name].stochastic:
        g = torch.Generator("cuda")
        runs = []
        for _ in range(3):  # capture (first call), then two replays from the same generator state
            g.manual_seed(5)
            runs.append(fb.sample(field, name, 12, x0=x, generator=g, cuda_graph=True).x)
        assert torch.isfinite(runs[-1]).all()
        torch.testing.assert_close(runs[2], runs[1], rtol=0, atol=0)  # replays draw from the generator's state
        assert not torch.equal(runs[2], fb.sample(field, name, 12, x0=x, generator=g, cuda_graph=True).x)
    else:
        eager = fb.sample(field, name, 12, x0=x).x
        for _ in range(2):  # capture, then replay
            graphed = fb.sample(field, name, 12, x0=x, cuda_graph=True).x
            torch.testing.assert_close(graphed, eager, rtol=1e-5, atol=1e-5)
