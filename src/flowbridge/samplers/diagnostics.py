r"""Auditing a step loop for what makes samplers slow on a GPU, on any device (the CPU included).

:class:`LoopAudit` watches the aten operations that run while it is active and sorts them:

* **host reads** (``.item()``, ``bool(tensor)``, ``nonzero``, ...): on CUDA each waits for every
  queued kernel (a stream synchronisation);
* **host-to-device copies** (a tensor built from Python numbers or CPU data on the state's device):
  on CUDA a copy from pageable memory synchronises too;
* **device kernels**: operations whose result lives on the watched device, views excluded (they
  launch nothing).

Operations inside the network (any module passed as ``exclude``) are not counted, so that what is
left is the sampler's own cost. Run a loop on the ``meta`` device to audit it on a machine without
a GPU: host reads then fail loudly in PyTorch, and :class:`LoopAudit` records them first.

Example:
    >>> audit = LoopAudit(device="meta", exclude=[net])
    >>> with audit:
    ...     solver.solve(field, x_meta, grid)
    >>> audit.kernels, audit.host_reads, audit.host_copies
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

# aten operations that read a device value back to the host.
_HOST_READS = frozenset({"_local_scalar_dense", "item", "is_nonzero", "nonzero", "equal", "allclose"})
# aten operations that move data between devices.
_COPIES = frozenset({"_to_copy", "copy_", "to", "lift_fresh", "lift_fresh_copy"})


def _tensors(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _tensors(v)]
    return []


class LoopAudit(TorchDispatchMode):
    """Counts a loop's device kernels, host reads and host-to-device copies outside given modules.

    Args:
        device: the device the loop's state lives on (``"meta"``, ``"cuda"``, ``"cpu"``).
        exclude: modules (e.g. the network) whose own operations are not counted.

    Attributes:
        kernels: Counter of operation names that produced a tensor on ``device`` (views excluded).
        host_reads: names of operations that read a ``device`` tensor back to the host.
        host_copies: names of operations that copied host data onto ``device`` (0-dim CPU tensors
            included: on CUDA they are copies too).
    """

    def __init__(self, device: str | torch.device, exclude: Iterable[nn.Module] = ()) -> None:
        super().__init__()
        self.device = torch.device(device)
        self.kernels: Counter[str] = Counter()
        self.host_reads: list[str] = []
        self.host_copies: list[str] = []
        self._inside = 0
        self._hooks = []
        for module in exclude:
            self._hooks.append(module.register_forward_pre_hook(self._enter))
            self._hooks.append(module.register_forward_hook(self._leave))

    def _enter(self, *args: Any) -> None:
        self._inside += 1

    def _leave(self, *args: Any) -> None:
        self._inside -= 1

    def remove(self) -> None:
        """Removes the hooks on the excluded modules."""
        for hook in self._hooks:
            hook.remove()
        self._hooks = []

    def _on_device(self, tensor: torch.Tensor) -> bool:
        return tensor.device.type == self.device.type

    def __torch_dispatch__(self, func: Any, types: Sequence[type], args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        name = func.overloadpacket.__name__
        inputs = _tensors(list(args) + list(kwargs.values()))
        if not self._inside and name in _HOST_READS and any(self._on_device(t) for t in inputs):
            self.host_reads.append(name)
            if self.device.type == "meta":  # a meta tensor has no value: answer a placeholder and carry on
                if name == "nonzero":
                    return torch.empty((0, inputs[0].ndim), dtype=torch.long, device=self.device)
                return 0 if name in ("_local_scalar_dense", "item") else False
        out = func(*args, **kwargs)
        if self._inside:
            return out
        outputs = [t for t in _tensors(out) if self._on_device(t)]
        if not outputs:
            return out
        if name in _COPIES and any(t.device.type == "cpu" for t in inputs) and self.device.type != "cpu":
            self.host_copies.append(name)
        elif not func.is_view:
            self.kernels[name] += 1
        return out

    @property
    def kernel_count(self) -> int:
        """Total device kernels counted."""
        return sum(self.kernels.values())


__all__ = ["LoopAudit"]
