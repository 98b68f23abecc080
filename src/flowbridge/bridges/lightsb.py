r"""LightSB: the Schrödinger bridge with a Gaussian-mixture potential (Korotin et al., ICLR 2024).

Conventions: the source :math:`x \sim p_0` sits at :math:`t = 0`, the target :math:`y \sim p_1` at
:math:`t = 1`, and the reference process is Brownian motion of variance :math:`\varepsilon`, so the
entropic plan is :math:`\pi(x, y) \propto p_0(x)\,\exp(\langle x, y\rangle/\varepsilon)\,v(y)/C(x)`
for an *adjusted potential* :math:`v`. LightSB takes

.. math::
    v(y) = \sum_k \alpha_k\,N(y \mid r_k, \varepsilon S_k), \qquad
    C(x) = \int e^{\langle x, y\rangle/\varepsilon} v(y)\,dy
         = \sum_k \alpha_k \exp\Big(\frac{x^\top S_k x + 2 r_k^\top x}{2\varepsilon}\Big),

and minimises :math:`E_{p_0}\log C(x) - E_{p_1}\log v(y)` (the KL between the true and the model
plan up to a constant). Everything else is closed form:

* plan: :math:`\pi(y\mid x) = \sum_k w_k(x)\,N(y \mid r_k + S_k x, \varepsilon S_k)` with logits
  :math:`\log\alpha_k + (x^\top S_k x + 2 r_k^\top x)/(2\varepsilon)`;
* drift of the bridge SDE :math:`dX = b\,dt + \sqrt\varepsilon\,dW`: with :math:`\tau = 1 - t`,
  :math:`M_k = t S_k + \tau I` and :math:`Q_k = M_k^{-1}`,

  .. math::
      b(x, t) = \sum_k \omega_k(x, t)\,Q_k\big(r_k + (S_k - I)x\big),\quad
      \log\omega_k \simeq \log\alpha_k - \tfrac12\log\det M_k
        + \tfrac{1}{2\varepsilon}\big[x^\top Q_k (S_k - I) x + 2 x^\top Q_k r_k - t\,r_k^\top Q_k r_k\big].

  (Derivation: :math:`b = \varepsilon\nabla_x\log h`, :math:`h(x, t) = \int N(y\mid x, \tau\varepsilon I)
  e^{|y|^2/2\varepsilon} v(y)\,dy`, a Gaussian integral per component.) At :math:`t = 0` this is
  :math:`E[y\mid x] - x`, at :math:`t = 1` :math:`\varepsilon\nabla\log(e^{|x|^2/2\varepsilon}v(x))`.

``covariance="diagonal"`` (the paper's choice) stores :math:`\log S_k` per coordinate;
``covariance="full"`` stores a Cholesky factor of each :math:`S_k` and represents any Gaussian-to-
Gaussian bridge (one potential) or the mixture benchmark pairs exactly.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from dataclasses import field as dataclass_field

import torch
from torch import Tensor, nn

from flowbridge._utils import as_time, expand_like
from flowbridge.errors import ArgumentError
from flowbridge.fields.bridge import BridgeField, check_eps
from flowbridge.random import RandomSource, rand, randn_like
from flowbridge.samplers.base import SamplingError

COVARIANCES = ("diagonal", "full")


@dataclass(frozen=True)
class ConditionalMixture:
    r"""The Gaussian mixture :math:`\pi(y \mid x)` for a batch of sources.

    Attributes:
        logits: (B, K) unnormalised log-weights.
        means: (B, K, d) component means :math:`r_k + S_k x`.
        scale_tril: (K, d, d) Cholesky factors of the component covariances :math:`\varepsilon S_k`.
    """

    logits: Tensor
    means: Tensor
    scale_tril: Tensor


@dataclass
class FitHistory:
    """What :meth:`LightSB.fit` did.

    Attributes:
        losses: the loss every ``log_every`` steps.
        seconds: wall-clock training time.
        steps: optimisation steps taken.
    """

    losses: list[float] = dataclass_field(default_factory=list)
    seconds: float = 0.0
    steps: int = 0


def check_samples(x: Tensor, name: str, dim: int | None = None, *, finite: bool = False) -> Tensor:
    """Checks that ``x`` is a floating (N, d) tensor with N >= 1 (with ``d == dim`` when given).

    ``finite=True`` also refuses NaN/inf (a host sync: for data handed to a fit, checked once).
    """
    if not isinstance(x, Tensor):
        raise ArgumentError(f"{name} must be a torch.Tensor of shape (N, d); got {type(x).__name__}")
    if not x.is_floating_point():
        raise ArgumentError(f"{name} must be a floating-point tensor; got dtype {x.dtype}")
    if x.ndim != 2:
        raise ArgumentError(f"{name} must have shape (N, d); got {tuple(x.shape)}")
    if dim is not None and x.shape[1] != dim:
        raise ArgumentError(f"{name} has dimension {x.shape[1]} but the model has dim={dim}")
    if x.shape[0] == 0:
        raise ArgumentError(f"{name} must hold at least one sample; got an empty batch {tuple(x.shape)}")
    if finite and x.device.type != "meta" and not bool(torch.isfinite(x).all()):  # sync-ok: once per fit
        raise ArgumentError(f"{name} must be finite; it contains NaN or inf")
    return x


class LightSB(nn.Module):
    """The LightSB solver: a Gaussian-mixture adjusted Schrödinger potential.

    Args:
        dim: data dimension ``d``.
        n_potentials: number ``K`` of mixture components of the potential.
        eps: variance :math:`\\varepsilon > 0` of the Brownian reference (entropic regularisation
            for the cost :math:`\\tfrac12|x - y|^2`).
        covariance: ``"diagonal"`` or ``"full"`` matrices :math:`S_k`.
        init_scale: initial :math:`S_k = \\text{init\\_scale}\\cdot I`.

    Raises:
        ValueError: for a non-positive ``dim``, ``n_potentials``, ``eps`` or ``init_scale`` or an
            unknown ``covariance``.
    """

    def __init__(
        self, dim: int, n_potentials: int = 50, eps: float = 1.0, covariance: str = "diagonal", init_scale: float = 0.1
    ) -> None:
        super().__init__()
        for name, value in (("dim", dim), ("n_potentials", n_potentials)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ArgumentError(f"{name} must be a positive integer; got {value!r}")
        if covariance not in COVARIANCES:
            raise ArgumentError(f"covariance must be one of {COVARIANCES}; got {covariance!r}")
        if not init_scale > 0:
            raise ArgumentError(f"init_scale must be > 0; got {init_scale}")
        self.dim, self.n_potentials, self.eps = dim, n_potentials, check_eps(eps)
        self.covariance = covariance
        self.log_alpha = nn.Parameter(torch.zeros(n_potentials))
        self.r = nn.Parameter(torch.zeros(n_potentials, dim))
        if covariance == "diagonal":
            self.log_s = nn.Parameter(torch.full((n_potentials, dim), math.log(init_scale)))
        else:
            # S = L L^T with L lower triangular, log-parametrised diagonal (so S stays positive definite).
            raw = torch.zeros(n_potentials, dim, dim)
            raw.diagonal(dim1=-2, dim2=-1).fill_(0.5 * math.log(init_scale))
            self.tril_raw = nn.Parameter(raw)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, n_potentials={self.n_potentials}, eps={self.eps}, covariance={self.covariance!r}"

    # ------------------------------------------------------------------ parameters as matrices
    @property
    def diagonal(self) -> bool:
        return self.covariance == "diagonal"

    def s_tril(self) -> Tensor:
        """(K, d, d) lower Cholesky factor :math:`L_k` of :math:`S_k`."""
        if self.diagonal:
            return torch.diag_embed(torch.exp(0.5 * self.log_s))
        raw = self.tril_raw
        return torch.tril(raw, diagonal=-1) + torch.diag_embed(torch.exp(raw.diagonal(dim1=-2, dim2=-1)))

    def s_matrix(self) -> Tensor:
        """(K, d, d) matrices :math:`S_k`."""
        if self.diagonal:
            return torch.diag_embed(torch.exp(self.log_s))
        tril = self.s_tril()
        return tril @ tril.transpose(-1, -2)

    def _s_times(self, x: Tensor) -> Tensor:
        """(B, K, d): :math:`S_k x_b` for every source and component."""
        if self.diagonal:
            return torch.exp(self.log_s) * x[:, None, :]
        return torch.einsum("kij,bj->bki", self.s_matrix(), x)

    def _check_x(self, x: Tensor, name: str = "x") -> Tensor:
        check_samples(x, name, self.dim)
        if x.dtype != self.r.dtype:  # metadata only; torch's own message names neither x nor the fix
            raise ArgumentError(f"{name} has dtype {x.dtype} but the model's parameters are {self.r.dtype}; use model.to({name}.dtype)")
        return x

    # ------------------------------------------------------------------ the LightSB objective
    def log_potential(self, y: Tensor) -> Tensor:
        r""":math:`\log v(y)` for targets ``y`` (N, d) -> (N,)."""
        self._check_x(y, "y")
        diff = y[:, None, :] - self.r  # (N, K, d)
        if self.diagonal:
            var = self.eps * torch.exp(self.log_s)
            maha = (diff**2 / var).sum(-1)
            logdet = torch.log(var).sum(-1)
        else:
            tril = self.s_tril() * math.sqrt(self.eps)
            white = torch.linalg.solve_triangular(tril, diff.permute(1, 2, 0), upper=False)  # (K, d, N)
            maha = (white**2).sum(1).T
            logdet = 2 * torch.log(tril.diagonal(dim1=-2, dim2=-1)).sum(-1)
        log_normal = -0.5 * (maha + logdet + self.dim * math.log(2 * math.pi))
        return torch.logsumexp(self.log_alpha + log_normal, dim=-1)

    def plan_logits(self, x: Tensor) -> Tensor:
        r"""(B, K) logits :math:`\log\alpha_k + (x^\top S_k x + 2 r_k^\top x)/(2\varepsilon)` of :math:`\pi(\cdot\mid x)`."""
        self._check_x(x)
        quad = (self._s_times(x) * x[:, None, :]).sum(-1)
        return self.log_alpha + (quad + 2 * x @ self.r.T) / (2 * self.eps)

    def log_normaliser(self, x: Tensor) -> Tensor:
        r""":math:`\log C(x)` for sources ``x`` (B, d) -> (B,)."""
        return torch.logsumexp(self.plan_logits(x), dim=-1)

    def loss(self, x0: Tensor, x1: Tensor) -> Tensor:
        r"""The LightSB objective :math:`\overline{\log C(x_0)} - \overline{\log v(x_1)}` (unpaired batches)."""
        return self.log_normaliser(x0).mean() - self.log_potential(x1).mean()

    # ------------------------------------------------------------------ the plan
    def conditional(self, x: Tensor) -> ConditionalMixture:
        r"""The closed-form conditional plan :math:`\pi(y\mid x)` as a :class:`ConditionalMixture`."""
        return ConditionalMixture(
            logits=self.plan_logits(x),
            means=self.r + self._s_times(x),
            scale_tril=self.s_tril() * math.sqrt(self.eps),
        )

    def sample(self, x0: Tensor, *, generator: RandomSource = None) -> Tensor:
        r"""Draws :math:`y \sim \pi(\cdot\mid x_0)` for each row of ``x0`` (B, d) (Gumbel-max component choice).

        Raises:
            SamplingError: if any draw is non-finite (a non-finite ``x0`` or a diverged fit).
        """
        y = self._sample(x0, generator=generator)
        if not bool(torch.isfinite(y).all()):  # sync-ok: one check after sampling, as flowbridge.sample
            raise SamplingError("LightSB.sample produced non-finite values; check that x0 is finite and the fit converged")
        return y

    def _sample(self, x0: Tensor, *, generator: RandomSource = None) -> Tensor:
        mix = self.conditional(x0)
        u = rand(mix.logits.shape, generator=generator, dtype=x0.dtype, device=x0.device)
        gumbel = -torch.log(-torch.log(u.clamp_min(torch.finfo(x0.dtype).tiny)))
        k = torch.argmax(mix.logits + gumbel, dim=-1)  # (B,)
        z = randn_like(x0, generator=generator)
        rows = torch.arange(x0.shape[0], device=x0.device)
        mean = mix.means[rows, k]
        if self.diagonal:
            return mean + torch.exp(0.5 * self.log_s[k]) * math.sqrt(self.eps) * z
        # (B, K, d) products instead of gathering (B, d, d) factors: K d per sample, not d^2
        return mean + torch.einsum("kij,bj->bki", mix.scale_tril, z)[rows, k]

    def log_prob(self, y: Tensor, x: Tensor) -> Tensor:
        r""":math:`\log \pi(y \mid x)` (B,) for paired rows of ``y`` and ``x`` (B, d)."""
        self._check_x(y, "y")
        mix = self.conditional(x)
        if y.shape[0] != x.shape[0]:
            raise ArgumentError(f"y and x must have the same number of rows; got {y.shape[0]} and {x.shape[0]}")
        diff = (y[:, None, :] - mix.means).permute(1, 2, 0)  # (K, d, B)
        white = torch.linalg.solve_triangular(mix.scale_tril, diff, upper=False)
        maha = (white**2).sum(1).T  # (B, K)
        logdet = 2 * torch.log(mix.scale_tril.diagonal(dim1=-2, dim2=-1)).sum(-1)
        log_normal = -0.5 * (maha + logdet + self.dim * math.log(2 * math.pi))
        return torch.logsumexp(torch.log_softmax(mix.logits, dim=-1) + log_normal, dim=-1)

    def conditional_moments(self, x: Tensor) -> tuple[Tensor, Tensor]:
        r"""Mean (B, d) and covariance (B, d, d) of :math:`\pi(\cdot\mid x)` (for cBW2-UVP)."""
        mix = self.conditional(x)
        w = torch.softmax(mix.logits, dim=-1)
        mean = torch.einsum("bk,bkd->bd", w, mix.means)
        comp_cov = mix.scale_tril @ mix.scale_tril.transpose(-1, -2)
        centred = mix.means - mean[:, None, :]
        cov = torch.einsum("bk,kij->bij", w, comp_cov) + torch.einsum("bk,bki,bkj->bij", w, centred, centred)
        return mean, cov

    def bridge_sample(self, x0: Tensor, t: Tensor | float, *, generator: RandomSource = None) -> Tensor:
        r"""A draw of :math:`X_t` given :math:`X_0 = x_0`: :math:`(1-t)x_0 + t y + \sqrt{\varepsilon t(1-t)}\,z`."""
        y = self.sample(x0, generator=generator)
        t = expand_like(as_time(t, x0), x0)
        return (1 - t) * x0 + t * y + torch.sqrt(self.eps * t * (1 - t)) * randn_like(x0, generator=generator)

    # ------------------------------------------------------------------ the SDE drift
    def drift(self, x: Tensor, t: Tensor | float) -> Tensor:
        r"""The closed-form bridge drift :math:`b(x, t)` (see the module docstring), ``t`` in [0, 1]."""
        self._check_x(x)
        t = as_time(t, x)
        tk = t[:, None, None] if t.ndim == 1 else t  # broadcasts against (B, K, d)
        r = self.r
        if self.diagonal:
            s = torch.exp(self.log_s)
            m = tk * s + (1 - tk)  # diagonal of M_k
            q_w = (r + (s - 1) * x[:, None, :]) / m  # Q_k w_k, (B, K, d)
            q_r = r / m
            logdet = torch.log(m).sum(-1)
        else:
            eye = torch.eye(self.dim, dtype=x.dtype, device=x.device)
            s = self.s_matrix()
            tm = t[:, None, None, None] if t.ndim == 1 else t
            m = tm * s + (1 - tm) * eye  # (K, d, d) or (B, K, d, d)
            chol = torch.linalg.cholesky_ex(m).L  # no error check: no host sync; M is SPD by construction
            w = r + torch.einsum("kij,bj->bki", s - eye, x)  # (B, K, d)
            if m.ndim == 3:
                q_w = torch.cholesky_solve(w.permute(1, 2, 0), chol).permute(2, 0, 1)
                q_r = torch.cholesky_solve(r[:, :, None], chol)[..., 0].expand_as(w)
            else:
                q_w = torch.cholesky_solve(w[..., None], chol)[..., 0]
                q_r = torch.cholesky_solve(r.expand_as(w)[..., None], chol)[..., 0]
            logdet = 2 * torch.log(chol.diagonal(dim1=-2, dim2=-1)).sum(-1)
        xb = x[:, None, :]
        tb = t[:, None] if t.ndim == 1 else t
        quad = (xb * q_w).sum(-1) + (xb * q_r).sum(-1) - tb * (r * q_r).sum(-1)
        logits = self.log_alpha - 0.5 * logdet + quad / (2 * self.eps)
        weights = torch.softmax(logits, dim=-1)
        return torch.einsum("bk,bkd->bd", weights, q_w)

    def field(self) -> "LightSBField":
        """This model's drift as a :class:`~flowbridge.bridges.BridgeField` for :func:`flowbridge.sample`."""
        return LightSBField(self)

    # ------------------------------------------------------------------ fitting
    def init_from_target(self, x1: Tensor, *, generator: RandomSource = None) -> None:
        r"""Sets the centres :math:`r_k` to ``K`` distinct target samples (the reference initialisation)."""
        check_samples(x1, "x1", self.dim)
        if x1.shape[0] < self.n_potentials:
            raise ArgumentError(
                f"x1 has {x1.shape[0]} samples but n_potentials={self.n_potentials}: LightSB initialises each "
                "potential at a distinct target sample; pass more samples or lower n_potentials"
            )
        order = torch.argsort(rand((x1.shape[0],), generator=generator, dtype=torch.float64))
        with torch.no_grad():  # a parameter initialisation, like torch.nn.init
            self.r.copy_(x1[order[: self.n_potentials].to(x1.device)].to(self.r))

    def fit(
        self,
        x0: Tensor,
        x1: Tensor,
        *,
        steps: int = 10_000,
        batch_size: int = 128,
        lr: float = 1e-3,
        lr_final: float | None = None,
        init_centres: bool = True,
        generator: torch.Generator | None = None,
        log_every: int = 100,
    ) -> FitHistory:
        r"""Fits the potential to unpaired samples ``x0`` (N0, d) of :math:`p_0` and ``x1`` (N1, d) of :math:`p_1`.

        Adam on :meth:`loss` over independent minibatches; with ``lr_final`` the learning rate decays
        along a cosine from ``lr`` to ``lr_final`` (smaller minibatch noise at the end).

        Args:
            x0: source samples.
            x1: target samples (their count may differ from the source's).
            steps: optimisation steps.
            batch_size: samples of each side per step.
            lr: learning rate; 1e-3 / 3e-3 / 6e-2 were the reference's choices for eps = 0.1 / 1 / 10.
            lr_final: final learning rate of the cosine decay (``None``: constant ``lr``).
            init_centres: initialise :math:`r_k` at ``K`` distinct target samples first.
            generator: randomness for the initialisation and the minibatches.
            log_every: record the loss every this many steps.

        Raises:
            ValueError: for mismatched dimensions, fewer than ``n_potentials`` target samples or
                fewer than 2 source samples, or non-positive ``steps``/``batch_size``/``lr``.
        """
        check_samples(x0, "x0", finite=True)
        check_samples(x1, "x1", finite=True)
        if x0.shape[1] != x1.shape[1]:
            raise ArgumentError(f"x0 and x1 must have the same dimension; got {x0.shape[1]} and {x1.shape[1]}")
        check_samples(x0, "x0", self.dim)
        if x0.shape[0] < 2:
            raise ArgumentError(f"x0 must hold at least 2 samples; got {x0.shape[0]}")
        if x1.shape[0] < self.n_potentials:
            raise ArgumentError(
                f"x1 has {x1.shape[0]} samples, fewer than n_potentials={self.n_potentials}; pass at least as many "
                "target samples as potentials (more is better) or lower n_potentials"
            )
        for name, value in (("steps", steps), ("batch_size", batch_size), ("log_every", log_every)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ArgumentError(f"{name} must be a positive integer; got {value!r}")
        if not lr > 0 or (lr_final is not None and not lr_final > 0):
            raise ArgumentError(f"lr and lr_final must be > 0; got {lr} and {lr_final}")
        if init_centres:
            self.init_from_target(x1, generator=generator)
        opt = torch.optim.Adam(self.parameters(), lr=lr)
        history = FitHistory()
        start = time.perf_counter()
        device = self.r.device
        for step in range(steps):
            if lr_final is not None:
                frac = step / max(steps - 1, 1)
                for group in opt.param_groups:
                    group["lr"] = lr_final + 0.5 * (lr - lr_final) * (1 + math.cos(math.pi * frac))
            i0 = torch.randint(x0.shape[0], (batch_size,), generator=generator)
            i1 = torch.randint(x1.shape[0], (batch_size,), generator=generator)
            loss = self.loss(x0[i0.to(x0.device)].to(device), x1[i1.to(x1.device)].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if step % log_every == 0 or step == steps - 1:
                history.losses.append(float(loss.detach()))  # sync-ok: logging in the training loop
        history.seconds = time.perf_counter() - start
        history.steps = steps
        return history


class LightSBField(BridgeField):
    """The closed-form drift of a :class:`LightSB` model as a :class:`~flowbridge.bridges.BridgeField`.

    Args:
        model: a (fitted) :class:`LightSB`.
    """

    def __init__(self, model: LightSB) -> None:
        super().__init__(model.eps)
        self.model = model

    def drift(self, x: Tensor, t: Tensor | float) -> Tensor:
        return self.model.drift(x, t)


__all__ = ["COVARIANCES", "ConditionalMixture", "FitHistory", "LightSB", "LightSBField"]
