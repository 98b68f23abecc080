"""A diffusers UNet2DModel as a flowbridge prior: ODE solvers and a posterior sampler on it.

Builds a tiny, randomly initialised ``UNet2DModel`` with a DDPM scheduler config (no weights are
fetched), optionally fine-tunes it briefly on scikit-learn's 8x8 digits with flowbridge's
denoising objective, wraps it with ``flowbridge.interop.from_diffusers`` and runs ``dpmpp_2m``,
``ghvb`` and DDRM inpainting on it, writing a PNG.

    .venv/bin/python experiments/diffusers_prior.py [--finetune-steps 300] [--out outputs/diffusers_prior.png]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

import flowbridge as fb
from flowbridge.interop import from_diffusers
from flowbridge.inverse import Gaussian, Inpainting, Measurement
from flowbridge.inverse import sample as posterior_sample


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--finetune-steps", type=int, default=300)
    parser.add_argument("--out", type=Path, default=Path("outputs/diffusers_prior.png"))
    args = parser.parse_args()

    from diffusers import DDPMScheduler, UNet2DModel
    from sklearn.datasets import load_digits

    torch.manual_seed(0)
    unet = UNet2DModel(
        sample_size=8, in_channels=1, out_channels=1, layers_per_block=1, block_out_channels=(32, 64),
        down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"), norm_num_groups=8,
    )
    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", prediction_type="epsilon")
    field = from_diffusers(unet, scheduler)

    if args.finetune_steps > 0:
        data = torch.tensor(load_digits().images, dtype=torch.float32)[:, None] / 8.0 - 1.0
        from flowbridge.objectives import DenoisingScoreMatching

        objective = DenoisingScoreMatching(field.gaussian_path)
        opt = torch.optim.AdamW(unet.parameters(), lr=2e-3)
        g = torch.Generator().manual_seed(0)
        t0 = time.perf_counter()
        for step in range(args.finetune_steps):
            idx = torch.randint(0, data.shape[0], (128,), generator=g)
            x1, x0 = data[idx], torch.randn(128, 1, 8, 8, generator=g)
            t = torch.rand(128, generator=g) * 0.998 + 0.001
            loss = objective(field, x0, x1, t).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
        print(f"fine-tuned {args.finetune_steps} steps in {time.perf_counter() - t0:.1f} s, last loss {float(loss.detach()):.3f}")

    unet.eval()
    rows = []
    with torch.no_grad():
        for solver, options in (("dpmpp_2m", {}), ("ghvb", {"order": 4, "beta": 0.8})):
            out = fb.sample(field, solver, 15, shape=(16, 1, 8, 8), grid="logsnr", generator=torch.Generator().manual_seed(1), **options)
            print(f"{solver}: {out.nfe} NFE, samples {tuple(out.x.shape)}")
            rows.append(out.x.clamp(-1, 1))
        truth = rows[0][:4]
        mask = torch.ones(1, 8, 8, dtype=torch.bool)
        mask[:, 4:, :] = False  # observe the top half
        for k in range(4):
            meas = Measurement(Inpainting(mask).forward(truth[k : k + 1])[0], Inpainting(mask), Gaussian(0.05))
            post = posterior_sample(field, meas, "ddrm", num_samples=4, steps=50, generator=torch.Generator().manual_seed(k))
            rows.append(post.samples.clamp(-1, 1))
    print(f"ddrm: 4 observations x 4 posterior samples, {post.samples.shape[0]} per observation")
    from flowbridge.viz import image_grid, save_figure

    grid = torch.cat([rows[0], rows[1], torch.cat(rows[2:])])
    save_figure(image_grid(grid, nrow=16, title="dpmpp_2m | ghvb | DDRM inpainting (4 per observation)"), args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
