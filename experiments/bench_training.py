"""Training throughput: ``GenerativeModule`` under Lightning's Trainer against hand-written loops.

Run with ``make bench`` or ``.venv/bin/python experiments/bench_training.py [--quick]``. Writes
``experiments/results/training.md``.

What is measured (one process, ``OMP_NUM_THREADS`` as set by the caller, timings side by side):

* the MLP recipe of ``models/fm_moons.yaml`` (MLP 2-256x3, Adam, flow matching on a linear path,
  moons, batch 256), with the same net, batch, optimizer and data in every column:
  - flowbridge: ``GenerativeModule`` under ``Trainer`` (no logger, no progress bar, no validation,
    no checkpointing; optionally with ``EMAWeightAveraging``);
  - plain: a PyTorch loop doing the same work (per-epoch shuffled batches by ``index_select``, noise
    and times from a generator, ``x_t`` and the velocity target, MSE, backward, Adam; with EMA, the
    same ``torch.optim.swa_utils.AveragedModel`` update that Lightning's callback performs);
  - torchcfm: the same loop with the target drawn by torchcfm's ``ConditionalFlowMatcher(sigma=0)``
    (skipped with a note where torchcfm does not import);
* steps per second after a warm-up, each configuration run ``--repeats`` times in interleaved
  order (A B C, B C A, C A B, ...) so that background load hits all columns alike; the median is reported
  and the ratios are computed from the medians, and as the median of the ratios within a repeat
  (the columns take turns at running first);
* the ``ddpm_digits`` recipe (UNet on 8x8 digits, batch 128): steps/s and CPU seconds per step of a
  short run under the Trainer, extrapolated to the recipe's step count (CPU time per step is what an
  idle machine turns into wall time with one thread, so it is robust to other processes' load).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import lightning.pytorch as pl
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "experiments" / "results"

from flowbridge.cli import build_cli  # noqa: E402
from flowbridge.nets import MLP  # noqa: E402
from flowbridge.training import sample_toy2d  # noqa: E402

BATCH, HIDDEN, DEPTH, LR = 256, 256, 3, 2e-3


class Timer(pl.Callback):
    """Wall and CPU time between the start of batch ``warmup`` and the end of training."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.start, self.cpu_start, self.steps = warmup, 0.0, 0.0, 0
        self.seconds = self.cpu_seconds = 0.0

    def on_train_batch_start(self, trainer: pl.Trainer, *args: object) -> None:
        if trainer.global_step == self.warmup:
            self.start, self.cpu_start = time.perf_counter(), time.process_time()

    def on_train_end(self, trainer: pl.Trainer, *args: object) -> None:
        self.seconds, self.cpu_seconds = time.perf_counter() - self.start, time.process_time() - self.cpu_start
        self.steps = trainer.global_step - self.warmup


def _recipe(name: str, steps: int, ema: bool, tmp: Path) -> Path:
    cfg = yaml.safe_load((ROOT / "models" / name).read_text())
    tr = cfg["trainer"]
    tr.update(max_steps=steps, logger=False, enable_progress_bar=False, enable_checkpointing=False,
              limit_val_batches=0, enable_model_summary=False, default_root_dir=str(tmp))
    tr["callbacks"] = [c for c in tr.get("callbacks", []) if ema and "EMAWeightAveraging" in c["class_path"]]
    cfg["model"].pop("lr_scheduler", None)
    cfg["model"]["optimizer"] = {"class_path": "torch.optim.Adam", "init_args": {"lr": LR}}
    path = tmp / f"bench_{name}"
    path.write_text(yaml.safe_dump(cfg))
    return path


def run_flowbridge(steps: int, warmup: int, ema: bool, tmp: Path, recipe: str = "fm_moons.yaml") -> tuple[float, float]:
    """(steps/s, CPU s/step) of GenerativeModule under the Trainer."""
    cli = build_cli(["--config", str(_recipe(recipe, steps + warmup, ema, tmp))], run=False)
    timer = Timer(warmup)
    cli.trainer.callbacks.append(timer)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    return timer.steps / timer.seconds, timer.cpu_seconds / timer.steps


def _data() -> torch.Tensor:
    return sample_toy2d("moons", 20_000, generator=torch.Generator().manual_seed(0)).float()


def run_plain(steps: int, warmup: int, ema: bool, use_torchcfm: bool = False) -> tuple[float, float]:
    """(steps/s, CPU s/step) of a hand-written loop doing the same work (optionally with torchcfm's target)."""
    torch.manual_seed(0)
    data = _data()
    net = MLP(2, hidden=HIDDEN, depth=DEPTH)
    opt = torch.optim.Adam(net.parameters(), lr=LR)
    averaged = None
    if ema:
        from torch.optim.swa_utils import AveragedModel, get_ema_avg_fn

        averaged = AveragedModel(net, avg_fn=get_ema_avg_fn(0.999), use_buffers=True)
    matcher = None
    if use_torchcfm:
        from torchcfm.conditional_flow_matching import ConditionalFlowMatcher

        matcher = ConditionalFlowMatcher(sigma=0.0)
    g = torch.Generator().manual_seed(1)
    per_epoch = data.shape[0] // BATCH
    order = torch.randperm(data.shape[0], generator=g)
    start = cpu_start = 0.0
    for step in range(steps + warmup):
        if step == warmup:
            start, cpu_start = time.perf_counter(), time.process_time()
        k = step % per_epoch
        if k == 0:
            order = torch.randperm(data.shape[0], generator=g)
        x1 = data.index_select(0, order[k * BATCH : (k + 1) * BATCH])
        x0 = torch.randn(x1.shape, generator=g)
        if matcher is not None:
            t, xt, ut = matcher.sample_location_and_conditional_flow(x0, x1)
        else:
            t = torch.rand(x1.shape[0], generator=g)
            xt = t[:, None] * x1 + (1 - t[:, None]) * x0
            ut = x1 - x0
        loss = ((net(xt, t) - ut) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if averaged is not None:
            averaged.update_parameters(net)
    return steps / (time.perf_counter() - start), (time.process_time() - cpu_start) / steps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps and repeats")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--out", default=str(RESULTS / "training.md"))
    args = parser.parse_args(argv)
    steps = args.steps or (300 if args.quick else 1000)
    repeats = args.repeats or (3 if args.quick else 9)
    warmup = 50
    import logging
    import tempfile
    import warnings

    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    logging.getLogger("lightning.fabric").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    try:
        import torchcfm  # noqa: F401

        cfm_note = ""
    except Exception as exc:  # the bench extra may be missing; the column is then skipped
        cfm_note = f"torchcfm column skipped: it failed to import ({type(exc).__name__}: {exc})"

    rows: dict[str, dict[str, list[float]]] = {}
    cpu_rows: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        for ema in (False, True):
            name = "with EMA" if ema else "no EMA"
            cols = rows.setdefault(name, {"flowbridge": [], "plain": [], "torchcfm": []})
            cpu = cpu_rows.setdefault(name, {"flowbridge": [], "plain": [], "torchcfm": []})
            for r in range(repeats):
                runs = {"flowbridge": lambda: run_flowbridge(steps, warmup, ema, tmp), "plain": lambda: run_plain(steps, warmup, ema)}
                if not cfm_note:
                    runs["torchcfm"] = lambda: run_plain(steps, warmup, ema, use_torchcfm=True)
                # The column that runs first in a repeat is not always the same one (the machine's
                # speed drifts within a repeat as well as between repeats).
                order = list(runs)[r % len(runs):] + list(runs)[: r % len(runs)]
                for col in order:
                    fn = runs[col]
                    rate, cpu_per_step = fn()
                    cols[col].append(rate)
                    cpu[col].append(1.0 / cpu_per_step)
                print(f"[{name} {r + 1}/{repeats}] " + ", ".join(
                    f"{k} {v[-1]:.1f}/s ({cpu[k][-1]:.1f}/CPU-s)" for k, v in cols.items() if v), flush=True)
        ddpm_steps = 20 if args.quick else 60
        ddpm_rate, ddpm_cpu = run_flowbridge(ddpm_steps, 5, True, tmp, recipe="ddpm_digits.yaml")
    ddpm_total = yaml.safe_load((ROOT / "models/ddpm_digits.yaml").read_text())["trainer"]["max_steps"]

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    lines = [
        "# Training throughput: GenerativeModule under the Trainer vs hand-written loops",
        "",
        f"Command: `OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')} .venv/bin/python experiments/bench_training.py"
        f"{' --quick' if args.quick else ''}`  ",
        f"Date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}; {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, torch {torch.__version__}, lightning {pl.__version__}; load average at the end {load:.1f} "
        "(other processes share the cores: absolute numbers are noisy, the ratios are measured side by side).",
        "",
        f"MLP recipe of `models/fm_moons.yaml`: MLP 2-{HIDDEN}x{DEPTH}, Adam (lr {LR}), flow matching on the linear path, "
        f"moons, batch {BATCH}; {steps} timed steps after {warmup} warm-up steps; median of {repeats} interleaved repeats.",
        "",
    ]
    header = "| EMA | flowbridge (Trainer) | plain loop | torchcfm loop | flowbridge / plain | flowbridge / torchcfm |"

    def paired(cols: dict[str, list[float]], other: str) -> float:
        """Median over repeats of the ratio within a repeat (robust to drift between repeats)."""
        return statistics.median(a / b for a, b in zip(cols["flowbridge"], cols[other]))

    def table_rows(data: dict[str, dict[str, list[float]]]) -> list[str]:
        out = [header, "|---|---|---|---|---|---|"]
        for name, cols in data.items():
            fb, plain = statistics.median(cols["flowbridge"]), statistics.median(cols["plain"])
            cfm = statistics.median(cols["torchcfm"]) if cols["torchcfm"] else float("nan")
            cfm_cell = f"{cfm:.1f}" if cols["torchcfm"] else "skipped"
            cfm_ratio = f"{fb / cfm:.2f}x (paired {paired(cols, 'torchcfm'):.2f}x)" if cols["torchcfm"] else "n/a"
            out.append(f"| {name} | {fb:.1f} | {plain:.1f} | {cfm_cell} | **{fb / plain:.2f}x** (paired {paired(cols, 'plain'):.2f}x) "
                       f"| {cfm_ratio} |")
        return out

    lines += ["Ratios: of the medians, and (paired) the median over repeats of the ratio of the runs made within one "
              "repeat, one after the other; the columns take turns at running first.", ""]
    lines += ["Steps per CPU-second of this process (with one thread, the wall rate on an idle core; not inflated "
              "by other processes' load):", ""] + table_rows(cpu_rows)
    lines += ["", "Steps per second of wall-clock time (under the load above):", ""] + table_rows(rows)
    if cfm_note:
        lines += ["", cfm_note]
    lines += [
        "",
        "Per-repeat values (steps/s):",
        "",
    ]
    for name, cols in rows.items():
        for col, vals in cols.items():
            if vals:
                lines.append(f"- {name}, {col}: wall " + ", ".join(f"{v:.1f}" for v in vals)
                             + "; per CPU-s " + ", ".join(f"{v:.1f}" for v in cpu_rows[name][col]))
    lines += [
        "",
        "## ddpm_digits (UNet on 8x8 digits, batch 128, EMA)",
        "",
        f"Short run under the Trainer: {ddpm_steps} steps at {ddpm_rate:.2f} steps/s wall, {ddpm_cpu * 1000:.0f} ms CPU per step. "
        f"Extrapolated to the recipe's {ddpm_total} steps: {ddpm_total / ddpm_rate / 60:.1f} min at this run's wall rate, "
        f"{ddpm_total * ddpm_cpu / 60:.1f} min of CPU time (the wall time on an otherwise idle core with one thread).",
        "",
    ]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
