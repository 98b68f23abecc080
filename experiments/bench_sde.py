"""Benchmark of flowbridge's SDE samplers on exact Gaussian-mixture fields.

Records, for d = 2 and d = 16 (ring mixture of tests/conftest.py, VP path, uniform grid):

* NFE-to-quality curves of every SDE sampler: sliced Wasserstein to fresh exact samples averaged
  over 5 sets of 2000 points, next to its noise floor (``compare_to_truth``);
* the NFE ``adaptive_sde`` needs to reach the quality of ``euler_maruyama`` at its finest grid, and
  the ratio to EM's NFE for the same quality (EM's NFE interpolated log-log on its curve);
* wall-clock time ratios torchsde backend / native sampler at equal steps, measured side by side.

Usage:  OMP_NUM_THREADS=1 python experiments/bench_sde.py [--quick] [--out experiments/results/sde.md]
"""

from __future__ import annotations

import argparse
import datetime
import math
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


TOLERANCES = [(0.2, 1.0), (0.1, 0.5), (0.05, 0.3), (0.05, 0.2), (0.02, 0.1), (0.01, 0.05), (0.005, 0.02)]


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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--dims", type=int, nargs="+", default=[2, 16])
    parser.add_argument("--out", default=str(ROOT / "experiments/results/sde.md"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    lines = [
        "# SDE samplers: NFE to quality, adaptive vs Euler–Maruyama, torchsde vs native",
        "",
        f"Command: `OMP_NUM_THREADS=1 python experiments/bench_sde.py{' --quick' if args.quick else ''}`  ",
        f"Date: {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}; torch {torch.__version__}, CPU, float64, "
        f"{N * SETS} samples = {SETS} sets of {N}. The CPU was shared with other jobs: absolute times are noisy, "
        "ratios are measured side by side.",
        "",
        "Quality: mean sliced W (`compare_to_truth`, 5 sets) and its ratio to the noise floor (1 = exact).",
        "",
    ]
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
            steps = 100
            t_native = min(run(field, native, steps, d)[1] for _ in range(2))
            t_backend = min(run(field, backend, steps, d)[1] for _ in range(2))
            lines.append(f"| {backend} | {native} | {steps} | {t_backend / t_native:.2f} |")
            print(lines[-1], flush=True)
        lines.append("")
    Path(args.out).write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
