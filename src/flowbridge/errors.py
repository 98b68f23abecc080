"""flowbridge's errors: one hierarchy under :class:`FlowbridgeError`.

Every error flowbridge raises on purpose is a :class:`FlowbridgeError`, and each also subclasses the
built-in exception code written before this hierarchy catches, so ``except ValueError`` keeps
working:

* :class:`ArgumentError` (a ``ValueError`` and a ``TypeError``): an argument is out of range, of the
  wrong type or inconsistent with another; the message names the argument and what was expected.
* :class:`CapabilityError` (an :class:`ArgumentError`): the algorithm cannot run on this input (a
  solver that needs a Gaussian path, a posterior sampler that needs an SVD, ...); the message lists
  what does apply.
* :class:`SamplingError` (a ``RuntimeError`` and a ``FloatingPointError``): sampling produced
  non-finite values or could not finish; :class:`WeightCollapseError` when every particle weight
  vanished.
* :class:`DataError`, :class:`ConfigError`, :class:`CouplingError`: training data, configuration
  files and couplings.
"""

from __future__ import annotations

from torch import Tensor


class FlowbridgeError(Exception):
    """Root of every error flowbridge raises on purpose."""


class ArgumentError(FlowbridgeError, ValueError, TypeError):
    """A bad argument: out of range, of the wrong type, or inconsistent with another argument."""


class CapabilityError(ArgumentError):
    """An algorithm cannot run on this input; the message says what it needs and what applies."""


class SamplingError(FlowbridgeError, RuntimeError, FloatingPointError):
    """Sampling produced non-finite values or could not finish (names the algorithm and the count)."""


class WeightCollapseError(SamplingError):
    """Every particle's weight became zero: the SMC estimate is undefined.

    Attributes:
        step: the first step after which all weights were zero.
        time: its grid time.
        ess: the ESS trace up to the end of the run (NaN from the collapse on).
    """

    def __init__(self, message: str, *, step: int, time: float, ess: Tensor) -> None:
        super().__init__(message)
        self.step, self.time, self.ess = step, time, ess


class DataError(FlowbridgeError, ValueError):
    """Training data that do not fit the model or cannot be read."""


class ConfigError(FlowbridgeError, ValueError):
    """A configuration problem, reported as one line by the command line."""


class CheckpointError(FlowbridgeError, ValueError):
    """A checkpoint that cannot be used; the message names the file and the problem."""


class CouplingError(FlowbridgeError, RuntimeError):
    """A coupling (e.g. an optimal-transport plan) could not be computed."""


__all__ = [
    "ArgumentError",
    "CapabilityError",
    "CheckpointError",
    "ConfigError",
    "CouplingError",
    "DataError",
    "FlowbridgeError",
    "SamplingError",
    "WeightCollapseError",
]
