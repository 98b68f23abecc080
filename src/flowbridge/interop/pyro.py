r"""A trained flowbridge prior as a Pyro distribution: ``sample`` through the flow, ``log_prob`` through its ODE.

A field on a path from a tractable source :math:`p_0` (t = 0) to the data (t = 1) defines, through its
probability-flow ODE :math:`\dot x = u(x, t)`, a continuous normalising flow. The instantaneous change
of variables :math:`\tfrac{d}{dt}\log p_t(x_t) = -\nabla\cdot u(x_t, t)` gives the density of a point
:math:`x` at the target end by integrating backward to the source:

.. math::
    \log p_1(x) = \log p_0(x_0) + \int_{0}^{1} \nabla\cdot u(x_t, t)\,dt, \qquad
    x_t \text{ the ODE solution with } x_1 = x.

:class:`FlowPrior` evaluates this with :func:`flowbridge.likelihood.log_likelihood` and keeps the
autograd graph through the solve (``differentiable=True``), so :math:`\nabla_x \log p_1(x)` is
available to Pyro's HMC / NUTS. With a fixed-step solver (the default, ``rk4``) the log density is a
smooth function of ``x``, the gradient is the exact gradient of the discretised log density, and the
leapfrog integrator's energy error behaves; an adaptive solver (``dopri5``) changes its step sequence
with ``x`` and makes the density only piecewise smooth. Samples are drawn with
:func:`flowbridge.sample` on the same ODE (or any other registered solver).

The divergence is exact up to ``exact_max_dim`` dimensions and Hutchinson's estimator above (see
:mod:`flowbridge.likelihood`); with Hutchinson's estimator ``log_prob`` is a random, unbiased estimate
of the log density, which plain HMC does not expect: for MCMC use the exact divergence.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from pyro.distributions import TorchDistribution
from pyro.distributions.torch_distribution import TorchDistributionMixin
from torch import Tensor
from torch.distributions import constraints

from flowbridge.errors import ArgumentError
from flowbridge.fields.base import Field
from flowbridge.likelihood import log_likelihood
from flowbridge.samplers.api import default_span
from flowbridge.samplers.api import sample as flow_sample
from flowbridge.samplers.base import get_solver

# flowbridge solver name -> torchdiffeq method integrating the same ODE for the likelihood.
LIKELIHOOD_METHODS: dict[str, str] = {
    "euler": "euler", "midpoint": "midpoint", "heun": "heun2", "rk4": "rk4", "dopri5": "dopri5",
}
_ADAPTIVE = frozenset({"dopri5"})


def _positive_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ArgumentError(f"{name} must be a positive integer; got {value!r}")
    return value


def _event_shape(value: object) -> torch.Size:
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value,)
    if not isinstance(value, Sequence) or len(value) == 0 or not all(
        isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in value
    ):
        raise ArgumentError(f"event_shape must be a non-empty sequence of positive integers, e.g. (2,); got {value!r}")
    return torch.Size(value)


def _field_dtype_device(field: Field) -> tuple[torch.dtype, torch.device] | None:
    """The dtype and device of the field's first floating parameter or buffer, None if it has none."""
    for tensor in (*field.parameters(), *field.buffers()):
        if tensor.is_floating_point():
            return tensor.dtype, tensor.device
    return None


class FlowPrior(TorchDistribution):
    r"""The target marginal of a flowbridge field as a Pyro distribution (batch shape ``()``).

    Args:
        field: a trained (or analytic) :class:`~flowbridge.fields.Field` on a Gaussian path (or
            any path with ``prior_log_prob`` given).
        event_shape: the shape of one sample, e.g. ``(2,)`` or ``(1, 28, 28)``.
        solver: the ODE solver for both directions: ``euler``, ``midpoint``, ``heun``, ``rk4``
            (fixed steps; smooth in ``x``, what HMC/NUTS wants) or ``dopri5`` (adaptive, ``rtol``/``atol``).
        steps: steps of a fixed-step solver over the path's interval (ignored by ``dopri5`` for the
            likelihood).
        sample_solver: another registered flowbridge solver for :meth:`sample` (e.g. a stochastic
            one); default ``solver``. ``sample_options`` are passed to it.
        rtol: relative tolerance of ``dopri5``.
        atol: absolute tolerance of ``dopri5``.
        exact_max_dim: exact divergence up to this many dimensions, Hutchinson's estimator above.
        t_span: (t0, t1) of the likelihood's integral; default the path's regular interval.
        prior_log_prob: the source density, (B, ...) -> (B,); default the Gaussian path's source.
        generator: the generator :meth:`sample` and Hutchinson's probes draw from; ``None`` uses
            torch's global RNG, which is Pyro's convention (``pyro.set_rng_seed``).
        dtype: of samples and of accepted values; default the field's parameters'. A field
            without parameters (an analytic one) accepts any floating dtype unless ``dtype`` is
            given, and samples in torch's default dtype.
        device: of samples and of accepted values; default the field's parameters'.
        validate_args: Pyro/torch argument validation flag (``log_prob`` always validates shapes
            and dtypes).

    Raises:
        TypeError: if ``field`` is not a flowbridge Field.
        ValueError: on an unknown solver, a bad ``event_shape``, ``steps`` or tolerances.

    Example:
        >>> prior = FlowPrior(GaussianMixture(w, mu, cov).field("linear"), event_shape=(2,))
        >>> def model(y):
        ...     x = pyro.sample("x", prior)
        ...     pyro.sample("y", dist.Normal(x, 0.1).to_event(1), obs=y)
    """

    arg_constraints: dict[str, constraints.Constraint] = {}
    has_rsample = False

    def __init__(
        self,
        field: Field,
        event_shape: Sequence[int] | int,
        *,
        solver: str = "rk4",
        steps: int = 32,
        sample_solver: str | None = None,
        sample_options: dict[str, Any] | None = None,
        rtol: float = 1e-5,
        atol: float = 1e-5,
        exact_max_dim: int = 64,
        t_span: tuple[float, float] | None = None,
        prior_log_prob: Callable[[Tensor], Tensor] | None = None,
        generator: torch.Generator | None = None,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
        validate_args: bool | None = None,
    ) -> None:
        if not isinstance(field, Field):
            raise ArgumentError(f"field must be a flowbridge Field; got {type(field).__name__}")
        if solver not in LIKELIHOOD_METHODS:
            raise ArgumentError(f"unknown solver {solver!r} for FlowPrior; known: {', '.join(LIKELIHOOD_METHODS)}")
        if not (isinstance(rtol, (int, float)) and isinstance(atol, (int, float)) and rtol > 0 and atol > 0):
            raise ArgumentError(f"rtol and atol must be positive numbers; got rtol={rtol!r}, atol={atol!r}")
        if generator is not None and not isinstance(generator, torch.Generator):
            raise ArgumentError(f"generator must be a torch.Generator or None; got {type(generator).__name__}")
        if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
            raise ArgumentError(f"dtype must be a floating torch.dtype or None; got {dtype!r}")
        found = _field_dtype_device(field)
        # A network fixes the dtype it can be evaluated in; an analytic field follows its input.
        self.strict_dtype = dtype is not None or found is not None
        field_dtype, field_device = found if found is not None else (torch.get_default_dtype(), torch.device("cpu"))
        self.field = field
        self.solver = solver
        self.steps = _positive_int(steps, "steps")
        self.sample_solver = solver if sample_solver is None else sample_solver
        self.sample_options = dict(sample_options or {})
        get_solver(self.sample_solver, **self.sample_options)  # fail now on an unknown name or option
        self.rtol, self.atol = float(rtol), float(atol)
        self.exact_max_dim = exact_max_dim
        self.t_span = t_span
        self.prior_log_prob = prior_log_prob
        self.generator = generator
        self.dtype = dtype if dtype is not None else field_dtype
        self.device = torch.device(device) if device is not None else field_device
        super().__init__(torch.Size(), _event_shape(event_shape), validate_args=validate_args)

    @classmethod
    def from_checkpoint(
        cls, ckpt: str | Path, *, map_location: str | torch.device = "cpu", labels: Tensor | None = None, **kwargs: Any
    ) -> "FlowPrior":
        """A prior from a checkpoint written by ``flowbridge fit`` (its EMA weights where EMA was used).

        The event shape is the one the model was trained on (stored in the checkpoint) unless
        ``event_shape=`` is given. The checkpoint is loaded with ``weights_only=True``.

        Args:
            ckpt: path to the ``.ckpt`` file.
            map_location: where to load the weights.
            labels: class labels of a class-conditional model (None: unconditional).
            **kwargs: passed to :class:`FlowPrior` (``solver``, ``steps``, ...).
        """
        from flowbridge.training.checkpoints import load

        module = load(ckpt, map_location)
        module.eval()
        event_shape = kwargs.pop("event_shape", None) or module.event_shape
        if event_shape is None:
            raise ArgumentError(f"checkpoint {ckpt} stores no event shape: pass event_shape=(...)")
        return cls(module.field(labels), event_shape, **kwargs)

    @property
    def support(self) -> constraints.Constraint:  # type: ignore[override]
        return constraints.independent(constraints.real, len(self.event_shape))

    def expand(self, batch_shape: Sequence[int], _instance: Any = None) -> TorchDistribution:
        """Broadcast to ``batch_shape`` (inside ``pyro.plate``): i.i.d. copies of this prior."""
        return TorchDistributionMixin.expand(self, batch_shape, _instance)

    def _run_solver_options(self) -> tuple[str, dict[str, Any] | None]:
        method = LIKELIHOOD_METHODS[self.solver]
        if self.solver in _ADAPTIVE:
            return method, None
        t0, t1 = self._span()
        return method, {"step_size": (t1 - t0) / self.steps}

    def _span(self) -> tuple[float, float]:
        if self.t_span is not None:
            return float(self.t_span[0]), float(self.t_span[1])
        t0, t1 = default_span(self.field)
        return float(t0), float(t1)

    def _check_value(self, value: Tensor) -> torch.Size:
        """Validates ``value`` and returns its sample shape (the dims left of the event)."""
        if not isinstance(value, Tensor):
            raise ArgumentError(f"value must be a torch.Tensor; got {type(value).__name__}")
        if not value.is_floating_point():
            raise ArgumentError(f"value must be a floating tensor of dtype {self.dtype}; got {value.dtype}")
        if self.strict_dtype and value.dtype != self.dtype:
            raise ArgumentError(f"value must have dtype {self.dtype} (the prior's); got {value.dtype}")
        same_device = value.device.type == self.device.type and (
            self.device.index is None or value.device.index == self.device.index
        )
        if self.strict_dtype and not same_device:
            raise ArgumentError(f"value must be on device {self.device} (the prior's); got {value.device}")
        k = len(self.event_shape)
        if value.ndim < k or tuple(value.shape[value.ndim - k :]) != tuple(self.event_shape):
            raise ArgumentError(
                f"value must have shape (*sample_shape, {', '.join(map(str, self.event_shape))}) to match the "
                f"event shape {tuple(self.event_shape)}; got {tuple(value.shape)}"
            )
        return value.shape[: value.ndim - k]

    def log_prob(self, value: Tensor) -> Tensor:
        r""":math:`\log p_1(x)` through the probability-flow ODE, differentiable in ``value``.

        Args:
            value: (*sample_shape, *event_shape) points.

        Returns:
            (*sample_shape,) log densities in nats, with an autograd graph through the ODE solve
            when ``value`` or the field's parameters require gradients (none under
            ``torch.no_grad()`` or for a constant input to a frozen field: the same numbers,
            detached and cheaper, e.g. on a quadrature grid).

        Raises:
            TypeError: for a non-tensor or a dtype other than the prior's.
            ValueError: for a shape whose trailing dimensions are not ``event_shape``, another
                device than the prior's, or non-finite values.
        """
        sample_shape = self._check_value(value)
        n = math.prod(sample_shape)
        if n == 0:
            return value.new_zeros(sample_shape)
        if self._validate_args:
            # torch's support check (NaN is outside the reals): the ValueError Pyro's own
            # distributions give under validation (log_likelihood refuses non-finite points too)
            self._validate_sample(value)
        flat = value.reshape(n, *self.event_shape)
        method, options = self._run_solver_options()
        # A graph only where someone can differentiate: x, or trainable parameters of the field.
        differentiable = torch.is_grad_enabled() and (
            value.requires_grad or any(p.requires_grad for p in self.field.parameters())
        )
        result = log_likelihood(
            self.field, flat, t_span=self.t_span, prior_log_prob=self.prior_log_prob,
            exact_max_dim=self.exact_max_dim, generator=self.generator, method=method,
            rtol=self.rtol, atol=self.atol, options=options, differentiable=differentiable,
        )
        return result.log_prob.reshape(sample_shape)

    def sample(self, sample_shape: Sequence[int] = torch.Size()) -> Tensor:
        """Draws ``sample_shape`` samples with :func:`flowbridge.sample` from ``generator`` (or the global RNG).

        Returns:
            (*sample_shape, *event_shape) samples, outside any autograd graph (``has_rsample`` is False).
        """
        sample_shape = torch.Size(sample_shape)
        n = math.prod(sample_shape)
        if n == 0:
            return torch.zeros((*sample_shape, *self.event_shape), dtype=self.dtype, device=self.device)
        # torch.distributions' convention: sample() is not differentiable, so build no graph
        # through the network while integrating (this is not the library core's sampler).
        with torch.no_grad():
            out = flow_sample(
                self.field, self.sample_solver, self.steps, shape=(n, *self.event_shape), generator=self.generator,
                t_span=self.t_span, dtype=self.dtype, device=self.device, **self.sample_options,
            )
        return out.x.reshape(*sample_shape, *self.event_shape)

    def __repr__(self) -> str:
        return (
            f"FlowPrior(field={type(self.field).__name__}, event_shape={tuple(self.event_shape)}, "
            f"solver={self.solver!r}, steps={self.steps})"
        )
