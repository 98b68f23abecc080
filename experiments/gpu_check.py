"""GPU check: flowbridge on an accelerator against float64 CPU results, peers and plain loops.

Run with ``make gpu-check`` (``--device auto``: CUDA where there is one) or
``python experiments/gpu_check.py --device cuda|cpu [--tiny] [--out FILE]``. It writes one section
per device into ``experiments/results/gpu.md`` (a run replaces only its own device's section).

What is checked (each section is independent; a failure is recorded in the table, not raised):

1. **Consistency**: every registered solver, every SMC target kind and every posterior sampler on
   the device in float64, against the same run on the CPU (same initial state, same CPU
   generator): the largest absolute difference.
2. **Recipes**: every recipe in ``models/`` fitted for a few hundred steps with
   ``--trainer.accelerator=<device>`` through the CLI and sampled from its checkpoint.
3. **Sampler overhead**: time beyond the network's own calls, per step, side by side with
   diffusers' scheduler loop on the same network: a 64-wide MLP at batch 1 (launch-bound) and a
   ``UNet2DModel`` of about 38 M parameters at batch 256 (3x32x32), fp32 and bf16 autocast; and the
   CUDA-graph mode (``cuda_graph=True``).
4. **Host synchronisation**: the step loops audited for host reads and host-to-device copies.

The training-throughput and adaptive-SDE comparisons are their own benchmarks
(``experiments/bench_training.py --device``, ``experiments/bench_sde.py --device``); run them
alongside on the device.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

import flowbridge as fb
from flowbridge import smc
from flowbridge.analytic import GaussianMixture
from flowbridge.nets import MLP
from flowbridge.samplers import SOLVERS, get_solver, make_grid
from flowbridge.samplers.api import default_span
from flowbridge.samplers.diagnostics import LoopAudit

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "experiments" / "results" / "gpu.md"


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device, repeats: int) -> float:
    """Median wall time of ``fn`` over ``repeats`` runs after two warm-ups (seconds)."""
    for _ in range(2):
        fn()
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def mixture(dtype: torch.dtype) -> GaussianMixture:
    means = torch.tensor([[-2.0, 0.0], [2.0, 0.5], [0.0, 2.0]], dtype=dtype)
    return GaussianMixture(torch.tensor([0.3, 0.3, 0.4], dtype=dtype), means, torch.full((3,), 0.2, dtype=dtype))


# ---------------------------------------------------------------------------------------------
# 1. consistency with float64 CPU results
# ---------------------------------------------------------------------------------------------
def _difference(run: Callable[[torch.device], torch.Tensor], device: torch.device) -> str:
    try:
        cpu = run(torch.device("cpu"))
        dev = run(device).to("cpu")
    except Exception as exc:  # recorded, not raised: the table says what failed
        return f"error: {type(exc).__name__}: {str(exc)[:120]}"
    return f"{float((cpu - dev).abs().max()):.1e}"


def consistency(device: torch.device, tiny: bool) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    n, steps = (16, 8) if tiny else (256, 40)
    x0 = torch.randn(n, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)

    for name in sorted(SOLVERS):
        if getattr(SOLVERS[name], "needs_bridge_field", False) or name.startswith("bridge_"):
            continue  # Schrödinger-bridge drifts, not fields of a path: covered by the bridge tests
        def run(dev: torch.device, name: str = name) -> torch.Tensor:
            field = mixture(torch.float64).to(dev).field("vp")
            return fb.sample(field, name, steps, x0=x0.to(dev), generator=torch.Generator().manual_seed(1)).x
        rows.append((f"solver `{name}`", _difference(run, device)))

    def smc_run(target: Callable[[torch.device], Any]) -> Callable[[torch.device], torch.Tensor]:
        def run(dev: torch.device) -> torch.Tensor:
            out = smc.sample(target(dev), shape=(n, 2), steps=steps, generator=torch.Generator().manual_seed(2),
                             dtype=torch.float64, device=dev)
            return out.samples
        return run

    def fields(dev: torch.device) -> tuple[Any, Any]:
        m = mixture(torch.float64).to(dev)
        shifted = GaussianMixture(m.weights, m.means + 0.5, m.covs)
        return m.field("vp"), shifted.field("vp")

    targets: dict[str, Callable[[torch.device], Any]] = {
        "anneal": lambda dev: smc.anneal(fields(dev)[0], 2.0),
        "product": lambda dev: smc.product(*fields(dev)),
        "guided": lambda dev: smc.guided(*fields(dev), 2.0),
        "tilted": lambda dev: smc.tilted(fields(dev)[0], lambda x: -(x**2).sum(-1), 1.0),
    }
    for name, target in targets.items():
        rows.append((f"SMC `{name}`", _difference(smc_run(target), device)))

    from flowbridge import inverse

    a = torch.randn(1, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    y = torch.tensor([[0.7]], dtype=torch.float64)
    for method in sorted(inverse.POSTERIOR_SAMPLERS):
        def run(dev: torch.device, method: str = method) -> torch.Tensor:
            measurement = inverse.Measurement(y.to(dev), inverse.MatrixOperator(a.to(dev)), inverse.Gaussian(0.2))
            sampler = inverse.get_posterior_sampler(method)
            particles = 4 if sampler.uses_particles else None
            out = inverse.sample(mixture(torch.float64).to(dev).field("vp"), measurement, method,
                                 num_samples=8 if tiny else 64, steps=steps, particles=particles,
                                 generator=torch.Generator().manual_seed(4))
            return out.samples
        rows.append((f"posterior `{method}`", _difference(run, device)))
    return rows


# ---------------------------------------------------------------------------------------------
# 2. recipes
# ---------------------------------------------------------------------------------------------
def recipes(device: torch.device, tiny: bool, steps: int) -> list[tuple[str, str, str, str]]:
    files = sorted((ROOT / "models").glob("*.yaml"))
    if tiny:
        files = [f for f in files if f.stem == "fm_moons"]
        steps = 2
    accelerator = "gpu" if device.type == "cuda" else "cpu"
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        procs = {}
        for recipe in files:  # all at once: each is mostly Python start-up and one small GPU stream
            out = Path(tmp) / recipe.stem
            cmd = [sys.executable, "-m", "flowbridge", "fit", "--config", str(recipe), f"--trainer.max_steps={steps}",
                   f"--trainer.accelerator={accelerator}", "--trainer.devices=1", f"--trainer.default_root_dir={out}"]
            procs[recipe.stem] = (subprocess.Popen(cmd, cwd=tmp, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True),
                                  time.perf_counter(), out)
        for name, (proc, start, out) in procs.items():
            log, _ = proc.communicate(timeout=900)
            fit_s = time.perf_counter() - start
            status = "ok" if proc.returncode == 0 else f"exit {proc.returncode}: {_last_line(log)}"
            sampled = "—"
            ckpts = sorted(out.rglob("*.ckpt"))
            if proc.returncode == 0 and ckpts:
                png = out / "samples.png"
                cmd = [sys.executable, "-m", "flowbridge", "sample", "--ckpt", str(ckpts[-1]), "--num", "64", "--plot", str(png)]
                res = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True, timeout=600)
                sampled = "ok" if res.returncode == 0 and png.exists() else f"exit {res.returncode}: {_last_line(res.stdout + res.stderr)}"
            rows.append((name, status, f"{fit_s:.0f} s", sampled))
    return rows


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return (lines[-1] if lines else "")[:140].replace("|", "/")


# ---------------------------------------------------------------------------------------------
# 3. sampler overhead against the network alone and diffusers' scheduler loop
# ---------------------------------------------------------------------------------------------
DIFFUSERS_PEERS = {"ddim": "DDIMScheduler", "dpmpp_2m": "DPMSolverMultistepScheduler", "unipc": "UniPCMultistepScheduler",
                   "ghvb": "PNDMScheduler", "euler": "EulerDiscreteScheduler", "heun": "HeunDiscreteScheduler",
                   "ddpm_ancestral": "DDPMScheduler"}


def _scheduler(name: str, steps: int) -> Any:
    import diffusers

    options: dict[str, Any] = {"DDIMScheduler": {"clip_sample": False, "timestep_spacing": "trailing"},
                               "PNDMScheduler": {"skip_prk_steps": True}, "DDPMScheduler": {"clip_sample": False}}.get(name, {})
    scheduler = getattr(diffusers, name)(num_train_timesteps=1000, **options)
    scheduler.set_timesteps(steps)
    return scheduler


class EpsNet(torch.nn.Module):
    """Adapts a network called as ``net(x, t_continuous)`` to diffusers' ``unet(x, timestep)``."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
        return self.net(x, timestep)


def diffusers_loop(unet: torch.nn.Module, scheduler_name: str, x: torch.Tensor, steps: int, autocast: torch.dtype | None) -> Callable[[], torch.Tensor]:
    """diffusers' pipeline loop: ``set_timesteps``, then ``scale_model_input``, the network and ``step``."""
    def run() -> torch.Tensor:
        scheduler = _scheduler(scheduler_name, steps)
        sample = x
        for t in scheduler.timesteps:
            inp = scheduler.scale_model_input(sample, t)
            with torch.autocast(x.device.type, dtype=autocast, enabled=autocast is not None):
                out = unet(inp, t)
            out = getattr(out, "sample", out).to(sample.dtype)
            sample = scheduler.step(out, t, sample).prev_sample
        return sample
    return run


def network_alone(unet: torch.nn.Module, x: torch.Tensor, calls: int, autocast: torch.dtype | None) -> Callable[[], None]:
    t = torch.full((x.shape[0],), 500.0, device=x.device)
    def run() -> None:
        for _ in range(calls):
            with torch.autocast(x.device.type, dtype=autocast, enabled=autocast is not None):
                out = unet(x, t)
            getattr(out, "sample", out).to(x.dtype)
    return run


def overhead(device: torch.device, tiny: bool) -> tuple[list[tuple[str, ...]], list[tuple[str, ...]], str]:
    """Per-step overhead at batch 1 (MLP) and overhead share at batch 256 (UNet)."""
    try:
        import diffusers
        from flowbridge.interop import from_diffusers
    except ImportError as exc:
        return [], [], f"diffusers not importable ({exc}); install the bench extra"
    steps, repeats = (4, 2) if tiny else (20, 15)
    small_rows = []
    torch.manual_seed(0)
    with torch.no_grad():
        mlp = EpsNet(MLP(2, 64, 3)).to(device)
        for solver, peer in DIFFUSERS_PEERS.items():
            scheduler = _scheduler(peer, steps)
            field = from_diffusers(mlp, scheduler)
            x = torch.randn(1, 2, device=device)
            nfe = fb.sample(field, solver, steps, x0=x).nfe
            net_s = timed(network_alone(mlp, x, nfe, None), device, repeats)
            ours = timed(lambda: fb.sample(field, solver, steps, x0=x), device, repeats)
            peer_run = diffusers_loop(mlp, peer, x, steps, None)
            peer_nfe = len(_scheduler(peer, steps).timesteps)
            peer_net_s = timed(network_alone(mlp, x, peer_nfe, None), device, repeats)
            theirs = timed(peer_run, device, repeats)
            graph = "—"
            if device.type == "cuda":
                graphed = timed(lambda: fb.sample(field, solver, steps, x0=x, cuda_graph=True), device, repeats)
                graph = f"{graphed / steps * 1e6:.0f}"
            ours_step = (ours - net_s) / steps * 1e6
            theirs_step = (theirs - peer_net_s) / peer_nfe * 1e6
            small_rows.append((f"`{solver}` / {peer}", f"{net_s / nfe * 1e6:.0f}", f"{ours_step:.0f}", f"{theirs_step:.0f}",
                               f"{ours_step / theirs_step:.2f}", graph))
        large_rows = []
        config = dict(sample_size=8 if tiny else 32, in_channels=3, out_channels=3, layers_per_block=1 if tiny else 2,
                      block_out_channels=(8, 16) if tiny else (128, 256, 256, 256),
                      down_block_types=("DownBlock2D", "DownBlock2D") if tiny else ("DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"),
                      up_block_types=("UpBlock2D", "UpBlock2D") if tiny else ("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
                      norm_num_groups=8 if tiny else 32)
        unet = diffusers.UNet2DModel(**config).to(device).eval()
        params = sum(p.numel() for p in unet.parameters()) / 1e6
        # 256 images of 3x32x32 through a 38 M UNet is the GPU workload; on a CPU one such call takes
        # about a minute, so CPU mode times one image for 5 steps in fp32 only (the overhead share only
        # grows as the batch shrinks; bf16 autocast is a GPU feature).
        on_gpu = device.type == "cuda"
        batch = 2 if tiny else (256 if on_gpu else 1)
        unet_steps = steps if tiny or on_gpu else 5
        x = torch.randn(batch, 3, config["sample_size"], config["sample_size"], device=device)
        scheduler = _scheduler("DPMSolverMultistepScheduler", unet_steps)
        field = from_diffusers(unet, scheduler)
        for autocast in (None, torch.bfloat16) if on_gpu or tiny else (None,):
            label = "fp32" if autocast is None else "bf16 autocast"
            net_s = timed(network_alone(unet, x, unet_steps, autocast), device, max(3, repeats // 5))
            ours = timed(lambda: fb.sample(field, "dpmpp_2m", unet_steps, x0=x, autocast=autocast), device, max(3, repeats // 5))
            theirs = timed(diffusers_loop(unet, "DPMSolverMultistepScheduler", x, unet_steps, autocast), device, max(3, repeats // 5))
            graph = "—"
            if device.type == "cuda":
                graphed = timed(lambda: fb.sample(field, "dpmpp_2m", unet_steps, x0=x, autocast=autocast, cuda_graph=True), device, max(3, repeats // 5))
                graph = f"{(graphed / net_s - 1) * 100:+.1f} %"
            large_rows.append((label, f"{net_s / unet_steps * 1e3:.2f}", f"{(ours / net_s - 1) * 100:+.1f} %",
                               f"{(theirs / net_s - 1) * 100:+.1f} %", graph))
    note = f"UNet2DModel with {params:.1f} M parameters, batch {batch}, {unet_steps} steps of DPM-Solver++(2M)."
    if not (on_gpu or tiny):
        note += " On a CPU the network's own time varies by more than the whole overhead: only a GPU run measures this."
    return small_rows, large_rows, note


# ---------------------------------------------------------------------------------------------
# 4. host synchronisation in the step loops
# ---------------------------------------------------------------------------------------------
def host_syncs(device: torch.device) -> list[tuple[str, str, str, str]]:
    rows = []
    audit_device = device if device.type == "cuda" else torch.device("meta")
    net = MLP(2, 64, 3).to(audit_device)
    field = fb.NetworkField(net, fb.GaussianPath("vp"), "noise")
    for name in sorted(SOLVERS):
        solver = get_solver(name)
        if solver.nfe_per_step == 0 or name.startswith("bridge_"):
            continue
        grid = make_grid("uniform", 8, *default_span(field), field.path.schedule)
        x = torch.zeros(4, 2, device=audit_device)
        try:
            state = solver.init(field, x, grid)
            audit = LoopAudit(audit_device, exclude=[net])
            with audit:
                for i in range(8):
                    x, state = solver.step(field, x, state, i)
            audit.remove()
        except Exception as exc:
            rows.append((f"`{name}`", "—", "—", f"error: {type(exc).__name__}: {str(exc)[:80]}"))
            continue
        rows.append((f"`{name}`", f"{audit.kernel_count / 8 / solver.nfe_per_step:.1f}", str(len(audit.host_reads)),
                     str(len(audit.host_copies))))
    return rows


# ---------------------------------------------------------------------------------------------
def table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]


def section(device: torch.device, tiny: bool, recipe_steps: int, skip: set[str]) -> list[str]:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    lines = [f"## {device.type}: {name}", "",
             f"Run {datetime.date.today().isoformat()}, torch {torch.__version__}, flowbridge {fb.__version__}"
             + (", tiny sizes (the suite's smoke run)" if tiny else "") + ".", ""]
    sections: list[tuple[str, Callable[[], list[str]]]] = [
        ("consistency", lambda: ["### Device against float64 CPU (largest absolute difference)", "",
                                  *table(("what", "max abs diff"), consistency(device, tiny)), ""]),
        ("syncs", lambda: ["### Step loops: device kernels per evaluation outside the network, host reads, host-to-device copies", "",
                           *table(("solver", "kernels / NFE", "host reads", "H2D copies"), host_syncs(device)), ""]),
        ("recipes", lambda: [f"### Recipes fitted for {recipe_steps if not tiny else 2} steps and sampled", "",
                             *table(("recipe", "fit", "finished after (all run at once)", "sample"), recipes(device, tiny, recipe_steps)), ""]),
        ("overhead", lambda: _overhead_lines(device, tiny)),
    ]
    for key, build in sections:
        if key in skip:
            continue
        start = time.perf_counter()
        try:
            lines += build()
        except Exception:
            lines += [f"### {key}: failed", "", "```", traceback.format_exc()[-1500:], "```", ""]
        print(f"[gpu_check] {key}: {time.perf_counter() - start:.0f} s", flush=True)
    return lines


def _overhead_lines(device: torch.device, tiny: bool) -> list[str]:
    small, large, note = overhead(device, tiny)
    if not small:
        return ["### Sampler overhead", "", note, ""]
    return [
        "### Sampler overhead at batch 1 (MLP 2-64x3, launch-bound), µs per field evaluation beyond the network", "",
        "`ratio` is flowbridge / diffusers (below 1: less overhead); `CUDA graph` is the whole replayed loop per step, network included.", "",
        *table(("solver / diffusers peer", "network µs", "flowbridge µs", "diffusers µs", "ratio", "CUDA graph µs/step"), small), "",
        "### Sampler overhead on a UNet (batch 256 on a GPU), share of time beyond the network's own calls", "", note, "",
        *table(("precision", "network ms/call", "flowbridge", "diffusers", "flowbridge CUDA graph"), large), "",
    ]


def write(out: Path, device_type: str, lines: list[str]) -> None:
    """Replaces this device's section of ``out`` (or creates the file)."""
    header = ["# GPU check", "", "Written by `experiments/gpu_check.py` (`make gpu-check`); one section per device.", ""]
    body = out.read_text() if out.exists() else "\n".join(header)
    pattern = re.compile(rf"^## {device_type}:.*?(?=^## |\Z)", re.M | re.S)
    new = "\n".join(lines).rstrip() + "\n\n"
    body = pattern.sub(lambda _: new, body) if pattern.search(body) else body.rstrip() + "\n\n" + new
    out.write_text(body)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="cuda, cpu or auto (cuda where available)")
    parser.add_argument("--tiny", action="store_true", help="smallest sizes (a smoke run)")
    parser.add_argument("--recipe-steps", type=int, default=200)
    parser.add_argument("--skip", nargs="*", default=[], choices=["consistency", "syncs", "recipes", "overhead"])
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          "cpu" if args.device == "auto" else args.device)
    lines = section(device, args.tiny, args.recipe_steps, set(args.skip))
    write(Path(args.out), device.type, lines)
    print(f"[gpu_check] wrote the {device.type} section of {args.out}")


if __name__ == "__main__":
    main()
