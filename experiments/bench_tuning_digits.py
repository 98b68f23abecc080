"""Tuned solvers on a trained model: the ddpm_digits UNet (issue 20, acceptance 2).

The field: the EMA weights of a ``models/ddpm_digits.yaml`` checkpoint (8x8 scikit-learn digits, VP
linear schedule, noise prediction), unconditional (the null label of its classifier-free training),
float32 network and float32 states. Every solver integrates its probability-flow ODE over the same
span, that of the log-SNR grid (sigma/alpha 80 -> 0.0105, t = 0.0665 -> 0.999), from the same noises.

* **reference**: ``dpmpp_3m`` with 500 steps on the log-SNR grid (checked against ``rk4`` with 500
  steps on the same grid, 2000 evaluations, on the first test noises);
* **untuned**: the best (on the test noises: a choice in their favour) of the flowbridge solvers of
  ``bench_tuning.UNTUNED`` on their default grid (the span above) and on the log-SNR grid;
* **peer**: the best diffusers scheduler of ``bench_tuning.PEERS`` on the log-SNR grid (if diffusers is
  installed);
* **tuned**: ``flowbridge.samplers.tuning.tune`` of each family of ``--families`` from the log-SNR
  grid, against a ``dpmpp_3m`` 100-step log-SNR reference (``reference_grid="logsnr"``), Adam on
  minibatches of ``--minibatch`` from a pool of ``--n-train`` training noises, validation on
  ``--n-val`` other noises every ``--validate-every`` iterations; the family kept is the one with the
  smallest *validation* error.

Measured on ``--n-test`` fresh noises (a seed used neither in tuning nor in validation): the mean
per-sample RMS error to the reference, ``||x - x_ref||_2 / 8``, +- its Monte-Carlo standard error, and
the squared Fréchet distance in the features of the digits classifier
(``flowbridge.metrics.digits_frechet_distance``) of those samples against all 1797 digits, next to its
floor (``digits_frechet_floor``: ``n`` real digits against all of them) and to the FD of the reference
samples themselves (what the model scores when its ODE is solved exactly).

Run (about 15-20 minutes on one CPU thread; the checkpoint is trained first, ~10-20 more minutes,
when ``--ckpt`` is not given)::

    OMP_NUM_THREADS=1 python experiments/bench_tuning_digits.py --ckpt outputs/ddpm_digits/checkpoints/last.ckpt
    OMP_NUM_THREADS=1 python experiments/bench_tuning_digits.py --train-dir outputs/ddpm_digits_tuning
      (runs ``flowbridge fit --config models/ddpm_digits.yaml --trainer.default_root_dir DIR`` first)

Writes experiments/results/tuning_digits.{md,json}, the sample grids tuning_digits_*.png and the tuned
presets tuning_digits_presets/*.yaml.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "src"))

import flowbridge as fb  # noqa: E402
from bench_tuning import FAMILIES, PEERS, UNTUNED  # noqa: E402
from diffusers_peer import diffusers_available, make_scheduler, sample_with_scheduler  # noqa: E402
from flowbridge import viz  # noqa: E402
from flowbridge.metrics.digits import digits_frechet_distance, digits_frechet_floor  # noqa: E402
from flowbridge.samplers import get_solver, make_grid  # noqa: E402
from flowbridge.samplers.tuning import tune  # noqa: E402

RESULTS = HERE / "results"
EVENT = (1, 8, 8)


def train_checkpoint(root: Path) -> Path:
    """Trains models/ddpm_digits.yaml into ``root`` (checkpoints in ``root/checkpoints``)."""
    command = [sys.executable, "-m", "flowbridge", "fit", "--config", str(ROOT / "models" / "ddpm_digits.yaml"),
               "--trainer.default_root_dir", str(root)]
    print("training:", " ".join(command), flush=True)
    started = time.time()
    subprocess.run(command, check=True, env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    print(f"trained in {time.time() - started:.0f}s", flush=True)
    return root / "checkpoints" / "last.ckpt"


def stats(err: Tensor) -> tuple[float, float]:
    return float(err.mean()), float(err.std() / math.sqrt(err.numel()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", default=None, help="a ddpm_digits checkpoint; if absent, one is trained into --train-dir")
    parser.add_argument("--train-dir", default="outputs/ddpm_digits_tuning", help="where to train when --ckpt is not given")
    parser.add_argument("--nfes", type=int, nargs="+", default=[5, 10])
    parser.add_argument("--families", nargs="+", default=["plms 4", "dpmpp_2m"], choices=list(FAMILIES))
    parser.add_argument("--n-test", type=int, default=1000, help="test noises (error and FD; <= 1797 for the FD floor)")
    parser.add_argument("--n-train", type=int, default=1024, help="pool of training noises")
    parser.add_argument("--n-val", type=int, default=256)
    parser.add_argument("--minibatch", type=int, default=128)
    parser.add_argument("--validate-every", type=int, default=5)
    parser.add_argument("--max-iters", type=int, default=250)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--patience", type=int, default=30)
    parser.add_argument("--ref-steps", type=int, default=500)
    parser.add_argument("--tune-ref-steps", type=int, default=100)
    parser.add_argument("--check-n", type=int, default=32, help="test noises on which the reference is checked against rk4")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--rewrite-md", action="store_true", help="only rewrite tuning_digits.md from tuning_digits.json in --out")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    if args.rewrite_md:
        (out / "tuning_digits.md").write_text(write_md(json.loads((out / "tuning_digits.json").read_text())))
        return
    out.mkdir(parents=True, exist_ok=True)
    (out / "tuning_digits_presets").mkdir(exist_ok=True)
    begun = time.time()

    ckpt = Path(args.ckpt) if args.ckpt else train_checkpoint(Path(args.train_dir))
    module = fb.load(ckpt)
    module.requires_grad_(False)  # the weights are constants here (tune differentiates w.r.t. grid and multipliers only)
    field = module.field()  # unconditional: the null label
    schedule = field.gaussian_path.schedule
    span = get_solver("plms").default_span(field)
    logsnr5 = make_grid("logsnr", 5, *span, schedule)
    t0, t1 = float(logsnr5[0]), float(logsnr5[-1])
    n = args.n_test
    noise = torch.randn(n, *EVENT, generator=torch.Generator().manual_seed(7))
    x = field.gaussian_path.prior_sample((n, *EVENT), t0, noise=noise)

    def run(solver: str, steps: int, grid: str, xs: Tensor = x, **options: Any) -> Tensor:
        with torch.no_grad():
            return fb.sample(field, solver, steps, x0=xs, grid=grid, t_span=(t0, t1), **options).x

    started = time.time()
    ref = run("dpmpp_3m", args.ref_steps, "logsnr")
    ref_seconds = time.time() - started
    print(f"reference dpmpp_3m {args.ref_steps} logsnr on {n} noises: {ref_seconds:.0f}s", flush=True)
    k = args.check_n
    check_rk4 = float(((run("rk4", args.ref_steps, "logsnr", x[:k]) - ref[:k]).reshape(k, -1).norm(dim=1) / 8).mean())
    check_tune_ref = float(((run("dpmpp_3m", args.tune_ref_steps, "logsnr", x[:k]) - ref[:k]).reshape(k, -1).norm(dim=1) / 8).mean())
    print(f"reference check on {k} noises: rk4 {args.ref_steps} vs reference {check_rk4:.2e}; "
          f"tuning reference (dpmpp_3m {args.tune_ref_steps}) vs reference {check_tune_ref:.2e}", flush=True)

    def err(y: Tensor) -> Tensor:
        if not bool(torch.isfinite(y).all()):
            return torch.full((n,), math.inf)
        return (y.double() - ref.double()).reshape(n, -1).norm(dim=1) / 8.0

    def fd(y: Tensor) -> float:
        return float(digits_frechet_distance(y)) if bool(torch.isfinite(y).all()) else math.inf

    floor = digits_frechet_floor(n)
    result: dict[str, Any] = {
        "meta": {
            "command": "python experiments/bench_tuning_digits.py " + " ".join(sys.argv[1:]),
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "ckpt": str(ckpt), "trained_here": args.ckpt is None, "n_test": n, "n_train": args.n_train, "n_val": args.n_val,
            "minibatch": args.minibatch, "validate_every": args.validate_every, "max_iters": args.max_iters, "lr": args.lr,
            "patience": args.patience, "ref_steps": args.ref_steps, "tune_ref_steps": args.tune_ref_steps,
            "span": [t0, t1], "threads": args.threads, "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}",
            "reference_seconds": ref_seconds, "check_n": k, "check_rk4": check_rk4, "check_tune_ref": check_tune_ref,
            "fd_floor": floor, "fd_reference": fd(ref), "families": args.families,
        },
        "rows": [],
    }
    grids: dict[str, Tensor] = {"reference": ref[:100]}
    for nfe in args.nfes:
        row: dict[str, Any] = {"nfe": nfe, "untuned": {}, "peers": {}, "tuned": {}}
        firsts: dict[str, Tensor] = {}
        for label, solver, options in UNTUNED:
            s = get_solver(solver, **options)
            if nfe < s.min_steps:
                continue
            for grid in dict.fromkeys([s.default_grid, "logsnr"]):
                y = run(solver, nfe, grid, **options)
                row["untuned"][f"{label} ({grid})"] = {"test": stats(err(y)), "fd": fd(y)}
                firsts[f"{label} ({grid})"] = y[:100]
        if diffusers_available():
            g = make_grid("logsnr", nfe, t0, t1, schedule)
            for label, kind, options in PEERS:
                try:
                    with torch.no_grad():
                        y = sample_with_scheduler(make_scheduler(kind, **options), field, x, g)
                except (RuntimeError, ValueError) as exc:  # a peer failing is a result
                    print(f"  peer {label} NFE {nfe}: {exc}", flush=True)
                    y = torch.full_like(x, math.nan)
                row["peers"][label] = {"test": stats(err(y)), "fd": fd(y)}
        best_u = min(row["untuned"], key=lambda key: row["untuned"][key]["test"][0])
        grids[f"untuned_nfe{nfe}"] = firsts[best_u]
        print(f"NFE {nfe}: untuned best {best_u} {row['untuned'][best_u]['test'][0]:.4g} (FD {row['untuned'][best_u]['fd']:.3g})", flush=True)
        for label in args.families:
            solver, options = FAMILIES[label]
            load = os.getloadavg()[0]
            started = time.time()
            tuned = tune(field, solver, nfe, shape=(args.n_train, *EVENT), num_val=args.n_val, solver_options=options, grid="logsnr",
                         reference="dpmpp_3m", reference_steps=args.tune_ref_steps, reference_grid="logsnr", seed=1000 + nfe,
                         max_iters=args.max_iters, lr=args.lr, patience=args.patience, minibatch=args.minibatch,
                         validate_every=args.validate_every, dtype=torch.float32)
            seconds = time.time() - started
            assert float(tuned.grid[0]) == t0 and float(tuned.grid[-1]) == t1
            r = tuned.report
            assert r is not None
            with torch.no_grad():
                y = tuned.sample(field, x0=x).x
            name = label.replace(" ", "")
            tuned.save(out / "tuning_digits_presets" / f"{name}_nfe{nfe}.yaml")
            row["tuned"][label] = {
                "test": stats(err(y)), "fd": fd(y), "val": r.tuned_error / 8, "val_untuned": r.untuned_error / 8,
                "iterations": r.iterations, "best_iteration": r.best_iteration, "seconds": seconds, "load_before": load,
                "load_after": os.getloadavg()[0], "grid": tuned.grid.tolist(),
            }
            grids[f"tuned_{name}_nfe{nfe}"] = y[:100]
            print(f"  NFE {nfe} tuned {label}: val {r.untuned_error / 8:.4g} -> {r.tuned_error / 8:.4g} "
                  f"({r.best_iteration}/{r.iterations} it), test {row['tuned'][label]['test'][0]:.4g}, FD {row['tuned'][label]['fd']:.3g}, "
                  f"{seconds:.0f}s (load {load:.1f})", flush=True)
        result["rows"].append(row)
        (out / "tuning_digits.json").write_text(json.dumps(result, indent=1))

    chosen = {r["nfe"]: min(r["tuned"], key=lambda key: r["tuned"][key]["val"]) for r in result["rows"]}
    titles = {"reference": f"reference: dpmpp_3m {args.ref_steps} steps"}
    for r in result["rows"]:
        nfe = r["nfe"]
        bu = min(r["untuned"], key=lambda key: r["untuned"][key]["test"][0])
        titles[f"untuned_nfe{nfe}"] = f"untuned NFE {nfe}: {bu}, RMS {r['untuned'][bu]['test'][0]:.3f}, FD {r['untuned'][bu]['fd']:.2f}"
        for label, v in r["tuned"].items():
            mark = " (chosen)" if label == chosen[nfe] else ""
            titles[f"tuned_{label.replace(' ', '')}_nfe{nfe}"] = f"tuned {label}{mark} NFE {nfe}: RMS {v['test'][0]:.3f}, FD {v['fd']:.2f}"
    pngs = {}
    for key, images in grids.items():
        path = out / f"tuning_digits_{key}.png"
        viz.save_figure(viz.image_grid(images, nrow=10, title=titles[key]), path, dpi=60)
        pngs[key] = path.name
    result["meta"]["pngs"] = pngs
    result["meta"]["total_seconds"] = time.time() - begun
    (out / "tuning_digits.json").write_text(json.dumps(result, indent=1))
    (out / "tuning_digits.md").write_text(write_md(result))
    print(f"done in {time.time() - begun:.0f}s", flush=True)


def fmt(mean_se: tuple[float, float]) -> str:
    m, s = mean_se
    return f"{m:.4f} ± {s:.4f}" if math.isfinite(m) else "diverged"


def write_md(result: dict[str, Any]) -> str:
    meta, rows = result["meta"], result["rows"]
    floor_m, floor_s = meta["fd_floor"]
    out = [
        "# Tuned solvers on the trained digits model (issue 20, acceptance 2)",
        "",
        f"Generated by `experiments/bench_tuning_digits.py` on {meta['date']}: `{meta['command']}` "
        f"(`OMP_NUM_THREADS={meta['threads']}`, {meta['machine']}; the 2 cores were shared with other jobs, load averages below). "
        f"Checkpoint: the step-8000 EMA weights of `flowbridge fit --config models/ddpm_digits.yaml`"
        + (" (trained by this run)." if meta["trained_here"] else f" (`{meta['ckpt']}`, trained earlier; without `--ckpt` the script trains one into `--train-dir`)."),
        "",
        ("From scratch: `OMP_NUM_THREADS=1 python experiments/bench_tuning_digits.py --train-dir outputs/ddpm_digits_tuning` first runs "
         "`python -m flowbridge fit --config models/ddpm_digits.yaml --trainer.default_root_dir outputs/ddpm_digits_tuning` (8000 steps: "
         "9 min on a quiet core, 22 min for the checkpoint used here on the shared machine; see `ddpm_digits.md`) and then uses "
         "`outputs/ddpm_digits_tuning/checkpoints/last.ckpt`. Checkpoints are not committed."),
        "",
        ("Field: the UNet's unconditional prediction (null label), float32 weights and states, probability-flow ODE over "
        f"t = {meta['span'][0]:.4f} → {meta['span'][1]} (the log-SNR grid's span, sigma/alpha 80 → 0.0105) for every solver, from the same noises."),
        "",
        (f"* **RMS error**: mean over {meta['n_test']} test noises (a seed used neither in tuning nor in validation) of "
        f"`||x - x_ref||_2 / 8` (pixels in [-1, 1]) to the reference, dpmpp_3m with {meta['ref_steps']} steps on the log-SNR grid; "
        f"± is the Monte-Carlo standard error. Reference check on {meta['check_n']} noises: rk4 with {meta['ref_steps']} steps "
        f"(log-SNR grid, {4 * meta['ref_steps']} evaluations) differs from it by {meta['check_rk4']:.1e} RMS."),
        (f"* **FD**: squared Fréchet distance (`flowbridge.metrics.digits_frechet_distance`, the digits classifier's 32 features) of the "
        f"same {meta['n_test']} samples against all 1797 digits. Floor (n = {meta['n_test']} real digits against all): "
        f"**{floor_m:.3f} ± {floor_s:.3f}** (mean ± std of 5 draws). The {meta['ref_steps']}-step reference samples score **{meta['fd_reference']:.3f}**: "
        "the model itself with its ODE solved accurately. Differences of the order of the floor's std are sampling noise; a solver "
        "can score below the reference by chance or by a bias that happens to help (the FD judges the distribution, not the ODE solution)."),
        "* **untuned**: best flowbridge solver on the test noises (a choice in its favour) of "
        + ", ".join(label for label, _, _ in UNTUNED) + ", each on its default grid and on the log-SNR grid (same span);",
        "* **peer**: best diffusers scheduler on the test noises (of " + ", ".join(label for label, _, _ in PEERS) + "), log-SNR grid;",
        (f"* **tuned**: `tune` of {', '.join(meta['families'])} from the log-SNR grid with float32 states, target dpmpp_3m "
        f"{meta['tune_ref_steps']} steps on the log-SNR grid (`reference_grid=\"logsnr\"`; it differs from the {meta['ref_steps']}-step reference by "
        f"{meta['check_tune_ref']:.1e} RMS), Adam (lr {meta['lr']}) on minibatches of {meta['minibatch']} from a pool of {meta['n_train']} noises, "
        f"validation on {meta['n_val']} other noises every {meta['validate_every']} iterations, ≤ {meta['max_iters']} iterations, patience {meta['patience']}; "
        "the family marked (chosen) has the smallest *validation* error."),
        "",
        f"| NFE | solver | RMS error to the {meta['ref_steps']}-step reference | FD (floor {floor_m:.3f}, reference {meta['fd_reference']:.3f}) | tuning wall time |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        nfe = r["nfe"]
        bu = min(r["untuned"], key=lambda key: r["untuned"][key]["test"][0])
        out.append(f"| {nfe} | untuned (best): {bu} | {fmt(r['untuned'][bu]['test'])} | {r['untuned'][bu]['fd']:.3f} | |")
        bf = min(r["untuned"], key=lambda key: r["untuned"][key]["fd"])
        if bf != bu:
            out.append(f"| {nfe} | untuned (best FD, chosen on the test samples): {bf} | {fmt(r['untuned'][bf]['test'])} | {r['untuned'][bf]['fd']:.3f} | |")
        if r["peers"]:
            bp = min(r["peers"], key=lambda key: r["peers"][key]["test"][0])
            out.append(f"| {nfe} | diffusers peer (best): {bp} | {fmt(r['peers'][bp]['test'])} | {r['peers'][bp]['fd']:.3f} | |")
        chosen = min(r["tuned"], key=lambda key: r["tuned"][key]["val"])
        for label, v in r["tuned"].items():
            mark = " **(chosen)**" if label == chosen else ""
            out.append(f"| {nfe} | tuned {label}{mark} | {fmt(v['test'])} | {v['fd']:.3f} | {v['seconds']:.0f} s "
                       f"({v['best_iteration']}/{v['iterations']} it; load {v['load_before']:.1f}→{v['load_after']:.1f}) |")
    out += ["", "Tuned / untuned (chosen family, test RMS error): "
            + "; ".join(f"NFE {r['nfe']}: {r['tuned'][min(r['tuned'], key=lambda key: r['tuned'][key]['val'])]['test'][0] / min(v['test'][0] for v in r['untuned'].values()):.2f}"
                        for r in rows) + "."]
    if all(r["peers"] for r in rows):
        out[-1] += " Tuned / best diffusers peer: " + "; ".join(
            f"NFE {r['nfe']}: {r['tuned'][min(r['tuned'], key=lambda key: r['tuned'][key]['val'])]['test'][0] / min(v['test'][0] for v in r['peers'].values()):.2f}"
            for r in rows) + "."
    out += ["", "## Notes", "",
            ("* Cost target (tuning at NFE 10 in under 10 minutes on 2 CPU cores): each NFE-10 run above (reference of the pool and the "
             "validation noises, then the iterations) took the wall time in the table on **one** thread while other jobs kept the 2 cores "
             "loaded (load averages in the table); the whole script, both NFE and both families, took the time at the end."),
            ("* The RMS error measures how well a solver solves the model's ODE; the FD measures the distribution and is a weaker judge of a "
             "solver: a biased solver can score a lower FD than the accurate reference (see the untuned 'best FD' rows, picked on the test "
             "samples). The tuned solver's FD is read against the reference's FD, not the real-data floor: this unconditional (null-label) model "
             "is itself far above the floor, and the spread of the FD of its own n-sample sets was not measured here."),
            ("* Validation errors are optimistic (the best iterate on them is kept); test errors are not. Where the best iteration is at "
             "or near the cap, the run was stopped by the iteration cap, not by early stopping: more iterations may lower the error "
             "further, at proportionally more time (not tried here)."),
            ""]
    out += ["## Sample grids", "", "The first 100 test noises, same noises in every grid (pixels clipped to [-1, 1] for display only):", ""]
    for key, name in meta.get("pngs", {}).items():
        out.append(f"* `{key}`: [{name}]({name})")
    out += ["", "## Every untuned configuration (test RMS error; FD)", "", "| solver (grid) | " + " | ".join(f"NFE {r['nfe']}" for r in rows) + " |",
            "|---|" + "---|" * len(rows)]
    labels = list(dict.fromkeys(key for r in rows for key in r["untuned"]))
    for label in labels:
        cells = [f"{fmt(r['untuned'][label]['test'])}; {r['untuned'][label]['fd']:.3f}" if label in r["untuned"] else "" for r in rows]
        out.append(f"| {label} | " + " | ".join(cells) + " |")
    for label in list(dict.fromkeys(key for r in rows for key in r["peers"])):
        cells = [f"{fmt(r['peers'][label]['test'])}; {r['peers'][label]['fd']:.3f}" if label in r["peers"] else "" for r in rows]
        out.append(f"| diffusers {label} | " + " | ".join(cells) + " |")
    out += ["", "## Tuning runs (validation error untuned → tuned, RMS)", ""]
    for r in rows:
        for label, v in r["tuned"].items():
            out.append(f"* NFE {r['nfe']} {label}: {v['val_untuned']:.4f} → {v['val']:.4f}; grid "
                       + ", ".join(f"{t:.4f}" for t in v["grid"]) + f"; preset `tuning_digits_presets/{label.replace(' ', '')}_nfe{r['nfe']}.yaml`")
    out += ["", f"Reference: {meta['reference_seconds']:.0f} s for {meta['n_test']} noises; whole run {meta.get('total_seconds', 0) / 60:.1f} min.", ""]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    main()
