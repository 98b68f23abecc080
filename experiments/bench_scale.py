"""Scale benchmark: throughput against batch size, 1 vs 2 processes, compiled vs eager, autocast,
and peak memory of chunked against unchunked sampling of 10^6 two-dimensional samples.

Run: ``.venv/bin/python experiments/bench_scale.py`` (writes experiments/results/scale.md).
Each configuration is measured side by side in one run; ratios are what to read, absolute figures
depend on the machine and its load (recorded in the header).
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "experiments" / "results" / "scale.md"


def mlp_field() -> "object":
    import flowbridge as fb
    from flowbridge.nets import MLP

    torch.manual_seed(0)
    return fb.NetworkField(MLP(2, hidden=256, depth=3), fb.GaussianPath("linear"), "velocity")


def unet_field() -> "object":
    import flowbridge as fb
    from flowbridge.nets import UNet

    torch.manual_seed(0)
    return fb.NetworkField(UNet(in_channels=1, image_size=8, num_classes=None), fb.GaussianPath("vp"), "noise")


def throughput(field: object, shape: tuple[int, ...], steps: int, repeats: int = 2, **options: object) -> float:
    """Samples per second of heun at ``steps`` steps (best of ``repeats`` after one warm-up)."""
    import flowbridge as fb

    with torch.no_grad():
        fb.sample(field, "heun", steps, shape=shape, generator=torch.Generator().manual_seed(0), **options)
        best = float("inf")
        for r in range(repeats):
            t0 = time.perf_counter()
            fb.sample(field, "heun", steps, shape=shape, generator=torch.Generator().manual_seed(r), **options)
            best = min(best, time.perf_counter() - t0)
    return shape[0] / best


def peak_memory_child(mode: str) -> None:
    """Runs in a fresh process: samples 10^6 points and prints its peak RSS in MiB."""
    import resource

    import flowbridge as fb

    field = mlp_field()
    with torch.no_grad():
        fb.sample(field, "heun", 4, shape=(1_000_000, 2),
                  generator=torch.Generator().manual_seed(0), batch_size=65_536 if mode == "chunked" else None)
    print(json.dumps({"peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def processes(devices: int, n: int) -> float:
    from flowbridge.scale import sample_to_disk

    field = mlp_field()
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        sample_to_disk(field, num_samples=n, sample_shape=(2,), out_dir=d, shard_size=n // 8, steps=20,
                       accelerator="cpu", devices=devices, strategy="ddp_spawn" if devices > 1 else "auto",
                       logger=False, enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False)
        return n / (time.perf_counter() - t0)


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--peak-memory":
        peak_memory_child(sys.argv[2])
        return
    rows: list[str] = []
    load = os.getloadavg()[0]
    header = (f"# Scale benchmark\n\nCommand: `.venv/bin/python experiments/bench_scale.py`  \n"
              f"Date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; machine: {platform.machine()}, "
              f"{os.cpu_count()} CPU cores, torch {torch.__version__}, threads {torch.get_num_threads()}; "
              f"load average at start {load:.1f}. CPU only (no GPU was available to this session).\n")

    rows.append("## Throughput against batch size (heun, samples/s)\n")
    rows.append("| field | steps | batch | samples/s |\n|---|---|---|---|")
    mlp, unet = mlp_field(), unet_field()
    for b in (64, 256, 1024, 4096, 16384):
        rows.append(f"| MLP 2-D (256x3) | 20 | {b} | {throughput(mlp, (b, 2), 20):,.0f} |")
    for b in (16, 64, 256, 1024):
        rows.append(f"| UNet 1x8x8 (374k params) | 10 | {b} | {throughput(unet, (b, 1, 8, 8), 10):,.0f} |")

    rows.append("\n## Autocast (network in bf16, solver in fp32)\n")
    rows.append("| field | batch | fp32 samples/s | bf16 autocast samples/s | ratio |\n|---|---|---|---|---|")
    for name, f, shape, steps in (("MLP 2-D", mlp, (4096, 2), 20), ("UNet 1x8x8", unet, (256, 1, 8, 8), 10)):
        a = throughput(f, shape, steps)
        b = throughput(f, shape, steps, autocast=torch.bfloat16)
        rows.append(f"| {name} | {shape[0]} | {a:,.0f} | {b:,.0f} | {b / a:.2f} |")

    rows.append("\n## Compiled against eager (`compile=True`; compile time excluded)\n")
    rows.append("| field | batch | eager samples/s | compiled samples/s | ratio | first-call compile s |\n|---|---|---|---|---|---|")
    for name, f, shape, steps in (("MLP 2-D", mlp, (4096, 2), 20), ("UNet 1x8x8", unet, (256, 1, 8, 8), 10)):
        eager = throughput(f, shape, steps)
        import flowbridge as fb

        t0 = time.perf_counter()
        with torch.no_grad():
            fb.sample(f, "heun", 1, shape=shape, compile=True)
        first = time.perf_counter() - t0
        comp = throughput(f, shape, steps, compile=True)
        rows.append(f"| {name} | {shape[0]} | {eager:,.0f} | {comp:,.0f} | {comp / eager:.2f} | {first:.1f} |")

    rows.append("\n## One against two processes (`sample_to_disk`, ddp_spawn on CPU, MLP, heun 20 steps)\n")
    n = 200_000
    one, two = processes(1, n), processes(2, n)
    rows.append("| processes | samples/s |\n|---|---|")
    rows.append(f"| 1 | {one:,.0f} |\n| 2 | {two:,.0f} |\n\nRatio 2/1: **{two / one:.2f}** for {n:,} samples "
                f"(includes process start-up; {torch.get_num_threads()} intra-op thread(s) per process).")

    rows.append("\n## Peak memory for 10^6 two-dimensional samples (heun, 4 steps, fresh process each)\n")
    rows.append("| mode | peak RSS MiB |\n|---|---|")
    for mode in ("unchunked", "chunked"):
        out = subprocess.run([sys.executable, __file__, "--peak-memory", mode], capture_output=True, text=True, check=True)
        peak = json.loads(out.stdout.strip().splitlines()[-1])["peak_mib"]
        rows.append(f"| {mode}{' (batch_size=65536)' if mode == 'chunked' else ''} | {peak:,.0f} |")

    text = header + "\n" + "\n".join(rows) + "\n"
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
