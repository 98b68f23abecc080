"""Benchmark of flowbridge's SDE samplers on exact Gaussian-mixture fields.

Sections (``--sections``, all by default):

* ``curves``: NFE-to-quality curves of every SDE sampler for d = 2 and d = 16 (ring mixture of
  tests/conftest.py, VP path, uniform grid): sliced Wasserstein to fresh exact samples averaged over
  5 sets of 2000 points, next to its noise floor (``compare_to_truth``); ``adaptive_sde`` over a
  ladder of tolerances; the torchsde / native wall-clock ratios at equal steps.
* ``defaults``: the issue-17 protocol, a 5-component 2-D mixture on the VP path. Sliced W cannot
  resolve within-mode errors there (mode-weight fluctuations dominate it), so the table also gives
  what can be resolved at n = 100000 with exact expectations: the mode weights' chi^2 (4 dof) and
  the within-mode spread E|x - mu_nearest|^2 against sum_k w_k tr(Sigma_k), with standard errors.
  ``adaptive_sde`` at its defaults and over a tolerance ladder against Euler-Maruyama at 100-1000
  steps: the NFE each needs for a given spread bias.
* ``speed``: wall time per NFE of ``adaptive_sde`` (defaults) against ``euler_maruyama`` run for
  the same NFE, side by side, batch 8192 (and 512), d = 16, float32; with ``--device cuda`` on a GPU.

Usage:  OMP_NUM_THREADS=1 python experiments/bench_sde.py [--quick] [--sections defaults speed]
        python experiments/bench_sde.py --device cuda --sections speed --out experiments/results/sde_gpu.md
"""

from __future__ import annotations

import argparse
import datetime
import math
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import flowbridge as fb  # noqa: E402
from flowbridge.metrics import sliced_wasserstein  # noqa: E402
from flowbridge.metrics.quality import compare_to_truth  # noqa: E402
from flowbridge.paths import GaussianPath, VPSchedule  # noqa: E402
from flowbridge.samplers.sde import AdaptiveSDE  # noqa: E402
from flowbridge.samplers.grids import make_grid  # noqa: E402
from tests.conftest import ring_mixture  # noqa: E402

N, SETS = 2000, 5


def curves(quick: bool) -> dict[str, list[int]]:
    full = {
        "euler_maruyama": [10, 15, 20, 30, 50, 100, 200, 500],
        "ddpm_ancestral": [10, 15, 20, 30, 50, 200],
        "dpmpp_2m_sde": [5, 10, 15, 20, 30, 50, 200],
        "edm_stochastic": [5, 8, 10, 15, 25, 50, 250],
        "pc": [10, 15, 20, 30, 50, 200],
        "torchsde:euler": [10, 20, 30, 50, 100],
        "torchsde:srk": [3, 5, 10, 20, 50],
        "torchsde:reversible_heun": [200, 800],
    }
    if quick:
        return {k: v[:3] for k, v in full.items()}
    return full


# (atol, rtol) ladder; the default is (0.0078, 0.05).
TOLERANCES = [(0.05, 0.3), (0.02, 0.1), (0.0078, 0.05), (0.0078, 0.03), (0.0078, 0.02), (0.0078, 0.01)]


def run(field, solver, steps, d, **options):
    g = torch.Generator().manual_seed(3)
    start = time.perf_counter()
    out = fb.sample(field, solver, steps, shape=(N * SETS, d), generator=g, dtype=torch.float64, **options)
    elapsed = time.perf_counter() - start
    return out, elapsed


def quality(gm, x):
    return compare_to_truth(x, gm.sample, sliced_wasserstein, sets=SETS, generator=torch.Generator().manual_seed(5))


def em_nfe_for(value: float, em_points: list[tuple[int, float]]) -> float:
    """EM's NFE to reach ``value`` (log-log interpolation on its curve; inf if never reached)."""
    pts = sorted(em_points)
    for (n0, v0), (n1, v1) in zip(pts, pts[1:]):
        if v1 <= value <= v0 and v0 > v1:
            w = (math.log(v0) - math.log(value)) / (math.log(v0) - math.log(v1))
            return math.exp(math.log(n0) + w * (math.log(n1) - math.log(n0)))
    if pts and pts[0][1] <= value:
        return float(pts[0][0])
    return math.inf


def nfe_to_threshold(points: list[tuple[int, float]], threshold: float) -> int | str:
    """Smallest NFE from which every tested NFE has ratio <= threshold ('-' if none)."""
    pts = sorted(points)
    for i, (nfe, _) in enumerate(pts):
        if all(r <= threshold for _, r in pts[i:]):
            return nfe
    return "-"


def section_curves(args: argparse.Namespace) -> list[str]:
    lines: list[str] = []
    for d in args.dims:
        gm = ring_mixture(d)
        field = gm.field(GaussianPath(VPSchedule()))
        floor = quality(gm, gm.sample(N * SETS, generator=torch.Generator().manual_seed(99)))
        lines += [f"## d = {d}", "", f"Exact samples scored the same way: ratio {floor.ratio:.2f}.", "",
                  "| solver | steps | NFE | sliced W | ratio to floor | time (s) |", "|---|---|---|---|---|---|"]
        em_points: list[tuple[int, float]] = []
        curve: dict[str, list[tuple[int, float]]] = {}
        times: dict[tuple[str, int], float] = {}
        for solver, step_list in curves(args.quick).items():
            if args.curve_solvers and solver not in (*args.curve_solvers, "euler_maruyama"):
                continue
            for steps in step_list:
                out, elapsed = run(field, solver, steps, d)
                rep = quality(gm, out.x)
                times[(solver, steps)] = elapsed
                if solver == "euler_maruyama":
                    em_points.append((out.nfe, rep.value))
                curve.setdefault(solver, []).append((out.nfe, rep.ratio))
                lines.append(f"| {solver} | {steps} | {out.nfe} | {rep.value:.4f} | {rep.ratio:.2f} | {elapsed:.2f} |")
                print(lines[-1], flush=True)
        lines += ["", f"### adaptive_sde (d = {d})", "",
                  "| atol | rtol | batch NFE | mean per-sample NFE | sliced W | ratio | EM NFE for the same W | EM NFE / adaptive NFE |",
                  "|---|---|---|---|---|---|---|---|"]
        adaptive_curve: list[tuple[int, float]] = []
        for atol, rtol in TOLERANCES:
            solver = AdaptiveSDE(atol=atol, rtol=rtol)
            x0 = fb.sample(field, "euler", 1, shape=(N * SETS, d), generator=torch.Generator().manual_seed(3), dtype=torch.float64, t_span=(0.0, 1e-9)).x
            grid = make_grid("uniform", 1, field.path.t_min, field.path.t_max)
            res = solver.solve_detailed(field, x0, grid, generator=torch.Generator().manual_seed(4))
            rep = quality(gm, res.x)
            em_nfe = em_nfe_for(rep.value, em_points)
            ratio = em_nfe / res.nfe if math.isfinite(em_nfe) else math.inf
            adaptive_curve.append((res.nfe, rep.ratio))
            lines.append(
                f"| {atol} | {rtol} | {res.nfe} | {float(res.nfe_per_sample.double().mean()):.0f} | {rep.value:.4f} | "
                f"{rep.ratio:.2f} | {em_nfe:.0f} | {ratio:.2f} |"
            )
            print(lines[-1], flush=True)
        curve["adaptive_sde"] = adaptive_curve
        lines += ["", f"### NFE to reach a quality threshold (d = {d})", "",
                  "Smallest tested NFE from which the ratio to the noise floor stays at or below the threshold "
                  "for every larger NFE tested ('-' if never).", "",
                  "| solver | ratio <= 1.5 | ratio <= 1.2 |", "|---|---|---|"]
        for solver, pts in curve.items():
            lines.append(f"| {solver} | {nfe_to_threshold(pts, 1.5)} | {nfe_to_threshold(pts, 1.2)} |")
        em15, ad15 = nfe_to_threshold(curve["euler_maruyama"], 1.5), nfe_to_threshold(adaptive_curve, 1.5)
        em12, ad12 = nfe_to_threshold(curve["euler_maruyama"], 1.2), nfe_to_threshold(adaptive_curve, 1.2)
        for label, em_n, ad_n in (("1.5", em15, ad15), ("1.2", em12, ad12)):
            if isinstance(em_n, int) and isinstance(ad_n, int):
                lines.append(f"\nEM NFE / adaptive NFE at ratio <= {label}: {em_n / ad_n:.2f}")
        lines += ["", f"### torchsde / native wall-clock ratio (d = {d}, same steps, measured side by side)", "",
                  "| backend | native | steps | backend time / native time |", "|---|---|---|---|"]
        for backend, native in (("torchsde:euler", "euler_maruyama"), ("torchsde:srk", "euler_maruyama"),
                                ("torchsde:reversible_heun", "euler_maruyama")):
            if args.curve_solvers and backend not in args.curve_solvers:
                continue
            steps = 100
            t_native = min(run(field, native, steps, d)[1] for _ in range(2))
            t_backend = min(run(field, backend, steps, d)[1] for _ in range(2))
            lines.append(f"| {backend} | {native} | {steps} | {t_backend / t_native:.2f} |")
            print(lines[-1], flush=True)
        lines.append("")
    return lines


def _mode_statistics(gm, x: torch.Tensor) -> tuple[float, float, float]:
    """Pearson chi^2 of the mode counts (nearest mean; the 5-ring's means are 3.5 apart, components'
    standard deviations <= 0.35), the within-mode spread E|x - mu_nearest|^2 and its standard error."""
    nearest = torch.cdist(x, gm.means).min(1)
    counts = torch.bincount(nearest.indices, minlength=gm.n_components).double()
    expected = gm.weights * x.shape[0]
    sq = nearest.values.square()
    return float(((counts - expected) ** 2 / expected).sum()), float(sq.mean()), float(sq.std() / math.sqrt(x.shape[0]))


DEFAULTS_N = 100_000
EM_STEPS = [100, 200, 500, 1000]
RTOL_LADDER = [0.2, 0.1, 0.05, 0.03, 0.02, 0.01]


def section_defaults(args: argparse.Namespace) -> list[str]:
    """The issue-17 protocol: 5-component 2-D mixture, VP path."""
    n = 20_000 if args.quick else DEFAULTS_N
    gm = ring_mixture(2, k=5)
    field = gm.field(GaussianPath(VPSchedule()))
    exact_spread = float(torch.einsum("k,kii->", gm.weights, gm.covs))
    x0 = torch.randn(n, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(10))
    grid = make_grid("uniform", 1, field.path.t_min, field.path.t_max)
    lines = [
        f"## Defaults: 5-component 2-D mixture, VP path (n = {n}, float64, same starting points for all)", "",
        "Spread bias: E|x - mu_nearest|^2 of the samples over its exact value sum_k w_k tr(Sigma_k) "
        f"= {exact_spread:.4f}, minus 1, with its standard error. chi^2: Pearson statistic of the mode "
        "counts, 4 dof (99.9% quantile 18.5). Sliced W: `compare_to_truth` over 5 sets of n/5, as a ratio "
        "to the noise floor. Batch NFE is the cost of the batch (it runs until its slowest sample is done); "
        "mean NFE per sample is what each sample needed.", "",
        "| sampler | options | batch NFE | mean NFE / sample | spread bias | chi^2 | sliced W / floor | rejected | time (s) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]

    def row(name: str, options: str, nfe: int, per_sample: float, x: torch.Tensor, rejected: str, elapsed: float) -> tuple[float, float]:
        chi2, spread, se = _mode_statistics(gm, x)
        rep = compare_to_truth(x, gm.sample, sliced_wasserstein, sets=SETS, generator=torch.Generator().manual_seed(5))
        bias, bias_se = spread / exact_spread - 1, se / exact_spread
        lines.append(f"| {name} | {options} | {nfe} | {per_sample:.0f} | {100 * bias:+.2f}% +- {100 * bias_se:.2f}% | "
                     f"{chi2:.1f} | {rep.ratio:.2f} | {rejected} | {elapsed:.0f} |")
        print(lines[-1], flush=True)
        return bias, bias_se

    exact = gm.sample(n, generator=torch.Generator().manual_seed(77))
    row("exact samples", "", 0, 0, exact, "", 0.0)
    em: list[tuple[int, float]] = []
    for steps in EM_STEPS[:2] if args.quick else EM_STEPS:
        start = time.perf_counter()
        out = fb.sample(field, "euler_maruyama", steps, x0=x0, generator=torch.Generator().manual_seed(11))
        em.append((steps, row("euler_maruyama", f"{steps} steps", steps, steps, out.x, "", time.perf_counter() - start)[0]))
    adaptive: list[tuple[str, int, float]] = []
    ladder = [("defaults", {})] + [(f"rtol={r}", {"rtol": r}) for r in (RTOL_LADDER[1:3] if args.quick else RTOL_LADDER)]
    for label, options in ladder:
        start = time.perf_counter()
        res = AdaptiveSDE(**options).solve_detailed(field, x0, grid, generator=torch.Generator().manual_seed(11))
        rejected = f"{100 * float(res.rejected.sum()) / float((res.rejected + res.accepted).sum()):.0f}%"
        bias, _ = row("adaptive_sde", label, res.nfe, float(res.nfe_per_sample.double().mean()), res.x, rejected, time.perf_counter() - start)
        adaptive.append((label, res.nfe, bias))
    lines += ["", "EM's NFE for the same spread bias (log-log interpolation of EM's bias over its NFE; "
              "biases within ~2 standard errors of 0 are not resolved):", "",
              "| adaptive_sde | batch NFE | spread bias | EM NFE for that bias | EM NFE / adaptive batch NFE |", "|---|---|---|---|---|"]
    worst = max(b for _, b in em)
    for label, nfe, bias in adaptive:
        if bias >= worst:  # worse than EM's coarsest grid: EM needs fewer than that many steps
            lines.append(f"| {label} | {nfe} | {100 * bias:+.2f}% | < {em[0][0]} | < {em[0][0] / nfe:.2f} |")
            continue
        em_nfe = em_nfe_for(bias, [(s, b) for s, b in em if b > 0]) if bias > 0 else math.inf
        lines.append(f"| {label} | {nfe} | {100 * bias:+.2f}% | {em_nfe:.0f} | {em_nfe / nfe:.2f} |")
    lines.append("")
    return lines


def _wall(fn, device: torch.device) -> tuple[float, object]:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start, out


def section_speed(args: argparse.Namespace) -> list[str]:
    """Wall time per NFE, adaptive_sde (defaults) against euler_maruyama run for the same NFE."""
    device = torch.device(args.device)
    d, dtype = 16, torch.float32
    gm = ring_mixture(d, dtype=dtype).to(device)
    field = gm.field(GaussianPath(VPSchedule()))
    grid = make_grid("uniform", 1, field.path.t_min, field.path.t_max)
    reps = 2 if args.quick else 5
    lines = [f"## Speed: wall time per NFE on {device.type} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'}), "
             f"d = {d}, float32, ring mixture, VP path", "",
             "Each repetition runs adaptive_sde at its defaults, then euler_maruyama for as many steps as adaptive's "
             "batch NFE, then the field alone for as many evaluations, from the same starting points; "
             f"median over {reps} repetitions (after one warm-up of each).", "",
             "| batch | adaptive NFE | host checks | adaptive ms / NFE | EM ms / NFE | field alone ms / eval | adaptive / EM |",
             "|---|---|---|---|---|---|---|"]
    for batch in args.batches:
        gen = torch.Generator(device=device)
        x0 = torch.randn(batch, d, dtype=dtype, device=device, generator=gen.manual_seed(0))
        tt = torch.full((batch,), 0.5, dtype=dtype, device=device)
        ee = torch.full((batch, 1), 0.5, dtype=dtype, device=device)

        def adaptive():
            return AdaptiveSDE().solve_detailed(field, x0, grid, generator=gen.manual_seed(1))

        nfe = adaptive().nfe  # warm-up; the NFE is the same in every repetition (same seeds)

        def em():
            return fb.sample(field, "euler_maruyama", nfe, x0=x0, generator=gen.manual_seed(1))

        def field_alone():
            for _ in range(nfe):
                field.sde_drift(x0, tt, ee)

        em()
        ratios, ta, te, tf, checks = [], [], [], [], 0
        for _ in range(reps):
            t_a, res = _wall(adaptive, device)
            t_e, _ = _wall(em, device)
            t_f, _ = _wall(field_alone, device)
            checks = res.checks
            ta.append(t_a / res.nfe)
            te.append(t_e / nfe)
            tf.append(t_f / nfe)
            ratios.append((t_a / res.nfe) / (t_e / nfe))
        lines.append(f"| {batch} | {nfe} | {checks} | {1e3 * statistics.median(ta):.3f} | {1e3 * statistics.median(te):.3f} | "
                     f"{1e3 * statistics.median(tf):.3f} | {statistics.median(ratios):.2f} |")
        print(lines[-1], flush=True)
    lines.append("")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--dims", type=int, nargs="+", default=[2, 16])
    parser.add_argument("--sections", nargs="+", choices=["curves", "defaults", "speed"], default=["curves", "defaults", "speed"])
    parser.add_argument("--curve-solvers", nargs="+", default=None,
                        help="only these solvers in the curves section (euler_maruyama and adaptive_sde always run)")
    parser.add_argument("--device", default="cpu", help="device of the speed section (cpu or cuda)")
    parser.add_argument("--batches", type=int, nargs="+", default=[8192, 512], help="batch sizes of the speed section")
    parser.add_argument("--out", default=str(ROOT / "experiments/results/sde.md"))
    args = parser.parse_args()
    if args.device == "cpu":
        torch.set_num_threads(1)
    command = " ".join(["python experiments/bench_sde.py", *sys.argv[1:]])
    lines = [
        "# SDE samplers: NFE to quality, adaptive vs Euler–Maruyama, torchsde vs native",
        "",
        f"Command: `{'OMP_NUM_THREADS=1 ' if args.device == 'cpu' else ''}{command}`  ",
        f"Date: {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}; torch {torch.__version__}. "
        "On a shared CPU absolute times are noisy; ratios are measured side by side.",
        "",
    ]
    if "curves" in args.sections:
        lines += [f"Curves: float64, {N * SETS} samples = {SETS} sets of {N}; quality: mean sliced W (`compare_to_truth`) "
                  "and its ratio to the noise floor (1 = exact).", ""]
        lines += section_curves(args)
    if "defaults" in args.sections:
        lines += section_defaults(args)
    if "speed" in args.sections:
        lines += section_speed(args)
    Path(args.out).write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
