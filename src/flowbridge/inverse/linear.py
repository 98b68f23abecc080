r"""Built-in linear operators, each with its adjoint and its SVD in closed form.

* :class:`MatrixOperator` — a dense matrix on vectors; SVD by LAPACK once.
* :class:`Inpainting` — keeps the pixels where a boolean mask is true; :math:`V = I`, :math:`s = `mask.
* :class:`Blur` — circular convolution through the FFT. Its SVD uses the real orthonormal Fourier
  basis: for a frequency :math:`k` paired with :math:`-k`, the coordinates
  :math:`\sqrt2\,\Re X_k, \sqrt2\,\Im X_k` (:math:`X` the orthonormal DFT), and :math:`\Re X_k` for
  self-conjugate frequencies. With the transfer function :math:`H_k = |H_k| e^{i\phi_k}`,
  :math:`V^T x = T(\mathcal{F}x)`, :math:`U^T y = T(e^{-i\phi}\mathcal{F}y)`, :math:`s = |H|`.
* :class:`Downsample` — averages ``factor x factor`` blocks; per block one singular value
  :math:`1/f` along the constant vector, the rest is the null space.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from flowbridge.errors import ArgumentError
from flowbridge.inverse.operators import LinearOperator, SpectralDecomposition


def _checked_array(value: object, name: str, *, integers: bool) -> Tensor:
    """``value`` as a real, non-empty, finite tensor; a TypeError/ValueError naming ``name`` otherwise.

    Runs once at construction (its finiteness check is a host sync, never inside a step loop).

    Args:
        value: a tensor, or a (nested) list / tuple of numbers (read in the default float dtype).
        name: the argument's name, for the messages.
        integers: whether an integer (or boolean) array is cast to the default float dtype;
            otherwise it is refused.
    """
    if isinstance(value, (list, tuple)):
        try:
            value = torch.as_tensor(value, dtype=torch.get_default_dtype())
        except (TypeError, ValueError, RuntimeError) as exc:
            raise ArgumentError(f"{name} must be a tensor (or a nested list of numbers); got {value!r}") from exc
    if not isinstance(value, Tensor):
        raise ArgumentError(f"{name} must be a tensor; got {type(value).__name__}")
    if value.is_complex():
        # Casting would silently drop the imaginary part.
        raise ArgumentError(f"{name} must be a real tensor; got dtype {value.dtype}")
    if not value.is_floating_point():
        if not integers:
            raise ArgumentError(f"{name} must be a floating-point tensor; got dtype {value.dtype}")
        value = value.to(torch.get_default_dtype())
    if value.numel() == 0:
        raise ArgumentError(f"{name} must have at least one entry; got shape {tuple(value.shape)}")
    if not bool(torch.isfinite(value).all()):  # sync-ok: validated once at construction
        raise ArgumentError(f"{name} must be finite; it has NaN or inf entries")
    return value


class MatrixOperator(LinearOperator):
    """``y = A x`` for a dense (m, n) matrix acting on (B, n) vectors.

    Args:
        matrix: (m, n), any rank (rank-deficient and wide or tall matrices are fine); real and
            finite. An integer matrix is cast to the default float dtype.
        rcond: singular values below ``rcond * max(s)`` count as exactly zero.

    Raises:
        TypeError: if ``matrix`` is not a tensor (or nested list of numbers) or is complex.
        ValueError: if ``matrix`` is not 2-D, is empty, or has NaN/inf entries.
    """

    def __init__(self, matrix: Tensor, rcond: float | None = None) -> None:
        matrix = _checked_array(matrix, "matrix", integers=True)
        if matrix.ndim != 2:
            raise ArgumentError(f"matrix must have shape (m, n); got {tuple(matrix.shape)}")
        super().__init__((matrix.shape[1],), (matrix.shape[0],))
        self.matrix = matrix
        m, n = matrix.shape
        u, s, vh = torch.linalg.svd(matrix.double(), full_matrices=True)
        rcond = max(m, n) * torch.finfo(matrix.dtype).eps if rcond is None else rcond
        s = torch.where(s > rcond * s.max(), s, torch.zeros_like(s))
        k = min(m, n)
        s_full = torch.zeros(n, dtype=torch.float64)
        s_full[:k] = s
        self._u, self._s, self._vh, self._k = u, s_full, vh, k

    def forward(self, x: Tensor) -> Tensor:
        self.check_input(x)
        return x @ self.matrix.to(x).T

    def adjoint(self, y: Tensor) -> Tensor:
        return y @ self.matrix.to(y)

    def svd(self) -> SpectralDecomposition:
        u, vh, k, n = self._u, self._vh, self._k, self.input_dim

        def ut(y: Tensor) -> Tensor:
            coords = y @ u[:, :k].to(y)
            return torch.nn.functional.pad(coords, (0, n - k))

        def uu(z: Tensor) -> Tensor:
            return z[:, :k] @ u[:, :k].to(z).T

        return SpectralDecomposition(
            s=self._s.clone(), vt=lambda x: x @ vh.to(x).T, v=lambda z: z @ vh.to(z), ut=ut, u=uu
        )


class Inpainting(LinearOperator):
    """Keeps the entries of ``x`` where ``mask`` is true: ``y = x[mask]`` of shape (B, m).

    Args:
        mask: boolean tensor of one sample's shape (e.g. (C, H, W) or (d,)).
    """

    def __init__(self, mask: Tensor) -> None:
        mask = torch.as_tensor(mask)
        if mask.dtype != torch.bool:
            raise ArgumentError(f"mask must be a boolean tensor; got dtype {mask.dtype}")
        self.mask = mask
        self.index = torch.nonzero(mask.reshape(-1)).reshape(-1)
        if self.index.numel() == 0:
            raise ArgumentError("mask must keep at least one entry")
        super().__init__(tuple(mask.shape), (int(self.index.numel()),))

    def forward(self, x: Tensor) -> Tensor:
        self.check_input(x)
        return x.reshape(x.shape[0], -1)[:, self.index.to(x.device)]

    def _scatter(self, y: Tensor) -> Tensor:
        out = y.new_zeros(y.shape[0], self.input_dim)
        return out.index_copy(1, self.index.to(y.device), y)

    def adjoint(self, y: Tensor) -> Tensor:
        return self._scatter(y).reshape(y.shape[0], *self.input_shape)

    def svd(self) -> SpectralDecomposition:
        return SpectralDecomposition(
            s=self.mask.reshape(-1).double(),
            vt=lambda x: x.reshape(x.shape[0], -1),
            v=lambda z: z.reshape(z.shape[0], *self.input_shape),
            ut=self._scatter,
            u=lambda z: z[:, self.index.to(z.device)],
        )


def _image_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    if len(shape) not in (2, 3):
        raise ArgumentError(f"image_shape must be (H, W) or (C, H, W); got {shape}")
    return tuple(int(s) for s in shape)


class Blur(LinearOperator):
    r"""Circular convolution with ``kernel`` over the last two axes, computed with the FFT.

    Args:
        kernel: (kh, kw) real, finite, floating-point kernel; its centre ``(kh // 2, kw // 2)`` is
            the origin.
        image_shape: (H, W) or (C, H, W) of one image (the same kernel on every channel).

    Raises:
        TypeError: if ``kernel`` is not a floating-point tensor (or nested list of floats).
        ValueError: if ``kernel`` is not 2-D, is empty, has NaN/inf entries or is larger than the image.
    """

    def __init__(self, kernel: Tensor, image_shape: tuple[int, ...]) -> None:
        kernel = _checked_array(kernel, "kernel", integers=False).to(torch.float64)
        image_shape = _image_shape(image_shape)
        if kernel.ndim != 2:
            raise ArgumentError(f"kernel must be a tensor of shape (kh, kw); got {tuple(kernel.shape)}")
        h, w = image_shape[-2:]
        if kernel.shape[0] > h or kernel.shape[1] > w:
            raise ArgumentError(f"kernel {tuple(kernel.shape)} is larger than the image {(h, w)}")
        super().__init__(image_shape, image_shape)
        padded = torch.zeros(h, w, dtype=torch.float64)
        padded[: kernel.shape[0], : kernel.shape[1]] = kernel
        padded = torch.roll(padded, shifts=(-(kernel.shape[0] // 2), -(kernel.shape[1] // 2)), dims=(0, 1))
        self.kernel = kernel
        self.transfer = torch.fft.fft2(padded)  # (H, W) complex128
        self._build_real_basis(h, w)

    @staticmethod
    def gaussian(sigma: float, size: int, image_shape: tuple[int, ...]) -> "Blur":
        """A normalised isotropic Gaussian kernel of width ``sigma`` pixels and odd ``size``."""
        if sigma <= 0 or size < 1 or size % 2 == 0:
            raise ArgumentError(f"need sigma > 0 and an odd size >= 1; got sigma={sigma}, size={size}")
        r = torch.arange(size, dtype=torch.float64) - size // 2
        g = torch.exp(-0.5 * (r / sigma) ** 2)
        k = g[:, None] * g[None, :]
        return Blur(k / k.sum(), image_shape)

    def _build_real_basis(self, h: int, w: int) -> None:
        flat = torch.arange(h * w)
        k1, k2 = flat // w, flat % w
        partner = ((-k1) % h) * w + ((-k2) % w)
        self._canon = flat[flat < partner]
        self._partner = partner[flat < partner]
        self._self = flat[flat == partner]
        mag = self.transfer.abs().reshape(-1)
        s_hw = torch.cat([mag[self._canon], mag[self._canon], mag[self._self]])
        channels = math.prod(self.input_shape[:-2])
        self._s = s_hw.repeat(channels)
        phase = torch.where(mag > 0, self.transfer.reshape(-1) / mag.clamp_min(1e-300), torch.ones_like(self.transfer.reshape(-1)))
        self._phase = phase.reshape(h, w)

    def forward(self, x: Tensor) -> Tensor:
        self.check_input(x)
        return torch.fft.ifft2(torch.fft.fft2(x) * self.transfer.to(x.device)).real.to(x.dtype)

    def adjoint(self, y: Tensor) -> Tensor:
        return torch.fft.ifft2(torch.fft.fft2(y) * self.transfer.conj().to(y.device)).real.to(y.dtype)

    def _to_real(self, spectrum: Tensor, dtype: torch.dtype) -> Tensor:
        flat = spectrum.reshape(spectrum.shape[0], -1, spectrum.shape[-2] * spectrum.shape[-1])
        c, p, s = (i.to(flat.device) for i in (self._canon, self._partner, self._self))
        del p
        root2 = math.sqrt(2.0)
        coords = torch.cat([root2 * flat[..., c].real, root2 * flat[..., c].imag, flat[..., s].real], dim=-1)
        return coords.reshape(spectrum.shape[0], -1).to(dtype)

    def _from_real(self, z: Tensor) -> Tensor:
        h, w = self.input_shape[-2:]
        b = z.shape[0]
        zz = z.reshape(b, -1, h * w).to(torch.float64)
        nc = self._canon.numel()
        c, p, s = (i.to(z.device) for i in (self._canon, self._partner, self._self))
        a, bb, sv = zz[..., :nc], zz[..., nc : 2 * nc], zz[..., 2 * nc :]
        spec = torch.zeros(zz.shape, dtype=torch.complex128, device=z.device)
        half = torch.complex(a, bb) / math.sqrt(2.0)
        spec[..., c] = half
        spec[..., p] = half.conj()
        spec[..., s] = sv.to(torch.complex128)
        return spec.reshape(b, *self.input_shape[:-2], h, w)

    def svd(self) -> SpectralDecomposition:
        def vt(x: Tensor) -> Tensor:
            return self._to_real(torch.fft.fft2(x.to(torch.float64), norm="ortho"), x.dtype)

        def v(z: Tensor) -> Tensor:
            return torch.fft.ifft2(self._from_real(z), norm="ortho").real.to(z.dtype)

        def ut(y: Tensor) -> Tensor:
            spec = torch.fft.fft2(y.to(torch.float64), norm="ortho") * self._phase.conj().to(y.device)
            return self._to_real(spec, y.dtype)

        def u(z: Tensor) -> Tensor:
            return torch.fft.ifft2(self._from_real(z) * self._phase.to(z.device), norm="ortho").real.to(z.dtype)

        return SpectralDecomposition(s=self._s.clone(), vt=vt, v=v, ut=ut, u=u)


class Downsample(LinearOperator):
    """Averages non-overlapping ``factor x factor`` blocks: (C, H, W) -> (C, H/f, W/f).

    Args:
        factor: the block size ``f`` (H and W must be multiples of it).
        image_shape: (H, W) or (C, H, W).
    """

    def __init__(self, factor: int, image_shape: tuple[int, ...]) -> None:
        image_shape = _image_shape(image_shape)
        if not isinstance(factor, int) or factor < 1:
            raise ArgumentError(f"factor must be a positive integer; got {factor!r}")
        h, w = image_shape[-2:]
        if h % factor or w % factor:
            raise ArgumentError(f"image height and width {(h, w)} must be multiples of factor={factor}")
        super().__init__(image_shape, (*image_shape[:-2], h // factor, w // factor))
        self.factor = factor
        f2 = factor * factor
        basis = torch.eye(f2, dtype=torch.float64)
        basis[:, 0] = 1.0
        q, _ = torch.linalg.qr(basis)
        self._q = q * torch.sign(q[0, 0])  # first column = +1/f: the averaging direction

    def _blocks(self, x: Tensor) -> Tensor:
        f = self.factor
        *lead, h, w = x.shape
        x = x.reshape(*lead, h // f, f, w // f, f)
        return x.movedim(-3, -2).reshape(*lead, h // f, w // f, f * f)

    def _unblocks(self, blocks: Tensor) -> Tensor:
        f = self.factor
        *lead, hb, wb, _ = blocks.shape
        return blocks.reshape(*lead, hb, wb, f, f).movedim(-2, -3).reshape(*lead, hb * f, wb * f)

    def forward(self, x: Tensor) -> Tensor:
        self.check_input(x)
        return self._blocks(x).mean(-1)

    def adjoint(self, y: Tensor) -> Tensor:
        f2 = self.factor**2
        return self._unblocks(y[..., None].expand(*y.shape, f2) / f2)

    def svd(self) -> SpectralDecomposition:
        f2 = self.factor**2
        n_blocks = self.output_dim
        s = torch.zeros(n_blocks, f2, dtype=torch.float64)
        s[:, 0] = 1.0 / self.factor
        b = lambda t: t.shape[0]  # noqa: E731

        def vt(x: Tensor) -> Tensor:
            return (self._blocks(x) @ self._q.to(x)).reshape(b(x), -1)

        def v(z: Tensor) -> Tensor:
            blocks = z.reshape(b(z), *self.output_shape, f2) @ self._q.to(z).T
            return self._unblocks(blocks)

        def ut(y: Tensor) -> Tensor:
            return torch.nn.functional.pad(y[..., None], (0, f2 - 1)).reshape(b(y), -1)

        def u(z: Tensor) -> Tensor:
            return z.reshape(b(z), *self.output_shape, f2)[..., 0]

        return SpectralDecomposition(s=s.reshape(-1), vt=vt, v=v, ut=ut, u=u)
