"""Multistep solvers side by side: flowbridge against diffusers' schedulers and torchdiffeq.

Run with ``make bench`` (or ``.venv/bin/python experiments/bench_solvers.py [--quick]``). Writes
``experiments/results/solvers.md``, ``experiments/results/solvers_error.png`` and the ``## Solvers``
section of ``docs/benchmarks.md``.

What is measured (every solver from the same initial noise, on the same schedule and ``logsnr`` grid):

* targets: exact Gaussian-mixture fields (8 well-separated narrow modes, std 0.1, radius 4) in
  d = 2, 16, 64 under the VP-cosine and linear paths; and a guidance stress case, ``CFGField`` with
  "conditional" = one component's exact field and "unconditional" = the mixture, w in {1, 3, 7.5, 15};
* pathwise error: mean over samples of ``|x - x_ref| / sqrt(d)`` to a float64 dopri5 solution at
  rtol = atol = 1e-9 from the same noise, compared at the same final time (the grid's last time);
* sliced Wasserstein (256 directions) to exact samples of the mixture, next to its noise floor
  (exact vs exact at the same n); for guidance (no closed-form target) to the reference ODE samples;
* divergence rate: fraction of samples with ``|x| > 3 R`` (R = data radius) or non-finite;
* per-step overhead with a zero field (the model costs nothing), batch 1 and 4096, d = 2 and
  3x64x64: ``Solver.step`` against the diffusers ``scheduler.step``.
"""

from __future__ import annotations

import argparse
import datetime
import math
import platform
import sys
import time
from dataclasses import dataclass, field as dc_field
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # experiments/ is importable as a namespace package from the root

import flowbridge as fb  # noqa: E402
from experiments.diffusers_peer import make_scheduler, reference_solve, sample_with_scheduler  # noqa: E402
from flowbridge.fields import CFGField, Field  # noqa: E402
from flowbridge.metrics import sliced_wasserstein  # noqa: E402
from flowbridge.metrics.noise_floor import noise_floor  # noqa: E402
from flowbridge.paths import GaussianPath, VPSchedule  # noqa: E402
from flowbridge.samplers import get_solver, make_grid  # noqa: E402

NFES = [5, 6, 8, 10, 12, 15, 20, 25, 50]
GUIDANCE = [1.0, 3.0, 7.5, 15.0]
RESULTS = ROOT / "experiments" / "results"
# flowbridge integrates in float64, diffusers in float32: where both run the same algorithm their errors
# differ by float32 rounding, in either direction; a ratio within 1 + TIE counts as "no larger".
TIE = 1e-4


# --------------------------------------------------------------------------- targets


@dataclass
class Target:
    """A field to sample, its exact sampler (or None) and the data radius for the divergence rate."""

    name: str
    field: Field
    dim: int
    batch: int
    radius: float
    truth: Callable[..., Tensor] | None
    group: str  # "mixture" or "guidance"


def separated_mixture(d: int, k: int = 8, radius: float = 4.0, std: float = 0.1) -> fb.GaussianMixture:
    """``k`` narrow modes: on a circle for d = 2, at random directions of norm ``radius`` otherwise."""
    g = torch.Generator().manual_seed(100 + d)
    if d == 2:
        angle = torch.arange(k, dtype=torch.float64) * (2 * math.pi / k)
        means = radius * torch.stack([torch.cos(angle), torch.sin(angle)], 1)
    else:
        means = torch.randn(k, d, generator=g, dtype=torch.float64)
        means = radius * means / means.norm(dim=1, keepdim=True)
    weights = torch.linspace(1.0, 2.0, k, dtype=torch.float64)
    return fb.GaussianMixture(weights / weights.sum(), means, torch.full((k,), std**2, dtype=torch.float64))


def build_targets(quick: bool) -> list[Target]:
    paths = {"vp_cosine": GaussianPath(VPSchedule(kind="cosine")), "linear": GaussianPath("linear")}
    batch = {2: 1000, 16: 500, 64: 250} if not quick else {2: 300, 16: 200, 64: 100}
    targets = []
    for d in (2, 16, 64) if not quick else (2, 16):
        gm = separated_mixture(d)
        for pname, path in paths.items():
            targets.append(Target(f"mixture d={d} {pname}", gm.field(path), d, batch[d], 4.3, gm.sample, "mixture"))
    gm = separated_mixture(2)
    cond = fb.GaussianMixture(torch.ones(1, dtype=torch.float64), gm.means[:1], gm.covs[:1])
    path = paths["vp_cosine"]
    for w in GUIDANCE if not quick else (1.0, 15.0):
        guided = CFGField(cond.field(path), gm.field(path), w)
        truth = cond.sample if w == 1.0 else None
        targets.append(Target(f"CFG w={w:g} d=2 vp_cosine", guided, 2, batch[2] // 2, 4.3, truth, "guidance"))
    return targets


# --------------------------------------------------------------------------- samplers


@dataclass
class Runner:
    """One sampler configuration: ``run(field, x, grid_fn, nfe) -> (x_end, nfe_used)`` or None."""

    label: str
    source: str  # "flowbridge", "diffusers", "torchdiffeq"
    run: Callable[[Field, Tensor, Callable[[int], Tensor], int], tuple[Tensor, int] | None]
    errors: dict[str, dict[int, float]] = dc_field(default_factory=dict)


def flowbridge_runner(label: str, solver: str, **options: object) -> Runner:
    def run(field: Field, x: Tensor, grid_fn: Callable[[int], Tensor], nfe: int) -> tuple[Tensor, int] | None:
        s = get_solver(solver, **options)
        if nfe < s.min_steps:
            return None
        return s.solve(field, x, grid_fn(nfe)).x, nfe

    return Runner(label, "flowbridge", run)


def diffusers_runner(label: str, kind: str, **options: object) -> Runner:
    def run(field: Field, x: Tensor, grid_fn: Callable[[int], Tensor], nfe: int) -> tuple[Tensor, int] | None:
        return sample_with_scheduler(make_scheduler(kind, **options), field, x, grid_fn(nfe)), nfe

    return Runner(label, "diffusers", run)


def torchdiffeq_runner(label: str, method: str, evals_per_step: int) -> Runner:
    import torchdiffeq

    def run(field: Field, x: Tensor, grid_fn: Callable[[int], Tensor], nfe: int) -> tuple[Tensor, int] | None:
        steps = nfe // evals_per_step
        if steps < 1:
            return None
        times = grid_fn(steps).to(x)
        out = torchdiffeq.odeint(lambda t, y: field.velocity(y, t), x, times, method=method)[-1]
        return out, steps * evals_per_step

    return Runner(label, "torchdiffeq", run)


def build_runners() -> list[Runner]:
    return [
        flowbridge_runner("ddim", "ddim"),
        flowbridge_runner("dpmpp_2m", "dpmpp_2m"),
        flowbridge_runner("dpmpp_2m lof", "dpmpp_2m", final_step="first_order"),
        flowbridge_runner("dpmpp_3m", "dpmpp_3m"),
        flowbridge_runner("dpmpp_3m lu", "dpmpp_3m", variant="lu"),
        flowbridge_runner("unipc p2 bh2", "unipc", order=2),
        flowbridge_runner("unipc p3 bh2", "unipc", order=3),
        flowbridge_runner("unipc p2 bh2 lof", "unipc", order=2, final_step="first_order"),
        flowbridge_runner("unipc p3 bh2 lof", "unipc", order=3, final_step="first_order"),
        flowbridge_runner("deis 3", "deis", order=3),
        flowbridge_runner("plms 4", "plms", order=4),
        flowbridge_runner("ghvb 4 b0.8", "ghvb", order=4, beta=0.8),
        flowbridge_runner("plms_hb 4 b0.8", "plms_hb", order=4, beta=0.8),
        flowbridge_runner("plms_nesterov 4 b0.8", "plms_nesterov", order=4, beta=0.8),
        flowbridge_runner("dpmpp_2m_hb b0.8", "dpmpp_2m_hb", beta=0.8),
        diffusers_runner("diffusers DPM++2M", "dpmpp", order=2, lower_order_final=True),
        diffusers_runner("diffusers DPM++3M", "dpmpp", order=3, lower_order_final=True),
        diffusers_runner("diffusers UniPC p2", "unipc", order=2, lower_order_final=True),
        diffusers_runner("diffusers UniPC p3", "unipc", order=3, lower_order_final=True),
        torchdiffeq_runner("torchdiffeq euler", "euler", 1),
        torchdiffeq_runner("torchdiffeq midpoint", "midpoint", 2),
        torchdiffeq_runner("torchdiffeq rk4", "rk4", 4),
    ]


# --------------------------------------------------------------------------- metrics


@dataclass
class Cell:
    error: float
    sw: float
    divergence: float
    nfe: int


def evaluate(out: Tensor, ref: Tensor, truth: Tensor, radius: float, generator_seed: int) -> tuple[float, float, float]:
    d = out[0].numel()
    flat = out.reshape(out.shape[0], -1)
    finite = torch.isfinite(flat).all(dim=1)
    diverged = (~finite) | (flat.nan_to_num(posinf=1e30, neginf=-1e30).norm(dim=1) > 3 * radius)
    divergence = float(diverged.double().mean())  # sync-ok: benchmark metrics
    if not bool(finite.all()):
        return math.inf, math.inf, divergence
    error = float(((out - ref).reshape(out.shape[0], -1).norm(dim=1) / math.sqrt(d)).mean())
    sw = float(sliced_wasserstein(out, truth, generator=torch.Generator().manual_seed(generator_seed)))
    return error, sw, divergence


def run_target(target: Target, runners: list[Runner], nfes: list[int]) -> tuple[dict[str, dict[int, Cell]], Cell]:
    path = target.field.path
    schedule = path.schedule

    def grid_fn(n: int) -> Tensor:
        return make_grid("logsnr", n, path.t_min, path.t_max, schedule)

    g0 = grid_fn(5)
    noise = torch.randn(target.batch, target.dim, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    x = noise * float(schedule(g0[:1]).sigma)
    ref = reference_solve(target.field, x, g0, tol=1e-9)
    truth = target.truth(target.batch, generator=torch.Generator().manual_seed(11)) if target.truth else ref
    _, ref_sw, ref_div = evaluate(ref, ref, truth, target.radius, 0)
    reference = Cell(0.0, ref_sw, ref_div, 0)
    out: dict[str, dict[int, Cell]] = {}
    for runner in runners:
        row: dict[int, Cell] = {}
        for nfe in nfes:
            try:
                result = runner.run(target.field, x, grid_fn, nfe)
            except (RuntimeError, ValueError, AssertionError) as err:  # a peer failing is a result
                print(f"  {runner.label} NFE {nfe}: {type(err).__name__}: {err}", flush=True)
                result = (torch.full_like(x, math.nan), nfe)
            if result is None:
                continue
            y, used = result
            error, sw, div = evaluate(y, ref, truth, target.radius, nfe)
            row[nfe] = Cell(error, sw, div, used)
        out[runner.label] = row
    return out, reference


def floor_of(target: Target) -> float | None:
    if target.truth is None:
        return None
    floor = noise_floor(sliced_wasserstein, target.truth, target.batch, repeats=3, generator=torch.Generator().manual_seed(3))
    return floor.mean


# --------------------------------------------------------------------------- per-step overhead


class ZeroField(Field):
    """A field that costs nothing: returns one preallocated zero tensor in its native parametrisation."""

    def __init__(self, path: GaussianPath, parametrisation: str, like: Tensor) -> None:
        super().__init__(path, parametrisation)
        self.zero = torch.zeros_like(like)

    def predict(self, x: Tensor, t: Tensor) -> Tensor:
        return self.zero


def time_loop(fn: Callable[[], None], repeats: int) -> float:
    fn()  # warm-up
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def overhead(quick: bool) -> list[tuple[str, str, float, float]]:
    path = GaussianPath(VPSchedule(kind="cosine"))
    rows = []
    shapes = [("d=2", (2,)), ("3x64x64", (3, 64, 64))]
    batches = [1, 4096] if not quick else [1, 64]
    pairs = [("dpmpp_2m", {}, "dpmpp", {"order": 2}), ("unipc", {}, "unipc", {"order": 2})]
    for shape_name, shape in shapes:
        for batch in batches:
            big = batch * math.prod(shape) > 1e6
            steps = 6 if big else 20
            repeats = 2 if big else 20
            x = torch.randn(batch, *shape)
            grid = make_grid("logsnr", steps, path.t_min, path.t_max, path.schedule)
            for ours, opts, kind, theirs in pairs:
                zero = ZeroField(path, "data", x)
                solver = get_solver(ours, **opts)

                def run_ours() -> None:
                    state = solver.init(zero, x, grid)
                    y = x
                    for i in range(steps):
                        y, state = solver.step(zero, y, state, i)

                def run_theirs() -> None:
                    sched = make_scheduler(kind, **theirs)
                    sched.set_timesteps(steps)
                    y = x
                    for i in range(steps):
                        y = sched.step(zero.zero, sched.timesteps[i], y).prev_sample

                t_ours = time_loop(run_ours, repeats) / steps
                t_theirs = time_loop(run_theirs, repeats) / steps
                rows.append((f"{ours} vs diffusers", f"{shape_name}, batch {batch}", t_ours, t_theirs))
                print(f"  overhead {ours} {shape_name} batch {batch}: {t_ours*1e6:.0f} us vs {t_theirs*1e6:.0f} us", flush=True)
    return rows


# --------------------------------------------------------------------------- report


def fmt(v: float) -> str:
    if math.isinf(v) or math.isnan(v):
        return "div"
    return f"{v:.2e}"


def error_table(results: dict[str, dict[int, Cell]], nfes: list[int], key: str = "error") -> list[str]:
    lines = ["| solver | " + " | ".join(str(n) for n in nfes) + " |", "|---" * (len(nfes) + 1) + "|"]
    best = {n: min((getattr(r[n], key) for r in results.values() if n in r), default=math.inf) for n in nfes}
    for label, row in results.items():
        cells = []
        for n in nfes:
            if n not in row:
                cells.append("–")
                continue
            c = row[n]
            v = getattr(c, key)
            s = fmt(v) + (f" ({c.nfe})" if c.nfe != n else "")
            cells.append(f"**{s}**" if v == best[n] and math.isfinite(v) else s)
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def best_of(results: dict[str, dict[int, Cell]], runners: list[Runner], source_is_ours: bool, nfe: int) -> tuple[str, float]:
    cands = [
        (r.label, results[r.label][nfe].error) for r in runners
        if (r.source == "flowbridge") == source_is_ours and nfe in results[r.label] and results[r.label][nfe].nfe == nfe
    ]
    return min(cands, key=lambda c: c[1]) if cands else ("–", math.inf)


def plot(all_results: dict[str, dict[str, dict[int, Cell]]], nfes: list[int], path: Path) -> None:
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n in all_results if n.startswith(("mixture d=2 vp", "mixture d=64 linear", "CFG w=7.5", "CFG w=15"))]
    names = names or list(all_results)[:4]
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.6), squeeze=False)
    show = ["dpmpp_2m", "dpmpp_3m", "unipc p2 bh2", "deis 3", "ghvb 4 b0.8", "plms_hb 4 b0.8", "dpmpp_2m_hb b0.8",
            "diffusers DPM++2M", "diffusers DPM++3M", "diffusers UniPC p2", "torchdiffeq rk4"]
    for ax, name in zip(axes[0], names):
        for label in show:
            row = all_results[name].get(label, {})
            xs = [n for n in nfes if n in row and math.isfinite(row[n].error)]
            style = "--" if label.startswith(("diffusers", "torchdiffeq")) else "-"
            ax.loglog(xs, [row[n].error for n in xs], style, marker="o", ms=3, label=label)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("NFE")
        ax.set_xticks(nfes)
        ax.set_xticklabels([str(n) for n in nfes], fontsize=7)
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.grid(alpha=0.3, which="both")
    axes[0][0].set_ylabel("pathwise error to dopri5")
    fig.legend(*axes[0][0].get_legend_handles_labels(), fontsize=7, loc="center right")
    fig.tight_layout(rect=(0, 0, 0.86, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_docs_section(summary: list[str], command: str, date: str) -> None:
    docs = ROOT / "docs" / "benchmarks.md"
    begin, end = "<!-- solvers:begin -->", "<!-- solvers:end -->"
    section = "\n".join([
        begin,
        "## Solvers",
        "",
        f"Multistep solvers against diffusers' schedulers and torchdiffeq on exact Gaussian-mixture fields "
        f"(`{command}`, {date}; full tables in `experiments/results/solvers.md`). Pathwise error to a float64 "
        "dopri5 reference from the same noise, logsnr grid, same schedule for everyone.",
        "",
        *summary,
        "",
        "Notes: a row whose best flowbridge solver is the peer's own algorithm (`unipc ... lof` is diffusers' "
        "UniPC with `lower_order_final`) is a tie at float32 rounding. `dpmpp_3m` uses the Taylor-exact weight "
        "on the second difference and converges at order 3; diffusers' 3M uses half of it and converges at "
        "order 2 (`variant='lu'` reproduces it, and has the smaller error on the mixture targets at NFE <= 25: "
        "third order pays off only asymptotically). Under strong "
        "guidance the high-order multistep methods diverge at low NFE; `ddim` and `deis` diverge least; "
        "momentum (beta = 0.8) lowers the divergence of `plms` and `dpmpp_2m` at most NFE for w >= 7.5 but "
        "not everywhere (see the guidance tables in the results file).",
        end,
    ])
    text = docs.read_text() if docs.exists() else "# Benchmarks\n\nTables written by the scripts in `experiments/`.\n"
    if begin in text and end in text:
        text = text[: text.index(begin)] + section + text[text.index(end) + len(end):]
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    docs.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small batches and few targets (smoke test)")
    parser.add_argument("--no-docs", action="store_true", help="do not update docs/benchmarks.md")
    args = parser.parse_args()
    torch.set_num_threads(1)
    start, cpu_start = time.perf_counter(), time.process_time()
    nfes = NFES if not args.quick else [5, 10, 15]
    runners = build_runners()
    all_results: dict[str, dict[str, dict[int, Cell]]] = {}
    floors: dict[str, float | None] = {}
    references: dict[str, Cell] = {}
    for target in build_targets(args.quick):
        t0 = time.perf_counter()
        all_results[target.name], references[target.name] = run_target(target, runners, nfes)
        floors[target.name] = floor_of(target)
        print(f"{target.name}: {time.perf_counter() - t0:.1f} s (cpu {time.process_time() - cpu_start:.0f} s so far)", flush=True)
    overhead_rows = overhead(args.quick)
    elapsed = time.perf_counter() - start
    cpu = time.process_time() - cpu_start

    command = "make bench" if not args.quick else "python experiments/bench_solvers.py --quick"
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Multistep solvers: flowbridge vs diffusers and torchdiffeq",
        "",
        f"Command: `{command}` · {date} · {platform.processor() or platform.machine()}, torch "
        f"{torch.__version__}, 1 thread · wall {elapsed / 60:.1f} min, CPU {cpu / 60:.1f} min (the wall time "
        "includes waiting for the CPU when other jobs share the machine).",
        "",
        (__doc__ or "").split("\n\n", 2)[2].strip(),
        "",
        "Peers: diffusers `DPMSolverMultistepScheduler` (dpmsolver++) and `UniPCMultistepScheduler` (bh2) with "
        "their default `lower_order_final=True`, driven on the same continuous schedule by overwriting "
        "`sigmas` (`final_sigmas_type='sigma_min'`: they stop at the same last time; `step` computes in "
        "float32); torchdiffeq fixed-grid euler / midpoint / rk4 on the same grid with NFE // (evaluations per "
        "step) steps (the NFE actually used is shown in parentheses when it differs). Bold: best at that NFE.",
        "",
    ]
    summary = ["| target | NFE | best flowbridge | error | best peer | error | ratio |", "|---|---|---|---|---|---|---|"]
    verdicts = []
    for name, results in all_results.items():
        for n in (10, 15):
            if n not in nfes:
                continue
            ours, e_ours = best_of(results, runners, True, n)
            peer, e_peer = best_of(results, runners, False, n)
            ok = e_ours <= e_peer * (1 + TIE)
            verdicts.append(ok)
            summary.append(f"| {name} | {n} | {ours} | {fmt(e_ours)} | {peer} | {fmt(e_peer)} | {e_ours / e_peer:.2f} |")
    lines += ["## Summary: best flowbridge solver vs best peer at NFE 10 and 15", "", *summary, "",
              f"flowbridge's best has no larger error than the best peer in {sum(verdicts)} of {len(verdicts)} cases "
              f"(ratios within 1 + {TIE:g} count as ties: the same algorithm in float64 vs float32).", ""]

    lines += ["## Pathwise error to the dopri5 reference (mean |x - x_ref| / sqrt(d))", ""]
    for name, results in all_results.items():
        if name.startswith("mixture"):
            lines += [f"### {name}", "", *error_table(results, nfes), ""]

    lines += ["## Sliced Wasserstein to exact samples (noise floor at the same n in the heading)", ""]
    for name, results in all_results.items():
        if name.startswith("mixture"):
            lines += [f"### {name} (noise floor {floors[name]:.3f}; dopri5 reference {references[name].sw:.3f})", "",
                      *error_table(results, nfes, "sw"), ""]

    lines += [
        "## Guidance stress test: CFG with the exact conditional (one component) and unconditional fields",
        "",
        "Divergence rate = fraction of samples beyond 3x the data radius or non-finite; error = pathwise error "
        "to the dopri5 solution of the same guided ODE. Momentum variants (β = 0.8) next to their bases: "
        "plms_hb / plms_nesterov / ghvb vs plms 4, dpmpp_2m_hb vs dpmpp_2m.",
        "",
    ]
    for name, results in all_results.items():
        if name.startswith("CFG"):
            ref = references[name]
            lines += [f"### {name}: divergence rate (dopri5 reference: {ref.divergence:.3f})", "",
                      *error_table(results, nfes, "divergence"), ""]
            lines += [f"### {name}: pathwise error", "", *error_table(results, nfes), ""]
    lines += momentum_verdict(all_results, nfes)

    lines += ["## Per-step overhead with a zero field", "",
              "Best of repeated runs of the whole step loop divided by its steps (one thread, float32). "
              "flowbridge: `Solver.step` including the (free) field call and the state update; diffusers: "
              "`scheduler.step` on the same tensor.", "",
              "| solver | size | flowbridge (µs) | diffusers (µs) | ratio |", "|---|---|---|---|---|"]
    for label, size, ours, theirs in overhead_rows:
        lines.append(f"| {label} | {size} | {ours * 1e6:.0f} | {theirs * 1e6:.0f} | {ours / theirs:.2f} |")
    lines += ["", "![pathwise error against NFE](solvers_error.png)", ""]

    RESULTS.mkdir(parents=True, exist_ok=True)
    name = "solvers.md" if not args.quick else "solvers_quick.md"
    (RESULTS / name).write_text("\n".join(lines) + "\n")
    plot(all_results, nfes, RESULTS / ("solvers_error.png" if not args.quick else "solvers_error_quick.png"))
    if not args.no_docs and not args.quick:
        overhead_lines = ["", "Per-step overhead with a zero field (µs, flowbridge / diffusers):", "",
                          "| solver | size | flowbridge | diffusers |", "|---|---|---|---|"]
        overhead_lines += [f"| {a} | {b} | {c * 1e6:.0f} | {d * 1e6:.0f} |" for a, b, c, d in overhead_rows]
        write_docs_section(summary + overhead_lines, command, date)
    print(f"wrote {RESULTS / name} in {elapsed / 60:.1f} min", flush=True)


def momentum_verdict(all_results: dict[str, dict[str, dict[int, Cell]]], nfes: list[int]) -> list[str]:
    pairs = [("plms_hb 4 b0.8", "plms 4"), ("plms_nesterov 4 b0.8", "plms 4"), ("ghvb 4 b0.8", "plms 4"),
             ("dpmpp_2m_hb b0.8", "dpmpp_2m")]
    lines = ["### Where momentum lowers the divergence rate", "",
             "| guidance | momentum vs base | NFE where divergence is lower | higher | NFE with equal rates |", "|---|---|---|---|---|"]
    for name, results in all_results.items():
        if not name.startswith("CFG"):
            continue
        for mom, base in pairs:
            lower, higher, same = [], [], 0
            for n in nfes:
                if n in results[mom] and n in results[base]:
                    a, b = results[mom][n].divergence, results[base][n].divergence
                    if a < b:
                        lower.append(str(n))
                    elif a > b:
                        higher.append(str(n))
                    else:
                        same += 1
            lines.append(f"| {name.split(' d=')[0]} | {mom} vs {base} | {', '.join(lower) or 'none'} | "
                         f"{', '.join(higher) or 'none'} | {same} |")
    return lines + [""]


if __name__ == "__main__":
    main()
