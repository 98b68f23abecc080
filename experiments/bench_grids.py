"""Which time grid suits which solver: every fixed-step ODE solver on every registered grid.

Run with ``.venv/bin/python experiments/bench_grids.py [--quick]``; writes
``experiments/results/grids.md``. The winner per solver is each solver's ``default_grid`` (what
``flowbridge.sample`` uses when no grid is named); ``tests/samplers/test_default_grids.py`` checks
that the defaults in the code are the winners recorded here.

What is measured: the exact Gaussian-mixture targets of ``bench_solvers.py`` (8 narrow modes,
d = 2 and 16, VP-cosine and linear paths), samples started from the same standard-normal noise
scaled to the grid's first time, each solver on each grid at NFE 10 and 20 over the solver's
default span; the error is the mean ``|x - x_ref| / sqrt(d)`` to a float64 dopri5 solution from the
same start (rtol = atol = 1e-9). A grid's score for a solver is the geometric mean of its errors
over targets and NFEs (a grid that fails to run scores infinity).
"""

from __future__ import annotations

import argparse
import datetime
import math
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import flowbridge as fb  # noqa: E402
from experiments.bench_solvers import separated_mixture  # noqa: E402
from experiments.diffusers_peer import reference_solve  # noqa: E402
from flowbridge.paths import GaussianPath, VPSchedule  # noqa: E402
from flowbridge.samplers import GRIDS, SOLVERS, get_solver, make_grid  # noqa: E402

NFES = (10, 20)


def solvers() -> list[str]:
    """Fixed-step ODE solvers that run on Gaussian paths."""
    return sorted(
        name for name, cls in SOLVERS.items()
        if not cls.stochastic and cls.nfe_per_step > 0 and not name.startswith("bridge_")
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=str(ROOT / "experiments" / "results" / "grids.md"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    paths = {"vp_cosine": GaussianPath(VPSchedule(kind="cosine")), "linear": GaussianPath("linear")}
    batch = {2: 200 if args.quick else 1000, 16: 100 if args.quick else 400}
    targets = [(f"d={d} {p}", separated_mixture(d).field(path), d) for d in (2, 16) for p, path in paths.items()]
    names = solvers()
    scores: dict[str, dict[str, list[float]]] = {s: {g: [] for g in GRIDS} for s in names}
    for label, field, d in targets:
        eps = torch.randn(batch[d], d, generator=torch.Generator().manual_seed(d), dtype=torch.float64)
        for solver_name in names:
            solver = get_solver(solver_name)
            t0, t1 = solver.default_span(field)
            for grid in GRIDS:
                for nfe in NFES:
                    steps = nfe // solver.nfe_per_step
                    if steps < solver.min_steps:
                        scores[solver_name][grid].append(math.inf)
                        continue
                    try:
                        times = make_grid(grid, steps, t0, t1, field.path.schedule)
                        x = field.path.prior_sample(tuple(eps.shape), float(times[0]), noise=eps)
                        out = solver.solve(field, x, times).x
                        ref = reference_solve(field, x, times)
                        err = float((out - ref).norm(dim=1).mean()) / math.sqrt(d)
                    except fb.errors.FlowbridgeError:
                        err = math.inf
                    scores[solver_name][grid].append(err if math.isfinite(err) else math.inf)
        print(f"[bench_grids] {label} done ({time.perf_counter() - start_wall:.0f} s)", flush=True)

    def geo(v: list[float]) -> float:
        return math.inf if any(not math.isfinite(e) for e in v) else math.exp(sum(math.log(e) for e in v) / len(v))

    grids = list(GRIDS)
    lines = [
        "# Time grids per solver", "",
        f"Command: `experiments/bench_grids.py{' --quick' if args.quick else ''}` · "
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC · {platform.machine()}, torch {torch.__version__}, 1 thread · "
        f"wall {(time.perf_counter() - start_wall) / 60:.1f} min, CPU {(time.process_time() - start_cpu) / 60:.1f} min.", "",
        __doc__.split("What is measured: ", 1)[1].strip(), "",
        "Geometric-mean error per grid (lower is better; bold: the winner, each solver's `default_grid`).", "",
        "| solver | " + " | ".join(grids) + " | winner |", "|---|" + "---|" * (len(grids) + 1),
    ]
    winners = {}
    for s in names:
        values = {g: geo(scores[s][g]) for g in grids}
        best = min(grids, key=lambda g: values[g])
        winners[s] = best
        cells = [("**%.2e**" if g == best else "%.2e") % values[g] if math.isfinite(values[g]) else "fails" for g in grids]
        lines.append(f"| `{s}` | " + " | ".join(cells) + f" | {best} |")
    lines += ["", "Winners (machine-readable, read by the test):", "", "```"]
    lines += [f"{s} {winners[s]}" for s in names] + ["```", ""]
    Path(args.out).write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
