"""Neural networks conditioned on time (and optionally a class label) for fields and scores."""

from flowbridge.nets.embedding import SinusoidalTimeEmbedding
from flowbridge.nets.mlp import MLP
from flowbridge.nets.unet import UNet

__all__ = ["MLP", "SinusoidalTimeEmbedding", "UNet"]
