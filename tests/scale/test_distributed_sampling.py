import os

import pytest
import torch
from lightning.pytorch import Callback, Trainer

from flowbridge.random import index_seeds
from flowbridge.scale import ShardDataset, merge_shards, sample_to_disk
from tests.conftest import ring_mixture

QUIET = dict(accelerator="cpu", logger=False, enable_checkpointing=False, enable_model_summary=False, enable_progress_bar=False)


class KillAfter(Callback):
    """Simulates a killed run: raises after ``n`` predict batches (shards) have completed."""

    def __init__(self, n):
        self.n = n

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        if batch_idx + 1 >= self.n:
            raise RuntimeError("killed")


def test_shards_match_direct_sampling_and_resume_without_redrawing(tmp_path):
    import flowbridge as fb

    field = ring_mixture(2).field("linear")
    kwargs = dict(num_samples=250, sample_shape=(2,), shard_size=60, seed=11, solver="heun", steps=6)
    with pytest.raises(RuntimeError, match="killed"):
        sample_to_disk(field, out_dir=tmp_path, trainer=Trainer(devices=1, callbacks=[KillAfter(2)], **QUIET), **kwargs)
    done = sorted(p.name for p in tmp_path.glob("shard_*.pt"))
    assert len(done) == 2 and not list(tmp_path.glob("*.tmp"))
    stamps = {name: os.stat(tmp_path / name).st_mtime_ns for name in done}
    merged = sample_to_disk(field, out_dir=tmp_path, devices=1, output=tmp_path / "all.npy", **QUIET, **kwargs)
    assert {name: os.stat(tmp_path / name).st_mtime_ns for name in done} == stamps  # finished shards were skipped
    assert len(list(tmp_path.glob("shard_*.pt"))) == len(ShardDataset(250, 60))
    # Sample i depends only on (seed, i): the merged result equals one direct call with the same seeds.
    direct = fb.sample(field, "heun", 6, shape=(250, 2), seeds=index_seeds(11, 0, 250)).x
    # Shards of 60 and one batch of 250 run the same float32 arithmetic through differently blocked
    # kernels, so they agree to rounding, not bit for bit: 12 field evaluations, each rounding at
    # relative eps, amplified a few times by the mixture's softmax -> 64 eps of the largest value.
    tol = 64 * torch.finfo(merged.dtype).eps * float(direct.abs().max())
    torch.testing.assert_close(merged, direct, rtol=0, atol=tol)
    import numpy as np

    np.testing.assert_array_equal(np.load(tmp_path / "all.npy"), merged.numpy())


def test_merge_refuses_a_missing_shard(tmp_path):
    with pytest.raises(FileNotFoundError, match="rerun the job"):
        merge_shards(tmp_path, 10, 4)


@pytest.mark.slow
def test_two_processes_give_bit_identical_samples(tmp_path):
    """devices=2 on CPU (gloo, ddp_spawn) against one process, same seed."""
    field = ring_mixture(2).field("linear")
    kwargs = dict(num_samples=1000, sample_shape=(2,), shard_size=300, seed=5)
    one = sample_to_disk(field, out_dir=tmp_path / "one", devices=1, **QUIET, **kwargs)
    two = sample_to_disk(field, out_dir=tmp_path / "two", devices=2, strategy="ddp_spawn", **QUIET, **kwargs)
    assert torch.equal(one, two)
