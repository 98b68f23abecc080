"""``LogProgress``: progress for logs, CI and files: a line every so often instead of a redraw per step.

A terminal shows Lightning's progress bar; a log file receives every redraw of it (thousands of
lines for a few thousand steps). The flowbridge CLI uses this callback instead when its output is
not a terminal: one line per tenth of the run (and at least one a minute), one per validation,
and a summary at the end::

    step   500/5000  10%  loss 0.981  212 steps/s  eta 21s
    validation at step 780: val/loss 0.96, val/sliced_w 0.041
"""

from __future__ import annotations

import sys
import time
from typing import IO, Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import ProgressBar

from flowbridge.errors import ArgumentError


def format_seconds(seconds: float) -> str:
    """``42s``, ``3m05s``, ``1h02m``."""
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


def _fmt(value: Any) -> str:
    try:
        return f"{float(value):.4g}"
    except (TypeError, ValueError):
        return str(value)


class LogProgress(ProgressBar):
    """Prints a progress line every ``every_fraction`` of the run and at least every ``every_seconds``.

    Args:
        every_fraction: print when the run has advanced this fraction of its steps.
        every_seconds: print at least this often (seconds) while training.
        stream: where to print (default ``sys.stdout``).
    """

    def __init__(self, every_fraction: float = 0.1, every_seconds: float = 60.0, stream: IO[str] | None = None) -> None:
        super().__init__()
        if not 0 < every_fraction <= 1:
            raise ArgumentError(f"every_fraction must lie in (0, 1]; got {every_fraction}")
        if not every_seconds > 0:
            raise ArgumentError(f"every_seconds must be > 0; got {every_seconds}")
        self.every_fraction, self.every_seconds = float(every_fraction), float(every_seconds)
        self.stream = stream
        self.enabled = True
        self.lines: list[str] = []
        self.start_time = self.last_time = 0.0
        self.start_step = self.last_step = 0
        self.total = 0

    @property
    def is_enabled(self) -> bool:
        return self.enabled

    def disable(self) -> None:
        self.enabled = False

    def enable(self) -> None:
        self.enabled = True

    def print(self, *args: Any, **kwargs: Any) -> None:
        self.write(" ".join(str(a) for a in args))

    def write(self, line: str) -> None:
        """Prints one line (rank 0 only)."""
        if not self.enabled:
            return
        self.lines.append(line)
        print(line, file=self.stream or sys.stdout, flush=True)

    def metric_text(self, trainer: pl.Trainer, prefix: str) -> str:
        # Training: what the module shows on the progress bar; validation: every logged metric.
        items = trainer.callback_metrics if prefix == "val/" else self.get_metrics(trainer, trainer.lightning_module)
        return ", ".join(f"{k} {_fmt(v)}" for k, v in items.items() if k.startswith(prefix))

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        total = trainer.estimated_stepping_batches
        self.total = int(total) if total != float("inf") else 0
        self.start_time = self.last_time = time.monotonic()
        self.start_step = self.last_step = trainer.global_step
        if self.start_step:
            self.write(f"resumed at step {self.start_step}")

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        step = trainer.global_step
        if step == self.last_step:
            return
        now = time.monotonic()
        stride = max(1, int(self.total * self.every_fraction)) if self.total else 0
        due = (stride and step // stride != self.last_step // stride) or now - self.last_time >= self.every_seconds
        if not due or step == self.total:
            return
        self.last_step, self.last_time = step, now
        rate = (step - self.start_step) / max(now - self.start_time, 1e-9)
        parts = [f"step {step:>{len(str(self.total or step))}d}" + (f"/{self.total}  {100 * step // self.total:3d}%" if self.total else "")]
        loss = self.metric_text(trainer, "train/")
        if loss:
            parts.append(loss.replace("train/", ""))
        parts.append(f"{rate:.3g} steps/s")
        if self.total and rate > 0:
            parts.append(f"eta {format_seconds((self.total - step) / rate)}")
        self.write("  ".join(parts))

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        metrics = self.metric_text(trainer, "val/")
        if metrics:
            self.write(f"validation at step {trainer.global_step}: {metrics}")

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        seconds = time.monotonic() - self.start_time
        steps = trainer.global_step - self.start_step
        loss = self.metric_text(trainer, "train/").replace("train/", "")
        self.write(f"trained {steps} steps in {format_seconds(seconds)} ({steps / max(seconds, 1e-9):.3g} steps/s)"
                   + (f"; last {loss}" if loss else ""))
