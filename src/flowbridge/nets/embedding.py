"""Time and class-label conditioning shared by the networks in :mod:`flowbridge.nets`."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from flowbridge._utils import as_time
from flowbridge.errors import ArgumentError


class SinusoidalTimeEmbedding(nn.Module):
    """Transformer-style sinusoidal features of a time ``t`` in [0, 1].

    ``t`` is multiplied by ``scale`` (1000 by default) before the sinusoids are taken: the
    frequencies ``max_period ** (-k / half)`` were designed for integer diffusion steps in
    ``[0, 1000)``, and without the rescaling times in [0, 1] would only excite the lowest
    frequencies, leaving the network nearly blind to ``t``.

    Args:
        dim: number of output features. An odd ``dim`` gets one trailing zero feature.
        max_period: the longest period of the sinusoids, in units of scaled time.
        scale: factor applied to ``t`` before the sinusoids.

    Raises:
        ValueError: if ``dim < 1`` or ``max_period <= 1``.
    """

    def __init__(self, dim: int, max_period: float = 10000.0, scale: float = 1000.0) -> None:
        super().__init__()
        if dim < 1:
            raise ArgumentError(f"dim must be at least 1; got {dim}")
        if max_period <= 1.0:
            raise ArgumentError(f"max_period must be greater than 1; got {max_period}")
        self.dim = dim
        self.max_period = float(max_period)
        self.scale = float(scale)

    def forward(self, t: Tensor) -> Tensor:
        """Embeds the times.

        Args:
            t: times of shape () or (B,).

        Returns:
            Features of shape (B, dim) (B = 1 for a scalar ``t``), on ``t``'s device and in
            ``t``'s dtype if it is floating (the default dtype otherwise).

        Raises:
            ValueError: if ``t`` has more than one dimension.
        """
        if not isinstance(t, Tensor):
            raise ArgumentError(f"t must be a tensor of shape () or (B,); got {type(t).__name__}")
        if t.ndim > 1:
            raise ArgumentError(f"t must have shape () or (B,); got shape {tuple(t.shape)}")
        out_dtype = t.dtype if t.is_floating_point() else torch.get_default_dtype()
        # Half-precision phases of up to 1000 rad would lose most of their fractional part, so
        # the sinusoids are always evaluated in at least float32 and cast at the end.
        work_dtype = torch.promote_types(out_dtype, torch.float32)
        t = t.reshape(-1).to(work_dtype)
        half = self.dim // 2
        exponents = torch.arange(half, device=t.device, dtype=work_dtype) / max(half, 1)
        freqs = torch.exp(-math.log(self.max_period) * exponents)
        phases = (self.scale * t)[:, None] * freqs[None, :]
        emb = torch.cat([torch.cos(phases), torch.sin(phases)], dim=-1)
        if self.dim % 2:
            emb = torch.nn.functional.pad(emb, (0, 1))
        return emb.to(out_dtype)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, max_period={self.max_period}, scale={self.scale}"


def check_input_dtype(x: Tensor, weight: Tensor) -> None:
    """Raises a TypeError if ``x``'s dtype differs from the network's weights outside autocast.

    Metadata only; torch's own error ("mat1 and mat2 must have the same dtype") names neither the
    argument nor the fix.
    """
    if x.dtype != weight.dtype and not torch.is_autocast_enabled(x.device.type):
        raise ArgumentError(
            f"x has dtype {x.dtype} but the network's weights are {weight.dtype}; convert one to the other "
            "(net.to(x.dtype)) or evaluate under autocast (flowbridge.fields.AutocastField)"
        )


def batch_times(t: Tensor | float, x: Tensor) -> Tensor:
    """Returns ``t`` as a (B,) tensor on ``x``'s device and dtype, B = ``x.shape[0]``.

    Args:
        t: a float, or a tensor of shape (), (1,) or (B,).
        x: the network input of shape (B, ...).

    Raises:
        ValueError: if ``t``'s shape does not broadcast to (B,).
    """
    return as_time(t, x).reshape(-1).expand(x.shape[0])


def null_or_labels(y: Tensor | None, num_classes: int | None, batch: int, device: torch.device) -> Tensor | None:
    """Validates class labels, substituting the null label ``num_classes`` when ``y`` is None.

    Args:
        y: integer labels of shape (B,) with values in ``[0, num_classes]`` (``num_classes``
            itself is the null, unconditional label), or None for the null label everywhere.
        num_classes: number of real classes, or None for an unconditional network.
        batch: the batch size B of the network input.
        device: the device of the network input.

    Returns:
        A (B,) long tensor of labels, or None for an unconditional network.

    Raises:
        ValueError: if labels are given to an unconditional network, or have the wrong shape or
            dtype.
    """
    if num_classes is None:
        if y is not None:
            raise ArgumentError("y was given but the network was built without num_classes")
        return None
    if y is None:
        return torch.full((batch,), num_classes, dtype=torch.long, device=device)
    if y.shape != (batch,):
        raise ArgumentError(f"y must have shape ({batch},) to match x; got shape {tuple(y.shape)}")
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise ArgumentError(f"y must hold integer class labels; got dtype {y.dtype}")
    # Only CPU labels are range-checked: on an accelerator the check would force a host sync, and
    # nn.Embedding reports out-of-range indices there anyway.
    if y.device.type == "cpu" and y.numel() and bool(((y < 0) | (y > num_classes)).any()):
        raise ArgumentError(
            f"y must lie in [0, {num_classes}] ({num_classes} is the null label); "
            f"got values in [{int(y.min())}, {int(y.max())}]"
        )
    return y.to(device=device, dtype=torch.long)
