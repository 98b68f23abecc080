"""Tuned solvers against the untuned best flowbridge solver and diffusers' best scheduler (issue 20).

Targets: exact 7-component Gaussian mixtures (seeded; anisotropic covariances, eigenvalues in
[0.03, 0.33], means N(0, 1.5^2 I)) at d = 2, 16, 64 on the VP path (linear beta), grid uniform in
log-SNR (sigma/alpha from 80 to 0.002), NFE 5, 8, 10, 15.

Error: per-sample RMS distance to a float64 dopri5 endpoint (rtol = atol = 1e-10),
``||x - x_ref||_2 / sqrt(d)``, averaged over ``--n-test`` fresh noises drawn from a seed used neither
in tuning nor in validation; +- is the Monte-Carlo standard error (std / sqrt(n)).

* untuned: the best (on the test noises) of ddim, dpmpp_2m, dpmpp_3m (taylor, lu), unipc (orders 2,
  3), deis 3, plms 4, ghvb 4 (beta 0.8), dpmpp_2m_hb on the log-SNR grid;
* tuned: ``flowbridge.samplers.tuning.tune`` of each family in ``--families`` (from the log-SNR grid;
  Adam on minibatches of ``--minibatch`` (256) from a pool of ``--n-train`` (2048) training noises,
  validation on ``--n-val`` (1024) other noises every ``--validate-every`` (5) iterations); the family
  kept is the one with the smallest *validation* error (the test noises play no part in any choice).
  A pool matters at d = 64: with 256 training noises in full batches the tuned solvers sent ~1 % of
  fresh noises (near the boundaries between modes) to the wrong mode, which dominated the mean error;
* peer: the best (on the test noises: a choice in the peer's favour) of diffusers'
  DPMSolverMultistepScheduler 2M / 3M and UniPCMultistepScheduler bh2 orders 2 / 3 (lower_order_final,
  the settings of experiments/bench_solvers.py), on the same grid and noises.

Run: ``OMP_NUM_THREADS=1 python experiments/bench_tuning.py --dims 2 16`` (results merge into
experiments/results/tuning.json, from which experiments/results/tuning.md is rewritten).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import flowbridge as fb  # noqa: E402
from diffusers_peer import make_scheduler, sample_with_scheduler  # noqa: E402
from flowbridge.samplers import get_solver, make_grid  # noqa: E402
from flowbridge.samplers.tuning import tune  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
UNTUNED: list[tuple[str, str, dict[str, Any]]] = [
    ("ddim", "ddim", {}),
    ("dpmpp_2m", "dpmpp_2m", {}),
    ("dpmpp_3m", "dpmpp_3m", {}),
    ("dpmpp_3m lu", "dpmpp_3m", {"variant": "lu"}),
    ("unipc p2", "unipc", {"order": 2}),
    ("unipc p3", "unipc", {"order": 3}),
    ("deis 3", "deis", {"order": 3}),
    ("plms 4", "plms", {"order": 4}),
    ("ghvb 4 b0.8", "ghvb", {"order": 4, "beta": 0.8}),
    ("dpmpp_2m_hb b0.8", "dpmpp_2m_hb", {"beta": 0.8}),
]
PEERS: list[tuple[str, str, dict[str, Any]]] = [
    ("DPM++2M", "dpmpp", {"order": 2, "lower_order_final": True}),
    ("DPM++3M", "dpmpp", {"order": 3, "lower_order_final": True}),
    ("UniPC p2", "unipc", {"order": 2, "lower_order_final": True}),
    ("UniPC p3", "unipc", {"order": 3, "lower_order_final": True}),
]
FAMILIES: dict[str, tuple[str, dict[str, Any]]] = {
    "dpmpp_2m": ("dpmpp_2m", {}),
    "dpmpp_3m lu": ("dpmpp_3m", {"variant": "lu"}),
    "plms 4": ("plms", {"order": 4}),
    "ghvb 4 b0.8": ("ghvb", {"order": 4, "beta": 0.8}),
}


def mixture(d: int, k: int = 7) -> fb.GaussianMixture:
    g = torch.Generator().manual_seed(2026 + d)
    means = torch.randn(k, d, generator=g, dtype=torch.float64) * 1.5
    q = torch.linalg.qr(torch.randn(k, d, d, generator=g, dtype=torch.float64))[0]
    lam = 0.03 + 0.3 * torch.rand(k, d, generator=g, dtype=torch.float64)
    covs = q @ torch.diag_embed(lam) @ q.transpose(1, 2)
    w = torch.rand(k, generator=g, dtype=torch.float64) + 0.5
    return fb.GaussianMixture(w / w.sum(), means, covs)


def stats(err: Tensor) -> tuple[float, float]:
    return float(err.mean()), float(err.std() / math.sqrt(err.numel()))


def run_dim(d: int, nfes: list[int], families: list[str], n_test: int, n_train: int, max_iters: int, lr: float,
            patience: int, n_val: int, minibatch: int, validate_every: int) -> list[dict[str, Any]]:
    field = mixture(d).field("vp")
    path = field.path
    span = (path.t_min, path.t_max)

    def grid(n: int) -> Tensor:
        return make_grid("logsnr", n, *span, path.schedule)

    t0, t1 = float(grid(5)[0]), float(grid(5)[-1])
    noise = torch.randn(n_test, d, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    x = path.prior_sample((n_test, d), t0, noise=noise)
    started = time.time()
    ref = fb.sample(field, "dopri5", 1, x0=x, grid=[t0, t1], rtol=1e-10, atol=1e-10).x
    print(f"d={d}: reference in {time.time() - started:.1f}s", flush=True)

    def err(y: Tensor) -> Tensor:
        if not bool(torch.isfinite(y).all()):
            return torch.full((n_test,), math.inf, dtype=torch.float64)
        return (y.to(torch.float64) - ref).norm(dim=1) / math.sqrt(d)

    rows = []
    for nfe in nfes:
        row: dict[str, Any] = {"d": d, "nfe": nfe, "untuned": {}, "peers": {}, "tuned": {}, "n_train": n_train, "max_iters": max_iters,
                               "n_val": n_val, "minibatch": minibatch, "n_test": n_test}
        for label, solver, options in UNTUNED:
            if nfe < get_solver(solver, **options).min_steps:
                continue
            row["untuned"][label] = stats(err(fb.sample(field, solver, nfe, x0=x, grid="logsnr", t_span=span, **options).x))
        for label, kind, options in PEERS:
            try:
                y = sample_with_scheduler(make_scheduler(kind, **options), field, x, grid(nfe))
            except (RuntimeError, ValueError) as exc:  # a peer failing is a result
                print(f"  peer {label} NFE {nfe}: {exc}", flush=True)
                y = torch.full_like(x, math.nan)
            row["peers"][label] = stats(err(y))
        for label in families:
            solver, options = FAMILIES[label]
            started = time.time()
            tuned = tune(field, solver, nfe, shape=(n_train, d), num_val=n_val, solver_options=options, grid="logsnr",
                         t_span=span, seed=1000 + nfe, max_iters=max_iters, lr=lr, patience=patience,
                         minibatch=minibatch, validate_every=validate_every)
            seconds = time.time() - started
            r = tuned.report
            assert r is not None
            test = stats(err(tuned.sample(field, x0=x).x))
            row["tuned"][label] = {
                "test": test, "val": r.tuned_error / math.sqrt(d), "val_untuned": r.untuned_error / math.sqrt(d),
                "iterations": r.iterations, "best_iteration": r.best_iteration, "seconds": seconds,
                "grid": tuned.grid.tolist(),
            }
            print(f"  d={d} NFE {nfe} tuned {label}: val {r.untuned_error / math.sqrt(d):.3g} -> {r.tuned_error / math.sqrt(d):.3g}, "
                  f"test {test[0]:.3g}, {r.iterations} it, {seconds:.0f}s", flush=True)
        best_u = min(row["untuned"].items(), key=lambda kv: kv[1][0])
        best_p = min(row["peers"].items(), key=lambda kv: kv[1][0])
        chosen = min(row["tuned"].items(), key=lambda kv: kv[1]["val"])
        print(f"d={d} NFE {nfe}: untuned {best_u[0]} {best_u[1][0]:.3g}, peer {best_p[0]} {best_p[1][0]:.3g}, "
              f"tuned {chosen[0]} {chosen[1]['test'][0]:.3g} -> tuned/peer {chosen[1]['test'][0] / best_p[1][0]:.2f}", flush=True)
        rows.append(row)
    return rows


def fmt(mean_se: tuple[float, float]) -> str:
    m, s = mean_se
    return f"{m:.3g} ± {s:.1g}" if math.isfinite(m) else "diverged"


def write_md(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    rows = sorted(rows, key=lambda r: (r["d"], r["nfe"]))
    out = [
        "# Tuned solvers (issue 20)",
        "",
        "Generated by `experiments/bench_tuning.py` (" + meta.get("command", "") + "). Exact 7-component Gaussian mixtures "
        "(seeded, anisotropic), VP path (linear beta), log-SNR grid (sigma/alpha 80 → 0.002). Error: mean per-sample "
        "RMS distance `||x - x_ref|| / sqrt(d)` to a float64 dopri5 endpoint (tol 1e-10) over "
        "the test noises of the last column (used neither in tuning nor in validation); ± is the Monte-Carlo standard error.",
        "",
        "* **untuned**: best flowbridge solver on the test noises (of " + ", ".join(label for label, _, _ in UNTUNED) + ");",
        "* **tuned**: `flowbridge.samplers.tuning.tune` (grid + per-step history weights, Adam, early stopping) of each of "
        + ", ".join(meta.get("families", [])) + " (those run at that d) from the log-SNR grid, Adam on minibatches from a pool of training noises, "
        "validation on other fresh noises every 5 iterations (sizes and iteration cap in the last column); the family is chosen by its *validation* error;",
        "* **peer**: best diffusers scheduler on the test noises (of " + ", ".join(label for label, _, _ in PEERS) + "), same grid and noises.",
        "",
        "| d | NFE | untuned (best flowbridge) | tuned | peer (best diffusers) | tuned / peer | untuned / peer | tuned / untuned | tuning time (1 CPU thread) | train pool / minibatch / val, iterations | test noises |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    met, total = 0, 0
    for r in rows:
        bu = min(r["untuned"].items(), key=lambda kv: kv[1][0])
        bp = min(r["peers"].items(), key=lambda kv: kv[1][0])
        ch = min(r["tuned"].items(), key=lambda kv: kv[1]["val"])
        ratio = ch[1]["test"][0] / bp[1][0]
        met, total = met + (ratio <= 0.5), total + 1
        secs = sum(v["seconds"] for v in r["tuned"].values())
        out.append(
            f"| {r['d']} | {r['nfe']} | {fmt(bu[1])} ({bu[0]}) | {fmt(ch[1]['test'])} ({ch[0]}) | {fmt(bp[1])} ({bp[0]}) | "
            f"**{ratio:.2f}** | {bu[1][0] / bp[1][0]:.2f} | {ch[1]['test'][0] / bu[1][0]:.2f} | "
            f"{ch[1]['seconds']:.0f} s ({secs:.0f} s all families) | {r.get('n_train', meta.get('n_train'))} / "
            f"{r.get('minibatch', r.get('n_train'))} / {r.get('n_val', r.get('n_train'))}, ≤ {r.get('max_iters', meta.get('max_iters'))} | "
            f"{r.get('n_test', meta.get('n_test'))} |"
        )
    out += ["", f"Target of issue 20 (tuned ≤ 0.5 × best peer): met in {met} of {total} cells.", "",
            "## Every tuned family (test error; validation error untuned → tuned; iterations)", "",
            "| d | NFE | " + " | ".join(meta.get("families", [])) + " |", "|---|---|" + "---|" * len(meta.get("families", []))]
    for r in rows:
        cells = []
        for label in meta.get("families", []):
            v = r["tuned"].get(label)
            cells.append("" if v is None else f"{fmt(v['test'])} (val {v['val_untuned']:.3g} → {v['val']:.3g}; {v['best_iteration']}/{v['iterations']} it)")
        out.append(f"| {r['d']} | {r['nfe']} | " + " | ".join(cells) + " |")
    out += ["", "## Notes", "",
            "* Validation errors are optimistic (the best of many iterates is kept on them); the test errors are not: "
            "no choice was made on the test noises, except the peer's and the untuned solver's (both in their favour).",
            "* The endpoint error is heavy-tailed: noises near a boundary between modes can be sent to the wrong mode by a "
            "few-step solver, and those rare samples carry much of the mean at d = 64. Tuning on 256 noises in full batches "
            "(an earlier run) fitted the bulk and let ~1 % of fresh noises switch modes (d = 64 tuned/peer 0.67 and 0.81 at "
            "NFE 8 and 10); a pool of 2048 seen in minibatches fixes most of it (0.38 at NFE 8; 0.78 and 0.58 at NFE 10 and 15), a pool "
            "of 8192 in minibatches of 512 with 2048 validation noises more (the rows that say so). The gap between "
            "validation and test at d = 64 is that tail, and so is the large ± there. History of the two hardest cells: "
            "d = 64 at NFE 10 and 15 first measured 0.52 and 0.58 on 1000 test noises (0.0133 ± 0.004 against "
            "0.0257 ± 0.004 at NFE 10: not resolved); they were re-run with the 8192 pool (plms 4 and dpmpp_3m lu) and "
            "4000 test noises, and are the rows that say so. The other ten cells are from the first runs.",
            "* diffusers' schedulers step in float32 (flowbridge in float64); at these error levels (≥ 1e-3) that does not matter.",
            "", "## Tuned grids (times; the ends are the log-SNR grid's)", ""]
    for r in rows:
        ch = min(r["tuned"].items(), key=lambda kv: kv[1]["val"])
        out.append(f"* d={r['d']} NFE {r['nfe']} ({ch[0]}): " + ", ".join(f"{t:.4f}" for t in ch[1]["grid"]))
    return "\n".join(out) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dims", type=int, nargs="*", default=[2, 16, 64])
    parser.add_argument("--nfes", type=int, nargs="+", default=[5, 8, 10, 15])
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=list(FAMILIES))
    parser.add_argument("--n-test", type=int, default=1000)
    parser.add_argument("--n-train", type=int, default=2048, help="pool of training noises")
    parser.add_argument("--n-val", type=int, default=1024)
    parser.add_argument("--minibatch", type=int, default=256, help="training noises per iteration, from the pool")
    parser.add_argument("--validate-every", type=int, default=5)
    parser.add_argument("--max-iters", type=int, default=400)
    parser.add_argument("--lr", type=float, default=0.03)
    parser.add_argument("--patience", type=int, default=30)
    parser.add_argument("--out", default=str(RESULTS), help="folder of tuning.json and tuning.md")
    parser.add_argument("--merge", nargs="*", default=[], help="tuning.json files of other runs to merge in (e.g. one d per machine)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    results = Path(args.out)
    results.mkdir(parents=True, exist_ok=True)
    store = results / "tuning.json"
    saved: dict[str, Any] = json.loads(store.read_text()) if store.is_file() else {"rows": [], "meta": {}}
    meta = {"command": "python experiments/bench_tuning.py " + " ".join(sys.argv[1:]), "n_test": args.n_test,
            "n_train": args.n_train, "max_iters": args.max_iters, "families": args.families}
    for other in args.merge:
        theirs = json.loads(Path(other).read_text())
        for mine_or_theirs in (saved, theirs):  # rows written before rows recorded their own n and iterations
            for r in mine_or_theirs["rows"]:
                r.setdefault("n_test", mine_or_theirs["meta"].get("n_test"))
                r.setdefault("n_train", mine_or_theirs["meta"].get("n_train"))
                r.setdefault("max_iters", mine_or_theirs["meta"].get("max_iters"))
        keys = {(r["d"], r["nfe"]) for r in theirs["rows"]}
        saved["rows"] = [r for r in saved["rows"] if (r["d"], r["nfe"]) not in keys] + theirs["rows"]
        old = saved.get("meta", {})
        saved["meta"] = {**theirs["meta"], **old, "command": "; ".join(c for c in (old.get("command"), theirs["meta"].get("command")) if c),
                         "families": list(dict.fromkeys([*old.get("families", []), *theirs["meta"].get("families", [])]))}
    if args.merge:
        store.write_text(json.dumps(saved, indent=1))
        (results / "tuning.md").write_text(write_md(saved["rows"], saved["meta"]))
    for d in args.dims:
        rows = run_dim(d, args.nfes, args.families, args.n_test, args.n_train, args.max_iters, args.lr, args.patience,
                       args.n_val, args.minibatch, args.validate_every)
        saved["rows"] = [r for r in saved["rows"] if not (r["d"] == d and r["nfe"] in args.nfes)] + rows
        old = saved.get("meta", {})
        commands = [c for c in old.get("command", "").split("; ") if c and c != meta["command"]] + [meta["command"]]
        saved["meta"] = {**old, **{k: v for k, v in meta.items() if k != "command"}, "command": "; ".join(commands),
                         "families": list(dict.fromkeys([*old.get("families", []), *args.families]))}
        store.write_text(json.dumps(saved, indent=1))
        (results / "tuning.md").write_text(write_md(saved["rows"], saved["meta"]))


if __name__ == "__main__":
    main()
