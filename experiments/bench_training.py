"""Training throughput: a recipe under Lightning's Trainer against a plain PyTorch loop doing the same work.

::

    OMP_NUM_THREADS=1 .venv/bin/python experiments/bench_training.py                 # CPU: MLP recipe (+ UNet, short)
    .venv/bin/python experiments/bench_training.py --device cuda --recipe unet --precision bf16-mixed
    .venv/bin/python experiments/bench_training.py --device cuda --recipe all --out experiments/results/training_gpu.md

Writes ``experiments/results/training.md`` (or ``--out``).

What is measured, side by side in one process:

* ``mlp``: the recipe ``models/fm_moons.yaml`` (MLP 2-256x3, Adam, flow matching on the linear path,
  moons, batch 256, ``CosineLR`` and the power-function ``EMA`` of the recipe);
* ``unet``: the recipe ``models/ddpm_digits.yaml`` (class-conditional UNet on 8x8 digits, VP path,
  noise prediction, label dropout 0.1, AdamW, batch 128, ``CosineLR``, ``EMA``).

Each recipe runs as ``flowbridge fit`` builds it (the recipe's module, data, callbacks and schedule;
no logger, progress bar, checkpoints or validation), and as a plain loop written for the job: the
data on the device, a fresh permutation per epoch, the same noise, times, labels, loss, optimizer,
schedule and EMA update (``torch._foreach_lerp_`` with the same power-function decay), with none of
Lightning's machinery. Steps per second after a warm-up; each pair runs ``--repeats`` times with the
order alternating, and the ratio is the median over repeats of the ratio within a repeat. On CUDA
the timers synchronise the device. On a tiny CPU model the gap is Lightning's own fixed cost per
step (hooks, logging, the closure of automatic optimisation): flowbridge uses only Lightning's
public API and does not try to remove it.
"""

from __future__ import annotations

import argparse
import datetime
import logging
import math
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import lightning.pytorch as pl
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "experiments" / "results"

from flowbridge.cli import build_cli  # noqa: E402
from flowbridge.training.ema import sigma_rel_to_gamma  # noqa: E402

RECIPES = {"mlp": "fm_moons.yaml", "unet": "ddpm_digits.yaml"}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Timer(pl.Callback):
    """Wall time between the start of optimizer step ``warmup`` and the end of training."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.start, self.seconds, self.steps = warmup, 0.0, 0.0, 0

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: object) -> None:
        if trainer.global_step == self.warmup and not self.start:
            _sync(pl_module.device)
            self.start = time.perf_counter()

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        _sync(pl_module.device)
        self.seconds, self.steps = time.perf_counter() - self.start, trainer.global_step - self.warmup


def _recipe(name: str, steps: int, device: str, precision: str, tmp: Path) -> Path:
    cfg = yaml.safe_load((ROOT / "models" / RECIPES[name]).read_text())
    tr = cfg["trainer"]
    tr.update(max_steps=steps, logger=False, enable_progress_bar=False, enable_checkpointing=False, limit_val_batches=0,
              num_sanity_val_steps=0, enable_model_summary=False, default_root_dir=str(tmp), accelerator=device,
              precision=precision)
    tr["callbacks"] = [c for c in tr.get("callbacks", []) if c["class_path"].endswith(".EMA")]
    path = tmp / f"bench_{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def run_flowbridge(name: str, steps: int, warmup: int, device: str, precision: str, tmp: Path) -> float:
    """Steps per second of the recipe under the Trainer."""
    cli = build_cli(["--config", str(_recipe(name, steps + warmup, device, precision, tmp))], run=False)
    timer = Timer(warmup)
    cli.trainer.callbacks.append(timer)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    return timer.steps / timer.seconds


def run_plain(name: str, steps: int, warmup: int, device: str, precision: str) -> float:
    """Steps per second of a hand-written loop doing the recipe's work."""
    dev = torch.device("cuda" if device == "cuda" else "cpu")
    cfg = yaml.safe_load((ROOT / "models" / RECIPES[name]).read_text())
    torch.manual_seed(0)
    g = torch.Generator(device=dev).manual_seed(1)
    total = steps + warmup
    if name == "mlp":
        from flowbridge.nets import MLP
        from flowbridge.training import sample_toy2d

        data = sample_toy2d("moons", 20_000, generator=torch.Generator().manual_seed(0)).float().to(dev)
        labels = None
        net = MLP(2, hidden=256, depth=3).to(dev)
        opt = torch.optim.Adam(net.parameters(), lr=cfg["model"]["optimizer"]["init_args"]["lr"])
        batch = cfg["data"]["init_args"]["batch_size"]
    else:
        from sklearn.datasets import load_digits

        from flowbridge.nets import UNet

        bunch = load_digits()
        data = (torch.from_numpy(bunch.data).float().reshape(-1, 1, 8, 8) / 8 - 1).to(dev)
        labels = torch.from_numpy(bunch.target).long().to(dev)
        net = UNet(**cfg["model"]["net"]["init_args"]).to(dev)
        args = cfg["model"]["optimizer"]["init_args"]
        opt = torch.optim.AdamW(net.parameters(), lr=args["lr"], weight_decay=args["weight_decay"])
        batch = cfg["data"]["init_args"]["batch_size"]
        # VP linear schedule (beta 0.1 -> 20): log alpha(s) = -(beta_min s + (beta_max - beta_min) s^2 / 2) / 2, s = 1 - t
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total, eta_min=cfg["model"]["lr_scheduler"]["init_args"]["eta_min"])
    ema = [p.detach().clone() for p in net.parameters()]
    gamma = sigma_rel_to_gamma(0.1)
    autocast = torch.autocast(dev.type, dtype=torch.bfloat16, enabled=precision == "bf16-mixed")
    per_epoch = data.shape[0] // batch
    order = torch.randperm(data.shape[0], device=dev, generator=g)
    start = 0.0
    for step in range(total):
        if step == warmup:
            _sync(dev)
            start = time.perf_counter()
        k = step % per_epoch
        if k == 0:
            order = torch.randperm(data.shape[0], device=dev, generator=g)
        idx = order[k * batch : (k + 1) * batch]
        x1 = data.index_select(0, idx)
        noise = torch.randn(x1.shape, device=dev, generator=g)
        with autocast:
            if name == "mlp":
                t = torch.rand(x1.shape[0], device=dev, generator=g)
                xt = torch.addcmul(noise, t[:, None], x1 - noise)
                loss = (net(xt, t) - (x1 - noise)).square().mean()
            else:
                t = torch.rand(x1.shape[0], device=dev, generator=g) * (1 - 1e-3)
                s = 1 - t
                log_alpha = -(0.1 * s + (20.0 - 0.1) * s**2 / 2) / 2
                alpha = log_alpha.exp()[:, None, None, None]
                sigma = (1 - alpha**2).sqrt()
                y = labels.index_select(0, idx)
                y = torch.where(torch.rand(y.shape, device=dev, generator=g) < 0.1, torch.full_like(y, 10), y)
                loss = (net(alpha * x1 + sigma * noise, t, y) - noise).square().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        decay = (1 - 1 / (step + 1)) ** (gamma + 1)
        torch._foreach_lerp_(ema, [p.detach() for p in net.parameters()], 1 - decay)
    _sync(dev)
    return steps / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--recipe", choices=("mlp", "unet", "all"), default="all")
    parser.add_argument("--precision", default="32-true", choices=("32-true", "bf16-mixed"))
    parser.add_argument("--quick", action="store_true", help="fewer steps and repeats")
    parser.add_argument("--steps", type=int, help="timed steps per run (default: mlp 1000, unet 300 on cpu; 2000 on cuda)")
    parser.add_argument("--repeats", type=int, help="interleaved repeats (default 7; --quick 3)")
    parser.add_argument("--out", default=str(RESULTS / "training.md"))
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device")
    repeats = args.repeats or (3 if args.quick else 7)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    logging.getLogger("lightning.fabric").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    names = ["mlp", "unet"] if args.recipe == "all" else [args.recipe]
    results: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        for name in names:
            default = 2000 if args.device == "cuda" else (1000 if name == "mlp" else 60)
            warmup = 10 if args.device == "cpu" and name == "unet" else 50
            steps = args.steps or (default // 3 if args.quick else default)
            cols: dict[str, list[float]] = {"flowbridge": [], "plain": [], "steps": [steps]}
            for r in range(repeats):
                order = ["flowbridge", "plain"] if r % 2 == 0 else ["plain", "flowbridge"]
                for col in order:
                    fn = run_flowbridge if col == "flowbridge" else run_plain
                    cols[col].append(fn(name, steps, warmup, args.device, args.precision, *((tmp,) if col == "flowbridge" else ())))
                print(f"[{name} {r + 1}/{repeats}] flowbridge {cols['flowbridge'][-1]:.1f}/s, plain {cols['plain'][-1]:.1f}/s",
                      flush=True)
            results[name] = cols

    device = torch.cuda.get_device_name() if args.device == "cuda" else f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else math.nan
    quick = " --quick" if args.quick else ""
    lines = [
        "# Training throughput: recipes under the Trainer vs a plain PyTorch loop",
        "",
        f"Command: `OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')} .venv/bin/python experiments/bench_training.py "
        f"--device {args.device} --recipe {args.recipe} --precision {args.precision}{quick}`  ",
        f"Date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}; {device}; torch {torch.__version__}, "
        f"lightning {pl.__version__}; load average at the end {load:.1f} (timings on a shared machine are noisy; "
        "the ratios are measured side by side).",
        "",
        "The flowbridge column is the recipe as `flowbridge fit` builds it (its module, data, `CosineLR` and `EMA`; no "
        "logger, progress bar, checkpoints or validation); the plain column a hand-written loop doing the same work with "
        "the data on the device. Steps per second after a warm-up (50 steps; 10 for the UNet on the CPU); ratio = median over "
        f"{repeats} repeats of the ratio within a repeat (the two runs alternate in order); the cost per step is the median of "
        "the differences of the step times within a repeat.",
        "",
        "| recipe | timed steps | flowbridge (steps/s) | plain loop (steps/s) | flowbridge / plain | cost per step |",
        "|---|---|---|---|---|---|",
    ]
    for name, cols in results.items():
        ratio = statistics.median(a / b for a, b in zip(cols["flowbridge"], cols["plain"]))
        extra_ms = statistics.median(1000 / a - 1000 / b for a, b in zip(cols["flowbridge"], cols["plain"]))
        lines.append(f"| {name} ({RECIPES[name]}) | {cols['steps'][0]} | {statistics.median(cols['flowbridge']):.1f} | "
                     f"{statistics.median(cols['plain']):.1f} | **{ratio:.2f}x** | {extra_ms:+.2f} ms |")
    lines += ["", "Per-repeat steps/s:", ""]
    for name, cols in results.items():
        for col in ("flowbridge", "plain"):
            lines.append(f"- {name}, {col}: " + ", ".join(f"{v:.1f}" for v in cols[col]))
    lines.append("")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
