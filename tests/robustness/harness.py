"""The robustness sweep's contract, shared by every kind of entry point.

A *case* is one call of a public entry point with one corruption of otherwise valid inputs. Its
outcome is classified as

* ``error``: it raised one of the allowed exceptions (``ValueError``/``TypeError`` or the
  documented error of that entry point, e.g. :class:`flowbridge.SamplingError`) and the message
  names the offending argument (one of ``Bad.names``, case-insensitive);
* ``valid``: it returned, and every tensor in the result is finite (a documented valid result);
* ``propagated``: it returned a non-finite result for a non-finite input, allowed only where the
  corruption says so (per-step methods such as ``Field.velocity`` are called inside step loops, where
  a value check would be a host sync; the API boundary, ``flowbridge.sample`` and friends, raises).

Anything else fails the case: an error of another type (an ``IndexError``/``RuntimeError`` from
deep inside torch), an allowed error whose message does not name the argument, a silent non-finite
output, or a call that runs longer than the time limit (a hang).
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, Phase, settings

#: Default sweep: a few derandomized examples per (entry point, corruption) pair, so CI is
#: reproducible and the whole sweep stays well under a minute on one core.
FAST = settings(
    max_examples=int(os.environ.get("FLOWBRIDGE_SWEEP_EXAMPLES", "2")), deadline=None, derandomize=True, database=None, print_blob=False,
    suppress_health_check=list(HealthCheck), phases=(Phase.explicit, Phase.generate),
)
#: The larger sweep (``pytest -m slow tests/robustness``).
THOROUGH = settings(FAST, max_examples=25)

#: Seconds a single case may run before it counts as a hang (a real hang never ends).
TIME_LIMIT = 60.0  # generous: a loaded machine or xdist worker must not turn a slow case into a "hang"

DEFAULT_ERRORS: tuple[type[BaseException], ...] = (ValueError, TypeError)


@dataclasses.dataclass(frozen=True)
class Bad:
    """One corruption and what it must lead to.

    Attributes:
        label: short description, e.g. ``"x: wrong rank"``.
        names: words of which an error message must contain at least one (the argument's name).
        expect: ``"raise"`` (must raise), ``"either"`` (raise, or a finite result) or
            ``"propagate"`` (raise, or any result: non-finite in, non-finite out).
        errors: the exception types that count as a clear error here.
    """

    label: str
    names: tuple[str, ...]
    expect: str = "raise"
    errors: tuple[type[BaseException], ...] = DEFAULT_ERRORS


VALID = Bad("valid input", (), expect="valid")


class Hang(Exception):
    """Raised by the alarm when a case runs past :data:`TIME_LIMIT`."""


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Interrupts the body with :class:`Hang` after ``seconds`` (main thread, POSIX)."""

    def _alarm(signum: int, frame: Any) -> None:
        raise Hang(f"no result after {seconds} s")

    old = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def tensors_in(obj: Any, depth: int = 0) -> Iterator[torch.Tensor]:
    """Every tensor inside a result (tensors, dataclasses, tuples, lists, dicts, modules' outputs)."""
    if depth > 4:
        return
    if isinstance(obj, torch.Tensor):
        yield obj
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        for f in dataclasses.fields(obj):
            yield from tensors_in(getattr(obj, f.name), depth + 1)
    elif isinstance(obj, (tuple, list)):
        for v in obj:
            yield from tensors_in(v, depth + 1)
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from tensors_in(v, depth + 1)


def nonfinite(obj: Any) -> bool:
    """Whether any floating tensor in ``obj`` (on a real device) holds NaN or inf."""
    for t in tensors_in(obj):
        if t.device.type == "meta" or not (t.is_floating_point() or t.is_complex()):
            continue
        if t.numel() and not bool(torch.isfinite(t).all()):
            return True
    return False


def _log(entry: str, bad: Bad, outcome: str, detail: str = "") -> None:
    path = os.environ.get("FLOWBRIDGE_SWEEP_LOG")
    if path:
        with open(path, "a") as f:
            record = {"entry": entry, "case": bad.label, "outcome": outcome, "detail": detail[:300]}
            f.write(json.dumps(record) + "\n")


def check(entry: str, bad: Bad, thunk: Callable[[], Any], *, limit: float = TIME_LIMIT) -> str:
    """Runs one case and fails the test unless its outcome meets ``bad``'s contract.

    Returns the outcome (``error``, ``valid`` or ``propagated``).
    """
    try:
        with time_limit(limit):
            out = thunk()
    except Hang as exc:
        _log(entry, bad, "hang", str(exc))
        pytest.fail(f"{entry} [{bad.label}]: hang ({exc})")
    except bad.errors as exc:
        if bad.expect == "valid":
            _log(entry, bad, "rejected-valid", f"{type(exc).__name__}: {exc}")
            pytest.fail(f"{entry} [{bad.label}]: valid input rejected: {type(exc).__name__}: {exc}")
        msg = str(exc).lower()
        if not any(n.lower() in msg for n in bad.names):
            _log(entry, bad, "unclear", f"{type(exc).__name__}: {exc}")
            pytest.fail(f"{entry} [{bad.label}]: message does not name any of {bad.names}: {type(exc).__name__}: {exc}")
        _log(entry, bad, "error")
        return "error"
    except Exception as exc:  # noqa: BLE001 - classifying exactly these is the point
        _log(entry, bad, "internal", f"{type(exc).__name__}: {exc}")
        pytest.fail(f"{entry} [{bad.label}]: internal error {type(exc).__name__}: {str(exc)[:300]}")
    if bad.expect == "raise":
        _log(entry, bad, "accepted")
        pytest.fail(f"{entry} [{bad.label}]: bad input accepted silently (returned {type(out).__name__})")
    if nonfinite(out):
        if bad.expect == "propagate":
            _log(entry, bad, "propagated")
            return "propagated"
        _log(entry, bad, "nonfinite")
        pytest.fail(f"{entry} [{bad.label}]: silent non-finite output")
    _log(entry, bad, "valid")
    return "valid"
