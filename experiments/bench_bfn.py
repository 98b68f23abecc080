"""Bayesian flow networks: trained recipes against ground truth, fast vs original samplers, bounds.

Parts (each needs its recipe's checkpoint under ``outputs/<recipe>/checkpoints/last.ckpt``):

* ``continuous``: the 8-Gaussians recipe. Its data law is an exact Gaussian mixture, so the
  Bayes-optimal output :math:`E[x\\mid\\mu_t]` is analytic. Reported: the excess continuous-time
  loss of the trained output over the optimal one (exactly the weighted squared distance between
  them, in nats per datum: what the imperfect network costs in the likelihood bound), relative RMS
  errors at fixed t, the held-out bound next to the true NLL, and sample quality (sliced W1 over its
  noise floor, ``compare_to_truth``) of the original n-step sampler and the fast DPM-Solver++ samplers
  with wall-clock times, both with the trained network and with the exact output.
* ``digits``: the discretized (16 levels) and binarized recipes: held-out bounds (nats per image,
  bits per pixel; continuous-time and n-step), sample grids (PNG) of the fast and original samplers.
* ``text``: the character recipe: held-out bound in bits per character and decoded samples.

Usage:
    OMP_NUM_THREADS=1 python experiments/bench_bfn.py [--parts continuous digits text] [--quick]
"""

from __future__ import annotations

import argparse
import datetime
import math
import sys
import time
from pathlib import Path

import torch

from flowbridge.analytic import GaussianMixture
from flowbridge.bfn import BFNModule, ContinuousBFN, MixturePosteriorMean, nll_bound
from flowbridge.metrics import sliced_wasserstein
from flowbridge.metrics.quality import compare_to_truth

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "experiments" / "results"
LN2 = math.log(2.0)


def eight_gaussians() -> GaussianMixture:
    """The exact law of ``Toy2D('8gaussians')``: radius 2, standard deviation 0.15, equal weights."""
    angle = torch.arange(8, dtype=torch.float64) * (math.pi / 4)
    means = 2.0 * torch.stack([torch.cos(angle), torch.sin(angle)], dim=1)
    return GaussianMixture(torch.full((8,), 1 / 8, dtype=torch.float64), means, torch.full((8,), 0.15**2, dtype=torch.float64))


def timed(fn):  # noqa: ANN001, ANN201
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def continuous_part(quick: bool) -> list[str]:
    from flowbridge.cli import load_module

    ckpt = ROOT / "outputs/bfn_continuous_8gaussians/checkpoints/last.ckpt"
    module = load_module(ckpt).eval()
    sigma1 = module.path.schedule.sigma1
    bfn = ContinuousBFN(sigma1=sigma1, parametrisation="data")
    trained = module.net  # EDM-preconditioned: a data prediction on the BFN path
    mixture = eight_gaussians()
    exact = MixturePosteriorMean(mixture, sigma1)
    lines = [f"### Continuous BFN on 8 Gaussians (`models/bfn_continuous_8gaussians.yaml`, sigma1 = {sigma1})", ""]
    g = torch.Generator().manual_seed(0)
    n = 20_000 if not quick else 4000
    x = mixture.sample(n, generator=g)
    t = torch.rand(n, generator=g, dtype=torch.float64)
    with torch.no_grad():
        mu = bfn.flow_sample(x, t, generator=g)
        d_net, d_opt = bfn.data_prediction(trained, mu.float(), t.float()).double(), bfn.data_prediction(exact, mu, t)
        weight = -math.log(sigma1) * sigma1 ** (-2 * t)
        excess = weight * ((d_net - d_opt) ** 2).sum(1)
        opt_loss = weight * ((x - d_opt) ** 2).sum(1)
        lines += [
            "Trained output vs the Bayes-optimal output E[x | mu_t] (mixture posterior mean with alpha = gamma,",
            "sigma = sqrt(gamma (1 - gamma))), over x ~ data, t ~ U[0, 1], mu ~ flow:",
            "",
            "| quantity | value |",
            "|---|---|",
            f"| excess L-inf of the trained output (nats/datum; = E w(t) abs(x_hat - x_opt)^2) | {float(excess.mean()):.4f} +- {float(excess.std()) / math.sqrt(n):.4f} |",
            f"| L-inf of the optimal output (nats/datum) | {float(opt_loss.mean()):.4f} |",
        ]
        for tv in (0.25, 0.5, 0.75, 0.9, 1.0):
            tt = torch.full((n,), tv, dtype=torch.float64)
            mu_t = bfn.flow_sample(x, tt, generator=g)
            a, b = bfn.data_prediction(trained, mu_t.float(), tt.float()).double(), bfn.data_prediction(exact, mu_t, tt)
            rms = float(((a - b) ** 2).sum(1).mean().sqrt())
            post = float(((x - b) ** 2).sum(1).mean().sqrt())
            lines.append(f"| t = {tv}: RMS(x_hat - x_opt) / RMS(x - x_opt) | {rms:.4f} / {post:.4f} = {rms / post:.3f} |")
        val = mixture.sample(4000, generator=torch.Generator().manual_seed(1))
        b_net = nll_bound(bfn, trained, val.float(), repeats=8, batch_size=4000, generator=g)
        b_opt = nll_bound(bfn, exact, val, repeats=8, batch_size=4000, generator=g)
        nll = -mixture.log_prob(val)
        gap_net, gap_opt = b_net.nats.double() - nll, b_opt.nats - nll
        se = lambda v: float(v.std()) / math.sqrt(v.shape[0])  # noqa: E731
        lines += [
            f"| true NLL of 4000 held-out points (nats/datum) | {float(nll.mean()):.4f} |",
            f"| held-out bound L-inf + L-r, trained output | {b_net.mean_nats:.4f} (bound - NLL, paired: {float(gap_net.mean()):.4f} +- {se(gap_net):.4f}) |",
            f"| held-out bound L-inf + L-r, exact output | {b_opt.mean_nats:.4f} (bound - NLL, paired: {float(gap_opt.mean()):.4f} +- {se(gap_opt):.4f}) |",
            "",
        ]
    # samplers: original n-step vs fast
    num = 5000 if not quick else 2000
    rows = ["| output | sampler | steps | NFE | sliced W1 / noise floor | wall s | speed-up vs original-200 |", "|---|---|---|---|---|---|---|"]
    fast = [("ddim", 20), ("dpmpp_2m", 10), ("dpmpp_2m", 15), ("dpmpp_2m", 20), ("dpmpp_3m", 15), ("dpmpp_2m (uniform t grid)", 20)]
    for label, net, dtype, configs in (
        ("trained", trained, torch.float32, [("original", 100), ("original", 200), *fast]),
        ("exact", exact, torch.float64, [("original", 100), ("original", 200), ("original", 1000), *fast]),
    ):
        base_time = None
        results = []
        for name, steps in configs:
            gen = torch.Generator().manual_seed(2)
            with torch.no_grad():
                if name == "original":
                    out, sec = timed(lambda: bfn.sample_original(net, steps, shape=(num, 2), generator=gen, dtype=dtype))
                else:
                    solver = name.split(" ")[0]
                    grid = "uniform" if "uniform" in name else "logsnr"
                    out, sec = timed(lambda: bfn.sample(net, solver, steps, shape=(num, 2), grid=grid, generator=gen, dtype=dtype))
            report = compare_to_truth(out.x.double(), mixture.sample, sliced_wasserstein, sets=5, generator=torch.Generator().manual_seed(3))
            if name == "original" and steps == 200:
                base_time = sec
            results.append((name, steps, out.nfe, report.ratio, sec))
        for name, steps, nfe, ratio, sec in results:
            rows.append(f"| {label} | {name} | {steps} | {nfe} | {ratio:.2f} | {sec:.2f} | {base_time / sec:.1f}x |")
    lines += [
        f"Samples ({num}, scored as {5} sets against fresh exact sets; ratio 1 = indistinguishable from exact samples):",
        "",
        *rows,
        "",
    ]
    return lines


def load_bfn_module(recipe: str) -> BFNModule:
    """The recipe's module with the weights (EMA, as saved) of its last checkpoint."""
    from flowbridge.cli import build_cli

    ckpt = ROOT / f"outputs/{recipe}/checkpoints/last.ckpt"
    if not ckpt.is_file():
        raise FileNotFoundError(ckpt)
    module = build_cli(["--config", str(ROOT / f"models/{recipe}.yaml")], run=False).model
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    module.load_state_dict(state["state_dict"])
    module.event_shape = tuple(state["flowbridge"]["event_shape"])
    return module.eval()


def digits_part(quick: bool) -> list[str]:
    from flowbridge import viz
    from flowbridge.training import Digits

    dm = Digits(seed=0)
    dm.setup()
    held = dm.reference()
    lines = ["### Digits (scikit-learn 8x8, 197 held-out images)", ""]
    rows = ["| recipe | bound | nats / image | bits / pixel |", "|---|---|---|---|"]
    grids = []
    for recipe in ("bfn_discretized_digits", "bfn_discrete_binarized_digits"):
        try:
            module = load_bfn_module(recipe)
        except FileNotFoundError:
            lines.append(f"(no checkpoint for {recipe})")
            continue
        x = module.prepare(held)
        g = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for n_steps in (None, 100):
                b = nll_bound(module.bfn, module.net, x, n_steps=n_steps, repeats=4 if quick else 20, generator=g)
                label = "L-inf + L-r" if n_steps is None else f"L^{n_steps} + L-r"
                rows.append(f"| {recipe} | {label} | {b.mean_nats:.2f} +- {b.standard_error:.2f} | {b.bits_per_dim:.3f} |")
            data_rows = x[:20].float() * 2 - 1 if x.dtype == torch.long else x[:20]
            for method, steps in (("dpmpp_2m", 20), ("original", 100)):
                gen = torch.Generator().manual_seed(1)
                imgs, sec = timed(lambda: module.generate(80, generator=gen, method=method, steps=steps))
                path = RESULTS / f"{recipe}_{method}{steps}.png"
                # 4x nearest-neighbour upsampling keeps the white tile borders thin next to 8x8 images
                tiles = torch.cat([imgs.float(), data_rows]).repeat_interleave(4, -1).repeat_interleave(4, -2)
                title = f"{recipe}: {method}, {steps} steps (last 2 rows: held-out data)"
                viz.save_figure(viz.image_grid(tiles, nrow=10, title=title), path)
                grids.append(f"- `{path.relative_to(ROOT)}`: {method}, {steps} steps, {sec:.1f} s for 80 images")
    lines += rows + ["", "Sample grids:", "", *grids, ""]
    return lines


def text_part(quick: bool) -> list[str]:
    from flowbridge.bfn.text import CharText, decode

    try:
        module = load_bfn_module("bfn_discrete_text")
    except FileNotFoundError:
        return ["(no checkpoint for bfn_discrete_text)", ""]
    dm = CharText(seq_len=32)
    dm.setup()
    x = module.prepare(dm.reference())
    g = torch.Generator().manual_seed(0)
    lines = ["### Characters (stdlib docstrings, 27 symbols, 32-character sequences)", "", "| bound | nats / sequence | bits / char |", "|---|---|---|"]
    with torch.no_grad():
        for n_steps in (None, 100):
            b = nll_bound(module.bfn, module.net, x, n_steps=n_steps, repeats=2 if quick else 8, generator=g)
            label = "L-inf + L-r" if n_steps is None else f"L^{n_steps} + L-r"
            lines.append(f"| {label} | {b.mean_nats:.2f} +- {b.standard_error:.2f} | {b.bits_per_dim:.3f} |")
        unigram = torch.bincount(x.reshape(-1), minlength=27).double()
        p = unigram / unigram.sum()
        lines += ["", f"Reference: the held-out unigram entropy is {float(-(p[p > 0] * p[p > 0].log2()).sum()):.3f} bits/char.", "", "Samples (fast sampler, 20 steps; original, 100 steps):", "", "```"]
        for method, steps in (("dpmpp_2m", 20), ("original", 100)):
            s = module.generate(4, generator=torch.Generator().manual_seed(2), method=method, steps=steps).long()
            lines += [f"{method:>9} | {decode(row)}" for row in s]
        lines.append("```")
    return lines + [""]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--parts", nargs="+", default=["continuous", "digits", "text"], choices=["continuous", "digits", "text"])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=str(RESULTS / "bfn.md"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    lines = [
        "# Bayesian flow networks",
        "",
        f"Generated by `{' '.join(['python', 'experiments/bench_bfn.py', *sys.argv[1:]])}` on "
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, CPU, torch {torch.__version__}, "
        "one thread, on a machine shared with other jobs (wall-clock times are noisy; compare within a table).",
        "",
    ]
    parts = {"continuous": continuous_part, "digits": digits_part, "text": text_part}
    for part in args.parts:
        lines += parts[part](args.quick)
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
