"""Plots of 2-D samples, sampling trajectories and image grids.

matplotlib is an optional dependency (the ``viz`` extra), so it is imported inside each function.
Figures are built with :class:`matplotlib.figure.Figure` directly rather than through
``pyplot``: that needs no backend (rendering to PNG works headless), never opens a window,
does not switch a backend the caller chose, and does not leave figures registered in pyplot's
global state. Every function returns the figure; pass it to :func:`save_figure` or display it.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from flowbridge.errors import ArgumentError

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

ArrayLike = torch.Tensor | np.ndarray | Sequence[Any]

__all__ = ["image_grid", "plot_curves", "plot_samples", "plot_trajectories", "save_figure"]


def _to_numpy(x: ArrayLike, name: str) -> np.ndarray:
    """Returns ``x`` as a float numpy array on the host (tensors are detached first)."""
    if isinstance(x, torch.Tensor):
        # Cast before .numpy(): numpy has no bfloat16, and plotting needs no more than float32.
        return x.detach().to(device="cpu", dtype=torch.float32).numpy()
    try:
        return np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ArgumentError(f"{name} must be a tensor or array of numbers; got {type(x).__name__}") from err


def _figure_and_axes(ax: Axes | None, figsize: tuple[float, float]) -> tuple[Figure, Axes]:
    """Returns the root figure of ``ax``, or a new figure with one axes when ``ax`` is None."""
    from matplotlib.figure import Figure

    if ax is None:
        fig = Figure(figsize=figsize)
        return fig, fig.add_subplot()
    fig = ax.figure
    # Axes placed in a SubFigure report the SubFigure; callers save and close the root figure.
    while not isinstance(fig, Figure):
        fig = fig.figure
    return fig, ax


def _limits(lim: float | tuple[float, float] | None) -> tuple[float, float] | None:
    """Turns ``a`` into ``(-a, a)`` and checks that a ``(lo, hi)`` pair is increasing."""
    if lim is None:
        return None
    if isinstance(lim, (int, float)):
        if lim <= 0:
            raise ArgumentError(f"lim must be positive when given as a number; got {lim}")
        return (-float(lim), float(lim))
    lo, hi = (float(v) for v in lim)
    if not lo < hi:
        raise ArgumentError(f"lim must satisfy lo < hi; got {lim}")
    return lo, hi


def plot_samples(
    x: ArrayLike,
    reference: ArrayLike | None = None,
    *,
    title: str | None = None,
    ax: Axes | None = None,
    s: float = 2.0,
    alpha: float = 0.5,
    lim: float | tuple[float, float] | None = None,
    labels: tuple[str, str] = ("samples", "reference"),
) -> Figure:
    """Scatter plot of 2-D samples, optionally over reference samples drawn in grey, with a legend.

    Args:
        x: samples of shape (N, 2).
        reference: samples of shape (M, 2), e.g. from the target distribution, drawn underneath.
        title: axes title.
        ax: axes to draw into; a new figure is made when None.
        s: marker size.
        alpha: marker opacity.
        lim: axis limits for both axes: ``a`` for ``[-a, a]`` or a ``(lo, hi)`` pair; matplotlib's
            automatic limits when None.
        labels: legend entries of the samples and of the reference (the legend is drawn when a
            reference is given).

    Returns:
        The figure holding the plot (``ax``'s figure when ``ax`` is given).

    Raises:
        ValueError: if ``x`` or ``reference`` is not of shape (N, 2), or ``lim`` is invalid.
    """
    points = _to_numpy(x, "x")
    if points.ndim != 2 or points.shape[1] != 2:
        raise ArgumentError(f"x must have shape (N, 2); got shape {points.shape}")
    ref = None
    if reference is not None:
        ref = _to_numpy(reference, "reference")
        if ref.ndim != 2 or ref.shape[1] != 2:
            raise ArgumentError(f"reference must have shape (M, 2); got shape {ref.shape}")
    limits = _limits(lim)

    fig, ax = _figure_and_axes(ax, (4.0, 4.0))
    if ref is not None:
        ax.scatter(ref[:, 0], ref[:, 1], s=s, alpha=alpha, color="0.7", linewidths=0, label=labels[1], zorder=1)
    ax.scatter(points[:, 0], points[:, 1], s=s, alpha=alpha, color="C0", linewidths=0, label=labels[0], zorder=2)
    if limits is not None:
        ax.set_xlim(*limits)
        ax.set_ylim(*limits)
    ax.set_aspect("equal", adjustable="box")
    if ref is not None:
        ax.legend(loc="upper right", fontsize="small", markerscale=4.0)
    if title is not None:
        ax.set_title(title)
    return fig


def plot_trajectories(
    trajectory: ArrayLike,
    *,
    n: int = 200,
    title: str | None = None,
    ax: Axes | None = None,
) -> Figure:
    """Plots the paths of 2-D particles through time, with start and end points marked.

    Args:
        trajectory: positions of shape (T, N, 2), time first, as returned by the samplers.
        n: number of paths drawn (the first ``n``; all when N is smaller).
        title: axes title.
        ax: axes to draw into; a new figure is made when None.

    Returns:
        The figure holding the plot.

    Raises:
        ValueError: if ``trajectory`` is not of shape (T, N, 2) or ``n < 1``.
    """
    from matplotlib.collections import LineCollection

    traj = _to_numpy(trajectory, "trajectory")
    if traj.ndim != 3 or traj.shape[2] != 2:
        raise ArgumentError(f"trajectory must have shape (T, N, 2); got shape {traj.shape}")
    if n < 1:
        raise ArgumentError(f"n must be at least 1; got {n}")
    traj = traj[:, :n]

    fig, ax = _figure_and_axes(ax, (4.0, 4.0))
    # One LineCollection instead of one Line2D per path keeps a few hundred paths cheap to draw.
    paths = LineCollection(list(np.swapaxes(traj, 0, 1)), linewidths=0.5, colors="0.4", alpha=0.4, zorder=1)
    ax.add_collection(paths)
    ax.scatter(traj[0, :, 0], traj[0, :, 1], s=6.0, color="C0", linewidths=0, label="start", zorder=2)
    ax.scatter(traj[-1, :, 0], traj[-1, :, 1], s=6.0, color="C3", linewidths=0, label="end", zorder=3)
    ax.autoscale_view()
    ax.set_aspect("equal", adjustable="datalim")
    ax.legend(loc="upper right", fontsize="small", markerscale=2.0)
    if title is not None:
        ax.set_title(title)
    return fig


def image_grid(
    images: ArrayLike,
    *,
    nrow: int | None = None,
    title: str | None = None,
    value_range: tuple[float, float] = (-1.0, 1.0),
    column_labels: Sequence[str] | None = None,
) -> Figure:
    """Tiles a batch of images into one grid.

    Args:
        images: images of shape (N, C, H, W) with C = 1 (shown in grey) or C = 3 (RGB).
        nrow: number of images per row (as in ``torchvision.utils.make_grid``); about
            ``sqrt(N)`` when None.
        title: figure title.
        value_range: pixel values mapped to black and white; values outside are clamped.
        column_labels: a caption above each column (e.g. the class drawn in it).

    Returns:
        The figure holding the grid.

    Raises:
        ValueError: if ``images`` is not (N, C, H, W) with N >= 1 and C in {1, 3}, ``nrow < 1``
            or ``value_range`` is not increasing.
    """
    from matplotlib.figure import Figure

    imgs = _to_numpy(images, "images")
    if imgs.ndim != 4 or imgs.shape[1] not in (1, 3) or imgs.shape[0] < 1:
        raise ArgumentError(f"images must have shape (N, C, H, W) with N >= 1 and C in {{1, 3}}; got shape {imgs.shape}")
    lo, hi = (float(v) for v in value_range)
    if not lo < hi:
        raise ArgumentError(f"value_range must satisfy lo < hi; got {value_range}")
    num, channels, height, width = imgs.shape
    if nrow is None:
        nrow = math.ceil(math.sqrt(num))
    if nrow < 1:
        raise ArgumentError(f"nrow must be at least 1; got {nrow}")
    ncol_imgs = min(nrow, num)
    if column_labels is not None and len(column_labels) != ncol_imgs:
        raise ArgumentError(f"column_labels must hold one caption per column ({ncol_imgs}); got {len(column_labels)}")
    nrows = math.ceil(num / ncol_imgs)

    scaled = (np.clip(np.nan_to_num(imgs, nan=lo), lo, hi) - lo) / (hi - lo)
    pad = 1
    # The padding is white so that tile borders stay visible against dark MNIST-like backgrounds.
    grid = np.ones((nrows * (height + pad) + pad, ncol_imgs * (width + pad) + pad, channels), dtype=np.float32)
    for i in range(num):
        r, c = divmod(i, ncol_imgs)
        top, left = pad + r * (height + pad), pad + c * (width + pad)
        grid[top : top + height, left : left + width] = scaled[i].transpose(1, 2, 0)

    scale = 6.0 / max(grid.shape[0], grid.shape[1])
    fig = Figure(figsize=(max(grid.shape[1] * scale, 1.0), max(grid.shape[0] * scale, 1.0) + (0.4 if title else 0.0)))
    ax = fig.add_subplot()
    if channels == 1:
        ax.imshow(grid[..., 0], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    else:
        ax.imshow(grid, interpolation="nearest")
    ax.set_axis_off()
    if column_labels is not None:
        for c, text in enumerate(column_labels):
            ax.text(pad + c * (width + pad) + (width - 1) / 2, -0.5, str(text), ha="center", va="bottom", fontsize="small")
    if title is not None:
        ax.set_title(title, pad=14 if column_labels is not None else 6)
    return fig


def plot_curves(
    curves: dict[str, tuple[Sequence[float], Sequence[float]]],
    *,
    title: str | None = None,
    xlabel: str = "step",
    log_y: bool = True,
    ax: Axes | None = None,
) -> Figure:
    """Training curves: one line per named series of ``(steps, values)``, with a legend.

    Args:
        curves: name -> (steps, values), e.g. ``{"train/loss": (steps, losses)}``.
        title: axes title.
        xlabel: label of the x axis.
        log_y: logarithmic y axis where the values are positive and span at least a decade.
        ax: axes to draw into; a new figure is made when None.

    Raises:
        ValueError: for an empty ``curves`` or a series whose steps and values differ in length.
    """
    if not curves:
        raise ArgumentError("curves must name at least one series")
    fig, ax = _figure_and_axes(ax, (5.0, 3.5))
    lows, highs = [], []
    for name, (steps, values) in curves.items():
        xs, ys = _to_numpy(steps, f"{name} steps"), _to_numpy(values, f"{name} values")
        if xs.shape != ys.shape or xs.ndim != 1:
            raise ArgumentError(f"{name}: steps and values must be 1-D of equal length; got {xs.shape} and {ys.shape}")
        if ys.size:
            lows.append(float(np.nanmin(ys)))
            highs.append(float(np.nanmax(ys)))
        ax.plot(xs, ys, label=name, marker="o" if len(xs) < 20 else None, markersize=3)
    # A log axis where the values span a decade or more (and are all positive).
    if log_y and lows and min(lows) > 0 and max(highs) / min(lows) >= 10:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    if title is not None:
        ax.set_title(title)
    return fig


def save_figure(fig: Figure, path: str | Path, **savefig_kwargs: Any) -> Path:
    """Saves ``fig`` to ``path`` (format from the suffix), creating parent folders, and closes it.

    Args:
        fig: the figure to save.
        path: destination file, e.g. ``outputs/samples.png``.
        **savefig_kwargs: passed to :meth:`matplotlib.figure.Figure.savefig`; ``dpi=150`` and
            ``bbox_inches="tight"`` unless given.

    Returns:
        The path written.
    """
    if not hasattr(fig, "savefig"):
        raise ArgumentError(f"fig must be a matplotlib Figure; got {type(fig).__name__}")
    if not isinstance(path, (str, Path)):
        raise ArgumentError(f"path must be a str or pathlib.Path; got {type(path).__name__}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    savefig_kwargs.setdefault("dpi", 150)
    savefig_kwargs.setdefault("bbox_inches", "tight")
    fig.savefig(path, **savefig_kwargs)
    # Figures from this module are not registered with pyplot and are freed with their last
    # reference; a figure the caller made through pyplot must be unregistered there, or it stays
    # alive (and counts toward pyplot's too-many-figures warning). pyplot is only consulted if the
    # caller already imported it, so saving never selects a backend.
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is not None:
        pyplot.close(fig)
    return path
