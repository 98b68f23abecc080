r"""The ensemble Kalman update shared by ``enkg`` and ``ensemble`` (forward evaluations only).

For one group of :math:`P` members with data estimates :math:`\hat x^{(j)}` and forward values
:math:`G^{(j)} = A(\hat x^{(j)})`, the statistical linearisation of :math:`A` over the group gives the
Kalman update

.. math:: \delta^{(j)} = C_{xG}\,(C_{GG} + \gamma I)^{-1}\,(y - G^{(j)}),

evaluated in the :math:`P`-dimensional ensemble space: with :math:`B = \Delta x/\sqrt{P-1}`,
:math:`E = \Delta G/\sqrt{P-1}` (rows are member deviations), Woodbury gives
:math:`\delta^{(j)} = B^T (E E^T + \gamma I)^{-1} E\,(y - G^{(j)})`, a :math:`P \times P` solve per group
whatever the dimension of :math:`x` and :math:`y`. Groups never mix.
"""

from __future__ import annotations

from torch import Tensor
import torch


def ensemble_kalman_shift(x1_hat: Tensor, forward_values: Tensor, y: Tensor, gamma: float) -> Tensor:
    """Kalman shifts for every member.

    Args:
        x1_hat: (G, P, *shape) member data estimates.
        forward_values: (G, P, *out_shape) their forward-model values.
        y: (*out_shape) the observation.
        gamma: the observation-error variance used in the gain (> 0).

    Returns:
        (G, P, *shape) shifts :math:`\\delta^{(j)}`.
    """
    g, p = x1_hat.shape[:2]
    xs = x1_hat.reshape(g, p, -1)
    gs = forward_values.reshape(g, p, -1)
    scale = (p - 1) ** -0.5
    b = (xs - xs.mean(1, keepdim=True)) * scale
    e = (gs - gs.mean(1, keepdim=True)) * scale
    residual = y.reshape(1, 1, -1) - gs  # (G, P, m)
    eye = torch.eye(p, dtype=xs.dtype, device=xs.device)
    system = e @ e.transpose(1, 2) + gamma * eye
    coeffs = torch.linalg.solve(system, e @ residual.transpose(1, 2))  # (G, P, P_j)
    return (coeffs.transpose(1, 2) @ b).reshape(x1_hat.shape)


def localized_kalman_shift(
    x1_hat: Tensor, forward_values: Tensor, y: Tensor, gamma: float, bandwidth: float
) -> Tensor:
    r"""Kalman shifts from a statistical linearisation of the forward map *around each member*.

    Member :math:`j` weighs the group by a Gaussian kernel in :math:`\hat x`,
    :math:`w_{jk} \propto \exp(-\|\hat x^{(j)} - \hat x^{(k)}\|^2 / 2h^2)`, and uses the weighted
    deviations :math:`B_j = \sqrt{w_{j\cdot}}\,(\hat x - \bar x_j)`, :math:`E_j = \sqrt{w_{j\cdot}}\,(G - \bar G_j)`
    in the update of :func:`ensemble_kalman_shift`:

    .. math:: \delta^{(j)} = B_j^T (E_j E_j^T + \gamma I)^{-1} E_j\,(y - G^{(j)}).

    With :math:`h \to \infty` this is the global update (up to :math:`P` against :math:`P - 1` in the
    normalisation). A finite :math:`h` keeps members in different modes of the posterior from averaging
    their linearisations: for an even map such as :math:`|Ax|^2`, members at :math:`x` and :math:`-x` have
    opposite slopes, and the global fit cancels them. The bandwidth is ``bandwidth`` times the group's
    median distance between members, so the kernel adapts as the ensemble contracts.

    Each member solves an :math:`m \times m` system (its weighted covariance of :math:`G`) when the
    observation has fewer dimensions than the group has members, and otherwise the equivalent
    :math:`P \times P` system built from the group's Gram matrix of :math:`G`; neither forms an
    :math:`n \times m` matrix.

    Args:
        x1_hat: (G, P, *shape) member data estimates.
        forward_values: (G, P, *out_shape) their forward-model values.
        y: (*out_shape) the observation.
        gamma: the observation-error variance used in the gain (> 0).
        bandwidth: kernel width relative to the median member distance (> 0).

    Returns:
        (G, P, *shape) shifts :math:`\delta^{(j)}`.
    """
    g, p = x1_hat.shape[:2]
    xs = x1_hat.reshape(g, p, -1)
    gs = forward_values.reshape(g, p, -1)
    d2 = torch.cdist(xs, xs).square()  # (G, P, P)
    off_diagonal = ~torch.eye(p, dtype=torch.bool, device=xs.device)
    scale2 = d2[:, off_diagonal].median(dim=1).values.clamp_min(torch.finfo(xs.dtype).tiny)  # (G,)
    weights = torch.softmax(-d2 / (2 * bandwidth**2 * scale2[:, None, None]), dim=-1)  # w[j, k]
    # Deviations are invariant to a common shift of G; centring first keeps float32 Gram sums exact enough.
    gc = gs - gs.mean(1, keepdim=True)
    mean_gc = weights @ gc  # Gbar_j, shifted like gc
    residual = y.reshape(1, 1, -1) - gs  # r_j, (G, P, m)
    m = gs.shape[-1]
    if m < p:
        # s_j = (C_GG,j + gamma I)^-1 r_j with C_GG,j the m x m weighted covariance; then
        # delta_j = sum_k w_jk (x_k - xbar_j) (g_k - Gbar_j).s_j.
        c_gg = torch.einsum("gjk,gkm,gkl->gjml", weights, gc, gc) - mean_gc[..., :, None] * mean_gc[..., None, :]
        eye_m = torch.eye(m, dtype=xs.dtype, device=xs.device)
        s = torch.linalg.solve(c_gg + gamma * eye_m, residual[..., None])[..., 0]
        a = weights * (s @ gc.transpose(1, 2) - (mean_gc * s).sum(-1, keepdim=True))
    else:
        # The same update through the P x P system of each member (Woodbury), from the Gram matrix
        # K of G: (g_k - Gbar_j).(g_l - Gbar_j) = K_kl - (wK)_jl - (wK)_jk + (w K w^T)_jj.
        root = weights.sqrt()
        gram = gc @ gc.transpose(1, 2)
        wk = weights @ gram
        wkw = (wk * weights).sum(-1)
        centred = gram[:, None] - wk[:, :, None, :] - wk[:, :, :, None] + wkw[:, :, None, None]  # (G, P_j, P_k, P_l)
        system = root[:, :, :, None] * centred * root[:, :, None, :]
        system = system + gamma * torch.eye(p, dtype=xs.dtype, device=xs.device)
        proj = residual @ gc.transpose(1, 2) - (mean_gc * residual).sum(-1, keepdim=True)  # (g_k - Gbar_j).r_j
        a = torch.linalg.solve(system, (root * proj)[..., None])[..., 0] * root
    mean_x = weights @ xs
    return (a @ xs - a.sum(-1, keepdim=True) * mean_x).reshape(x1_hat.shape)


def ensemble_gradient(x: Tensor, forward_values: Tensor, weighted_residual: Tensor, ridge: float = 1e-6) -> Tensor:
    r"""Derivative-free :math:`J^T r` for every member from the group's statistical linearisation.

    Least squares over the group's deviations :math:`D_x` (P x n) and :math:`D_G` (P x m) gives
    :math:`J \approx D_G^T D_x (D_x^T D_x + \lambda I)^{-1}`, hence (push-through identity)
    :math:`J^T r = D_x^T (D_x D_x^T + \lambda I)^{-1} D_G\, r`: a P x P solve per group. Exact when the
    map is affine and the members span its input directions.

    Args:
        x: (G, P, *shape) member states (the map's inputs).
        forward_values: (G, P, *out_shape) the map's outputs.
        weighted_residual: (G, P, *out_shape) the vectors :math:`r^{(j)}` (e.g. :math:`\Gamma^{-1}(y - G^{(j)})`).
        ridge: :math:`\lambda` relative to the mean squared deviation.

    Returns:
        (G, P, *shape) approximations of :math:`J^T r^{(j)}`.
    """
    g, p = x.shape[:2]
    xs = x.reshape(g, p, -1)
    gs = forward_values.reshape(g, p, -1)
    dx = xs - xs.mean(1, keepdim=True)
    dg = gs - gs.mean(1, keepdim=True)
    rs = weighted_residual.reshape(g, p, -1)
    n = xs.shape[-1]
    # lambda = ridge x mean squared deviation per member: trace(D_x D_x^T) / P = trace(D_x^T D_x) / P.
    lam = (ridge * dx.pow(2).sum((1, 2)) / p).clamp_min(torch.finfo(x.dtype).tiny)
    if n < p:  # the same J^T r through the n x n system (D_x^T D_x + lambda I)^{-1} D_x^T D_G r: cheaper
        eye_n = torch.eye(n, dtype=xs.dtype, device=xs.device)
        sol = torch.linalg.solve(dx.transpose(1, 2) @ dx + lam[:, None, None] * eye_n, (dx.transpose(1, 2) @ dg) @ rs.transpose(1, 2))
        return sol.transpose(1, 2).reshape(x.shape)
    gram = dx @ dx.transpose(1, 2)  # (G, P, P)
    eye = torch.eye(p, dtype=xs.dtype, device=xs.device)
    coeffs = torch.linalg.solve(gram + lam[:, None, None] * eye, dg @ rs.transpose(1, 2))
    return (coeffs.transpose(1, 2) @ dx).reshape(x.shape)
