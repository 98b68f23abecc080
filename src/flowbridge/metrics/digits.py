r"""A Fréchet distance for 8x8 digits, in the features of a small classifier (an FID for the digits).

FID (Heusel et al. 2017) compares two image sets through the Gaussians fitted to their Inception
features: :math:`FD^2 = |\mu_a - \mu_b|^2 + \operatorname{tr}(\Sigma_a + \Sigma_b - 2(\Sigma_b^{1/2}\Sigma_a
\Sigma_b^{1/2})^{1/2})`, the squared Bures–Wasserstein distance of the two fits
(:func:`~flowbridge.metrics.bures_wasserstein2`). Inception knows nothing of 8x8 digits, so the
features here are those of a small classifier trained on scikit-learn's digits: an MLP
64 -> 128 (ReLU) -> 32 (tanh, the features) -> 10 classes.

How the classifier was made (:func:`train_digits_classifier`, run once and stored in the package as
``digits_classifier.pt``, ~50 KB; ``tests/metrics/test_digits.py`` re-trains it and checks that the
stored weights are what this function gives): the training split of
:class:`~flowbridge.training.Digits` with its default seed (1600 images; the 197 held-out images are
never seen, so held-out accuracy measures it: 0.97-0.99), pixels scaled to [-1, 1] as the recipes
see them, Gaussian pixel noise of standard deviation 0.1 added at each step (so that features of
slightly noisy samples do not jump), full-batch Adam (lr 3e-3, weight decay 1e-4) for 400 steps in
float64 from a seeded initialisation; nothing is downloaded.

Scores depend on the number of samples (the covariance estimate is biased): compare models at the
same ``n`` and against :func:`digits_frechet_floor`, the distance between two sets of real digits of
that size.
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch
from torch import Tensor, nn

from flowbridge.errors import ArgumentError
from flowbridge.metrics.bridges import bures_wasserstein2, sample_moments

__all__ = ["digits_features", "digits_frechet_distance", "digits_frechet_floor", "frechet_distance"]

WEIGHTS = Path(__file__).with_name("digits_classifier.pt")
FEATURES = 32


class DigitsClassifier(nn.Module):
    """MLP 64 -> 128 -> 32 -> 10 on 8x8 digits in [-1, 1]; :meth:`features` is the 32-unit layer."""

    def __init__(self) -> None:
        super().__init__()
        self.hidden = nn.Linear(64, 128)
        self.feature = nn.Linear(128, FEATURES)
        self.head = nn.Linear(FEATURES, 10)

    def features(self, x: Tensor) -> Tensor:
        """(N, 32) features of (N, 1, 8, 8) or (N, 64) images."""
        return torch.tanh(self.feature(torch.relu(self.hidden(x.reshape(x.shape[0], -1)))))

    def forward(self, x: Tensor) -> Tensor:
        """(N, 10) class logits."""
        return self.head(self.features(x))


def train_digits_classifier(images: Tensor, labels: Tensor, steps: int = 400, seed: int = 0) -> DigitsClassifier:
    """Trains the classifier as described in the module docstring (deterministic; a few seconds).

    Args:
        images: (N, 1, 8, 8) training images in [-1, 1] (the stored weights used the training
            split of :class:`~flowbridge.training.Digits` with its default seed).
        labels: (N,) their classes.
        steps: full-batch Adam steps.
        seed: seed of the initialisation and of the pixel noise.
    """
    x = images.reshape(images.shape[0], -1).double()
    y = labels
    g = torch.Generator().manual_seed(seed)
    net = DigitsClassifier().double()
    with torch.no_grad():
        for layer in (net.hidden, net.feature, net.head):
            bound = layer.in_features**-0.5  # nn.Linear's default range, from our own generator
            layer.weight.uniform_(-bound, bound, generator=g)
            layer.bias.uniform_(-bound, bound, generator=g)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3, weight_decay=1e-4)
    for _ in range(steps):
        noisy = x + 0.1 * torch.randn(x.shape, generator=g, dtype=x.dtype)
        loss = nn.functional.cross_entropy(net(noisy), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return net.eval()


@functools.lru_cache(maxsize=1)
def _stored() -> DigitsClassifier:
    net = DigitsClassifier().double()
    net.load_state_dict(torch.load(WEIGHTS, map_location="cpu", weights_only=True))
    return net.eval().requires_grad_(False)


def digits_classifier() -> DigitsClassifier:
    """The stored classifier (float64, CPU, no gradients), loaded once per process."""
    return _stored()


def digits_features(x: Tensor) -> Tensor:
    """(N, 32) float64 features of (N, 1, 8, 8) (or (N, 64)) digit images in [-1, 1], on ``x``'s device."""
    if not isinstance(x, Tensor) or not x.is_floating_point():
        raise ArgumentError(f"x must be a floating-point tensor of digit images; got {getattr(x, 'dtype', type(x).__name__)}")
    if x.ndim < 2 or x[0].numel() != 64 or x.shape[0] < 2:
        raise ArgumentError(f"x must hold at least 2 images of 8x8 pixels, shape (N, 1, 8, 8) or (N, 64); got {tuple(x.shape)}")
    net = digits_classifier()
    with torch.no_grad():
        return net.to(x.device).features(x.reshape(x.shape[0], 64).double())


def frechet_distance(features_a: Tensor, features_b: Tensor) -> Tensor:
    r"""Squared Fréchet distance between the Gaussian fits of two feature sets (N, d) and (M, d).

    :math:`|\mu_a - \mu_b|^2 + \operatorname{tr}\Sigma_a + \operatorname{tr}\Sigma_b
    - 2\operatorname{tr}(\Sigma_b^{1/2}\Sigma_a\Sigma_b^{1/2})^{1/2}` with unbiased covariances
    (FID's formula), computed in float64.
    """
    for name, f in (("features_a", features_a), ("features_b", features_b)):
        if not isinstance(f, Tensor) or f.ndim != 2 or f.shape[0] < 2:
            raise ArgumentError(f"{name} must be a (N, d) tensor with N >= 2; got {getattr(f, 'shape', type(f).__name__)}")
    if features_a.shape[1] != features_b.shape[1]:
        raise ArgumentError(f"the feature sets have dimensions {features_a.shape[1]} and {features_b.shape[1]}")
    ma, ca = sample_moments(features_a.double())
    mb, cb = sample_moments(features_b.to(features_a.device).double())
    return bures_wasserstein2(ma, ca, mb, cb)


@functools.lru_cache(maxsize=1)
def _all_digits() -> Tensor:
    from sklearn.datasets import load_digits

    data = torch.from_numpy(load_digits().data).double()
    return (data / 8.0 - 1.0).reshape(-1, 1, 8, 8)


def digits_frechet_distance(x: Tensor, reference: Tensor | None = None) -> Tensor:
    """Squared Fréchet distance between digit images ``x`` and ``reference`` in the classifier's features.

    Args:
        x: (N, 1, 8, 8) images in [-1, 1] (e.g. model samples).
        reference: (M, 1, 8, 8) images; default: all 1797 scikit-learn digits.

    Returns:
        A float64 scalar tensor (0 for identical statistics; grows with the mismatch).
    """
    ref = _all_digits() if reference is None else reference
    return frechet_distance(digits_features(x.detach()), digits_features(ref.detach().to(x.device)))


def digits_frechet_floor(n: int, *, repeats: int = 5, generator: torch.Generator | None = None) -> tuple[float, float]:
    """Mean and standard deviation of :func:`digits_frechet_distance` between ``n`` real digits
    (drawn without replacement) and all digits: the value a perfect model scores at that ``n``."""
    data = _all_digits()
    if isinstance(n, bool) or not isinstance(n, int) or not 2 <= n <= data.shape[0]:
        raise ArgumentError(f"n must be an integer in [2, {data.shape[0]}]; got {n!r}")
    g = generator or torch.Generator().manual_seed(0)
    values = torch.stack([
        digits_frechet_distance(data[torch.randperm(data.shape[0], generator=g)[:n]]) for _ in range(repeats)
    ])
    return float(values.mean()), float(values.std()) if repeats > 1 else 0.0
