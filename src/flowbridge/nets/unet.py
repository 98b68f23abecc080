"""A small time- (and optionally class-) conditioned U-Net for square images."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from flowbridge._utils import check_state
from flowbridge.errors import ArgumentError
from flowbridge.nets.embedding import (
    SinusoidalTimeEmbedding,
    batch_times,
    check_input_dtype,
    null_or_labels,
)


def _num_groups(channels: int) -> int:
    """The GroupNorm group count: the largest divisor of ``channels`` that is at most 8.

    This is ``min(8, channels)`` whenever that divides ``channels``; otherwise GroupNorm would
    reject it, so the next smaller divisor is used.
    """
    for groups in range(min(8, channels), 0, -1):
        if channels % groups == 0:
            return groups
    return 1


class ResBlock(nn.Module):
    """GroupNorm-SiLU-Conv twice, with the conditioning embedding added as a per-channel bias.

    Args:
        in_channels: input channels.
        out_channels: output channels; the residual path uses a 1x1 conv when they differ.
        embed_dim: width of the conditioning embedding.
        dropout: dropout probability before the second convolution.
    """

    def __init__(self, in_channels: int, out_channels: int, embed_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(_num_groups(in_channels), in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.embed = nn.Linear(embed_dim, out_channels)
        self.norm2 = nn.GroupNorm(_num_groups(out_channels), out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.skip = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        """Applies the block to ``x`` (B, C_in, H, W) given ``emb`` (B, embed_dim)."""
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.embed(F.silu(emb))[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return h + self.skip(x)


class UNet(nn.Module):
    """A compact U-Net ``f(x, t[, y])`` for (C, S, S) images, e.g. 8x8 toys or 28x28 MNIST.

    Level ``i`` works at ``base_channels * channel_mults[i]`` channels and resolution
    ``image_size / 2**i``; levels are joined by stride-2 convolutions on the way down and by
    nearest-neighbour upsampling on the way up, with one skip connection per level. No
    convolution follows the upsampling: the first 3x3 convolution of the next residual block
    already mixes the repeated pixels, and at these sizes a separate one was a quarter of the
    network's cost. ``image_size`` must therefore be divisible by ``2 ** (len(channel_mults) - 1)``:
    8x8 works with ``channel_mults=(1, 2)`` (8 -> 4) and 28x28 with ``(1, 2, 2)`` (28 -> 14 -> 7).

    The time (through :class:`SinusoidalTimeEmbedding` and a two-layer MLP) and, with
    ``num_classes`` set, a learned class embedding are summed into one vector that every
    :class:`ResBlock` turns into a per-channel bias. The class embedding has ``num_classes + 1``
    rows; index ``num_classes`` (:attr:`null_label`) is the null label for classifier-free
    guidance, and ``y=None`` means the null label for the whole batch.

    Args:
        in_channels: channels of the input images.
        image_size: height and width of the (square) input images.
        base_channels: channels of the first level.
        channel_mults: per-level channel multipliers; their number sets the number of levels.
        num_res_blocks: residual blocks per level, on each side of the U.
        time_embed_dim: width of the conditioning embedding.
        num_classes: number of classes for class conditioning, or None for an unconditional net.
        out_channels: output channels; ``in_channels`` when None.
        dropout: dropout probability inside the residual blocks.

    Raises:
        ValueError: if a size is not positive, or ``image_size`` cannot be halved
            ``len(channel_mults) - 1`` times exactly.
    """

    def __init__(
        self,
        in_channels: int = 1,
        image_size: int = 8,
        base_channels: int = 32,
        channel_mults: Sequence[int] = (1, 2),
        num_res_blocks: int = 1,
        time_embed_dim: int = 128,
        num_classes: int | None = None,
        out_channels: int | None = None,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        channel_mults = tuple(int(m) for m in channel_mults)
        for name, value in (
            ("in_channels", in_channels),
            ("image_size", image_size),
            ("base_channels", base_channels),
            ("num_res_blocks", num_res_blocks),
            ("time_embed_dim", time_embed_dim),
        ):
            if value < 1:
                raise ArgumentError(f"{name} must be at least 1; got {value}")
        if not channel_mults or min(channel_mults) < 1:
            raise ArgumentError(f"channel_mults must be a non-empty sequence of positive ints; got {channel_mults}")
        if out_channels is not None and out_channels < 1:
            raise ArgumentError(f"out_channels must be at least 1 or None; got {out_channels}")
        if num_classes is not None and num_classes < 1:
            raise ArgumentError(f"num_classes must be at least 1 or None; got {num_classes}")
        if not 0.0 <= dropout < 1.0:
            raise ArgumentError(f"dropout must lie in [0, 1); got {dropout}")
        factor = 2 ** (len(channel_mults) - 1)
        if image_size % factor:
            raise ArgumentError(
                f"image_size={image_size} must be divisible by 2**(len(channel_mults) - 1) = {factor} "
                f"so that every downsampling halves it exactly; got channel_mults={channel_mults}"
            )
        self.in_channels = in_channels
        self.image_size = image_size
        self.out_channels = in_channels if out_channels is None else out_channels
        self.num_classes = num_classes

        self.time_embed = nn.Sequential(
            SinusoidalTimeEmbedding(base_channels),
            nn.Linear(base_channels, time_embed_dim),
            nn.SiLU(),
            nn.Linear(time_embed_dim, time_embed_dim),
        )
        self.class_embed = nn.Embedding(num_classes + 1, time_embed_dim) if num_classes is not None else None

        widths = [base_channels * m for m in channel_mults]
        self.stem = nn.Conv2d(in_channels, widths[0], 3, padding=1)

        self.down_blocks = nn.ModuleList()
        self.downsamples = nn.ModuleList()
        ch = widths[0]
        for level, width in enumerate(widths):
            blocks = nn.ModuleList()
            for _ in range(num_res_blocks):
                blocks.append(ResBlock(ch, width, time_embed_dim, dropout))
                ch = width
            self.down_blocks.append(blocks)
            if level < len(widths) - 1:
                self.downsamples.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))

        self.mid = ResBlock(ch, ch, time_embed_dim, dropout)

        # Built deepest level first, the order in which forward() consumes them.
        self.up_blocks = nn.ModuleList()
        for level in reversed(range(len(widths))):
            width = widths[level]
            blocks = nn.ModuleList([ResBlock(ch + width, width, time_embed_dim, dropout)])
            ch = width
            for _ in range(num_res_blocks - 1):
                blocks.append(ResBlock(ch, ch, time_embed_dim, dropout))
            self.up_blocks.append(blocks)

        self.out_norm = nn.GroupNorm(_num_groups(ch), ch)
        self.out_conv = nn.Conv2d(ch, self.out_channels, 3, padding=1)

    @property
    def null_label(self) -> int | None:
        """The label index meaning "no class" (``num_classes``), or None if unconditional."""
        return self.num_classes

    def forward(self, x: Tensor, t: Tensor | float, y: Tensor | None = None) -> Tensor:
        """Evaluates the network.

        Args:
            x: images of shape (B, in_channels, image_size, image_size).
            t: times in [0, 1], a float or a tensor of shape () or (B,).
            y: long class labels of shape (B,) in ``[0, num_classes]``, or None for the null
                label. Must be None for an unconditional network.

        Returns:
            Outputs of shape (B, out_channels, image_size, image_size).

        Raises:
            ValueError: if ``x``, ``t`` or ``y`` has the wrong shape.
        """
        check_state(x)
        expected = (self.in_channels, self.image_size, self.image_size)
        if x.ndim != 4 or tuple(x.shape[1:]) != expected:
            raise ArgumentError(f"x must have shape (B, {', '.join(map(str, expected))}); got shape {tuple(x.shape)}")
        check_input_dtype(x, self.stem.weight)
        emb = self.time_embed(batch_times(t, x))
        labels = null_or_labels(y, self.num_classes, x.shape[0], x.device)
        if self.class_embed is not None and labels is not None:
            emb = emb + self.class_embed(labels)

        h = self.stem(x)
        skips: list[Tensor] = []
        for level, blocks in enumerate(self.down_blocks):
            for block in blocks:
                h = block(h, emb)
            skips.append(h)
            if level < len(self.downsamples):
                h = self.downsamples[level](h)

        h = self.mid(h, emb)

        for i, blocks in enumerate(self.up_blocks):
            h = torch.cat([h, skips.pop()], dim=1)
            for block in blocks:
                h = block(h, emb)
            if i < len(self.up_blocks) - 1:
                h = F.interpolate(h, scale_factor=2.0, mode="nearest")

        return self.out_conv(F.silu(self.out_norm(h)))
