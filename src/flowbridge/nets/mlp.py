"""A time- (and optionally class-) conditioned MLP for low-dimensional data."""

from __future__ import annotations

from torch import Tensor, nn

from flowbridge._utils import check_state
from flowbridge.errors import ArgumentError
from flowbridge.nets.embedding import (
    SinusoidalTimeEmbedding,
    batch_times,
    check_input_dtype,
    null_or_labels,
)


class MLP(nn.Module):
    """An MLP ``f(x, t[, y])`` with SiLU activations, used as a vector field, score or denoiser.

    The time goes through :class:`SinusoidalTimeEmbedding` and a two-layer MLP to a vector of
    width ``hidden``; a learned class embedding is added to it when ``num_classes`` is set. This
    conditioning vector is added to the hidden state before every activation, rather than only
    concatenated to the input, so that deep layers see ``t`` directly.

    With ``num_classes`` set, the class embedding has ``num_classes + 1`` rows: index
    ``num_classes`` (also :attr:`null_label`) is the null label that classifier-free guidance
    trains on by label dropout and uses for the unconditional prediction. ``y=None`` means the
    null label for the whole batch.

    Args:
        dim: dimension of the data ``x``.
        hidden: width of the hidden layers.
        depth: number of hidden layers (at least 1).
        time_embed_dim: number of sinusoidal time features.
        out_dim: output dimension; ``dim`` when None.
        num_classes: number of classes for class conditioning, or None for an unconditional net.

    Raises:
        ValueError: if a size is not positive.
    """

    def __init__(
        self,
        dim: int,
        hidden: int = 256,
        depth: int = 3,
        time_embed_dim: int = 64,
        out_dim: int | None = None,
        num_classes: int | None = None,
    ) -> None:
        super().__init__()
        for name, value in (("dim", dim), ("hidden", hidden), ("depth", depth), ("time_embed_dim", time_embed_dim)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise ArgumentError(f"{name} must be an integer; got {value!r}")
            if value < 1:
                raise ArgumentError(f"{name} must be at least 1; got {value}")
        if out_dim is not None and out_dim < 1:
            raise ArgumentError(f"out_dim must be at least 1 or None; got {out_dim}")
        if num_classes is not None and num_classes < 1:
            raise ArgumentError(f"num_classes must be at least 1 or None; got {num_classes}")
        self.dim = dim
        self.out_dim = dim if out_dim is None else out_dim
        self.num_classes = num_classes

        self.time_embed = nn.Sequential(
            SinusoidalTimeEmbedding(time_embed_dim),
            nn.Linear(time_embed_dim, hidden),
            nn.SiLU(),
            nn.Linear(hidden, hidden),
        )
        self.class_embed = nn.Embedding(num_classes + 1, hidden) if num_classes is not None else None
        self.input = nn.Linear(dim, hidden)
        self.hidden_layers = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(depth - 1))
        self.act = nn.SiLU()
        self.output = nn.Linear(hidden, self.out_dim)

    @property
    def null_label(self) -> int | None:
        """The label index meaning "no class" (``num_classes``), or None if unconditional."""
        return self.num_classes

    def forward(self, x: Tensor, t: Tensor | float, y: Tensor | None = None) -> Tensor:
        """Evaluates the network.

        Args:
            x: inputs of shape (B, dim).
            t: times in [0, 1], a float or a tensor of shape () or (B,).
            y: long class labels of shape (B,) in ``[0, num_classes]``, or None for the null
                label. Must be None for an unconditional network.

        Returns:
            Outputs of shape (B, out_dim).

        Raises:
            ValueError: if ``x``, ``t`` or ``y`` has the wrong shape.
        """
        check_state(x)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ArgumentError(f"x must have shape (B, {self.dim}); got shape {tuple(x.shape)}")
        check_input_dtype(x, self.input.weight)
        cond = self.time_embed(batch_times(t, x))
        labels = null_or_labels(y, self.num_classes, x.shape[0], x.device)
        if self.class_embed is not None and labels is not None:
            cond = cond + self.class_embed(labels)
        h = self.input(x)
        for layer in self.hidden_layers:
            h = layer(self.act(h + cond))
        return self.output(self.act(h + cond))
