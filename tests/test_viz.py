"""Tests for flowbridge.viz: figures are built, saved as PNG, and bad shapes are rejected."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("matplotlib")

from matplotlib.figure import Figure  # noqa: E402

from flowbridge.viz import image_grid, plot_samples, plot_trajectories, save_figure  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _assert_png(path: Path) -> None:
    assert path.is_file()
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert len(data) > 1000


def test_plot_samples_saves_png(tmp_path: Path) -> None:
    x = torch.randn(200, 2, generator=_gen(), requires_grad=True)
    ref = torch.randn(500, 2, generator=_gen(1))
    fig = plot_samples(x, ref, title="samples", lim=3.0)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert len(ax.collections) == 2  # reference and samples
    assert ax.get_xlim() == (-3.0, 3.0)
    assert ax.get_title() == "samples"
    out = save_figure(fig, tmp_path / "nested" / "dir" / "samples.png")
    assert out == tmp_path / "nested" / "dir" / "samples.png"
    _assert_png(out)


def test_plot_samples_accepts_numpy_and_existing_axes() -> None:
    fig = Figure()
    ax = fig.add_subplot()
    returned = plot_samples(np.zeros((10, 2)), ax=ax, lim=(-1.0, 2.0))
    assert returned is fig
    assert ax.get_ylim() == (-1.0, 2.0)


@pytest.mark.parametrize("shape", [(10, 3), (10,), (2, 10, 2)])
def test_plot_samples_rejects_bad_shape(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match=r"x must have shape \(N, 2\)"):
        plot_samples(torch.zeros(shape))


def test_plot_samples_rejects_bad_reference_and_lim() -> None:
    with pytest.raises(ValueError, match="reference"):
        plot_samples(torch.zeros(4, 2), torch.zeros(4, 3))
    with pytest.raises(ValueError, match="lim"):
        plot_samples(torch.zeros(4, 2), lim=(1.0, -1.0))


def test_plot_trajectories_saves_png(tmp_path: Path) -> None:
    traj = torch.randn(12, 300, 2, generator=_gen()).cumsum(0)
    fig = plot_trajectories(traj, n=50, title="paths")
    ax = fig.axes[0]
    lines, starts, ends = ax.collections
    assert len(lines.get_segments()) == 50
    np.testing.assert_allclose(starts.get_offsets(), traj[0, :50].numpy(), rtol=1e-6)
    np.testing.assert_allclose(ends.get_offsets(), traj[-1, :50].numpy(), rtol=1e-6)
    _assert_png(save_figure(fig, tmp_path / "traj.png"))


def test_plot_trajectories_n_larger_than_batch() -> None:
    fig = plot_trajectories(torch.zeros(3, 4, 2), n=200)
    assert len(fig.axes[0].collections[0].get_segments()) == 4


@pytest.mark.parametrize("shape", [(5, 2), (5, 4, 3), (2, 3, 4, 2)])
def test_plot_trajectories_rejects_bad_shape(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match=r"trajectory must have shape \(T, N, 2\)"):
        plot_trajectories(torch.zeros(shape))


def test_plot_trajectories_rejects_bad_n() -> None:
    with pytest.raises(ValueError, match="n must"):
        plot_trajectories(torch.zeros(3, 4, 2), n=0)


@pytest.mark.parametrize("channels", [1, 3])
def test_image_grid_saves_png(tmp_path: Path, channels: int) -> None:
    images = torch.rand(5, channels, 8, 8, generator=_gen()) * 2 - 1
    fig = image_grid(images, nrow=2, title="grid")
    data = np.asarray(fig.axes[0].images[0].get_array())
    # 2 images per row, 3 rows, each 8 pixels plus a 1-pixel border.
    assert data.shape[:2] == (3 * 9 + 1, 2 * 9 + 1)
    _assert_png(save_figure(fig, tmp_path / f"grid{channels}.png"))


def test_image_grid_clamps_to_value_range() -> None:
    images = torch.tensor([-5.0, 0.0, 5.0]).reshape(3, 1, 1, 1).expand(3, 1, 2, 2)
    fig = image_grid(images, nrow=3, value_range=(-1.0, 1.0))
    data = np.asarray(fig.axes[0].images[0].get_array())
    assert data.min() >= 0.0 and data.max() <= 1.0
    # Tiles start at pixel 1 and are 2 wide with a 1-pixel border: columns 1, 4 and 7.
    np.testing.assert_allclose(data[1, [1, 4, 7]], [0.0, 0.5, 1.0])


@pytest.mark.parametrize("shape", [(4, 2, 8, 8), (4, 8, 8), (0, 1, 8, 8)])
def test_image_grid_rejects_bad_shape(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="images must have shape"):
        image_grid(torch.zeros(shape))


def test_image_grid_rejects_bad_value_range_and_nrow() -> None:
    with pytest.raises(ValueError, match="value_range"):
        image_grid(torch.zeros(2, 1, 4, 4), value_range=(1.0, 1.0))
    with pytest.raises(ValueError, match="nrow"):
        image_grid(torch.zeros(2, 1, 4, 4), nrow=0)


def test_save_figure_closes_pyplot_figures(tmp_path: Path) -> None:
    plt = pytest.importorskip("matplotlib.pyplot")
    fig, ax = plt.subplots()
    plot_samples(torch.zeros(3, 2), ax=ax)
    num = fig.number
    assert plt.fignum_exists(num)
    _assert_png(save_figure(fig, tmp_path / "pyplot.png"))
    assert not plt.fignum_exists(num)


def test_plot_samples_has_a_legend_when_drawn_over_a_reference() -> None:
    fig = plot_samples(torch.randn(50, 2, generator=_gen()), torch.randn(80, 2, generator=_gen(1)), labels=("model", "data"))
    legend = fig.axes[0].get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["data", "model"]
    assert plot_samples(torch.zeros(3, 2)).axes[0].get_legend() is None  # nothing to tell apart


def test_image_grid_writes_column_labels(tmp_path: Path) -> None:
    fig = image_grid(torch.rand(20, 1, 8, 8, generator=_gen()), nrow=10, title="classes", column_labels=[str(k) for k in range(10)])
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts == [str(k) for k in range(10)]
    _assert_png(save_figure(fig, tmp_path / "labelled.png"))
    with pytest.raises(ValueError, match="column_labels must hold one caption per column"):
        image_grid(torch.rand(20, 1, 8, 8), nrow=10, column_labels=["a"])


def test_plot_curves_draws_one_labelled_line_per_series(tmp_path: Path) -> None:
    from flowbridge.viz import plot_curves

    fig = plot_curves({"train/loss": ([10, 20, 30], [3.0, 0.5, 0.1]), "val/loss": ([30], [0.2])}, title="t")
    ax = fig.axes[0]
    assert [line.get_label() for line in ax.get_lines()] == ["train/loss", "val/loss"]
    assert ax.get_yscale() == "log" and ax.get_xlabel() == "step"  # the values span 30x
    assert plot_curves({"x": ([1, 2], [1.0, 1.5])}).axes[0].get_yscale() == "linear"
    _assert_png(save_figure(fig, tmp_path / "curves.png"))
    with pytest.raises(ValueError, match="equal length"):
        plot_curves({"x": ([1, 2], [1.0])})
    with pytest.raises(ValueError, match="at least one"):
        plot_curves({})


def test_training_writes_a_labelled_final_plot_and_the_curves(tmp_path: Path) -> None:
    """SamplePlot at the end of fitting: the final samples (digits: one column per class, titled with
    the Fréchet distance) and the loss curve."""
    from flowbridge.cli import build_cli
    from flowbridge.training import SamplePlot

    root = Path(__file__).resolve().parents[1]
    cli = build_cli(["fit", "--config", str(root / "models/ddpm_digits.yaml"), "--trainer.max_steps=4", "--trainer.log_every_n_steps=1",
                     f"--trainer.default_root_dir={tmp_path}", "--trainer.accelerator=cpu", "--model.sampler.steps=2", "--threads=1"])
    plot = next(cb for cb in cli.trainer.callbacks if isinstance(cb, SamplePlot))
    _assert_png(plot.final_path)
    _assert_png(plot.curves_path)
    assert plot.history["train/loss"][-1][0] == 4 and len(plot.history["train/loss"]) == 4
