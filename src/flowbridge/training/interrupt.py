"""``SaveOnInterrupt``: Ctrl-C (or SIGTERM) ends training at a step boundary with a checkpoint.

Python turns Ctrl-C into a ``KeyboardInterrupt`` wherever the program happens to be, possibly
between a backward pass and the optimizer step; a checkpoint written from there (Lightning's
``OnExceptionCheckpoint``) need not resume to the uninterrupted run. This callback instead only
notes the signal, lets the current optimizer step finish (all micro-batches of an accumulated step),
writes ``last.ckpt`` into the ``ModelCheckpoint`` folder -- the file ``--ckpt_path last`` resumes
from -- and raises :class:`TrainingInterrupted`, which the ``flowbridge`` command reports in one
line (exit status 130 for SIGINT, 143 for SIGTERM). A second Ctrl-C stops at once, without a
checkpoint. Under DDP every rank receives the signal; the ranks agree (an all-reduce every
``check_every_n_steps`` steps) on the step at which they all stop.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from types import FrameType
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import ModelCheckpoint

from flowbridge.errors import ArgumentError


class TrainingInterrupted(Exception):
    """Training stopped on a signal at ``step``; ``checkpoint`` is the file written (or None)."""

    def __init__(self, step: int, checkpoint: str | None, signum: int) -> None:
        self.step, self.checkpoint, self.signum = step, checkpoint, signum
        where = f"checkpoint saved to {checkpoint}" if checkpoint else "no checkpoint (checkpointing is disabled)"
        super().__init__(f"interrupted ({signal.Signals(signum).name}) at step {step}; {where}")

    @property
    def exit_code(self) -> int:
        """The shell's convention: 128 + the signal number."""
        return 128 + int(self.signum)


def last_checkpoint_path(trainer: pl.Trainer) -> str | None:
    """``<dirpath>/last.ckpt`` of the first ``ModelCheckpoint`` (where ``--ckpt_path last`` looks)."""
    for cb in trainer.checkpoint_callbacks:
        if isinstance(cb, ModelCheckpoint) and cb.dirpath:
            return os.path.join(str(cb.dirpath), cb.CHECKPOINT_NAME_LAST + cb.FILE_EXTENSION)
    return None


class SaveOnInterrupt(pl.Callback):
    """Turns SIGINT / SIGTERM into a checkpoint at the next step boundary (see the module docstring).

    Args:
        check_every_n_steps: under several processes, how often the ranks agree on stopping.
    """

    SIGNALS = ("SIGINT", "SIGTERM")

    def __init__(self, check_every_n_steps: int = 16) -> None:
        if isinstance(check_every_n_steps, bool) or not isinstance(check_every_n_steps, int) or check_every_n_steps < 1:
            raise ArgumentError(f"check_every_n_steps must be a positive integer; got {check_every_n_steps!r}")
        self.check_every_n_steps = check_every_n_steps
        self.requested: int | None = None
        self.previous: dict[int, Any] = {}
        self.step_at_batch_start = -1

    def request(self, signum: int, frame: FrameType | None = None) -> None:
        """The signal handler (also callable directly, e.g. by tests)."""
        if self.requested is not None:
            self.restore()
            raise KeyboardInterrupt
        self.requested = int(signum)
        print(f"\n{signal.Signals(signum).name}: finishing this step and saving a checkpoint (Ctrl-C again stops at once)",
              file=sys.stderr, flush=True)

    def restore(self) -> None:
        """Puts the previous signal handlers back."""
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)
        self.previous = {}

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.requested = None
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be installed from the main thread
        for name in self.SIGNALS:
            signum = getattr(signal, name, None)
            if signum is not None:
                self.previous[int(signum)] = signal.signal(signum, self.request)

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        self.step_at_batch_start = trainer.global_step

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        step = trainer.global_step
        if step == self.step_at_batch_start:
            return  # within an accumulated step: stop only where the optimizer has stepped
        requested = self.requested is not None
        if trainer.world_size > 1:
            if step % self.check_every_n_steps:
                return
            requested = trainer.strategy.reduce_boolean_decision(requested, all=False)
        if not requested:
            return
        path = last_checkpoint_path(trainer)
        if path is not None:
            if os.path.islink(path):  # ModelCheckpoint(save_last="link"): do not overwrite its target
                os.unlink(path)
            trainer.save_checkpoint(path)
        self.restore()
        raise TrainingInterrupted(step, path, self.requested or signal.SIGINT)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.restore()

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self.restore()
