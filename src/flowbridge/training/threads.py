"""How many CPU threads a training run uses (``flowbridge fit --threads``).

PyTorch runs each operation on as many OpenMP threads as the machine has cores. A small model gains
nothing from that (a 2-256x3 MLP on batches of 256 steps *slower* on two threads than on one), and
when another process keeps the cores busy the threads wait for each other at every operation:
1000 steps of ``models/fm_moons.yaml`` took 6 min 24 s next to one busy process, against 9.6 s
alone. :class:`IntraOpThreads` therefore picks the thread count from the work of one training step
when training on the CPU: one thread per :data:`FLOPS_PER_THREAD` floating-point operations of the
forward pass of a training batch (counted once with ``torch.utils.flop_counter``), between 1 and
the cores that are idle when training starts (the cores available to this process, divided among
the processes of this machine, less the one-minute load average). The UNet of ``ddpm_digits`` steps
1.7x faster on two idle cores than on one, but 5.7x slower on two cores of which other processes
keep one busy (0.18 against 1.04 steps/s, measured). An explicit ``--threads N`` or
``OMP_NUM_THREADS`` wins; GPU runs are left alone.
"""

from __future__ import annotations

import os
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.accelerators import CPUAccelerator

from flowbridge.errors import ArgumentError

#: Forward-pass work per extra thread. Measured on the recipes (2 cores): the MLP of fm_moons
#: (0.11 GFLOP per batch) runs fastest on one thread, the UNet of ddpm_digits (2.0 GFLOP) 1.7x faster
#: on two than on one.
FLOPS_PER_THREAD = 0.5e9


def available_cores() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def forward_flops(module: Any, batch: Any) -> int:
    """Floating-point operations of ``module``'s loss on ``batch`` (its ``flop_probe``), no gradients."""
    from torch.utils.flop_counter import FlopCounterMode

    from flowbridge.training.base import TRAIN

    probe = getattr(module, "flop_probe", None)
    if probe is None:
        return 0
    g = module.step_generator(TRAIN, -1)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        probe(batch, g)
    return int(counter.get_total_flops())


def idle_cores(cores: int) -> int:
    """Cores not kept busy by other processes: ``cores`` minus the one-minute load average (at least 1)."""
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # not available on this platform
        return cores
    return max(1, min(cores, int(cores - load + 0.5)))


def threads_for(flops: int, cores: int) -> int:
    """``clamp(flops / FLOPS_PER_THREAD, 1, cores)``."""
    return max(1, min(int(cores), int(flops // FLOPS_PER_THREAD)))


class IntraOpThreads(pl.Callback):
    """Sets ``torch.set_num_threads`` for a CPU run (see the module docstring).

    Args:
        threads: a number of threads, or ``None`` to choose from the model's work (unless
            ``OMP_NUM_THREADS`` is set).
        verbose: print the choice (rank 0).
    """

    def __init__(self, threads: int | None = None, verbose: bool = False) -> None:
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise ArgumentError(f"threads must be a positive integer or None (automatic); got {threads!r}")
        self.threads, self.verbose = threads, verbose
        #: What was chosen and why (for the command's summary line), set at setup.
        self.chosen: int | None = None
        self.reason = ""

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if not isinstance(trainer.accelerator, CPUAccelerator):
            return
        if self.threads is not None:
            self.chosen, self.reason = self.threads, "--threads"
        elif os.environ.get("OMP_NUM_THREADS"):
            self.chosen, self.reason = torch.get_num_threads(), "OMP_NUM_THREADS"
            return  # the user's setting
        else:
            dm = getattr(trainer, "datamodule", None)
            batch = dm.example_batch() if dm is not None and hasattr(dm, "example_batch") else None
            if batch is None or not hasattr(pl_module, "flop_probe"):
                return
            local_processes = max(1, trainer.num_devices)
            try:
                flops = forward_flops(pl_module, batch)
            except Exception:  # data the model cannot take: its own check reports that, in one line
                return
            cores = max(1, available_cores() // local_processes)
            idle = idle_cores(cores)
            self.chosen = threads_for(flops, idle)
            self.reason = f"{flops / 1e9:.2g} GFLOP per forward pass, {idle} of {cores} cores idle"
        torch.set_num_threads(self.chosen)
        if self.verbose and trainer.is_global_zero and self.reason != "OMP_NUM_THREADS":
            print(f"cpu threads: {self.chosen} ({self.reason}; --threads N to change)", flush=True)
