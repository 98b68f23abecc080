"""Kinds, entry points and shared corruption strategies of the robustness sweep.

Every kind of entry point (fields, paths, solvers, ...) has one input strategy (valid inputs drawn
with hypothesis) and one list of corruptions shared by all of its entry points; each entry point
says which inputs it uses, and is swept with every corruption of those inputs. The test of a kind
is made by :func:`sweep_test`; :data:`harness.FAST` settings run by default, :data:`harness.THOROUGH`
under ``-m slow``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from tests.robustness.harness import DEFAULT_ERRORS, FAST, THOROUGH, VALID, Bad, check

Draw = Callable[[st.SearchStrategy[Any]], Any]
Inputs = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Corruption:
    """Corrupts input ``key`` of a valid call (``key == ""``: applies to every entry of the kind)."""

    bad: Bad
    key: str
    apply: Callable[[Draw, Inputs], Inputs]


@dataclasses.dataclass(frozen=True)
class Entry:
    """One public entry point (or one method of a public class) and how to call it.

    Attributes:
        name: the public dotted name it covers, e.g. ``flowbridge.analytic.GaussianMixtureField``.
        call: calls it with the kind's inputs.
        uses: the input keys it reads (corruptions of other keys do not apply).
        method: a suffix that tells apart several entries of one name (e.g. ``velocity``).
        expect: per-corruption-label overrides of the expectation.
        xfail: per-corruption-label known defects (strict xfail, with the reason).
        extra: corruptions specific to this entry point.
        skip: corruption labels that do not apply, with the reason (reported by the sweep script).
    """

    name: str
    call: Callable[[Inputs], Any]
    uses: tuple[str, ...]
    method: str = ""
    expect: dict[str, str] = dataclasses.field(default_factory=dict)
    xfail: dict[str, str] = dataclasses.field(default_factory=dict)
    extra: tuple[Corruption, ...] = ()
    skip: dict[str, str] = dataclasses.field(default_factory=dict)
    also_names: tuple[str, ...] = ()

    @property
    def id(self) -> str:
        short = self.name.removeprefix("flowbridge.")
        return f"{short}.{self.method}" if self.method else short


@dataclasses.dataclass(frozen=True)
class Kind:
    name: str
    inputs: Callable[[Draw], Inputs]
    corruptions: tuple[Corruption, ...]
    entries: tuple[Entry, ...]

    def covered(self) -> set[str]:
        return {e.name for e in self.entries}


def pairs(kind: Kind) -> list[Any]:
    """pytest params: every entry with valid input and with every corruption of the inputs it uses."""
    out = []
    for e in kind.entries:
        out.append(pytest.param(e, None, id=f"{e.id}-valid", marks=_marks(e, VALID.label)))
        for c in (*kind.corruptions, *e.extra):
            if (c.key and c.key not in e.uses and c not in e.extra) or c.bad.label in e.skip:
                continue
            out.append(pytest.param(e, c, id=f"{e.id}-{c.bad.label}", marks=_marks(e, c.bad.label)))
    return out


def _marks(e: Entry, label: str) -> list[Any]:
    if label in e.xfail:
        return [pytest.mark.xfail(strict=True, reason=e.xfail[label])]
    return []


def run_pair(kind: Kind, entry: Entry, corruption: Corruption | None, draw: Draw) -> str:
    inputs = kind.inputs(draw)
    bad = VALID
    if corruption is not None:
        inputs = corruption.apply(draw, dict(inputs))
        bad = corruption.bad
        if bad.label in entry.expect:
            bad = dataclasses.replace(bad, expect=entry.expect[bad.label])
        if entry.also_names:
            bad = dataclasses.replace(bad, names=(*bad.names, *entry.also_names))
    return check(entry.id, bad, lambda: entry.call(inputs))


def sweep_test(kind: Kind) -> tuple[Callable[..., None], Callable[..., None]]:
    """The default (fast) and the thorough (slow) test of a kind."""
    params = pairs(kind)

    @pytest.mark.parametrize("entry,corruption", params)
    @given(data=st.data())
    @FAST
    def test_fast(entry: Entry, corruption: Corruption | None, data: st.DataObject) -> None:
        run_pair(kind, entry, corruption, data.draw)

    @pytest.mark.slow
    @pytest.mark.parametrize("entry,corruption", params)
    @given(data=st.data())
    @THOROUGH
    def test_thorough(entry: Entry, corruption: Corruption | None, data: st.DataObject) -> None:
        run_pair(kind, entry, corruption, data.draw)

    return test_fast, test_thorough


# --------------------------------------------------------------------------------------------
# Shared strategies.

batch = st.integers(1, 3)
huge = st.sampled_from([1e30, -1e30, 3e38])
tiny = st.sampled_from([1e-30, -1e-30, 1e-300])
below_zero = st.one_of(st.floats(-1e3, -1e-6), st.just(-1.0))
above_one = st.one_of(st.floats(1 + 1e-6, 1e3), st.just(2.0))
wrong_types = st.sampled_from([None, "x", [1.0, 2.0]])


def _set(key: str, fn: Callable[[Draw, Any], Any]) -> Callable[[Draw, Inputs], Inputs]:
    def apply(draw: Draw, inputs: Inputs) -> Inputs:
        inputs[key] = fn(draw, inputs[key])
        return inputs

    return apply


def _poison(value: float) -> Callable[[Draw, Any], Any]:
    def fn(draw: Draw, x: torch.Tensor) -> torch.Tensor:
        x = x.clone()
        flat = x.reshape(-1)
        if flat.numel():
            flat[draw(st.integers(0, flat.numel() - 1))] = value
        return x

    return fn


def _scale(strategy: st.SearchStrategy[float]) -> Callable[[Draw, Any], Any]:
    def fn(draw: Draw, x: torch.Tensor) -> torch.Tensor:
        return torch.full_like(x, draw(strategy))

    return fn


def tensor_corruptions(
    key: str,
    names: Sequence[str] | None = None,
    *,
    values: str = "propagate",
    scales: str | None = None,
    errors: tuple[type[BaseException], ...] = DEFAULT_ERRORS,
    features: bool = True,
    empty: str = "either",
    half: str = "either",
) -> tuple[Corruption, ...]:
    """Corruptions of a (B, ...) floating tensor input ``key``.

    Args:
        names: words an error message may use to name it (default: ``key``, ``shape``, ``dtype``).
        values: expectation for NaN/inf entries (``propagate`` for per-step methods, ``raise`` at
            an API boundary that checks values).
        scales: expectation for 1e30 / 1e-30 magnitudes (default: as ``values``).
        errors: the exception types that count as a clear error.
        features: whether a wrong trailing size must be refused.
        empty, half: expectations for an empty batch and for float16.
    """
    n = tuple(names or (key,))
    scales = scales or values
    shape_names = (*n, "shape", "dim", "features", "size")
    dtype_names = (*n, "dtype", "floating", "float", "complex")
    device_names = (*n, "device", "meta")  # meta stands in for another device; its own refusals say "meta"

    def wrong_rank(draw: Draw, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(-1) if x.ndim > 1 else x[:, None, None]

    def wrong_size(draw: Draw, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, x[..., :1]], dim=-1)

    def empty_batch(draw: Draw, x: torch.Tensor) -> torch.Tensor:
        return x[:0]

    out = [
        Corruption(Bad(f"{key}: wrong rank", shape_names, "raise", errors), key, _set(key, wrong_rank)),
        Corruption(Bad(f"{key}: int dtype", dtype_names, "raise", errors), key, _set(key, lambda d, x: x.round().long())),
        Corruption(Bad(f"{key}: complex dtype", dtype_names, "raise", errors), key, _set(key, lambda d, x: x.to(torch.complex64))),
        Corruption(Bad(f"{key}: float16", dtype_names, half, errors), key, _set(key, lambda d, x: x.half())),
        Corruption(
            Bad(f"{key}: meta device", device_names, "either", (*errors, RuntimeError, NotImplementedError)),
            key, _set(key, lambda d, x: x.to("meta")),
        ),
        Corruption(Bad(f"{key}: NaN entry", (*n, "finite", "nan"), values, errors), key, _set(key, _poison(math.nan))),
        Corruption(Bad(f"{key}: inf entry", (*n, "finite", "inf"), values, errors), key, _set(key, _poison(math.inf))),
        Corruption(Bad(f"{key}: empty batch", (*n, "empty", "batch", "at least"), empty, errors), key, _set(key, empty_batch)),
        Corruption(Bad(f"{key}: scale 1e30", (*n, "finite"), scales, errors), key, _set(key, _scale(huge))),
        Corruption(Bad(f"{key}: scale 1e-30", (*n, "finite"), "either", errors), key, _set(key, _scale(tiny))),
        Corruption(Bad(f"{key}: not a tensor", (*n, "tensor"), "raise", errors), key, _set(key, lambda d, x: d(wrong_types))),
    ]
    if features:
        out.append(Corruption(Bad(f"{key}: wrong size", shape_names, "raise", errors), key, _set(key, wrong_size)))
    return tuple(out)


def time_corruptions(
    key: str = "t", *, outside: str = "either", endpoints: str = "either", values: str = "propagate",
    errors: tuple[type[BaseException], ...] = DEFAULT_ERRORS, batched: bool = True,
) -> tuple[Corruption, ...]:
    """Corruptions of a time input (a float or a (B,) tensor in [0, 1])."""
    names = (key, "time", "[0, 1]", "shape")

    def like(value: float) -> Callable[[Draw, Any], Any]:
        def fn(draw: Draw, t: Any) -> Any:
            return torch.full_like(t, value) if isinstance(t, torch.Tensor) else value

        return fn

    def drawn(strategy: st.SearchStrategy[float]) -> Callable[[Draw, Any], Any]:
        def fn(draw: Draw, t: Any) -> Any:
            v = draw(strategy)
            return torch.full_like(t, v) if isinstance(t, torch.Tensor) else v

        return fn

    out = [
        Corruption(Bad(f"{key} < 0", names, outside, errors), key, _set(key, drawn(below_zero))),
        Corruption(Bad(f"{key} > 1", names, outside, errors), key, _set(key, drawn(above_one))),
        Corruption(Bad(f"{key} = 0", names, endpoints, errors), key, _set(key, like(0.0))),
        Corruption(Bad(f"{key} = 1", names, endpoints, errors), key, _set(key, like(1.0))),
        Corruption(Bad(f"{key}: NaN", (*names, "finite", "nan"), values, errors), key, _set(key, like(math.nan))),
        Corruption(Bad(f"{key}: not a number", (*names, "tensor", "float"), "raise", errors), key, _set(key, lambda d, t: "0.5")),
    ]
    if batched:
        out.append(
            Corruption(
                Bad(f"{key}: wrong shape", names, "raise", errors), key,
                _set(key, lambda d, t: torch.full((7, 2), 0.5, dtype=t.dtype) if isinstance(t, torch.Tensor) else torch.full((7, 2), 0.5)),
            )
        )
    return tuple(out)


def name_corruptions(
    key: str, kind: str, errors: tuple[type[BaseException], ...] = DEFAULT_ERRORS, *, none_allowed: bool = False,
) -> tuple[Corruption, ...]:
    """An unknown registry name and a non-string name for input ``key`` (``None`` too unless it is
    a documented value)."""
    names = (key, kind, "unknown", "known")
    not_names = [3, 1.5] if none_allowed else [None, 3, 1.5]
    return (
        Corruption(Bad(f"{key}: unknown name", names, "raise", errors), key, _set(key, lambda d, v: d(st.sampled_from(["nope", "", "EULER "])))),
        Corruption(Bad(f"{key}: not a name", (*names, "str", "type"), "raise", errors), key, _set(key, lambda d, v: d(st.sampled_from(not_names)))),
    )


def positive_corruptions(
    key: str, *, integer: bool = False, errors: tuple[type[BaseException], ...] = DEFAULT_ERRORS, zero: str = "raise",
    names: Sequence[str] = (),
) -> tuple[Corruption, ...]:
    """Non-positive, non-finite and wrongly typed values of a positive number ``key``."""
    names = (key, *names, "positive", ">", "finite", "integer")
    bad_numbers = st.sampled_from([-1, -2.5]) if integer else st.sampled_from([-1.0, -1e-3])
    out = [
        Corruption(Bad(f"{key}: negative", names, "raise", errors), key, _set(key, lambda d, v: d(bad_numbers))),
        Corruption(Bad(f"{key}: zero", names, zero, errors), key, _set(key, lambda d, v: 0)),
        Corruption(Bad(f"{key}: wrong type", (*names, "int", "float", "number", "type"), "raise", errors), key, _set(key, lambda d, v: d(st.sampled_from(["2", None])))),
    ]
    if not integer:
        out.append(Corruption(Bad(f"{key}: NaN", names, "raise", errors), key, _set(key, lambda d, v: math.nan)))
        out.append(Corruption(Bad(f"{key}: inf", names, "raise", errors), key, _set(key, lambda d, v: math.inf)))
    else:
        out.append(Corruption(Bad(f"{key}: not an integer", names, "raise", errors), key, _set(key, lambda d, v: 2.5)))
    return tuple(out)
