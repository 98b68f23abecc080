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

from flowbridge._utils import check_state
from flowbridge.errors import ArgumentError

__all__ = ["bures_wasserstein2", "bw2_uvp", "cbw2_uvp", "mixture_moments", "sample_moments"]


def _sqrtm_psd(a: Tensor) -> Tensor:
    """Symmetric square root of (batched) positive semi-definite matrices (negative round-off clipped)."""
    evals, evecs = torch.linalg.eigh(a)
    return (evecs * evals.clamp_min(0).sqrt()[..., None, :]) @ evecs.transpose(-1, -2)


def _check_moments(mean: Tensor, cov: Tensor, name: str) -> None:
    if not isinstance(mean, Tensor) or not isinstance(cov, Tensor):
        raise ArgumentError(f"{name}: mean and covariance must be tensors")
    if mean.ndim < 1 or cov.ndim != mean.ndim + 1 or cov.shape[-2:] != (mean.shape[-1], mean.shape[-1]):
        raise ArgumentError(
            f"{name}: expected mean (..., d) and covariance (..., d, d); got {tuple(mean.shape)} and {tuple(cov.shape)}"
        )
    for what, value in (("mean", mean), ("covariance", cov)):
        if not value.is_floating_point():
            raise ArgumentError(f"{name}: {what} must be a real floating-point tensor; got dtype {value.dtype}")
        if value.device.type != "meta" and not bool(torch.isfinite(value).all()):  # sync-ok: a metric, once
            raise ArgumentError(f"{name}: {what} must be finite; it contains NaN or inf")
    if cov.device.type != "meta" and cov.numel():
        evals = torch.linalg.eigvalsh(cov.to(torch.float64))
        tol = 1e-8 * float(evals.abs().max().clamp_min(1.0))  # sync-ok: a metric, once
        if not bool((evals >= -tol).all()):
            raise ArgumentError(f"{name}: covariance must be positive semi-definite; smallest eigenvalue {float(evals.min()):.3g}")


def bures_wasserstein2(mean_a: Tensor, cov_a: Tensor, mean_b: Tensor, cov_b: Tensor) -> Tensor:
    r"""Squared Bures–Wasserstein distance, batched over leading dimensions.

    Args:
        mean_a: (..., d) mean of the first distribution.
        cov_a: (..., d, d) covariance of the first distribution.
        mean_b: (..., d) mean of the second distribution.
        cov_b: (..., d, d) covariance of the second distribution.

    Returns:
        (...) tensor of :math:`BW_2^2` values.
    """
    _check_moments(mean_a, cov_a, "first distribution")
    _check_moments(mean_b, cov_b, "second distribution")
    if mean_a.shape[-1] != mean_b.shape[-1]:
        raise ArgumentError(f"the two distributions have dimensions {mean_a.shape[-1]} and {mean_b.shape[-1]}")
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
        mean_model: (N, d) means of the model's conditionals.
        cov_model: (N, d, d) covariances of the model's conditionals.
        mean_true: (N, d) means of the true conditionals.
        cov_true: (N, d, d) (or (d, d), shared) covariances of the true conditionals.
        target_variance: :math:`\operatorname{Var}(Y) = \operatorname{tr}\operatorname{Cov}(Y)` of the target marginal.

    Raises:
        ValueError: for inconsistent shapes or a non-positive ``target_variance``.
    """
    if not isinstance(mean_model, Tensor) or not isinstance(mean_true, Tensor):
        raise ArgumentError(f"means must be tensors; got {type(mean_model).__name__} and {type(mean_true).__name__}")
    if mean_model.ndim != 2 or mean_true.shape != mean_model.shape:
        raise ArgumentError(
            f"means must both have shape (N, d); got {tuple(mean_model.shape)} and {tuple(mean_true.shape)}"
        )
    if cov_true.ndim == 2:
        cov_true = cov_true.expand(mean_true.shape[0], -1, -1)
    if not float(target_variance) > 0:  # sync-ok: a scalar normaliser, outside any loop
        raise ArgumentError(f"target_variance must be > 0; got {float(target_variance)}")
    value = bures_wasserstein2(mean_model, cov_model, mean_true, cov_true)
    return 100 * value.mean() / torch.as_tensor(target_variance, dtype=value.dtype, device=value.device)


def sample_moments(samples: Tensor) -> tuple[Tensor, Tensor]:
    r"""Mean and (unbiased) covariance of samples (..., M, d) along the sample axis ``-2``."""
    check_state(samples, "samples")
    if samples.ndim < 2 or samples.shape[-2] < 2:
        raise ArgumentError(f"samples must have shape (..., M, d) with M >= 2; got {tuple(samples.shape)}")
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
    for name, value in (("logits", logits), ("means", means), ("covs", covs)):
        check_state(value, name)
    if logits.ndim != 2 or means.shape[:2] != logits.shape or means.ndim != 3:
        raise ArgumentError(f"logits must be (B, K) and means (B, K, d); got {tuple(logits.shape)} and {tuple(means.shape)}")
    d = means.shape[-1]
    if covs.shape not in ((logits.shape[1], d, d), (*logits.shape, d, d)):
        raise ArgumentError(f"covs must be (K, d, d) or (B, K, d, d) = {(*logits.shape, d, d)}; got {tuple(covs.shape)}")
    dtype = torch.promote_types(torch.promote_types(logits.dtype, means.dtype), covs.dtype)
    logits, means, covs = logits.to(dtype), means.to(dtype), covs.to(dtype)
    w = torch.softmax(logits, dim=-1)
    mean = torch.einsum("bk,bkd->bd", w, means)
    centred = means - mean[:, None, :]
    within = torch.einsum("bk,kij->bij", w, covs) if covs.ndim == 3 else torch.einsum("bk,bkij->bij", w, covs)
    return mean, within + torch.einsum("bk,bki,bkj->bij", w, centred, centred)
