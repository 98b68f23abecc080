r"""Bures–Wasserstein metrics for Schrödinger bridges / entropic OT (Korotin et al. 2021; Gushchin et al. 2023).

The Bures–Wasserstein distance between two distributions is the :math:`W_2` distance between the
Gaussians with their means and covariances:

.. math::
    BW_2^2(p, q) = |m_p - m_q|^2 + \operatorname{tr}\Sigma_p + \operatorname{tr}\Sigma_q
        - 2\operatorname{tr}\big(\Sigma_q^{1/2}\Sigma_p\Sigma_q^{1/2}\big)^{1/2}.

* :func:`bw2_uvp` — :math:`100\cdot BW_2^2(\hat p, q)/\operatorname{Var}(q)` (percent of the target's
  total variance :math:`\operatorname{Var}(q) = \operatorname{tr}\Sigma_q`);
* :func:`cbw2_uvp` — the conditional version of the entropic-OT benchmark:
  :math:`100\cdot \overline{BW_2^2(\hat\pi(\cdot\mid x), \pi(\cdot\mid x))}^{\,x}/\operatorname{Var}(Y)`.

Matrix square roots go through an eigendecomposition in float64; results come back in the promoted
dtype of the inputs.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["bures_wasserstein2", "bw2_uvp", "cbw2_uvp", "mixture_moments", "sample_moments"]


def _sqrtm_psd(a: Tensor) -> Tensor:
    """Symmetric square root of (batched) positive semi-definite matrices (negative round-off clipped)."""
    evals, evecs = torch.linalg.eigh(a)
    return (evecs * evals.clamp_min(0).sqrt()[..., None, :]) @ evecs.transpose(-1, -2)


def _check_moments(mean: Tensor, cov: Tensor, name: str) -> None:
    if not isinstance(mean, Tensor) or not isinstance(cov, Tensor):
        raise TypeError(f"{name}: mean and covariance must be tensors")
    if mean.ndim < 1 or cov.ndim != mean.ndim + 1 or cov.shape[-2:] != (mean.shape[-1], mean.shape[-1]):
        raise ValueError(
            f"{name}: expected mean (..., d) and covariance (..., d, d); got {tuple(mean.shape)} and {tuple(cov.shape)}"
        )


def bures_wasserstein2(mean_a: Tensor, cov_a: Tensor, mean_b: Tensor, cov_b: Tensor) -> Tensor:
    r"""Squared Bures–Wasserstein distance, batched over leading dimensions.

    Args:
        mean_a, cov_a: (..., d) and (..., d, d) moments of the first distribution.
        mean_b, cov_b: the same for the second.

    Returns:
        (...) tensor of :math:`BW_2^2` values.
    """
    _check_moments(mean_a, cov_a, "first distribution")
    _check_moments(mean_b, cov_b, "second distribution")
    if mean_a.shape[-1] != mean_b.shape[-1]:
        raise ValueError(f"the two distributions have dimensions {mean_a.shape[-1]} and {mean_b.shape[-1]}")
    dtype = torch.promote_types(mean_a.dtype, mean_b.dtype)
    ma, ca, mb, cb = (v.to(torch.float64) for v in (mean_a, cov_a, mean_b, cov_b))
    root_b = _sqrtm_psd(cb)
    cross = _sqrtm_psd(root_b @ ca @ root_b)
    trace = lambda m: m.diagonal(dim1=-2, dim2=-1).sum(-1)  # noqa: E731
    value = ((ma - mb) ** 2).sum(-1) + trace(ca) + trace(cb) - 2 * trace(cross)
    return value.clamp_min(0).to(dtype)


def bw2_uvp(mean_model: Tensor, cov_model: Tensor, mean_true: Tensor, cov_true: Tensor) -> Tensor:
    r"""BW2-UVP in percent: :math:`100\,BW_2^2(\text{model}, \text{true}) / \operatorname{tr}\Sigma_\text{true}`."""
    value = bures_wasserstein2(mean_model, cov_model, mean_true, cov_true)
    return 100 * value / cov_true.diagonal(dim1=-2, dim2=-1).sum(-1).to(value)


def cbw2_uvp(
    mean_model: Tensor, cov_model: Tensor, mean_true: Tensor, cov_true: Tensor, target_variance: float | Tensor
) -> Tensor:
    r"""cBW2-UVP in percent for a batch of test sources :math:`x_i`.

    .. math:: 100\cdot\frac{1}{N}\sum_i BW_2^2\big(\hat\pi(\cdot\mid x_i), \pi(\cdot\mid x_i)\big)\big/\operatorname{Var}(Y)

    Args:
        mean_model, cov_model: (N, d), (N, d, d) moments of the model's conditionals.
        mean_true, cov_true: (N, d), (N, d, d) (or (d, d), shared) moments of the true conditionals.
        target_variance: :math:`\operatorname{Var}(Y) = \operatorname{tr}\operatorname{Cov}(Y)` of the target marginal.

    Raises:
        ValueError: for inconsistent shapes or a non-positive ``target_variance``.
    """
    if mean_model.ndim != 2 or mean_true.shape != mean_model.shape:
        raise ValueError(
            f"means must both have shape (N, d); got {tuple(mean_model.shape)} and {tuple(mean_true.shape)}"
        )
    if cov_true.ndim == 2:
        cov_true = cov_true.expand(mean_true.shape[0], -1, -1)
    if not float(target_variance) > 0:  # sync-ok: a scalar normaliser, outside any loop
        raise ValueError(f"target_variance must be > 0; got {float(target_variance)}")
    value = bures_wasserstein2(mean_model, cov_model, mean_true, cov_true)
    return 100 * value.mean() / torch.as_tensor(target_variance, dtype=value.dtype, device=value.device)


def sample_moments(samples: Tensor) -> tuple[Tensor, Tensor]:
    r"""Mean and (unbiased) covariance of samples (..., M, d) along the sample axis ``-2``."""
    if samples.ndim < 2 or samples.shape[-2] < 2:
        raise ValueError(f"samples must have shape (..., M, d) with M >= 2; got {tuple(samples.shape)}")
    mean = samples.mean(-2)
    centred = samples - mean[..., None, :]
    cov = centred.transpose(-1, -2) @ centred / (samples.shape[-2] - 1)
    return mean, cov


def mixture_moments(logits: Tensor, means: Tensor, covs: Tensor) -> tuple[Tensor, Tensor]:
    r"""Mean and covariance of Gaussian mixtures with weights ``softmax(logits)``.

    Args:
        logits: (B, K) unnormalised log-weights.
        means: (B, K, d) component means.
        covs: (K, d, d) or (B, K, d, d) component covariances.

    Returns:
        mean (B, d) and covariance (B, d, d): :math:`\sum_k w_k(\Sigma_k + m_k m_k^\top) - m m^\top`.
    """
    w = torch.softmax(logits, dim=-1)
    mean = torch.einsum("bk,bkd->bd", w, means)
    centred = means - mean[:, None, :]
    within = torch.einsum("bk,kij->bij", w, covs) if covs.ndim == 3 else torch.einsum("bk,bkij->bij", w, covs)
    return mean, within + torch.einsum("bk,bki,bkj->bij", w, centred, centred)
