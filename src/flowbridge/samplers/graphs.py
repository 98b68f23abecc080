r"""A fixed-step solver's whole loop captured once as a CUDA graph and replayed.

The step loops have no host synchronisation and read only tensors prepared before the loop
(:class:`~flowbridge._utils.TimePoint` s, Python-float coefficients), so the loop — network calls
included — can be recorded as one CUDA graph. A replay launches it with one call: what remains of
the per-step cost is the GPU's own work, which removes the launch overhead that dominates small
batches and small networks.

What a capture fixes: the field's parameters (their memory; in-place updates such as an optimizer
step or ``load_state_dict`` are seen by later replays), the batch shape, dtype and device, the grid
and the solver's options. :class:`GraphedSampler` holds one capture; :func:`graphed_solve` keeps a
small cache of them per field, which ``flowbridge.sample(..., cuda_graph=True)`` uses.

Random draws inside the graph come from the CUDA generator (the default one, or a
``torch.Generator(device="cuda")`` given as ``generator``): each replay draws fresh numbers, as an
eager run would. A CPU generator cannot be replayed on the device and is refused.
"""

from __future__ import annotations

import weakref
from typing import Any

import torch
from torch import Tensor

from flowbridge.errors import ArgumentError, CapabilityError
from flowbridge.fields.base import Field
from flowbridge.random import GeneratorNoise, RandomSource, SeedNoise, as_noise_source
from flowbridge.samplers.base import Solver, SolveResult

# Per field: the captures made for it, keyed by everything a capture fixes. Weak on the field, so
# that a capture (which holds device memory) goes when its field does.
_CACHE: "weakref.WeakKeyDictionary[Field, dict[tuple[Any, ...], GraphedSampler]]" = weakref.WeakKeyDictionary()
_MAX_PER_FIELD = 4


def check_graphable(solver: Solver[Any], x: Tensor, generator: RandomSource) -> None:
    """Raises a ValueError unless ``solver`` on ``x`` with ``generator`` can be captured."""
    if x.device.type != "cuda":
        raise CapabilityError(f"cuda_graph=True needs the state on a CUDA device; it is on {x.device}")
    if solver.nfe_per_step == 0:
        raise CapabilityError(f"cuda_graph=True needs a fixed-step solver; {solver.name!r} chooses its steps as it goes")
    if solver.stochastic:
        source = as_noise_source(generator)
        on_device = isinstance(source, SeedNoise) or (
            isinstance(source, GeneratorNoise) and (source.generator is None or source.generator.device.type == "cuda")
        )
        if not on_device:
            raise CapabilityError(
                f"cuda_graph=True with the stochastic solver {solver.name!r} draws its noise inside the graph: pass "
                f"generator=None, seeds=/seed=, or a torch.Generator(device='cuda'); got {source!r}"
            )


class GraphedSampler:
    """One captured run of ``solver`` over ``grid`` for states shaped like ``example``.

    Args:
        solver: a fixed-step solver.
        field: the field it integrates.
        example: a state of the shape, dtype and CUDA device to capture for (its values are not used).
        grid: the (N+1,) float64 grid.
        generator: for stochastic solvers ``None``, a CUDA ``torch.Generator`` or a
            :class:`~flowbridge.random.SeedNoise` (whose captured draws equal an eager run's).
        return_trajectory: also capture the states at every grid time.
    """

    def __init__(
        self, solver: Solver[Any], field: Field, example: Tensor, grid: Tensor, *, generator: RandomSource = None,
        return_trajectory: bool = False,
    ) -> None:
        check_graphable(solver, example, generator)
        solver.check(field, len(grid) - 1)
        self.steps = len(grid) - 1
        self.nfe = solver.nfe_per_step * self.steps
        source = as_noise_source(generator)
        self.source = source  # kept alive: the capture reads its generator state or its seed keys
        self.static_x = example.detach().clone()
        # Prepared outside the capture: init copies host data to the device, which a graph must not record.
        self.state = solver.init(field, self.static_x, grid, generator=source)
        start_draws = getattr(source, "draws", None)

        def loop() -> tuple[Tensor, Tensor | None]:
            x, state = self.static_x, self.state
            trajectory = [x] if return_trajectory else None
            for i in range(self.steps):
                x, state = solver.step(field, x, state, i, generator=source)
                if trajectory is not None:
                    trajectory.append(x)
            return x, torch.stack(trajectory) if trajectory is not None else None

        # Warm-up on a side stream (lazy cuBLAS/cuDNN set-up must not happen during capture).
        side = torch.cuda.Stream(device=example.device)
        side.wait_stream(torch.cuda.current_stream(example.device))
        with torch.cuda.stream(side):
            loop()
        torch.cuda.current_stream(example.device).wait_stream(side)
        if start_draws is not None:  # seeded streams: the capture draws what an eager run would
            source.draws = start_draws  # type: ignore[attr-defined]
        self.graph = torch.cuda.CUDAGraph()
        cuda_generator = getattr(source, "generator", None)
        if cuda_generator is not None and hasattr(self.graph, "register_generator_state"):
            self.graph.register_generator_state(cuda_generator)
        with torch.cuda.graph(self.graph):
            self.static_out, self.static_trajectory = loop()

    def __call__(self, x: Tensor) -> SolveResult:
        """Runs the captured loop from ``x`` (copied into the graph's input) and returns copies of
        the results (the graph's own buffers are overwritten by the next replay)."""
        if x.shape != self.static_x.shape or x.dtype != self.static_x.dtype or x.device != self.static_x.device:
            raise ArgumentError(
                f"this capture is for states of shape {tuple(self.static_x.shape)}, {self.static_x.dtype} on "
                f"{self.static_x.device}; got {tuple(x.shape)}, {x.dtype} on {x.device}"
            )
        self.static_x.copy_(x)
        self.graph.replay()
        trajectory = None if self.static_trajectory is None else self.static_trajectory.clone()
        return SolveResult(x=self.static_out.clone(), nfe=self.nfe, trajectory=trajectory)


def graphed_solve(
    solver: Solver[Any], field: Field, x: Tensor, grid: Tensor, *, generator: RandomSource = None,
    return_trajectory: bool = False,
) -> SolveResult:
    """``solver.solve(field, x, grid)`` through a cached CUDA-graph capture (captured on first use)."""
    check_graphable(solver, x, generator)
    parameters = tuple(p.data_ptr() for p in field.parameters())  # a field moved or reloaded needs a new capture
    key = (
        type(solver), repr(vars(solver)), tuple(grid.tolist()), tuple(x.shape), x.dtype, x.device,  # sync-ok: CPU grid
        as_noise_source(generator).graph_key(), return_trajectory, parameters,
    )
    captures = _CACHE.setdefault(field, {})
    graphed = captures.get(key)
    if graphed is None:
        if len(captures) >= _MAX_PER_FIELD:
            captures.pop(next(iter(captures)))
        graphed = captures[key] = GraphedSampler(
            solver, field, x, grid, generator=generator, return_trajectory=return_trajectory
        )
    return graphed(x)


__all__ = ["GraphedSampler", "check_graphable", "graphed_solve"]
