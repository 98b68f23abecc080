"""Data modules and batch streams: shapes, validation messages, reproducible and resumable orders."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from flowbridge.training import TOY2D, BatchStream, DataError, Digits, Mixture, PairedToy, TensorFile, Toy2D, sample_toy2d


@pytest.mark.parametrize("name", sorted(TOY2D))
def test_toy_sets_are_finite_centred_and_seeded(name: str) -> None:
    x = sample_toy2d(name, 4000, generator=torch.Generator().manual_seed(0))
    y = sample_toy2d(name, 4000, generator=torch.Generator().manual_seed(0))
    assert x.shape == (4000, 2) and torch.isfinite(x).all() and torch.equal(x, y)
    assert x.mean(0).abs().max() < 0.5 and 0.3 < float(x.std(0).min()) and float(x.std(0).max()) < 3.0


def test_eight_gaussians_modes_are_equally_weighted() -> None:
    x = sample_toy2d("8gaussians", 16000, generator=torch.Generator().manual_seed(1))
    sector = torch.round(torch.atan2(x[:, 1], x[:, 0]) / (math.pi / 4)).long() % 8
    freq = torch.bincount(sector, minlength=8).double() / x.shape[0]
    assert (freq - 1 / 8).abs().max() < 4 * math.sqrt(1 / 8 * 7 / 8 / 16000)


def test_unknown_toy_name_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match="known toy data sets: 8gaussians, checkerboard"):
        Toy2D("banana")


def test_mixture_data_follow_the_analytic_truth() -> None:
    dm = Mixture(n=20000, components=4, radius=2.0, std=0.3)
    dm.setup("fit")
    x = dm.splits.train.double()
    truth = dm.truth()
    torch.testing.assert_close(x.mean(0), truth.mean(), atol=0.05, rtol=0)
    torch.testing.assert_close(torch.cov(x.T), truth.covariance(), atol=0.08, rtol=0)


def test_digits_are_scaled_and_labelled() -> None:
    dm = Digits(val_size=97)
    dm.setup("fit")
    assert dm.event_shape == (1, 8, 8) and dm.num_classes == 10
    x = torch.cat([dm.splits.train, dm.splits.val])
    assert x.shape[0] == 1797 and float(x.min()) == -1.0 and float(x.max()) == 1.0
    assert dm.splits.val.shape[0] == 97


def test_paired_toy_supplies_independent_source_batches() -> None:
    dm = PairedToy("8gaussians", "moons", n=512, val_size=64, batch_size=128)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch.source.shape == batch.target.shape == (128, 2) and dm.has_source and not dm.paired


def test_tensor_file_reads_pt_dicts_with_labels(tmp_path: Path) -> None:
    x, y = torch.randn(100, 3), torch.randint(0, 4, (100,))
    torch.save({"x": x, "y": y}, tmp_path / "d.pt")
    dm = TensorFile(str(tmp_path / "d.pt"), event_shape=[3], val_fraction=0.2)
    dm.setup("fit")
    assert dm.splits.train.shape == (80, 3) and dm.num_classes == 4
    # Each held-out row keeps its label.
    rows = {tuple(r.tolist()): int(lbl) for r, lbl in zip(x, y)}
    for r, lbl in zip(dm.splits.val, dm.splits.val_label):
        assert rows[tuple(r.tolist())] == int(lbl)


@pytest.mark.parametrize(
    "array, message",
    [
        (np.full((10, 2), np.inf, dtype=np.float32), "non-finite values \\(inf\\) in 10 samples"),
        (np.zeros((10, 2, 2), dtype=np.float32), "expected samples of shape \\(2,\\)"),
        (np.zeros((10, 2), dtype=bool), "expected real numbers"),
        (np.zeros(10, dtype=np.float32), "expected rank >= 2"),
    ],
)
def test_tensor_file_validation_names_the_file(tmp_path: Path, array: np.ndarray, message: str) -> None:
    path = tmp_path / "bad.npy"
    np.save(path, array)
    dm = TensorFile(str(path), event_shape=[2])
    with pytest.raises(DataError, match=message) as info:
        dm.setup("fit")
    assert str(path) in str(info.value)


def test_tensor_file_unknown_extension_and_missing_file(tmp_path: Path) -> None:
    (tmp_path / "x.csv").write_text("1,2\n")
    with pytest.raises(DataError, match="unknown data file type '.csv'"):
        TensorFile(str(tmp_path / "x.csv")).setup("fit")
    with pytest.raises(DataError, match="no such data file"):
        TensorFile(str(tmp_path / "nope.pt")).setup("fit")


def test_batch_stream_orders_are_reproducible_and_resumable() -> None:
    x = torch.arange(100.0)[:, None]
    stream = BatchStream(x, 10, seed=4)
    stream.set_epoch(3)
    full = [b.target.flatten().tolist() for b in stream]
    assert sorted(sum(full, [])) == list(range(100))  # one epoch visits every row once
    again = BatchStream(x, 10, seed=4)
    again.set_epoch(3)
    it = iter(again)
    first = [next(it).target.flatten().tolist() for _ in range(4)]
    state = again.state_dict()
    assert state == {"epoch": 3, "position": 4}
    resumed = BatchStream(x, 10, seed=4)
    resumed.load_state_dict(state)
    rest = [b.target.flatten().tolist() for b in resumed]
    assert first + rest == full
    other = BatchStream(x, 10, seed=4)
    other.set_epoch(4)
    assert [b.target.flatten().tolist() for b in other] != full


def test_batch_stream_shards_ranks_disjointly() -> None:
    x = torch.arange(96.0)[:, None]
    shards = [BatchStream(x, 8, seed=0, rank=r, world_size=3) for r in range(3)]
    rows = [torch.cat([b.target for b in s]).flatten() for s in shards]
    assert all(len(s) == 4 for s in shards)
    assert sorted(torch.cat(rows).long().tolist()) == list(range(96))


def _write_images(folder: Path, count: int, size: int, mode: str, value: int) -> None:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        arr = np.full((size, size) if mode == "L" else (size, size, 3), (value + i) % 256, dtype=np.uint8)
        Image.fromarray(arr, mode=mode).save(folder / f"img{i}.{'png' if i % 2 else 'jpg'}", quality=100)


def test_image_folder_reads_class_folders_as_labels(tmp_path: Path) -> None:
    from flowbridge.training import ImageFolder

    _write_images(tmp_path / "cats", 6, 8, "RGB", 0)
    _write_images(tmp_path / "dogs", 4, 8, "L", 200)
    (tmp_path / "notes.txt").write_text("not an image")
    dm = ImageFolder(str(tmp_path), channels=3, val_fraction=0.2)
    dm.setup("fit")
    assert dm.class_names == ["cats", "dogs"] and dm.num_classes == 2 and dm.event_shape == (3, 8, 8)
    x = torch.cat([dm.splits.train, dm.splits.val])
    y = torch.cat([dm.splits.train_label, dm.splits.val_label])
    assert x.shape[0] == 10 and float(x.min()) >= -1.0 and float(x.max()) <= 1.0
    assert int((y == 0).sum()) == 6 and int((y == 1).sum()) == 4
    # Pixel value v maps to v / 127.5 - 1 (PNG exactly; JPEG of a flat image within its rounding).
    dogs = x[y == 1]
    assert torch.allclose(dogs.amin(dim=(1, 2, 3)), dogs.amax(dim=(1, 2, 3)), atol=2 / 127.5)
    assert float(dogs.mean()) == pytest.approx((200 + 1.5) / 127.5 - 1, abs=2 / 127.5)


def test_image_folder_unlabelled_resized_greyscale_and_its_errors(tmp_path: Path) -> None:
    from flowbridge.training import ImageFolder

    _write_images(tmp_path / "flat", 5, 12, "RGB", 50)
    dm = ImageFolder(str(tmp_path / "flat"), image_size=4, channels=1)
    dm.setup("fit")
    assert dm.event_shape == (1, 4, 4) and dm.num_classes is None and dm.class_names == []
    _write_images(tmp_path / "mixed", 3, 8, "L", 0)
    _write_images(tmp_path / "mixed" / "sub", 3, 8, "L", 0)
    with pytest.raises(DataError, match="both directly .* and in class folders"):
        ImageFolder(str(tmp_path / "mixed")).setup("fit")
    _write_images(tmp_path / "sizes" / "a", 3, 8, "L", 0)
    _write_images(tmp_path / "sizes" / "b", 3, 6, "L", 0)
    with pytest.raises(DataError, match="different sizes .* set image_size"):
        ImageFolder(str(tmp_path / "sizes")).setup("fit")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.png").write_bytes(b"no png")
    (tmp_path / "bad" / "y.png").write_bytes(b"no png")
    with pytest.raises(DataError, match="x.png: not a readable image"):
        ImageFolder(str(tmp_path / "bad")).setup("fit")
    with pytest.raises(DataError, match="no such folder"):
        ImageFolder(str(tmp_path / "nope")).setup("fit")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no PNG/JPG/JPEG images"):
        ImageFolder(str(tmp_path / "empty")).setup("fit")
    with pytest.raises(ValueError, match="channels"):
        ImageFolder(str(tmp_path), channels=2)


def test_an_image_folder_recipe_trains_and_samples(tmp_path: Path) -> None:
    """``data: ImageFolder`` in place of Digits: the ddpm recipe trains on a folder of PNGs."""
    from flowbridge.cli import main

    rng = np.random.default_rng(0)
    from PIL import Image

    for k, cls in enumerate(("zero", "one")):
        (tmp_path / "img" / cls).mkdir(parents=True)
        for i in range(40):
            Image.fromarray((rng.random((8, 8)) * 64 + 128 * k).astype(np.uint8), mode="L").save(tmp_path / "img" / cls / f"{i}.png")
    root = Path(__file__).resolve().parents[2]
    args = ["fit", "--config", str(root / "models/ddpm_digits.yaml"), "--data=flowbridge.training.ImageFolder",
            f"--data.root={tmp_path / 'img'}", "--data.channels=1", "--data.batch_size=16", "--model.net.init_args.num_classes=2", "--model.sampler.steps=2",
            "--trainer.max_steps=3", f"--trainer.default_root_dir={tmp_path / 'run'}",
            "--trainer.accelerator=cpu"]
    assert main(args) == 0
    out = tmp_path / "s.pt"
    assert main(["sample", "--ckpt", str(tmp_path / "run" / "checkpoints" / "last.ckpt"), "--num", "4", "--steps", "2",
                 "--out", str(out), "--plot", str(tmp_path / "s.png")]) == 0
    assert torch.load(out, weights_only=True)["x"].shape == (4, 1, 8, 8)
