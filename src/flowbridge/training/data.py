"""LightningDataModules: toy 2-D sets, analytic mixtures, digits, tensor files, data-to-data pairs.

Every module draws its data once from ``seed`` (CPU, float32), validates them at setup (shape,
dtype, finite; errors name the file or set and the problem), and serves resumable, rank-sharded
:class:`~flowbridge.training.streams.BatchStream` batches. Held-out samples (``reference``) feed the
sample-quality callbacks; :class:`Mixture` also exposes the exact distribution (``truth``).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import torch
from torch import Tensor

from flowbridge.analytic import GaussianMixture
from flowbridge.errors import ArgumentError, DataError
from flowbridge.training.streams import BatchStream, DataBatch, PredictStream
from flowbridge.training.toy2d import TOY2D, sample_toy2d


@dataclass
class DataSplits:
    """Train and held-out tensors (labels aligned with targets; sources optional)."""

    train: Tensor
    val: Tensor
    train_label: Tensor | None = None
    val_label: Tensor | None = None
    train_source: Tensor | None = None
    val_source: Tensor | None = None


def validate_samples(x: object, name: str, *, event_shape: tuple[int, ...] | None = None) -> Tensor:
    """Checks that ``x`` is a finite real (N, ...) array and returns it as float32.

    Args:
        x: a tensor or numpy array.
        name: what to call it in errors (a file path or a data set name).
        event_shape: the expected shape of one sample, if known.

    Raises:
        DataError: naming ``name`` and what is wrong (type, rank, shape, dtype, NaN/inf count).
    """
    if isinstance(x, np.ndarray):
        if x.dtype == object:
            raise DataError(f"{name}: holds Python objects (dtype=object); expected a numeric array")
        x = torch.from_numpy(np.ascontiguousarray(x))
    if not isinstance(x, Tensor):
        raise DataError(f"{name}: expected a tensor or array of samples; got {type(x).__name__}")
    if x.dtype == torch.bool or x.is_complex():
        raise DataError(f"{name}: expected real numbers; got dtype {x.dtype}")
    if x.ndim < 2:
        raise DataError(
            f"{name}: expected rank >= 2, (num_samples, *sample_shape); got rank {x.ndim} with shape {tuple(x.shape)}"
        )
    if event_shape is not None and tuple(x.shape[1:]) != tuple(event_shape):
        raise DataError(
            f"{name}: expected samples of shape {tuple(event_shape)} (rank {len(event_shape) + 1} with the batch); "
            f"got shape {tuple(x.shape)}"
        )
    if x.shape[0] < 2:
        raise DataError(f"{name}: needs at least 2 samples; got {x.shape[0]}")
    x = x.to(torch.float32)
    bad = ~torch.isfinite(x)
    if bool(bad.any()):
        rows = bad.reshape(x.shape[0], -1).any(dim=1).nonzero().flatten()
        kinds = "NaN" if bool(torch.isnan(x).any()) else "inf"
        raise DataError(
            f"{name}: {int(bad.sum())} non-finite values ({kinds}) in {rows.numel()} samples, first at row "
            f"{int(rows[0])}; clean or drop them before training"
        )
    return x.contiguous()


def validate_labels(y: object, name: str, n: int) -> Tensor:
    """Checks integer class labels of shape (n,) with values >= 0 and returns them as long."""
    if isinstance(y, np.ndarray):
        y = torch.from_numpy(y)
    if not isinstance(y, Tensor) or y.is_floating_point() or y.dtype == torch.bool or y.shape != (n,):
        got = f"{type(y).__name__} {getattr(y, 'dtype', '')} {tuple(getattr(y, 'shape', ()))}"
        raise DataError(f"{name}: labels must be an integer array of shape ({n},); got {got}")
    if bool((y < 0).any()):
        raise DataError(f"{name}: labels must be >= 0")
    return y.long()


class GenerativeDataModule(pl.LightningDataModule):
    """Base class: subclasses implement :meth:`load` returning :class:`DataSplits`.

    Args:
        batch_size: training rows per step and rank.
        seed: seed of the data draw and of the epoch orders.
        predict_samples: how many samples ``Trainer.predict`` generates.
    """

    def __init__(self, batch_size: int = 256, seed: int = 0, predict_samples: int = 2000) -> None:
        super().__init__()
        if not (isinstance(batch_size, int) and batch_size >= 1):
            raise ArgumentError(f"batch_size must be a positive integer; got {batch_size!r}")
        self.batch_size, self.seed, self.predict_samples = batch_size, int(seed), int(predict_samples)
        self.splits: DataSplits | None = None
        self._train_stream: BatchStream | None = None

    # -- to implement ------------------------------------------------------------------------------
    def load(self) -> DataSplits:
        raise NotImplementedError

    @property
    def name(self) -> str:
        """How errors and reports refer to this data."""
        return type(self).__name__

    # -- shared ------------------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        if self.splits is not None:
            return
        s = self.load()
        train = validate_samples(s.train, f"{self.name} (train)")
        val = validate_samples(s.val, f"{self.name} (held-out)", event_shape=tuple(train.shape[1:]))
        label = validate_labels(s.train_label, self.name, train.shape[0]) if s.train_label is not None else None
        val_label = validate_labels(s.val_label, self.name, val.shape[0]) if s.val_label is not None else None
        src = val_src = None
        if s.train_source is not None:
            src = validate_samples(s.train_source, f"{self.name} (source)", event_shape=tuple(train.shape[1:]))
            val_src = validate_samples(s.val_source, f"{self.name} (held-out source)", event_shape=tuple(train.shape[1:]))
        self.splits = DataSplits(train, val, label, val_label, src, val_src)

    def _require(self) -> DataSplits:
        if self.splits is None:
            self.setup()
        assert self.splits is not None
        return self.splits

    @property
    def event_shape(self) -> tuple[int, ...]:
        """The shape of one sample."""
        return tuple(self._require().train.shape[1:])

    @property
    def num_classes(self) -> int | None:
        """Number of classes (max label + 1), or None for unlabelled data."""
        label = self._require().train_label
        return None if label is None else int(label.max()) + 1

    @property
    def has_source(self) -> bool:
        """Whether the data supply source samples (data-to-data transport)."""
        return self._require().train_source is not None

    @property
    def paired(self) -> bool:
        """Whether source row i belongs to target row i (otherwise they are independent)."""
        return False

    def reference(self, n: int | None = None) -> Tensor:
        """Up to ``n`` held-out target samples (for sample-quality metrics)."""
        val = self._require().val
        return val if n is None else val[:n]

    def reference_labels(self, n: int | None = None) -> Tensor | None:
        label = self._require().val_label
        return label if label is None or n is None else label[:n]

    def source_reference(self, n: int | None = None) -> Tensor | None:
        """Up to ``n`` held-out source samples (the starting points of data-to-data sampling)."""
        src = self._require().val_source
        return src if src is None or n is None else src[:n]

    def example_batch(self) -> DataBatch:
        """The first ``batch_size`` training rows as one batch (to measure a step's work)."""
        s = self._require()
        n = min(self.batch_size, s.train.shape[0])
        pick = (lambda t: None if t is None else t[:n])  # noqa: E731
        return DataBatch(s.train[:n], pick(s.train_source), pick(s.train_label))

    def truth(self) -> GaussianMixture | None:
        """The exact target distribution where it is known (see :class:`Mixture`)."""
        return None

    def _rank(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def training_device(self) -> torch.device:
        """Where training runs: the Trainer's root device (CPU without a Trainer)."""
        trainer = self.trainer
        return trainer.strategy.root_device if trainer is not None else torch.device("cpu")

    def train_dataloader(self) -> BatchStream:
        s = self._require()
        rank, world = self._rank()
        # In-memory data move to the training device once, so that a step's batch is one
        # index_select there instead of a host-to-device copy (which a GPU step would wait for).
        device = self.training_device()
        move = (lambda t: None if t is None else t.to(device))  # noqa: E731
        self._train_stream = BatchStream(
            move(s.train), self.batch_size, seed=self.seed, label=move(s.train_label), source=move(s.train_source),
            independent_source=not self.paired, rank=rank, world_size=world,
        )
        return self._train_stream

    def val_dataloader(self) -> BatchStream:
        s = self._require()
        rank, world = self._rank()
        size = min(self.batch_size * 4, max(1, s.val.shape[0] // world))
        return BatchStream(
            s.val, size, seed=self.seed, label=s.val_label, source=s.val_source,
            independent_source=False if s.val_source is None else not self.paired,
            shuffle=False, drop_last=True, rank=rank, world_size=world,
        )

    def predict_dataloader(self) -> PredictStream:
        rank, world = self._rank()
        return PredictStream(self.predict_samples, self.batch_size * 4, rank, world)


def _sample_count(value: object, name: str) -> int:
    """``value`` as an int; ValueError/TypeError naming ``name`` unless it is an integer >= 2.

    Every split must hold at least 2 samples (:func:`validate_samples`); checking the count here
    names the argument instead of the split it produced.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ArgumentError(f"{name} must be an integer >= 2 (a number of samples); got {value!r}")
    if value < 2:
        raise ArgumentError(f"{name} must be an integer >= 2 (a number of samples); got {value}")
    return int(value)


def _generator(seed: int, stream: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 7919 + stream)


class Toy2D(GenerativeDataModule):
    """A 2-D toy set: ``moons``, ``8gaussians``, ``checkerboard``, ``swissroll``, ``circles``, ``spirals``.

    Args:
        name: which set.
        n: number of training points (a fresh ``val_size`` points are held out).
        val_size: number of held-out points.
        batch_size: see :class:`GenerativeDataModule`.
        seed: see :class:`GenerativeDataModule`.
        predict_samples: see :class:`GenerativeDataModule`.
    """

    def __init__(
        self, name: str = "moons", n: int = 20_000, val_size: int = 4000, batch_size: int = 256, seed: int = 0,
        predict_samples: int = 2000,
    ) -> None:
        super().__init__(batch_size, seed, predict_samples)
        self.save_hyperparameters()
        if name not in TOY2D:
            raise ArgumentError(f"unknown toy data set {name!r}; known toy data sets: {', '.join(sorted(TOY2D))}")
        self.set_name, self.n, self.val_size = name, _sample_count(n, "n"), _sample_count(val_size, "val_size")

    @property
    def name(self) -> str:
        return f"Toy2D({self.set_name!r})"

    def sample_reference(self, n: int, *, generator: torch.Generator | None = None) -> Tensor:
        """Fresh exact draws (for noise floors)."""
        return sample_toy2d(self.set_name, n, generator=generator or torch.Generator()).float()

    def load(self) -> DataSplits:
        return DataSplits(
            train=sample_toy2d(self.set_name, self.n, generator=_generator(self.seed, 0)),
            val=sample_toy2d(self.set_name, self.val_size, generator=_generator(self.seed, 1)),
        )


class Mixture(GenerativeDataModule):
    """Samples of an analytic Gaussian mixture, so that trained models can be scored against the truth.

    By default ``components`` isotropic components of standard deviation ``std`` sit evenly on a
    circle of ``radius`` in the first two coordinates of R^``dim``; ``means`` (K, dim) overrides
    their placement and ``weights`` their (normalised) weights.

    Args:
        n: training samples.
        val_size: held-out samples.
        dim: dimension of the samples.
        components: number of components on the default ring.
        radius: radius of the default ring.
        std: standard deviation of each component.
        means: explicit (K, dim) means.
        weights: explicit (K,) positive weights.
    """

    def __init__(
        self, n: int = 20_000, val_size: int = 4000, dim: int = 2, components: int = 6, radius: float = 2.0,
        std: float = 0.3, means: list[list[float]] | None = None, weights: list[float] | None = None,
        batch_size: int = 256, seed: int = 0, predict_samples: int = 2000,
    ) -> None:
        super().__init__(batch_size, seed, predict_samples)
        self.save_hyperparameters()
        if means is not None:
            m = torch.tensor(means, dtype=torch.float64)
            if m.ndim != 2:
                raise ArgumentError(f"means must be a (K, dim) list of lists; got shape {tuple(m.shape)}")
        else:
            if dim < 2 or components < 1:
                raise ArgumentError(f"the default ring needs dim >= 2 and components >= 1; got dim={dim}, components={components}")
            angle = torch.arange(components, dtype=torch.float64) * (2 * math.pi / components)
            m = torch.zeros(components, dim, dtype=torch.float64)
            m[:, 0], m[:, 1] = radius * torch.cos(angle), radius * torch.sin(angle)
        k = m.shape[0]
        w = torch.ones(k, dtype=torch.float64) if weights is None else torch.tensor(weights, dtype=torch.float64)
        if w.shape != (k,) or not bool((w > 0).all()):
            raise ArgumentError(f"weights must be {k} positive numbers; got {weights}")
        if not std > 0:
            raise ArgumentError(f"std must be > 0; got {std}")
        self.mixture = GaussianMixture(w / w.sum(), m, torch.full((k,), float(std) ** 2, dtype=torch.float64))
        self.n, self.val_size = _sample_count(n, "n"), _sample_count(val_size, "val_size")

    def truth(self) -> GaussianMixture:
        return self.mixture

    def sample_reference(self, n: int, *, generator: torch.Generator | None = None) -> Tensor:
        return self.mixture.sample(n, generator=generator).float()

    def load(self) -> DataSplits:
        return DataSplits(
            train=self.mixture.sample(self.n, generator=_generator(self.seed, 0)),
            val=self.mixture.sample(self.val_size, generator=_generator(self.seed, 1)),
        )


class Digits(GenerativeDataModule):
    """scikit-learn's bundled 8x8 digits (1797 images), scaled to [-1, 1], shape (1, 8, 8), with labels.

    Args:
        val_size: images held out (a seeded random subset).
        batch_size: see :class:`GenerativeDataModule`.
        seed: see :class:`GenerativeDataModule`.
        predict_samples: see :class:`GenerativeDataModule`.
    """

    def __init__(self, val_size: int = 197, batch_size: int = 128, seed: int = 0, predict_samples: int = 100) -> None:
        super().__init__(batch_size, seed, predict_samples)
        self.save_hyperparameters()
        self.val_size = _sample_count(val_size, "val_size")

    @property
    def name(self) -> str:
        return "Digits (sklearn.datasets.load_digits)"

    def load(self) -> DataSplits:
        from sklearn.datasets import load_digits

        bunch = load_digits()
        x = torch.from_numpy(bunch.data.astype(np.float32)).reshape(-1, 1, 8, 8) / 8.0 - 1.0
        y = torch.from_numpy(bunch.target.astype(np.int64))
        if self.val_size > x.shape[0] - 2:
            raise ArgumentError(
                f"val_size={self.val_size} leaves fewer than 2 of the {x.shape[0]} digits available for training; "
                f"need 2 <= val_size <= {x.shape[0] - 2}"
            )
        order = torch.randperm(x.shape[0], generator=_generator(self.seed, 0))
        held, kept = order[: self.val_size], order[self.val_size :]
        return DataSplits(train=x[kept], val=x[held], train_label=y[kept], val_label=y[held])


def load_array_file(path: str | Path, *, key: str = "x") -> tuple[object, object | None]:
    """Reads ``.pt`` (a tensor, or a dict with ``key`` and optionally ``"y"``; weights_only) or ``.npy``/``.npz``.

    Raises:
        DataError: for a missing file, an unknown extension or an unreadable content (naming the file).
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: no such data file")
    suffix = p.suffix.lower()
    try:
        if suffix in (".pt", ".pth"):
            obj = torch.load(p, map_location="cpu", weights_only=True)
        elif suffix == ".npy":
            obj = np.load(p, allow_pickle=False)
        elif suffix == ".npz":
            with np.load(p, allow_pickle=False) as z:
                obj = {k: z[k] for k in z.files}
        else:
            raise DataError(f"{p}: unknown data file type {suffix!r}; expected .pt, .pth, .npy or .npz")
    except DataError:
        raise
    except Exception as exc:  # any reader failure becomes one message naming the file
        raise DataError(f"{p}: could not be read ({type(exc).__name__}: {exc})") from exc
    if isinstance(obj, dict):
        if key not in obj:
            raise DataError(f"{p}: holds keys {sorted(obj)}; expected the samples under {key!r}")
        return obj[key], obj.get("y")
    return obj, None


class TensorFile(GenerativeDataModule):
    """Samples from a ``.pt``/``.npy``/``.npz`` file of shape (N, *sample_shape).

    Args:
        path: the samples (a dict file holds them under ``"x"``, labels under ``"y"``).
        labels: optional separate file of (N,) integer labels.
        source: optional file of (N, *sample_shape) source samples paired row by row with ``path``
            (use :class:`~flowbridge.couplings.PairedCoupling`).
        event_shape: the expected shape of one sample; checked at setup.
        val_fraction: fraction of rows held out (a seeded random subset).
        batch_size: see :class:`GenerativeDataModule`.
        seed: see :class:`GenerativeDataModule`.
        predict_samples: see :class:`GenerativeDataModule`.
    """

    def __init__(
        self, path: str, labels: str | None = None, source: str | None = None, event_shape: list[int] | None = None,
        val_fraction: float = 0.1, batch_size: int = 256, seed: int = 0, predict_samples: int = 2000,
    ) -> None:
        super().__init__(batch_size, seed, predict_samples)
        self.save_hyperparameters()
        if not 0 < val_fraction < 1:
            raise ArgumentError(f"val_fraction must lie in (0, 1); got {val_fraction}")
        self.path, self.labels_path, self.source_path = str(path), labels, source
        self.expected_shape = tuple(event_shape) if event_shape is not None else None
        self.val_fraction = float(val_fraction)

    @property
    def name(self) -> str:
        return self.path

    @property
    def paired(self) -> bool:
        return self.source_path is not None

    def load(self) -> DataSplits:
        raw, raw_y = load_array_file(self.path)
        x = validate_samples(raw, self.path, event_shape=self.expected_shape)
        y = None
        if self.labels_path is not None:
            raw_y, _ = load_array_file(self.labels_path, key="y")
            y = validate_labels(raw_y, self.labels_path, x.shape[0])
        elif raw_y is not None:
            y = validate_labels(raw_y, self.path, x.shape[0])
        src = None
        if self.source_path is not None:
            raw_src, _ = load_array_file(self.source_path)
            src = validate_samples(raw_src, self.source_path, event_shape=tuple(x.shape[1:]))
            if src.shape[0] != x.shape[0]:
                raise DataError(f"{self.source_path}: {src.shape[0]} source rows but {self.path} has {x.shape[0]}; pairs need equal counts")
        order = torch.randperm(x.shape[0], generator=_generator(self.seed, 0))
        n_val = max(1, int(round(self.val_fraction * x.shape[0])))
        held, kept = order[:n_val], order[n_val:]
        pick = (lambda t, i: None if t is None else t[i])  # noqa: E731
        return DataSplits(x[kept], x[held], pick(y, kept), pick(y, held), pick(src, kept), pick(src, held))


class PairedToy(GenerativeDataModule):
    """Data-to-data transport between two 2-D toy sets (e.g. 8gaussians -> moons), drawn independently.

    Args:
        source: the toy set at t = 0.
        target: the toy set at t = 1.
        n: training points of each.
        val_size: held-out points of each.
        batch_size: see :class:`GenerativeDataModule`.
        seed: see :class:`GenerativeDataModule`.
        predict_samples: see :class:`GenerativeDataModule`.
    """

    def __init__(
        self, source: str = "8gaussians", target: str = "moons", n: int = 20_000, val_size: int = 4000,
        batch_size: int = 256, seed: int = 0, predict_samples: int = 2000,
    ) -> None:
        super().__init__(batch_size, seed, predict_samples)
        self.save_hyperparameters()
        for role, value in (("source", source), ("target", target)):
            if value not in TOY2D:
                raise ArgumentError(f"unknown toy data set {value!r} for {role}; known toy data sets: {', '.join(sorted(TOY2D))}")
        self.source_name, self.target_name = source, target
        self.n, self.val_size = _sample_count(n, "n"), _sample_count(val_size, "val_size")

    @property
    def name(self) -> str:
        return f"PairedToy({self.source_name!r} -> {self.target_name!r})"

    def sample_reference(self, n: int, *, generator: torch.Generator | None = None) -> Tensor:
        return sample_toy2d(self.target_name, n, generator=generator or torch.Generator()).float()

    def load(self) -> DataSplits:
        return DataSplits(
            train=sample_toy2d(self.target_name, self.n, generator=_generator(self.seed, 0)),
            val=sample_toy2d(self.target_name, self.val_size, generator=_generator(self.seed, 1)),
            train_source=sample_toy2d(self.source_name, self.n, generator=_generator(self.seed, 2)),
            val_source=sample_toy2d(self.source_name, self.val_size, generator=_generator(self.seed, 3)),
        )


IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg")


class ImageFolder(GenerativeDataModule):
    """Images from a folder of PNG/JPEG files, scaled to [-1, 1], shape (channels, size, size).

    Either every image lies in a sub-folder of ``root`` (one folder per class; the classes are the
    sorted folder names, available as :attr:`class_names`, and the labels their indices), or every
    image lies in ``root`` itself (unlabelled data). All images are read at setup into memory.

    Args:
        root: the folder.
        image_size: resize every image to ``image_size x image_size`` (Lanczos); ``None``: keep the
            size, which must then be the same for every image.
        channels: 1 (greyscale) or 3 (RGB); images are converted.
        val_fraction: fraction of images held out (a seeded random subset).
        batch_size: see :class:`GenerativeDataModule`.
        seed: see :class:`GenerativeDataModule`.
        predict_samples: see :class:`GenerativeDataModule`.
    """

    def __init__(
        self, root: str, image_size: int | None = None, channels: int = 3, val_fraction: float = 0.1,
        batch_size: int = 128, seed: int = 0, predict_samples: int = 100,
    ) -> None:
        super().__init__(batch_size, seed, predict_samples)
        self.save_hyperparameters()
        if channels not in (1, 3):
            raise ArgumentError(f"channels must be 1 (greyscale) or 3 (RGB); got {channels!r}")
        if image_size is not None and (isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1):
            raise ArgumentError(f"image_size must be a positive integer or None; got {image_size!r}")
        if not 0 < val_fraction < 1:
            raise ArgumentError(f"val_fraction must lie in (0, 1); got {val_fraction}")
        self.root, self.image_size, self.channels, self.val_fraction = str(root), image_size, channels, float(val_fraction)
        self.class_names: list[str] = []

    @property
    def name(self) -> str:
        return self.root

    def files(self) -> tuple[list[Path], list[int] | None]:
        """The image files, and their class indices (None for unlabelled data)."""
        root = Path(self.root)
        if not root.is_dir():
            raise DataError(f"{root}: no such folder of images")
        is_image = lambda p: p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS  # noqa: E731
        loose = sorted(p for p in root.iterdir() if is_image(p))
        folders = sorted(p for p in root.iterdir() if p.is_dir() and any(is_image(f) for f in p.iterdir()))
        if loose and folders:
            raise DataError(
                f"{root}: holds images both directly ({loose[0].name}, ...) and in class folders ({folders[0].name}/, ...); "
                "put every image in a class folder, or none"
            )
        if folders:
            self.class_names = [f.name for f in folders]
            files, labels = [], []
            for k, folder in enumerate(folders):
                members = sorted(p for p in folder.iterdir() if is_image(p))
                files += members
                labels += [k] * len(members)
            return files, labels
        if not loose:
            raise DataError(f"{root}: no {'/'.join(e.lstrip('.').upper() for e in IMAGE_EXTENSIONS)} images found")
        self.class_names = []
        return loose, None

    def read(self, path: Path) -> np.ndarray:
        """One image as a (channels, H, W) uint8 array."""
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as img:
                img = img.convert("L" if self.channels == 1 else "RGB")
                if self.image_size is not None and img.size != (self.image_size, self.image_size):
                    img = img.resize((self.image_size, self.image_size), Image.Resampling.LANCZOS)
                arr = np.asarray(img, dtype=np.uint8)
        except (OSError, UnidentifiedImageError) as exc:
            raise DataError(f"{path}: not a readable image ({type(exc).__name__}: {exc})") from exc
        return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)

    def load(self) -> DataSplits:
        files, labels = self.files()
        images = [self.read(p) for p in files]
        shapes = {im.shape for im in images}
        if len(shapes) > 1:
            first, other = images[0].shape, next(s for s in shapes if s != images[0].shape)
            raise DataError(
                f"{self.root}: images of different sizes ({first[1]}x{first[2]} and {other[1]}x{other[2]}); "
                "set image_size to resize them"
            )
        x = torch.from_numpy(np.stack(images)).float() / 127.5 - 1.0
        y = torch.tensor(labels, dtype=torch.long) if labels is not None else None
        if x.shape[0] < 4:
            raise DataError(f"{self.root}: {x.shape[0]} images; need at least 4 (2 to train, 2 held out)")
        order = torch.randperm(x.shape[0], generator=_generator(self.seed, 0))
        n_val = min(max(2, int(round(self.val_fraction * x.shape[0]))), x.shape[0] - 2)
        held, kept = order[:n_val], order[n_val:]
        pick = (lambda t, i: None if t is None else t[i])  # noqa: E731
        return DataSplits(x[kept], x[held], pick(y, kept), pick(y, held))
