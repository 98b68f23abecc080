r"""Learning-rate schedules whose length is the run's length.

A recipe that sets ``T_max: 5000`` next to ``max_steps: 5000`` holds the same number twice; shortened
with ``--trainer.max_steps 1000`` it keeps a learning rate that never decays. The schedules here take
their length from the Trainer instead: a :class:`~flowbridge.training.base.FlowbridgeModule` gives a
:class:`RunLengthSchedule` whose ``total_steps`` is ``None`` the Trainer's
``estimated_stepping_batches`` (``max_steps``, or the epochs' optimizer steps) when it builds the
optimizer. Resumed with a different ``max_steps``, the schedule follows the new length from the
resumed step on (``total_steps`` is not restored from the checkpoint).

.. math::
    \eta(k) = \eta_{min} + (\eta_0 - \eta_{min})\,\tfrac12\big(1 + \cos(\pi\,\tfrac{k - w}{T - w})\big),
    \qquad k \ge w,

with a linear warm-up :math:`\eta(k) = \eta_0 (k + 1)/w` for :math:`k < w` steps.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from flowbridge.errors import ArgumentError


def _count(value: object, name: str, *, allow_none: bool = False) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ArgumentError(f"{name} must be a non-negative integer; got {value!r}")
    return int(value)


class RunLengthSchedule(LRScheduler):
    """An LR schedule over ``total_steps`` optimizer steps; ``None`` means "the Trainer's run length".

    Subclasses implement :meth:`factor` (the multiplier of the base learning rate at a step).
    """

    total_steps: int | None

    def __init__(self, optimizer: Optimizer, total_steps: int | None = None, last_epoch: int = -1) -> None:
        self.total_steps = _count(total_steps, "total_steps", allow_none=True)
        super().__init__(optimizer, last_epoch)

    def factor(self, step: int, base_lr: float) -> float:
        raise NotImplementedError

    def set_total_steps(self, total_steps: int) -> None:
        """Sets the schedule's length (what a flowbridge module does with the run's length)."""
        self.total_steps = _count(total_steps, "total_steps")
        self.check_length()

    def check_length(self) -> None:
        """Raises if ``total_steps`` does not suit the schedule's other settings."""

    def get_lr(self) -> list[float]:  # type: ignore[override]
        return [self.factor(self.last_epoch, base) for base in self.base_lrs]

    def state_dict(self) -> dict[str, Any]:
        # The length comes from the run being resumed, not from the checkpoint.
        state = super().state_dict()
        state.pop("total_steps", None)
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        total = self.total_steps
        super().load_state_dict({k: v for k, v in state_dict.items() if k != "total_steps"})
        self.total_steps = total


class CosineLR(RunLengthSchedule):
    """Linear warm-up over ``warmup_steps``, then cosine decay to ``eta_min`` at the end of the run.

    Args:
        optimizer: the optimizer whose learning rates are scheduled (their initial values are the peak).
        eta_min: the final learning rate.
        warmup_steps: steps of linear warm-up from ``lr / warmup_steps`` to ``lr``.
        total_steps: the schedule's length in optimizer steps; ``None`` (default): the run's length,
            set by the module from the Trainer.
        last_epoch: the index of the last step (``-1``: start).
    """

    def __init__(
        self, optimizer: Optimizer, eta_min: float = 0.0, warmup_steps: int = 0, total_steps: int | None = None,
        last_epoch: int = -1,
    ) -> None:
        if isinstance(eta_min, bool) or not isinstance(eta_min, numbers.Real) or not 0.0 <= float(eta_min) < math.inf:
            raise ArgumentError(f"eta_min must be a finite number >= 0; got {eta_min!r}")
        self.eta_min = float(eta_min)
        self.warmup_steps = _count(warmup_steps, "warmup_steps")
        super().__init__(optimizer, total_steps, last_epoch)
        self.check_length()

    def check_length(self) -> None:
        if self.total_steps is not None and self.total_steps <= self.warmup_steps:
            raise ArgumentError(f"the run has {self.total_steps} steps, which leaves no room after warmup_steps={self.warmup_steps}")

    def factor(self, step: int, base_lr: float) -> float:
        w = self.warmup_steps
        if step < w:
            return base_lr * (step + 1) / w
        total = self.total_steps
        if total is None:
            if step == w:  # the first value does not depend on the length
                return base_lr
            raise RuntimeError("CosineLR does not know the run's length: set total_steps, or let a flowbridge module "
                               "set it from trainer.max_steps")
        progress = min(1.0, (step - w) / max(1, total - w))
        return self.eta_min + (base_lr - self.eta_min) * 0.5 * (1.0 + math.cos(math.pi * progress))
