"""Inpainting 8x8 digits with a trained diffusion prior (plug-a-prior posterior sampling).

Loads a checkpoint trained by the ``ddpm_digits`` or ``edm_digits`` recipe
(``flowbridge fit --config models/ddpm_digits.yaml``), hides pixels of held-out digits, adds Gaussian
noise, and draws posterior samples with one or more posterior samplers. Writes a PNG per method:
each row is one digit — truth, observation, samples, posterior mean and per-pixel standard deviation.
Prints the PSNR on the hidden pixels of the posterior mean and of single samples, against the
prior-mean baseline (the average training digit); ``--grid PATH`` also writes one
``flowbridge.viz.image_grid`` of all methods side by side (the figure of the inverse-problems guide).

Usage:
    OMP_NUM_THREADS=1 python experiments/inpaint_digits.py CHECKPOINT [--methods ddrm mcgdiff] [--mask half]
        [--grid docs/assets/inverse_digits.png --show 6]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from flowbridge.fields import Field
from flowbridge.inverse import Gaussian, Inpainting, Measurement, Operator, sample
from flowbridge.inverse.samplers.base import POSTERIOR_SAMPLERS


def load_prior(checkpoint: Path) -> Field:
    """The unconditional field of a ``flowbridge fit`` checkpoint (EMA weights), on the CPU, in eval mode."""
    import flowbridge as fb

    field = fb.load(checkpoint).field()
    field.requires_grad_(False)  # guidance differentiates w.r.t. x only
    return field


def held_out_digits(n: int, seed: int) -> torch.Tensor:
    """``n`` held-out digits from the recipe's validation split, (n, 1, 8, 8) in [-1, 1]."""
    from flowbridge.training import Digits

    splits = Digits(seed=0).load()
    g = torch.Generator().manual_seed(seed)
    return splits.val[torch.randperm(splits.val.shape[0], generator=g)[:n]].float()


def reconstruct(
    field: Field, truth: torch.Tensor, operator: Operator, sigma: float, method: str, samples: int, steps: int,
    particles: int, seed: int,
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Posterior samples for each digit in ``truth``: returns (observations (N, ...), samples (N, S, 1, 8, 8), seconds)."""
    noise = Gaussian(sigma)
    observations, draws = [], []
    start = time.perf_counter()
    for k, x in enumerate(truth):
        gen = torch.Generator().manual_seed(seed + k)
        y = noise.sample(operator.forward(x[None]), generator=gen)[0]
        opts = {"particles": particles} if POSTERIOR_SAMPLERS[method].uses_particles else {}
        # Inference only: samplers that guide through the network enable gradients themselves.
        with torch.no_grad():
            out = sample(field, Measurement(y, operator, noise), method, num_samples=samples, steps=steps, generator=gen, **opts)
        observations.append(y)
        draws.append(out.samples.detach())
    return torch.stack(observations), torch.stack(draws), time.perf_counter() - start


def plot_rows(truth: torch.Tensor, shown_obs: torch.Tensor, draws: torch.Tensor, title: str, path: Path, n_show: int = 4) -> None:
    """Rows: truth | observation | n_show samples | mean | std."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = truth.shape[0]
    cols = 2 + n_show + 2
    fig, axes = plt.subplots(rows, cols, figsize=(1.3 * cols, 1.3 * rows + 0.4), squeeze=False)
    for r in range(rows):
        panels = [truth[r], shown_obs[r], *draws[r, :n_show], draws[r].mean(0), draws[r].std(0)]
        names = ["truth", "observed", *[f"sample {i + 1}" for i in range(n_show)], "mean", "std"]
        for c, (img, name) in enumerate(zip(panels, names)):
            ax = axes[r, c]
            if name == "std":
                ax.imshow(img[0].numpy(), cmap="magma", vmin=0.0)
            else:
                ax.imshow(img[0].clamp(-1, 1).numpy(), cmap="gray", vmin=-1, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(name, fontsize=7)
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def psnr_hidden(estimate: torch.Tensor, truth: torch.Tensor, hidden: torch.Tensor) -> float:
    """PSNR in dB over the ``hidden`` pixels of all images, for pixels in [-1, 1] (peak-to-peak 2)."""
    mse = ((estimate - truth)[:, hidden] ** 2).mean()
    return float(10.0 * torch.log10(4.0 / mse))


def save_grid(truth: torch.Tensor, shown_obs: torch.Tensor, draws: dict[str, torch.Tensor], title: str, path: Path,
              n_show: int = 3) -> None:
    """One ``flowbridge.viz.image_grid``: per digit, truth | observation | per method n_show samples and their mean."""
    from flowbridge.viz import image_grid, save_figure

    labels = ["truth", "seen"]
    for method in draws:  # only the first column of a method is labelled: longer labels would overlap
        labels += [method] + [""] * n_show
    rows = []
    for r in range(truth.shape[0]):
        row = [truth[r : r + 1], shown_obs[r : r + 1]]
        for d in draws.values():
            row += [d[r, :n_show], d[r].mean(0, keepdim=True)]
        rows.append(torch.cat(row))
    save_figure(image_grid(torch.cat(rows), nrow=len(labels), column_labels=labels, title=title), path)


def make_mask(kind: str, seed: int) -> torch.Tensor:
    if kind == "half":
        mask = torch.ones(1, 8, 8, dtype=torch.bool)
        mask[:, 4:, :] = False  # the lower half is hidden
        return mask
    if kind == "random":
        return torch.rand(1, 8, 8, generator=torch.Generator().manual_seed(seed)) < 0.3  # 30% of pixels seen
    raise ValueError(f"mask must be 'half' or 'random'; got {kind!r}")


def add_reconstruction_arguments(parser: argparse.ArgumentParser) -> None:
    """The options shared by the digit reconstruction scripts (this one and deblur_digits.py)."""
    parser.add_argument("--digits", type=int, default=6)
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--particles", type=int, default=16)
    parser.add_argument("--sigma", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "inverse_figures")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--methods", nargs="+", default=["ddrm", "mcgdiff"])
    parser.add_argument("--mask", default="half", choices=["half", "random"])
    parser.add_argument("--grid", type=Path, default=None, help="also write one image grid of all methods here")
    parser.add_argument("--show", type=int, default=6, help="digits (rows) shown in --grid")
    add_reconstruction_arguments(parser)
    args = parser.parse_args()
    field = load_prior(args.checkpoint)
    truth = held_out_digits(args.digits, args.seed)
    operator = Inpainting(make_mask(args.mask, args.seed))
    hidden = ~operator.mask
    from flowbridge.training import Digits

    baseline = psnr_hidden(Digits(seed=0).load().train.mean(0).expand_as(truth), truth, hidden)
    print(f"prior mean (average training digit): PSNR {baseline:.2f} dB on the hidden pixels of {args.digits} digits", flush=True)
    grid_draws: dict[str, torch.Tensor] = {}
    shown = truth
    for method in args.methods:
        obs, draws, seconds = reconstruct(field, truth, operator, args.sigma, method, args.samples, args.steps, args.particles, args.seed)
        shown = operator.adjoint(obs)  # hidden pixels drawn grey (0)
        path = args.out / f"inpaint_{args.mask}_{method}.png"
        mse = float(((draws.mean(1) - truth) ** 2).mean())
        plot_rows(truth, shown, draws, f"inpainting ({args.mask} mask), {method}, {args.steps} steps, sigma_y={args.sigma}; "
                  f"MSE of posterior mean {mse:.3f}", path)
        print(f"{method}: {seconds:.1f}s, MSE(posterior mean, truth) = {mse:.4f} -> {path}; PSNR on the hidden pixels: "
              f"posterior mean {psnr_hidden(draws.mean(1), truth, hidden):.2f} dB, one sample "
              f"{psnr_hidden(draws[:, 0], truth, hidden):.2f} dB", flush=True)
        grid_draws[method] = draws[: args.show]
    if args.grid is not None:
        save_grid(truth[: args.show], shown[: args.show], grid_draws,
                  f"{args.mask} mask, sigma_y={args.sigma}, {args.steps} steps\nper method: "
                  f"3 samples, then the mean of {args.samples}", args.grid)
        print(f"grid -> {args.grid}", flush=True)


if __name__ == "__main__":
    main()
