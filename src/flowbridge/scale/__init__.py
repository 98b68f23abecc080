"""Sampling at scale: shards over Lightning's predict loop, resumable, bit-identical across process counts."""

from flowbridge.scale.distributed import ShardDataset, ShardRange, ShardSampler, SamplingJob, merge_shards, sample_to_disk

__all__ = ["SamplingJob", "ShardDataset", "ShardRange", "ShardSampler", "merge_shards", "sample_to_disk"]
